"""Generation: the ``Generator`` interface, the transformers backend and the generate stage.

The stage ``generate(teacher, round, shard)`` answers every query of the shard that no
earlier round accepted (DESIGN.md §1: the retry loop is static, one file per round).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from distillab import prompts, schemas
from distillab.io import read_json, read_rows, stable_hash, write_json, write_table
from distillab.parse import THINK_CLOSE, THINK_OPEN, split_think_answer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingSpec:
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 0  # 0 = off
    min_p: float = 0.0  # 0 = off
    max_new_tokens: int = 256
    seed: int = 0
    n: int = 1  # samples per prompt

    @classmethod
    def from_config(cls, cfg: dict) -> "SamplingSpec":
        return cls(**cfg)


@dataclass(frozen=True)
class PromptSpec:
    """Everything that shapes what a model is asked (hashed into gen_params_hash)."""

    system_prompt: str = prompts.PAPER_SYSTEM_PROMPT
    instructions: dict = field(default_factory=lambda: dict(prompts.DEFAULT_INSTRUCTIONS))
    style: str = "chat"  # chat | fewshot
    demonstrations: int = 0

    @classmethod
    def from_config(cls, cfg: dict, style: str, demonstrations: int) -> "PromptSpec":
        return cls(
            system_prompt=cfg.get("system_prompt", prompts.PAPER_SYSTEM_PROMPT),
            instructions={**prompts.DEFAULT_INSTRUCTIONS, **cfg.get("instructions", {})},
            style=style,
            demonstrations=demonstrations,
        )

    def stop_strings(self) -> list[str]:
        stops = ["</answer>"]
        if self.style == "fewshot":
            stops.append(prompts.FEWSHOT_STOP)
        return stops


@dataclass(frozen=True)
class GenRequest:
    """One prompt to be answered ``sampling.n`` times.

    Chat prompts carry the whole conversation (system prompt, demonstrations, user turns)
    and each backend applies its model's chat template (or the endpoint does); plain-text
    prompts (few-shot prompts for base models) carry ``text``. ``seed`` is per request
    and stable across restarts, so on the backends that take a seed per request (vLLM,
    endpoints) a resumed job samples exactly as an uninterrupted one would.
    """

    key: str
    messages: list[dict] | None = None
    text: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.text is None):
            raise ValueError(f"request {self.key!r}: set exactly one of messages and text")


@dataclass
class GenOutput:
    text: str  # generated text (the answer part when the backend returns reasoning apart)
    n_tokens: int  # generated tokens, reasoning included
    finish_reason: str  # stop | length | (replay) not_in_release
    reasoning: str | None = None  # reasoning returned separately (reasoning_content)

    def full_text(self) -> str:
        """The response as one text in the study's format: reasoning that came back
        separately is put back inside ``<think>`` so one parser serves every backend."""
        if self.reasoning is None:
            return self.text
        return f"{THINK_OPEN}\n{self.reasoning.strip()}\n{THINK_CLOSE}\n{self.text.lstrip()}"


class Generator(Protocol):
    """A backend turns requests into completions (DESIGN.md §4)."""

    def generate(self, requests: Sequence[GenRequest], sampling: SamplingSpec,
                 stop: list[str]) -> Iterator[tuple[int, list[GenOutput]]]:
        """Yield ``(index into requests, sampling.n outputs)`` as requests finish, in any
        order; the caller flushes finished requests between yields."""
        ...

    def describe(self) -> dict:
        """Backend, engine version and options, for provenance (never a secret)."""
        ...


def build_request(key: str, messages: list[dict], category: str, prompt: PromptSpec,
                  seed: int | None = None) -> GenRequest:
    """The request for one query under a prompt spec (chat or few-shot)."""
    if prompt.style == "fewshot":
        return GenRequest(key, text=prompts.fewshot_text(
            prompt.system_prompt, messages, category, prompt.instructions,
            prompt.demonstrations), seed=seed)
    return GenRequest(key, messages=prompts.chat_messages(
        prompt.system_prompt, messages, category, prompt.instructions,
        prompt.demonstrations), seed=seed)


def generate_all(generator: Generator, requests: Sequence[GenRequest], sampling: SamplingSpec,
                 stop: list[str]) -> list[list[GenOutput]]:
    """Every request's outputs, in the caller's order (for callers that need them all)."""
    results: list[list[GenOutput] | None] = [None] * len(requests)
    for i, outs in generator.generate(requests, sampling, stop):
        results[i] = outs
    missing = [requests[i].key for i, r in enumerate(results) if r is None]
    if missing:
        raise RuntimeError(f"backend returned no output for {len(missing)} requests "
                           f"(first: {missing[0]!r})")
    return results  # type: ignore[return-value]


class TransformersGenerator:
    """CPU/GPU generation with transformers: batched, with a shared prompt prefix
    computed once per batch.

    Prompts of one study share a long prefix (system prompt, demonstrations; ~80% of the
    demo's prompt tokens), and on CPU the prefill of that prefix is a third or more of
    the generation time. So jobs are sorted by their token ids, which puts prompts with
    a common prefix into the same batch; the batch's longest common token prefix is run
    once and its KV cache repeated over the batch; the remaining suffixes are padded *in
    the middle* (prefix, pads, suffix), which the attention mask and the position ids
    derived from it handle. Outputs are returned in the caller's order.
    ``prefix_cache=False`` is the plain path: sorted by length, left-padded.
    """

    # A shorter shared prefix is not worth a separate forward pass.
    MIN_PREFIX_TOKENS = 16

    def __init__(self, model_path: str, revision: str | None = None, batch_size: int = 16,
                 dtype: str = "float32", device: str | None = None,
                 quantization: str | None = None, prefix_cache: bool = True):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tok = AutoTokenizer.from_pretrained(model_path, revision=revision)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, revision=revision, dtype=getattr(torch, dtype)
        ).to(self.device)
        self.model.eval()
        if quantization == "int8_dynamic":
            # int8 weights for every Linear: ~3x faster decoding on CPU for 0.5B models,
            # measured in bench/generation_speed.py; numerics change, so it is recorded.
            if self.device != "cpu":
                raise ValueError("int8_dynamic quantization is a CPU option")
            self.model = torch.ao.quantization.quantize_dynamic(
                self.model, {torch.nn.Linear}, dtype=torch.qint8)
        elif quantization is not None:
            raise ValueError(f"unknown quantization {quantization!r}")
        self.batch_size = batch_size
        self.prefix_cache = prefix_cache
        self.quantization = quantization

    def render(self, request: GenRequest) -> str:
        if request.text is not None:
            return request.text
        return self.tok.apply_chat_template(request.messages, tokenize=False,
                                            add_generation_prompt=True)

    def describe(self) -> dict:
        import transformers

        return {"backend": "transformers", "transformers": transformers.__version__,
                "device": self.device, "batch_size": self.batch_size,
                "prefix_cache": self.prefix_cache, "quantization": self.quantization}

    def _batch_inputs(self, rows: list[list[int]]) -> dict[str, Any]:
        """Tensors for one batch: a shared prefix as a repeated KV cache plus
        middle-padded suffixes, or plain left padding when the prefix is short."""
        torch = self.torch
        pad = self.tok.pad_token_id
        shared = common_prefix_len(rows) if self.prefix_cache else 0
        # At least one token per row stays uncached: generate() needs it to start.
        shared = min(shared, min(len(r) for r in rows) - 1)
        width = max(len(r) for r in rows) - (shared if shared >= self.MIN_PREFIX_TOKENS else 0)
        if shared < self.MIN_PREFIX_TOKENS:
            ids = [[pad] * (width - len(r)) + r for r in rows]
            mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
            inputs: dict[str, Any] = {}
        else:
            prefix = rows[0][:shared]
            with torch.inference_mode():
                cache = self.model(torch.tensor([prefix], device=self.device),
                                   use_cache=True).past_key_values
            cache.batch_repeat_interleave(len(rows))
            suffixes = [r[shared:] for r in rows]
            ids = [prefix + [pad] * (width - len(s)) + s for s in suffixes]
            mask = [[1] * shared + [0] * (width - len(s)) + [1] * len(s) for s in suffixes]
            inputs = {"past_key_values": cache}
        inputs["input_ids"] = torch.tensor(ids, device=self.device)
        inputs["attention_mask"] = torch.tensor(mask, device=self.device)
        return inputs

    def generate(self, requests: Sequence[GenRequest], sampling: SamplingSpec,
                 stop: list[str]) -> Iterator[tuple[int, list[GenOutput]]]:
        """Batched generation; yields each request once its ``n`` samples are done.

        Seeds are per batch (``sampling.seed`` and the batch number), not per request:
        transformers samples a batch from one generator, so per-request seeds would cost
        the batching. A resumed job therefore samples its remaining requests in other
        batches than an uninterrupted run would (each output is still a valid sample).
        """
        from transformers import LogitsProcessorList, StoppingCriteriaList

        from distillab.decoding import SamplingWarper, StopOnText

        torch = self.torch
        token_ids = [self.tok(self.render(r), add_special_tokens=False).input_ids
                     for r in requests]
        jobs = [(i, s) for i in range(len(requests)) for s in range(sampling.n)]
        if self.prefix_cache:
            order = sorted(range(len(jobs)), key=lambda j: token_ids[jobs[j][0]])
        else:  # by length: the least padding
            order = sorted(range(len(jobs)), key=lambda j: len(token_ids[jobs[j][0]]))
        results: list[list[GenOutput | None]] = [[None] * sampling.n for _ in requests]
        remaining = [sampling.n] * len(requests)
        t0, done_tokens = time.monotonic(), 0
        eos_ids = {t for t in [self.tok.eos_token_id, self.tok.pad_token_id] if t is not None}
        for b, start in enumerate(range(0, len(order), self.batch_size)):
            batch = [jobs[j] for j in order[start:start + self.batch_size]]
            inputs = self._batch_inputs([token_ids[i] for i, _ in batch])
            prompt_width = inputs["input_ids"].shape[1]
            torch.manual_seed(sampling.seed * 100003 + b)
            kwargs: dict[str, Any] = dict(
                max_new_tokens=sampling.max_new_tokens,
                pad_token_id=self.tok.pad_token_id,
                # transformers' own top-p and stop strings scan the whole vocabulary;
                # these do the same cheaply (distillab.decoding).
                stopping_criteria=StoppingCriteriaList(
                    [StopOnText(self.tok, stop, prompt_width)] if stop else []),
                temperature=None, top_p=None, top_k=None, min_p=None,
            )
            if sampling.temperature > 0:
                kwargs.update(do_sample=True, logits_processor=LogitsProcessorList([
                    SamplingWarper(sampling.temperature, sampling.top_k, sampling.top_p,
                                   sampling.min_p)]))
            else:
                kwargs.update(do_sample=False)
            with torch.inference_mode():
                out = self.model.generate(**inputs, **kwargs)
            new = out[:, prompt_width:].tolist()
            finished = []
            for (i, s), ids in zip(batch, new):
                n = len(ids)
                for k, t in enumerate(ids):
                    if t in eos_ids:
                        n = k
                        break
                text = self.tok.decode(ids[:n], skip_special_tokens=True)
                text, stopped = _cut_at_stop(text, stop)
                finish = "stop" if (stopped or n < len(ids) or n < sampling.max_new_tokens) else "length"
                results[i][s] = GenOutput(text=text, n_tokens=n, finish_reason=finish)
                done_tokens += n
                remaining[i] -= 1
                if remaining[i] == 0:
                    finished.append(i)
            elapsed = time.monotonic() - t0
            log.info("generated %d/%d sequences, %d tokens, %.1f tok/s",
                     min(start + self.batch_size, len(order)), len(order), done_tokens,
                     done_tokens / max(elapsed, 1e-9))
            for i in finished:
                yield i, results[i]  # type: ignore[misc]
                results[i] = []  # yielded: free it


def common_prefix_len(rows: list[list[int]]) -> int:
    """Length of the longest token prefix that every row shares."""
    first, n = rows[0], min(len(r) for r in rows)
    for r in rows[1:]:
        k = 0
        while k < n and r[k] == first[k]:
            k += 1
        n = k
    return n


def _cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Cut at the earliest stop string; ``</answer>`` is kept, ``Question:`` is dropped."""
    best = None
    for s in stop:
        k = text.find(s)
        if k >= 0 and (best is None or k < best[0]):
            best = (k, s)
    if best is None:
        return text, False
    k, s = best
    keep = s if s == "</answer>" else ""
    return text[:k] + keep, True


# Teacher keys that pick and configure a backend, and the subset that cannot change what
# the teacher writes (throughput and robustness knobs): those stay out of the params hash
# and out of Snakemake's params, so tuning them never reruns generation.
BACKEND_OPTIONS = ("batch_size", "dtype", "quantization", "tensor_parallel_size",
                   "pipeline_parallel_size", "max_model_len", "gpu_memory_utilization",
                   "vllm", "openai", "replay")
OPERATIONAL_OPTIONS = ("gpu_memory_utilization", "max_rounds", "nodes", "gpus")
OPERATIONAL_NESTED = {
    "vllm": ("chunk_size", "stream"),
    "openai": ("base_url", "api_key_env", "concurrency", "timeout_s", "max_retries",
               "backoff_base_s", "backoff_max_s", "progress_interval_s"),
}


def make_generator(backend: str, model_path: str | None, revision: str | None, options: dict,
                   **context: Any) -> Generator:
    """The backend named in a teacher's (or judge's, or evaluator's) config.

    ``context`` carries what only replay needs: ``queries_config`` (it reads a query
    source) and ``source_ids`` (query id -> the source row it came from); replay's
    ``model_path`` is the tokenizer that counts the released responses' tokens.
    """
    if backend == "transformers":
        return TransformersGenerator(model_path, revision=revision,
                                     batch_size=options.get("batch_size", 16),
                                     dtype=options.get("dtype", "float32"),
                                     quantization=options.get("quantization"))
    if backend == "vllm":
        from distillab import gen_vllm

        return gen_vllm.from_options(model_path, revision, options)
    if backend == "openai":
        from distillab import gen_openai

        endpoint = dict(options["openai"])
        endpoint["base_url"] = expand_env(endpoint["base_url"], "openai.base_url")
        return gen_openai.from_options(endpoint.get("model") or model_path, endpoint)
    if backend == "replay":
        from distillab.gen_replay import ReplayGenerator

        return ReplayGenerator.from_options(options["replay"], context["queries_config"],
                                            tokenizer_path=model_path, revision=revision,
                                            source_ids=context.get("source_ids"))
    raise ValueError(f"unknown generation backend {backend!r} "
                     f"(known: transformers, vllm, openai, replay)")


def expand_env(value: str, key: str) -> str:
    """``${VAR}`` expanded from the environment; an unset variable is an error, not a
    literal ``$`` in a URL."""
    expanded = os.path.expandvars(value)
    if "$" in expanded:
        raise ValueError(f"{key}: {value!r} names an environment variable that is not set")
    return expanded


@dataclass(frozen=True)
class TeacherSpec:
    name: str
    model: str
    backend: str
    sampling: SamplingSpec
    prompt: PromptSpec
    options: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, name: str, cfg: dict, prompts_cfg: dict, prompt_style: str) -> "TeacherSpec":
        return cls(
            name=name,
            model=cfg["model"],
            backend=cfg.get("backend", "transformers"),
            sampling=SamplingSpec.from_config(cfg["sampling"]),
            prompt=PromptSpec.from_config(prompts_cfg, prompt_style, cfg.get("demonstrations", 0)),
            options={k: cfg[k] for k in BACKEND_OPTIONS if k in cfg},
        )

    def params_hash(self) -> str:
        """Everything that changes what the teacher writes: model, backend and its options
        (quantization changes numerics; batch size changes per-batch seeds), sampling and
        prompt; not the operational knobs (concurrency, timeouts, endpoint address)."""
        return stable_hash({"model": self.model, "backend": self.backend,
                            "options": semantic_options(self.options),
                            "sampling": asdict(self.sampling), "prompt": asdict(self.prompt)})


def semantic_options(cfg: dict) -> dict:
    """A teacher's config without its operational knobs (OPERATIONAL_OPTIONS/_NESTED)."""
    out = {k: v for k, v in cfg.items() if k not in OPERATIONAL_OPTIONS}
    for key, drop in OPERATIONAL_NESTED.items():
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k not in drop}
    return out


def pending_queries(shard: list[dict], earlier_verdicts: list[list[dict]]) -> list[dict]:
    """Queries of the shard that no earlier round settled.

    A query is settled once a response passed, or once its category turned out to have
    no verifier (verdict ``unverified``): regenerating cannot change that, so retrying
    would only burn compute.
    """
    settled = {v["query_id"] for rows in earlier_verdicts for v in rows
               if v["passed"] or v["verifier"] == "unverified"}
    return [q for q in shard if q["query_id"] not in settled]


def request_seed(seed: int, query_id: str) -> int:
    """A query's own seed within a job: stable across restarts and batch layouts."""
    return int(stable_hash([seed, query_id]), 16) % (2**31)


def response_rows(query: dict, outputs: list[GenOutput], teacher: str, round_: int,
                  gen_hash: str) -> list[dict]:
    """RESPONSE rows of one query's samples, split into think and answer."""
    rows = []
    for s, o in enumerate(outputs):
        text = o.full_text()
        think, answer = split_think_answer(text)
        rows.append({
            "query_id": query["query_id"], "teacher": teacher, "round": round_,
            "sample": s, "text": text, "think": think, "answer": answer,
            "n_tokens": o.n_tokens, "finish_reason": o.finish_reason,
            "gen_params_hash": gen_hash,
        })
    return rows


def iter_responses(queries: list[dict], teacher: TeacherSpec, generator: Generator,
                   round_: int, seed: int) -> Iterator[list[dict]]:
    """The RESPONSE rows of each query (its ``sampling.n`` samples) as soon as it is done."""
    if not queries:
        return
    requests = [build_request(q["query_id"], q["messages"], q["category"], teacher.prompt,
                              seed=request_seed(seed, q["query_id"])) for q in queries]
    sampling = SamplingSpec(**{**asdict(teacher.sampling), "seed": seed})
    gen_hash = teacher.params_hash()
    for i, outs in generator.generate(requests, sampling, teacher.prompt.stop_strings()):
        if len(outs) != sampling.n:
            raise RuntimeError(f"backend returned {len(outs)} samples for query "
                               f"{queries[i]['query_id']!r}, expected {sampling.n}")
        yield response_rows(queries[i], outs, teacher.name, round_, gen_hash)


def generate_responses(queries: list[dict], teacher: TeacherSpec, generator: Generator,
                       round_: int, seed: int) -> list[dict]:
    """Generate ``sampling.n`` responses per query as RESPONSE rows, in query order."""
    by_query = {rows[0]["query_id"]: rows
                for rows in iter_responses(queries, teacher, generator, round_, seed)}
    return [row for q in queries for row in by_query.get(q["query_id"], [])]


class PartialResponses:
    """Finished requests of a generate job, flushed in parts beside its output.

    Snakemake deletes the output of a failed job, so work in progress lives in
    ``<output>.partial/``: ``part-NNNNNN.parquet`` files written atomically, one per flush,
    and ``meta.json`` with the fingerprint of the job (teacher params hash, model entry,
    seed, round, n). A restarted job with the same fingerprint takes every query found
    there as done; a different fingerprint (the teacher or its weights changed) discards
    the parts. The directory goes once the output is written.
    """

    def __init__(self, output: str | os.PathLike, fingerprint: dict):
        self.dir = Path(f"{output}.partial")
        self.fingerprint = fingerprint
        self.next_part = 1

    def load(self) -> dict[str, list[dict]]:
        """Rows of the finished queries found on disk, by query id."""
        meta = self.dir / "meta.json"
        if self.dir.exists() and (not meta.exists() or read_json(meta) != self.fingerprint):
            log.warning("%s: made by a different job (teacher settings changed): discarded",
                        self.dir)
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(meta, self.fingerprint)
        done: dict[str, list[dict]] = {}
        paths = sorted(self.dir.glob("part-*.parquet"))
        for path in paths:
            for row in read_rows(path, schemas.RESPONSE):
                done.setdefault(row["query_id"], []).append(row)
        # after the highest part on disk, so a gap never makes a part overwrite another
        self.next_part = max((int(p.stem.split("-")[1]) for p in paths), default=0) + 1
        n = self.fingerprint["n"]
        for qid, rows in done.items():
            if sorted(r["sample"] for r in rows) != list(range(n)):
                raise RuntimeError(
                    f"{self.dir}: query {qid!r} has samples {sorted(r['sample'] for r in rows)}"
                    f", expected 0..{n - 1}; delete the directory to generate the shard anew")
        return done

    def append(self, rows: list[dict]) -> None:
        if rows:
            write_table(self.dir / f"part-{self.next_part:06d}.parquet", rows, schemas.RESPONSE)
            self.next_part += 1

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass(frozen=True)
class FlushPolicy:
    """When finished requests go to disk: every ``every`` queries or ``interval_s`` seconds,
    whichever comes first (a killed job loses at most that much work; a job that fails
    with an error flushes what it finished first)."""

    every: int = 64
    interval_s: float = 120.0


def _resplit(row: dict) -> dict:
    """A stored row with think/answer split again from its text, so rows resumed from an
    older run follow the parser of this one."""
    think, answer = split_think_answer(row["text"])
    return {**row, "think": think, "answer": answer}


def generate_shard(queries: list[dict], teacher: TeacherSpec, round_: int, seed: int,
                   output: str | os.PathLike, open_generator: Callable[[], Generator],
                   flush: FlushPolicy = FlushPolicy(), fingerprint: dict | None = None
                   ) -> tuple[list[dict], dict]:
    """Answer ``queries``, resuming from the partial parts of an interrupted run.

    ``open_generator`` is only called when something is left to generate (loading a model
    is the slow part of a resumed job). ``fingerprint`` adds what else must match for
    parts to be reused (the model's registry entry). Returns the rows in query order and
    the counts for provenance.
    """
    seen: set[str] = set()
    for q in queries:
        if q["query_id"] in seen:
            raise ValueError(f"{output}: query id {q['query_id']!r} twice in the shard")
        seen.add(q["query_id"])
    n = teacher.sampling.n
    store = PartialResponses(output, {"gen_params_hash": teacher.params_hash(), "seed": seed,
                                      "round": round_, "n": n, **(fingerprint or {})})
    done = store.load()
    stale = sorted(set(done) - seen)
    if stale:  # settled since (an earlier round was re-verified): not part of this job
        log.info("%d finished queries in %s are no longer pending: ignored", len(stale),
                 store.dir)
    todo = [q for q in queries if q["query_id"] not in done]
    resumed = len(queries) - len(todo)
    if resumed:
        log.info("resuming: %d of %d queries already done in %s", resumed, len(queries),
                 store.dir)
    generated = 0
    backend: dict = {"backend": teacher.backend}
    if todo:
        generator = open_generator()
        buffer: list[dict] = []
        t0 = last_flush = time.monotonic()
        try:
            for rows in iter_responses(todo, teacher, generator, round_, seed):
                buffer.extend(rows)
                generated += 1
                now = time.monotonic()
                if len(buffer) >= flush.every * n or now - last_flush >= flush.interval_s:
                    store.append(buffer)
                    buffer, last_flush = [], now
                    log.info("%d/%d queries done (%d resumed), %.2f queries/s",
                             resumed + generated, len(queries), resumed,
                             generated / max(now - t0, 1e-9))
        finally:  # an error ends the job, but what finished is kept for the rerun
            store.append(buffer)
        backend = generator.describe()  # after the run: it carries retry and failure counts
        close = getattr(generator, "close", None)
        if close is not None:
            close()
        done = store.load()
    rows = [_resplit(row) for q in queries
            for row in sorted(done[q["query_id"]], key=lambda r: r["sample"])]
    if len(rows) != len(queries) * n:
        raise RuntimeError(f"{output}: {len(rows)} responses for {len(queries)} queries x {n} "
                           f"samples")
    counts = {"queries_resumed": resumed, "queries_generated": generated,
              "partial_parts": store.next_part - 1, "backend": backend}
    return rows, counts


def generate_from_snakemake(smk: Any, prov: Any) -> None:
    from distillab.models import load_location

    p = smk.params
    name = smk.wildcards.teacher
    # The teacher comes from the live config: params only trigger reruns, and they leave
    # out the operational knobs (endpoint, concurrency, chunking, flushing) on purpose.
    teacher_cfg = smk.config["teachers"][name]
    model_entry = smk.config["models"][teacher_cfg["model"]]
    teacher = TeacherSpec.from_config(name, teacher_cfg, p.prompts, p.prompt_style)
    round_ = int(smk.wildcards.round)
    shard = read_rows(smk.input.shard, schemas.QUERY)
    earlier = [read_rows(path, schemas.VERIFIED) for path in smk.input.earlier]
    todo = pending_queries(shard, earlier)
    seed = int(stable_hash([p.seed, teacher.name, round_, smk.wildcards.shard]), 16) % (2**31)
    log.info("teacher %s round %d shard %s: %d of %d queries pending",
             teacher.name, round_, smk.wildcards.shard, len(todo), len(shard))

    def open_generator() -> Generator:
        if smk.input.model:
            path, revision = load_location(smk.input.model[0])
        else:  # an endpoint (openai): the served name defaults to the model's hub id
            path, revision = model_entry.get("repo_id", teacher.model), None
        return make_generator(teacher.backend, path, revision, teacher.options,
                              queries_config=smk.config["queries"],
                              source_ids={q["query_id"]: json.loads(q["meta"]).get("source_id")
                                          for q in todo})

    generation = smk.config["generation"]
    flush = FlushPolicy(generation["flush_every"], generation["flush_interval_s"])
    rows, counts = generate_shard(todo, teacher, round_, seed, smk.output.responses,
                                  open_generator, flush, fingerprint={"model": model_entry})
    write_table(smk.output.responses, rows, schemas.RESPONSE)
    PartialResponses(smk.output.responses, {}).discard()
    prov.add(rows_in=len(shard), queries_pending=len(todo), rows_out=len(rows), seed=seed,
             gen_params_hash=teacher.params_hash(),
             tokens_generated=sum(r["n_tokens"] for r in rows),
             finish_reasons=dict(Counter(r["finish_reason"] for r in rows)), **counts)
