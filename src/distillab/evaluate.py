"""evaluate(model, benchmark): k samples per problem, graded, scored (PAPER.md §8).

Two rules per (model, benchmark): ``eval_generate`` (``evaluation.jobs`` parts, on GPUs)
and ``evaluate`` (grading and scoring, on CPUs), so grading never holds GPUs and a grader
change regrades without generating anew.

1. **Problems** come from :func:`distillab.benchmarks.load_benchmark_problems`, which
   dispatches on the spec's ``kind`` (``math500``, ``aime2024``, ``aime2025``,
   ``livecodebench``, ``livecodebench_public``, ``jsonl``). A spec written before kinds
   existed (``format: jsonl`` and no ``kind``) is a ``jsonl`` benchmark; ``format: hf``
   without a ``kind`` is refused with the kinds to choose from (:func:`benchmark_kind`).
2. **Prompts**: the study's system prompt for every task; math problems get the study's
   math instruction (the paper's "Let's think step by step and output the final answer
   within \\boxed{}."); LiveCodeBench problems are sent as LiveCodeBench wrote them, with
   no code instruction appended (:func:`benchmark_prompt`).
3. **Generation** (:func:`generate_part`): part ``p`` of ``jobs`` takes every
   ``jobs``-th problem from ``p`` on (:func:`part_problems`) and goes through
   :func:`distillab.generate.generate_shard`: finished problems are flushed to
   ``<part>.partial/``, so a preempted job (64 samples x 30 AIME problems x 49k tokens)
   restarts and generates only the problems it had not finished; the parts are discarded
   when the model, its weights, the sampling, the prompt or the problems change (the
   fingerprint, :func:`model_fingerprint`). The backend is ``evaluation.backend``
   (``transformers`` on CPU, ``vllm`` on GPUs) through
   :func:`distillab.generate.make_generator`.
4. **Grading** (:func:`score`, after :func:`collect_parts` checked that the parts cover
   every problem once with k samples each). Code problems are graded with
   LiveCodeBench's rule, whatever the study's ``verification.code`` says for the SFT
   data: every test (public and private, no ``max_tests`` cap) and a sample passes only
   when all of them pass (threshold 1.0) (:func:`grading_settings`). Other problems use
   the study's verifiers and threshold.
5. **Metrics** (:func:`summarize`): pass@1 as the mean over problems of each problem's
   pass rate over its k samples (the paper's "mean over k"), with the standard error of
   that mean over problems; unbiased pass@k for k in 1, 2, 4, …, 64 up to the samples
   per problem; per-problem pass rates and mean lengths; mean and median response
   tokens; the no-answer and truncation rates; accuracy and mean length per group of
   problems (MATH500 level and subject, LiveCodeBench difficulty and platform, AIME
   contest and year: whatever the problem's ``meta`` carries).

Everything that moves a score is stored beside it: sampling, k, the prompt and its
hash, graders and their versions, grading rule, date window, release, the engine
(backend, version, tensor-parallel size) and the benchmark's source (sha256 of the local
files, or repo_id@revision).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from distillab import metrics, prompts, schemas
from distillab.benchmarks import KINDS, LCB_DEFAULT_REPO, lcb_release_files, load_benchmark_problems
from distillab.generate import (FlushPolicy, Generator, PartialResponses, PromptSpec,
                                SamplingSpec, TeacherSpec, generate_shard, make_generator,
                                semantic_options)
from distillab.io import read_json, read_rows, sha256_file, stable_hash, write_json, write_table

if TYPE_CHECKING:  # verify imports math-verify (sympy): only where samples are graded
    from distillab.verify import VerifySettings

log = logging.getLogger(__name__)

MATH_KINDS = ("math500", "aime2024", "aime2025")
CODE_KINDS = ("livecodebench", "livecodebench_public")
# pass@k reported for these k (each up to the samples per problem).
PASS_AT_K = (1, 2, 4, 8, 16, 32, 64)
# Problem meta keys a result is broken down by (when any problem carries them), and the
# natural order of their values where sorting would not give it.
GROUP_KEYS = ("level", "subject", "difficulty", "platform", "contest", "year")
GROUP_ORDER: dict[str, list] = {"level": [1, 2, 3, 4, 5], "difficulty": ["easy", "medium", "hard"],
                                "contest": ["AIME I", "AIME II"]}
# Evaluation-engine keys of the ``evaluation`` config section, handed to make_generator.
ENGINE_KEYS = ("batch_size", "quantization", "dtype", "tensor_parallel_size",
               "pipeline_parallel_size", "max_model_len", "gpu_memory_utilization", "vllm")
BACKENDS = ("transformers", "vllm")
ENGINES_FILE = "engines.json"  # in the partial dir: the engines that generated its parts


# ----------------------------------------------------------------------------- config


def benchmark_kind(name: str, spec: dict) -> str:
    """The benchmark's ``kind``; a spec without one is a legacy ``format: jsonl`` spec."""
    kind = spec.get("kind")
    if kind is not None:
        if kind not in KINDS:
            raise ValueError(f"benchmark {name}: unknown kind {kind!r}; expected one of "
                             f"{', '.join(KINDS)}")
        return kind
    fmt = spec.get("format", "jsonl")
    if fmt == "jsonl":
        return "jsonl"
    raise ValueError(f"benchmark {name}: format {fmt!r} without a kind; set kind to one of "
                     f"{', '.join(k for k in KINDS if k != 'jsonl')} (with repo_id + revision "
                     "for the hub, or path for a local copy)")


def load_benchmark(name: str, spec: dict) -> list[dict]:
    """The benchmark's problems as QUERY-schema dicts (see the module docstring)."""
    kind = benchmark_kind(name, spec)
    problems = load_benchmark_problems(name, {**spec, "kind": kind})
    wanted = spec.get("category")
    if kind != "jsonl" and wanted and any(p["category"] != wanted for p in problems):
        raise ValueError(f"benchmark {name}: category {wanted!r}, but kind {kind} problems are "
                         f"{problems[0]['category']!r} (leave category out for this kind)")
    return problems


def engine_config(evaluation: dict) -> tuple[str, dict]:
    """``(backend, options)`` of the evaluated models' engine, from ``evaluation``."""
    backend = evaluation.get("backend", "transformers")
    if backend not in BACKENDS:
        raise ValueError(f"evaluation.backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    options = {k: evaluation[k] for k in ENGINE_KEYS if evaluation.get(k) is not None}
    return backend, options


def engine_params(evaluation: dict) -> dict:
    """What of the engine can change the samples (the rule's params): backend and options
    without the operational knobs (memory share, chunking, GPU count)."""
    backend, options = engine_config(evaluation)
    return {"backend": backend, **semantic_options(options)}


def eval_gpus(evaluation: dict) -> int:
    """GPUs of an evaluate job: ``evaluation.gpus`` when set, else tensor x pipeline
    parallel for vLLM and none for transformers. A ``gpus`` that disagrees with the vLLM
    engine's parallel sizes is an error (the job would get the wrong GPU count)."""
    backend = evaluation.get("backend", "transformers")
    parallel = (evaluation.get("tensor_parallel_size") or 1) * \
        (evaluation.get("pipeline_parallel_size") or 1)
    gpus = evaluation.get("gpus")
    if backend == "vllm":
        if gpus is not None and gpus != parallel:
            raise ValueError(f"config key evaluation.gpus: {gpus} GPUs, but the vllm engine uses "
                             f"tensor x pipeline parallel = {parallel}")
        return parallel
    return int(gpus or 0)


def benchmark_prompt(kind: str, prompt: PromptSpec) -> PromptSpec:
    """The prompt a benchmark is asked with: LiveCodeBench's own prompt stays unmodified
    (no code instruction appended); every other kind uses the study's instructions (the
    paper's math instruction for MATH500 and AIME)."""
    if kind in CODE_KINDS:
        return dataclasses.replace(prompt, instructions={**prompt.instructions, "code": ""})
    return prompt


def grading_settings(settings: VerifySettings) -> VerifySettings:
    """LiveCodeBench's grading of code: every test, and a pass only if all of them pass."""
    return dataclasses.replace(settings, threshold=1.0,
                               code=dataclasses.replace(settings.code, max_tests=None))


def benchmark_source(name: str, spec: dict) -> dict:
    """Where the problems came from: sha256 of every local file, or the hub pin."""
    kind = benchmark_kind(name, spec)
    if spec.get("path"):
        path = Path(os.path.expandvars(str(spec["path"])))
        files = ([path / f for f in lcb_release_files(spec["release"])]
                 if path.is_dir() and spec.get("release") else [path])
        return {"files": [{"path": str(f), "sha256": sha256_file(f)} for f in files]}
    repo = spec.get("repo_id") or (LCB_DEFAULT_REPO if kind == "livecodebench" else None)
    source = {"repo_id": repo, "revision": spec.get("revision"),
              "hub": f"{repo}@{spec.get('revision')}"}
    for key in ("config_name", "split"):
        if spec.get(key) is not None and kind != "livecodebench":
            source[key] = spec[key]
    return source


def model_fingerprint(model_dir: str | os.PathLike) -> dict:
    """What identifies the evaluated weights for resuming: the name, size and mtime of
    every file of the model dir (a retrained student changes them), hashed."""
    root = Path(model_dir)
    if not root.exists():
        return {"model_dir": str(root)}
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        entries.append([str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns])
    return {"model_dir": str(root), "files": stable_hash(entries)}


# ----------------------------------------------------------------------------- metrics


def _group_key(value: Any) -> str:
    return str(value)


def summarize(name: str, model: str, samples: list[dict], k: int,
              meta: dict[str, dict] | None = None) -> dict:
    """Metrics of graded samples (EVAL_SAMPLE rows); ``meta``: problem id -> its meta
    dict, for the per-group breakdown (see the module docstring)."""
    per_problem: dict[str, list[bool]] = {}
    tokens: dict[str, list[int]] = {}
    for s in samples:
        per_problem.setdefault(s["problem_id"], []).append(bool(s["passed"]))
        tokens.setdefault(s["problem_id"], []).append(int(s["n_tokens"]))
    n = len(per_problem)
    if n:
        pass_at_1, stderr = metrics.mean_pass_at_1(per_problem)
        table = metrics.pass_at_k_table(per_problem, PASS_AT_K)
        mean_tokens, median_tokens = metrics.length_stats([t for ts in tokens.values() for t in ts])
    else:
        pass_at_1, stderr, table, mean_tokens, median_tokens = 0.0, 0.0, {}, None, None
    rates = {pid: sum(v) / len(v) for pid, v in per_problem.items()}
    n_samples = len(samples)
    groups: dict[str, dict[str, dict]] = {}
    meta = meta or {}
    for key in GROUP_KEYS:
        if not any(key in meta.get(pid, {}) for pid in rates):
            continue
        stats = metrics.by_group(rates, tokens, lambda pid, key=key: meta.get(pid, {}).get(key),
                                 order=GROUP_ORDER.get(key))
        groups[key] = {_group_key(g): v for g, v in stats.items()}
    return {
        "benchmark": name,
        "model": model,
        "n_problems": n,
        "k": k,
        "n_samples": n_samples,
        "pass_at_1": pass_at_1,
        "pass_at_1_stderr": stderr,
        "pass_at_k": {str(kk): v for kk, v in table.items()},
        "per_problem_pass_rate": rates,
        "per_problem_mean_tokens": {pid: sum(v) / len(v) for pid, v in tokens.items()},
        "mean_response_tokens": mean_tokens,
        "median_response_tokens": median_tokens,
        "no_answer_rate": (sum(1 for s in samples if not s["answer"]) / n_samples
                           if n_samples else 0.0),
        "truncated_rate": (sum(1 for s in samples if s["finish_reason"] == "length") / n_samples
                           if n_samples else 0.0),
        "groups": groups,
    }


# ----------------------------------------------------------------------------- grading


def _answer(response: dict, verdict: dict, details: dict) -> str | None:
    """What the grader found to grade: the extracted answer (math, science), the program
    (code, None without one), else the response's answer part."""
    if verdict["verifier"] == "code":
        if details.get("status") == "no_code" or not details.get("code_chars"):
            return None
        from distillab.verify_code import extract_code

        return extract_code(response["answer"] if response["answer"] is not None
                            else response["text"])[0]
    if "extracted" in details:
        return details["extracted"]
    return response["answer"]


def grade(responses: list[dict], problems: dict[str, dict], settings: VerifySettings
          ) -> tuple[list[dict], dict]:
    """Verdicts in response order, code problems graded under :func:`grading_settings`,
    and the grading settings used (for the result)."""
    from distillab.verify import verify_responses

    code_settings = grading_settings(settings)
    is_code = [problems[r["query_id"]]["category"] == "code" for r in responses]
    verdicts: list[dict | None] = [None] * len(responses)
    for flag, used in ((True, code_settings), (False, settings)):
        items = [i for i, c in enumerate(is_code) if c == flag]
        if items:
            graded = verify_responses([responses[i] for i in items], problems, used)
            for i, v in zip(items, graded):
                verdicts[i] = v
    grading: dict[str, Any] = {"threshold": settings.threshold}
    if any(is_code):
        grading["code"] = {"rule": "livecodebench: all tests (public + private), pass only "
                                   "when every test passes",
                           "threshold": code_settings.threshold, "max_tests": None,
                           "timeout_per_test_s": code_settings.code.timeout_per_test_s,
                           "memory_mb": code_settings.code.memory_mb,
                           "sandbox": code_settings.code.sandbox}
    return verdicts, grading  # type: ignore[return-value]


# ----------------------------------------------------------------------------- the job


def _read_engines(partial_dir: Path) -> list[dict]:
    path = partial_dir / ENGINES_FILE
    return read_json(path) if path.exists() else []


def eval_jobs(evaluation: dict, bench: dict) -> int:
    """Generation jobs of one (model, benchmark): the benchmark's ``jobs``, else
    ``evaluation.jobs``, else 1."""
    return int(bench.get("jobs") or evaluation.get("jobs") or 1)


def part_problems(problems: list[dict], part: int, jobs: int) -> list[dict]:
    """The problems of generation job ``part`` of ``jobs``: every ``jobs``-th problem from
    ``part`` on, so each job gets a share of every level or difficulty (the files list them
    in order) and the parts' sizes differ by at most one."""
    if not 0 <= part < jobs:
        raise ValueError(f"part {part} of {jobs}: expected 0 <= part < jobs")
    return problems[part::jobs]


def _eval_spec(model_name: str, kind: str, bench: dict, sampling_cfg: dict, prompt: PromptSpec,
               backend: str, options: dict | None) -> TeacherSpec:
    sampling = SamplingSpec(**{**sampling_cfg, "n": int(bench["k"])})
    return TeacherSpec(name=model_name, model=model_name, backend=backend, sampling=sampling,
                       prompt=benchmark_prompt(kind, prompt), options=dict(options or {}))


def generate_part(model_name: str, bench_name: str, bench: dict, sampling_cfg: dict,
                  prompt: PromptSpec, open_generator: Callable[[], Generator], *,
                  output: str | os.PathLike, part: int = 0, jobs: int = 1,
                  backend: str = "transformers", options: dict | None = None,
                  flush: FlushPolicy = FlushPolicy(), fingerprint: dict | None = None,
                  problems: list[dict] | None = None) -> tuple[list[dict], dict]:
    """Generate the k samples of every problem of part ``part`` of ``jobs``:
    ``(RESPONSE rows, part info)``.

    ``output`` is the part's responses file; work in progress lives in
    ``<output>.partial/`` and is resumed from there (the caller writes the output and then
    discards the partial dir). ``open_generator`` is only called when something is left to
    generate. ``fingerprint`` adds what else must match for partial parts to be reused
    (the weights: :func:`model_fingerprint`). Every part uses the sampling seed: vLLM
    seeds each request from it and the problem id, so its samples do not depend on
    ``jobs``. The part info (:func:`read_part`) lists the part's problems, the engines
    that generated them and the job's counts.
    """
    kind = benchmark_kind(bench_name, bench)
    if problems is None:
        problems = load_benchmark(bench_name, bench)
    mine = part_problems(problems, part, jobs)
    spec = _eval_spec(model_name, kind, bench, sampling_cfg, prompt, backend, options)
    partial_dir = Path(f"{output}.partial")
    engines: list[dict] = []

    def opened() -> Generator:
        generator = open_generator()
        engines.append(generator.describe())
        write_json(partial_dir / ENGINES_FILE, _read_engines(partial_dir) + engines[-1:])
        return generator

    problem_hash = stable_hash([[p["query_id"], p["category"], p["messages"]] for p in mine])
    rows, counts = generate_shard(
        mine, spec, 0, spec.sampling.seed, output, opened, flush,
        fingerprint={"benchmark": bench_name, "problems": problem_hash, "part": part,
                     "jobs": jobs, **(fingerprint or {})})
    engine_runs = _read_engines(partial_dir)
    if counts["queries_generated"]:
        engine_runs = engine_runs[:-1] + [counts["backend"]]  # describe() after the run
    info = {"model": model_name, "benchmark": bench_name, "part": part, "jobs": jobs,
            "k": spec.sampling.n, "problem_ids": [p["query_id"] for p in mine],
            "engine_runs": engine_runs,
            "counts": {key: counts[key] for key in ("queries_resumed", "queries_generated")
                       if key in counts}}
    return rows, info


def read_part(responses: str | os.PathLike, info: str | os.PathLike) -> tuple[list[dict], dict]:
    """A generation part written by rule ``eval_generate``: its rows and its info."""
    return read_rows(responses, schemas.RESPONSE), read_json(info)


def collect_parts(parts: list[tuple[list[dict], dict]], problems: list[dict], k: int,
                  where: list[str] | None = None) -> list[dict]:
    """The rows of every part, in problem order, after checking that the parts are one
    split of the benchmark: each problem in exactly one part, with samples 0..k-1 (a part
    from another split or another k is an error that names its file)."""
    where = where or [f"part {info.get('part')}" for _, info in parts]
    owner: dict[str, str] = {}
    by_problem: dict[str, list[dict]] = {}
    for (rows, info), name in zip(parts, where):
        if info.get("k") != k:
            raise ValueError(f"{name}: k = {info.get('k')}, but the benchmark asks for k = {k}")
        for pid in info["problem_ids"]:
            if pid in owner:
                raise ValueError(f"{name}: problem {pid!r} is also in {owner[pid]}")
            owner[pid] = name
        for row in rows:
            if owner.get(row["query_id"]) != name:
                raise ValueError(f"{name}: row for problem {row['query_id']!r}, which is not "
                                 "one of the part's problems")
            by_problem.setdefault(row["query_id"], []).append(row)
    missing = [p["query_id"] for p in problems if p["query_id"] not in owner]
    extra = sorted(set(owner) - {p["query_id"] for p in problems})
    if missing or extra:
        raise ValueError(f"the parts ({', '.join(where)}) do not cover the benchmark: "
                         f"missing problems {missing[:5]}, unknown problems {extra[:5]}")
    rows = []
    for p in problems:
        got = sorted(by_problem.get(p["query_id"], []), key=lambda r: r["sample"])
        if [r["sample"] for r in got] != list(range(k)):
            raise ValueError(f"{owner[p['query_id']]}: problem {p['query_id']!r} has samples "
                             f"{[r['sample'] for r in got]}, expected 0..{k - 1}")
        rows.extend(got)
    return rows


def score(model_name: str, bench_name: str, bench: dict, sampling_cfg: dict,
          prompt: PromptSpec, settings: VerifySettings, parts: list[tuple[list[dict], dict]], *,
          backend: str = "transformers", options: dict | None = None,
          problems: list[dict] | None = None, where: list[str] | None = None
          ) -> tuple[dict, list[dict]]:
    """Grade the generated parts of one (model, benchmark) and score them:
    ``(result, EVAL_SAMPLE rows)``. ``parts``: ``(rows, info)`` of every generation job
    (:func:`generate_part`, :func:`read_part`); ``where`` names them in errors."""
    kind = benchmark_kind(bench_name, bench)
    if problems is None:
        problems = load_benchmark(bench_name, bench)
    spec = _eval_spec(model_name, kind, bench, sampling_cfg, prompt, backend, options)
    sampling, eval_prompt, k = spec.sampling, spec.prompt, spec.sampling.n
    rows = collect_parts(parts, problems, k, where)
    by_id = {p["query_id"]: p for p in problems}
    verdicts, grading = grade(rows, by_id, settings)
    samples = []
    for r, v in zip(rows, verdicts):
        details = json.loads(v["details"]) if v["details"] else {}
        samples.append({"problem_id": r["query_id"], "sample": r["sample"], "text": r["text"],
                        "answer": _answer(r, v, details), "n_tokens": r["n_tokens"],
                        "finish_reason": r["finish_reason"], "score": v["score"],
                        "passed": v["passed"], "details": v["details"]})
    meta = {p["query_id"]: json.loads(p["meta"]) if p.get("meta") else {} for p in problems}
    result = summarize(bench_name, model_name, samples, k, meta)
    engine_runs = [run for _, info in parts for run in info["engine_runs"]]
    engine = engine_runs[-1] if engine_runs else {"backend": backend}
    result.update(
        kind=kind,
        sampling=asdict(sampling),
        prompt={"style": eval_prompt.style, "demonstrations": eval_prompt.demonstrations,
                "system_prompt": eval_prompt.system_prompt,
                "instruction": eval_prompt.instructions.get(
                    "code" if kind in CODE_KINDS else "math" if kind in MATH_KINDS
                    else problems[0]["category"] if problems else "", "")},
        prompt_style=eval_prompt.style,
        demonstrations=eval_prompt.demonstrations,
        prompt_template_hash=prompts.template_hash(asdict(eval_prompt)),
        grader=sorted({v["verifier"] for v in verdicts}),
        grader_version=sorted({v["verifier_version"] for v in verdicts}),
        grading=grading,
        threshold=grading.get("code", grading)["threshold"],
        date_window=bench.get("date_window"),
        release=bench.get("release"),
        max_problems=bench.get("max_problems"),
        benchmark_source=benchmark_source(bench_name, bench),
        engine={"backend": backend, "tensor_parallel_size": (options or {}).get(
            "tensor_parallel_size", 1) if backend == "vllm" else None, **engine},
        engine_runs=engine_runs,
        jobs=len(parts),
    )
    return result, samples


def evaluate(model_name: str, bench_name: str, bench: dict, sampling_cfg: dict,
             prompt: PromptSpec, settings: VerifySettings,
             open_generator: Callable[[], Generator], *, output: str | os.PathLike,
             backend: str = "transformers", options: dict | None = None,
             flush: FlushPolicy = FlushPolicy(), fingerprint: dict | None = None,
             problems: list[dict] | None = None) -> tuple[dict, list[dict], dict]:
    """Evaluate one model on one benchmark in this process, as one generation part:
    ``(result, EVAL_SAMPLE rows, counts)`` (:func:`generate_part`, then :func:`score`).
    The workflow runs the same two steps as rules ``eval_generate`` (one job per part,
    on GPUs) and ``evaluate`` (grading, on CPUs)."""
    if problems is None:
        problems = load_benchmark(bench_name, bench)
    rows, info = generate_part(model_name, bench_name, bench, sampling_cfg, prompt,
                               open_generator, output=output, backend=backend, options=options,
                               flush=flush, fingerprint=fingerprint, problems=problems)
    result, samples = score(model_name, bench_name, bench, sampling_cfg, prompt, settings,
                            [(rows, info)], backend=backend, options=options, problems=problems)
    return result, samples, info["counts"]


def eval_generate_from_snakemake(smk: Any, prov: Any) -> None:
    """Rule ``eval_generate``: one part of one (model, benchmark)'s samples."""
    from distillab.models import load_location

    p = smk.params
    evaluation = smk.config["evaluation"]
    backend, options = engine_config(evaluation)  # with the operational knobs
    path, revision = load_location(smk.input.model)
    prompt = PromptSpec.from_config(p.prompts, p.prompt_style, p.demonstrations)
    flush = FlushPolicy(evaluation.get("flush_every", 8),
                        evaluation.get("flush_interval_s", 120.0))
    part = int(smk.wildcards.part)
    rows, info = generate_part(
        smk.wildcards.model, smk.wildcards.benchmark, p.benchmark, p.sampling, prompt,
        lambda: make_generator(backend, path, revision, options),
        output=smk.output.responses, part=part, jobs=int(p.jobs), backend=backend,
        options=options, flush=flush,
        fingerprint={"model": model_fingerprint(smk.input.model), "location": [path, revision]})
    write_table(smk.output.responses, rows, schemas.RESPONSE)
    write_json(smk.output.info, info)
    PartialResponses(smk.output.responses, {}).discard()
    log.info("%s on %s, part %d of %d: %d problems x k=%d (%d resumed)", smk.wildcards.model,
             smk.wildcards.benchmark, part, p.jobs, len(info["problem_ids"]), info["k"],
             info["counts"].get("queries_resumed", 0))
    prov.add(rows_in=len(info["problem_ids"]), rows_out=len(rows),
             tokens_generated=sum(r["n_tokens"] for r in rows), **info["counts"])


def evaluate_from_snakemake(smk: Any, prov: Any) -> None:
    """Rule ``evaluate``: grade every part of one (model, benchmark) and score it."""
    from distillab.verify import VerifySettings

    p = smk.params
    backend, options = engine_config(smk.config["evaluation"])
    prompt = PromptSpec.from_config(p.prompts, p.prompt_style, p.demonstrations)
    parts = [read_part(r, i) for r, i in zip(smk.input.responses, smk.input.info)]
    result, samples = score(
        smk.wildcards.model, smk.wildcards.benchmark, p.benchmark, p.sampling, prompt,
        VerifySettings.from_config(p.verification), parts, backend=backend, options=options,
        where=[str(r) for r in smk.input.responses])
    result["model_info"] = p.model_info
    write_table(smk.output.samples, samples, schemas.EVAL_SAMPLE)
    write_json(smk.output.result, result)
    log.info("%s on %s: pass@1 %.3f ± %.3f over %d problems × k=%d, mean %.1f tokens",
             smk.wildcards.model, smk.wildcards.benchmark, result["pass_at_1"],
             result["pass_at_1_stderr"], result["n_problems"], result["k"],
             result["mean_response_tokens"] or 0)
    prov.add(rows_in=len(samples), rows_out=len(samples), parts=len(parts),
             response_tokens=sum(s["n_tokens"] for s in samples))


__all__ = ["CODE_KINDS", "GROUP_KEYS", "MATH_KINDS", "PASS_AT_K", "benchmark_kind",
           "benchmark_prompt", "benchmark_source", "collect_parts", "engine_config",
           "engine_params", "eval_gpus", "eval_jobs", "evaluate", "generate_part", "grade",
           "grading_settings", "load_benchmark", "model_fingerprint", "part_problems",
           "read_part", "score", "summarize"]
