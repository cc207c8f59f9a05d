"""Names, paths and input functions for the Snakemake rules, derived from the config.

Kept here rather than in ``rules/*.smk`` so the DAG's shape is unit-testable and the rules
stay declarative (DESIGN.md §2 has the layout).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from functools import cached_property
from pathlib import Path


def code_version(*modules: str) -> str:
    """Hash of the package modules a rule runs.

    Snakemake tracks ``script:`` files but not the code they import; passing this as a
    param makes an edit to e.g. ``distillab.generate`` rerun the rules that use it.
    """
    h = hashlib.sha256()
    for name in sorted(modules):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(name)
        h.update(name.encode())
        h.update(Path(spec.origin).read_bytes())
    return h.hexdigest()[:12]


def export_pythonpath(src: str) -> None:
    """Put the checkout's ``src/`` first on PYTHONPATH so every job imports this package:
    local jobs, jobs in ``--sdm conda`` envs (which do not install it) and SLURM jobs
    (the plugin submits with ``--export=ALL``)."""
    parts = [src] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)


class Study:
    def __init__(self, config: dict):
        self.config = config
        self.root = f"{config['results_dir']}/{config['study']}"
        self.teachers = list(config["teachers"])
        self.students = list(config["students"])
        self.benchmarks = list(config["evaluation"]["benchmarks"])
        self.shards = [f"{i:03d}" for i in range(config["queries"]["n_shards"])]
        self.rounds = list(range(1, config["generation"]["max_rounds"] + 1))
        self.sources = [s["name"] for s in config["queries"]["sources"]]

    # --- models -------------------------------------------------------------------------
    def model_dir(self, model: str) -> str:
        return f"{self.root}/models/{model}"

    def teacher_model_dir(self, teacher: str) -> str:
        return self.model_dir(self.config["teachers"][teacher]["model"])

    def teacher_generate_inputs(self, teacher: str) -> list[str]:
        """The model a teacher's generate job reads: none for an endpoint (openai)."""
        if self.config["teachers"][teacher].get("backend") == "openai":
            return []
        return [self.teacher_model_dir(teacher)]

    # The modules a teacher's generate job runs beyond distillab.generate: editing one
    # backend reruns only the teachers that use it.
    BACKEND_MODULES = {
        "transformers": ("distillab.decoding",),
        "vllm": ("distillab.gen_vllm",),
        "openai": ("distillab.gen_openai",),
        "replay": ("distillab.gen_replay", "distillab.am_format", "distillab.sources"),
    }

    def generate_code_version(self, teacher: str) -> str:
        backend = self.config["teachers"][teacher].get("backend", "transformers")
        return code_version("distillab.generate", "distillab.prompts", "distillab.parse",
                            *self.BACKEND_MODULES[backend])

    def generate_env(self, teacher: str) -> str:
        """The conda env of a teacher's generate jobs (relative to rules/)."""
        backend = self.config["teachers"][teacher].get("backend", "transformers")
        return "../envs/vllm.yaml" if backend == "vllm" else "../envs/models.yaml"

    def teacher_params(self, teacher: str) -> dict:
        """What the generate job's params track: the teacher's config without the knobs
        that cannot change its output (a new endpoint address reruns nothing)."""
        from distillab.generate import semantic_options

        return semantic_options(self.config["teachers"][teacher])

    def judge_model_dirs(self) -> list[str]:
        """The LLM judge's prepared model (``verification.judge``), or nothing."""
        judge = self.config["verification"].get("judge")
        return [self.model_dir(judge["model"])] if judge else []

    def prompt_style(self, model: str) -> str:
        return self.config["models"][model].get("prompt_style", "chat")

    # --- queries --------------------------------------------------------------------------
    def source_spec(self, source: str) -> dict:
        return next(s for s in self.config["queries"]["sources"] if s["name"] == source)

    def source_files(self, source: str) -> list[str]:
        """Local files a source reads, so editing them reruns the query stage."""
        from distillab.sources import source_paths  # a directory source lists its files

        return source_paths(self.source_spec(source))

    def benchmark_files(self, names: list[str] | None = None) -> list[str]:
        benchmarks = self.config["evaluation"]["benchmarks"]
        files = []
        for name in names if names is not None else self.benchmarks:
            spec = benchmarks[name]
            if spec["format"] == "jsonl":
                files.append(os.path.expandvars(spec["path"]))
        return sorted(set(files))

    def embedding_decontamination(self) -> dict | None:
        return (self.config["queries"].get("decontamination") or {}).get("embedding")

    def embedding_benchmark_names(self) -> list[str]:
        decon = self.config["queries"].get("decontamination") or {}
        names = (decon.get("embedding") or {}).get("benchmarks")
        return list(decon.get("benchmarks", []) if names is None else names)

    def _decontamination_specs(self, names: list[str]) -> dict:
        """What decontamination reads of each named benchmark (its rules' params)."""
        from distillab.queries import decontamination_spec

        return {n: decontamination_spec(self.config["evaluation"]["benchmarks"][n])
                for n in names}

    def embedding_benchmarks(self) -> dict:
        return self._decontamination_specs(self.embedding_benchmark_names())

    def embedding_gpus(self) -> int:
        """1 when the embedding model is configured for CUDA ("auto" runs where it lands)."""
        spec = self.embedding_decontamination() or {}
        return 1 if str(spec.get("model", {}).get("device", "auto")).startswith("cuda") else 0

    def decontamination_benchmarks(self) -> dict:
        names = self.config["queries"].get("decontamination", {}).get("benchmarks", [])
        return self._decontamination_specs(names)

    # --- generation rounds ------------------------------------------------------------------
    def verified(self, teacher: str, round_: int, shard: str) -> str:
        return f"{self.root}/verify/{teacher}/r{round_}/{shard}.parquet"

    def earlier_verified(self, teacher: str, round_: int, shard: str) -> list[str]:
        return [self.verified(teacher, r, shard) for r in range(1, int(round_))]

    def teacher_rounds(self, teacher: str) -> list[int]:
        """1..max_rounds of this teacher (its own ``max_rounds``, else the study's)."""
        rounds = self.config["teachers"][teacher].get("max_rounds")
        return self.rounds if rounds is None else list(range(1, rounds + 1))

    def all_verified(self, teacher: str) -> list[str]:
        return [self.verified(teacher, r, s) for r in self.teacher_rounds(teacher)
                for s in self.shards]

    # --- curation ---------------------------------------------------------------------------
    def parallel_teachers(self, teacher: str) -> list[str]:
        """Teachers whose curated sets decide ``teacher``'s parallel set.

        Under ``per_teacher`` a teacher's branch depends on itself only, so changing one
        teacher does not rerun the others."""
        if self.config["curation"]["parallel_policy"] == "intersection":
            return self.teachers
        return [teacher]

    @property
    def perplexity(self) -> dict | None:
        return self.config["curation"].get("perplexity")

    def perplexity_model_dir(self) -> list[str]:
        return [self.model_dir(self.perplexity["model"])] if self.perplexity else []

    def perplexity_scores(self, teacher: str) -> list[str]:
        """The perplexity scores ``curate`` and ``analysis`` read; none when the filter is off."""
        return [f"{self.root}/perplexity/{teacher}.parquet"] if self.perplexity else []

    def scorer_params(self) -> dict:
        """What changes the scores: not the thresholds (moving a cut must not rescore)."""
        ppl = self.perplexity or {}
        return {k: v for k, v in ppl.items() if k not in ("threshold", "per_teacher")}

    def perplexity_threshold(self, teacher: str) -> dict:
        """The teacher's cut: its ``per_teacher`` entry, else the common ``threshold``."""
        ppl = self.perplexity
        if not ppl:
            return {"max_ppl": None, "max_percentile": None}
        return {"max_ppl": None, "max_percentile": None,
                **ppl["threshold"], **ppl["per_teacher"].get(teacher, {})}

    def perplexity_gpus(self) -> int:
        return self.perplexity.get("gpus", 0) if self.perplexity else 0

    def perplexity_env(self) -> str:
        backend = (self.perplexity or {}).get("backend")
        return "../envs/vllm.yaml" if backend == "vllm" else "../envs/models.yaml"

    def ngram_flags(self, teacher: str) -> list[str]:
        """The n-gram filter's per-row flags for ``teacher``; none when the filter is off."""
        return [f"{self.root}/ngrams/{teacher}.parquet"] if self.config["curation"].get("ngram") else []

    # --- training and evaluation ------------------------------------------------------------
    @cached_property
    def eval_models(self) -> dict[str, dict]:
        """Every evaluated model: each student × teacher, plus the teachers as references."""
        models = {}
        for student, sspec in self.config["students"].items():
            for teacher in self.teachers:
                name = f"{student}__{teacher}"
                models[name] = {
                    "kind": "student", "student": student, "teacher": teacher,
                    "base_model": sspec["model"],
                    "model_dir": f"{self.root}/train/{name}",
                    "prompt_style": "chat", "demonstrations": 0,
                }
        if self.config["evaluation"].get("evaluate_teachers", True):
            for teacher, tspec in self.config["teachers"].items():
                models[teacher] = {
                    "kind": "teacher", "student": None, "teacher": teacher,
                    "base_model": tspec["model"],
                    "model_dir": self.teacher_model_dir(teacher),
                    "prompt_style": self.prompt_style(tspec["model"]),
                    "demonstrations": tspec.get("demonstrations", 0),
                }
        return models

    def eval_jobs(self, benchmark: str) -> int:
        """Generation jobs per (model, ``benchmark``) (distillab.evaluate.eval_jobs)."""
        from distillab.evaluate import eval_jobs

        evaluation = self.config["evaluation"]
        return eval_jobs(evaluation, evaluation["benchmarks"][benchmark])

    def eval_parts(self, model: str, benchmark: str, ext: str) -> list[str]:
        """The generation parts of (``model``, ``benchmark``): responses (``parquet``) or
        their info (``json``)."""
        return [f"{self.root}/eval/{model}/{benchmark}/part{p}.{ext}"
                for p in range(self.eval_jobs(benchmark))]

    def eval_results(self) -> list[str]:
        return [path for m in self.eval_models for path in self.eval_results_of(m)]

    def eval_results_of(self, model: str) -> list[str]:
        return [f"{self.root}/eval/{model}/{b}.json" for b in self.benchmarks]

    def releases(self) -> list[str]:
        """Every student's release dir (distillab.release)."""
        return [f"{self.root}/release/{m}" for m, i in self.eval_models.items()
                if i["kind"] == "student"]

    def student_checkpoints(self) -> list[str]:
        return [i["model_dir"] for i in self.eval_models.values() if i["kind"] == "student"]

    def model_info(self) -> dict[str, dict]:
        return {m: {k: v for k, v in i.items() if k != "model_dir"} for m, i in self.eval_models.items()}

    # --- resources ---------------------------------------------------------------------------
    def teacher_gpus(self, teacher: str) -> int:
        """GPUs of a generate job: TP x PP for vLLM (over all its nodes), ``gpus`` for
        transformers, none for an endpoint or a replay."""
        spec = self.config["teachers"][teacher]
        backend = spec.get("backend", "transformers")
        if backend == "vllm":
            return spec.get("tensor_parallel_size", 1) * spec.get("pipeline_parallel_size", 1)
        return spec.get("gpus", 0) if backend == "transformers" else 0

    def teacher_nodes(self, teacher: str) -> int:
        """Nodes of a generate job: >1 only for vLLM's own multi-node mode."""
        spec = self.config["teachers"][teacher]
        return spec.get("nodes", 1) if spec.get("backend") == "vllm" else 1

    def judge_gpus(self) -> int:
        judge = self.config["verification"].get("judge")
        return judge.get("gpus", 0) if judge else 0
