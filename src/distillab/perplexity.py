"""Perplexity of each accepted response under a reference LM (PAPER.md §5).

The paper drops responses whose perplexity under a reference model is too high, with a
cut per teacher. What is scored here is the *assistant output only, conditioned on the
prompt*: the conversation the student will be trained on is rendered with the reference
model's chat template, the prompt part is context, and the loss is the mean negative
log-likelihood of the assistant tokens. Prompt tokens never count: a long system prompt
or a hard question must not make a good answer look surprising.

**Tokens.** :func:`tokenize_item` renders the prompt (``add_generation_prompt=True``) and
the whole conversation (the response as the final assistant turn) and tokenizes both
without added special tokens, as the generation backends do. The assistant tokens are
the response's tokens plus the end-of-turn token that closes it (ChatML's
``<|im_end|>``, Llama-3's ``<|eot_id|>``): ending the answer is part of the output.
The template's separator after that token (ChatML's newline) is formatting and is not
scored. Where a template does not extend the prompt cleanly (it strips or rewrites the
assistant content, or renders the turn header differently from the generation prompt),
the ids are built instead as prompt ids + the response tokenized on its own + the
end-of-turn token; the scorers count and log how often that happens. A model without a
chat template (a base model) gets a plain rendering, see :func:`plain_prompt`.

**Too long.** An item longer than ``max_length`` tokens is *not* truncated (cutting the
prompt would score the answer against a context the teacher never saw, cutting the
answer would score part of it): it comes back with ``ppl=None`` and
``reason="too_long"``, and ``curate`` keeps it as unscored and counts it.

**Backends.** :class:`TransformersScorer` (CPU or GPU; batched forward passes, right
padding, length-sorted batches under a token budget) and :class:`VLLMScorer` (GPU;
``prompt_logprobs`` of a one-token generation). Both return :class:`ScoredItem` per item
in the caller's order; they agree to float noise (``tests/test_perplexity.py``).

The threshold itself (:func:`perplexity_threshold`) is applied by ``distillab.curate``,
so moving a cut never rescores.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

log = logging.getLogger(__name__)

TOO_LONG = "too_long"  # longer than max_length: not scored, never truncated
EMPTY = "empty"  # no assistant token to score (cannot happen with a chat template)

# Stand-in assistant content used to find what a template writes after a turn.
_SENTINEL = "DISTILLAB-PPL-SENTINEL-5f0c"


@dataclass(frozen=True)
class PerplexityItem:
    """One response to score: ``prompt_messages`` are the turns before it (system, user,
    earlier assistant turns), ``response`` the assistant text being scored."""

    key: str
    prompt_messages: list[dict]
    response: str


@dataclass(frozen=True)
class ScoredItem:
    """``ppl = exp(mean_nll)`` over ``n_scored_tokens`` assistant tokens; ``ppl`` is None
    when the item was not scored, ``reason`` says why (:data:`TOO_LONG`, :data:`EMPTY`)."""

    key: str
    ppl: float | None
    mean_nll: float | None
    n_scored_tokens: int
    reason: str | None = None


class ItemTooLong(ValueError):
    """Raised by :func:`tokenize_item`; the scorers turn it into a ``too_long`` result."""

    def __init__(self, key: str, n_tokens: int, max_length: int):
        super().__init__(f"item {key!r}: {n_tokens} tokens > max_length {max_length}")
        self.key, self.n_tokens, self.max_length = key, n_tokens, max_length


# ----------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Tokenized:
    input_ids: list[int]
    n_prompt: int
    how: str  # template | fallback | plain


def _ids(tokenizer: Any, text: str, add_special_tokens: bool = False) -> list[int]:
    return list(tokenizer(text, add_special_tokens=add_special_tokens).input_ids)


def _render(tokenizer: Any, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=generation_prompt)


def _special_ids(tokenizer: Any) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", None) or [])
    # Added tokens flagged special (ChatML's <|im_start|>/<|im_end|> in many tokenizers)
    # are not always listed in all_special_ids.
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    ids.update(i for i, t in decoder.items() if getattr(t, "special", False))
    return ids


def turn_tail(tokenizer: Any, prompt_messages: list[dict], prompt_text: str
              ) -> tuple[str | None, int | None]:
    """What the template writes after an assistant turn's content, and the end-of-turn
    token that starts it (None when the tail does not start with a special token).

    Found by rendering a sentinel as the assistant content; the tail is None when the
    template does not render it right after the generation prompt.
    """
    text = _render(tokenizer, [*prompt_messages, {"role": "assistant", "content": _SENTINEL}],
                   False)
    head = prompt_text + _SENTINEL
    if not text.startswith(head):
        return None, None
    tail = text[len(head):]
    tail_ids = _ids(tokenizer, tail) if tail else []
    eot = tail_ids[0] if tail_ids and tail_ids[0] in _special_ids(tokenizer) else None
    return tail, eot


def plain_prompt(messages: list[dict]) -> str:
    """The prompt for a model without a chat template: each turn as ``role: content``,
    turns separated by a blank line, then the open turn ``assistant: ``.

    E.g. ``system: You are...\\n\\nuser: What is 2+2?\\n\\nassistant: ``.
    """
    turns = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n\n".join([*turns, "assistant: "])


def _plain_ids(tokenizer: Any, item: PerplexityItem) -> Tokenized:
    """A base model: prompt and response tokenized as one text with the tokenizer's own
    special tokens (a ``<bos>``); the assistant tokens are those that end after the
    prompt text, so a token merging the separator space with the first word is scored.
    No end-of-turn token is added (a base model's output ends at a stop string)."""
    prompt = plain_prompt(item.prompt_messages)
    try:
        enc = tokenizer(prompt + item.response, add_special_tokens=True,
                        return_offsets_mapping=True)
        ids, offsets = list(enc.input_ids), list(enc["offset_mapping"])
    except (NotImplementedError, KeyError, TypeError, ValueError):  # slow tokenizer
        p = _ids(tokenizer, prompt, add_special_tokens=True)
        return Tokenized(p + _ids(tokenizer, item.response), len(p), "plain")
    # The prompt is the leading tokens that end inside the prompt text (a <bos> has the
    # empty span (0, 0)).
    n_prompt = next((k for k, (_, end) in enumerate(offsets) if end > len(prompt)), len(ids))
    return Tokenized(ids, n_prompt, "plain")


def _chat_ids(tokenizer: Any, item: PerplexityItem) -> Tokenized:
    prompt_text = _render(tokenizer, item.prompt_messages, True)
    prompt_ids = _ids(tokenizer, prompt_text)
    full_text = _render(tokenizer, [*item.prompt_messages,
                                    {"role": "assistant", "content": item.response}], False)
    tail, eot = turn_tail(tokenizer, item.prompt_messages, prompt_text)
    end = [eot] if eot is not None else []
    if tail is not None and full_text == prompt_text + item.response + tail:
        full_ids = _ids(tokenizer, full_text)
        tail_ids = _ids(tokenizer, tail) if tail else []
        n = len(prompt_ids)
        cut = len(full_ids) - len(tail_ids)
        if (full_ids[:n] == prompt_ids and full_ids[cut:] == tail_ids and cut >= n):
            return Tokenized(full_ids[:cut] + end, n, "template")
    # The template rewrote the turn or the tokens merged across a boundary: build the
    # ids from the parts, so the scored tokens are still exactly the response's.
    return Tokenized(prompt_ids + _ids(tokenizer, item.response) + end, len(prompt_ids),
                     "fallback")


def tokenize(tokenizer: Any, item: PerplexityItem, max_length: int | None) -> Tokenized:
    """:func:`tokenize_item` with how the ids were built (for the scorers' counts)."""
    if getattr(tokenizer, "chat_template", None):
        tok = _chat_ids(tokenizer, item)
    else:
        tok = _plain_ids(tokenizer, item)
    if tok.n_prompt < 1:
        raise ValueError(f"item {item.key!r}: empty prompt, the first token has no context")
    if max_length is not None and len(tok.input_ids) > max_length:
        raise ItemTooLong(item.key, len(tok.input_ids), max_length)
    return tok


def tokenize_item(tokenizer: Any, item: PerplexityItem, max_length: int | None
                  ) -> tuple[list[int], int]:
    """``(input_ids, n_prompt)``: the conversation's token ids under the reference
    model's chat template; ``input_ids[n_prompt:]`` are the assistant tokens scored
    (the module docstring says which and why). Raises :class:`ItemTooLong` when the ids
    are longer than ``max_length`` (never truncated)."""
    tok = tokenize(tokenizer, item, max_length)
    return tok.input_ids, tok.n_prompt


def scored(key: str, nll_sum: float, n_tokens: int) -> ScoredItem:
    """The result for a summed NLL over ``n_tokens`` assistant tokens."""
    if n_tokens == 0:
        return ScoredItem(key, None, None, 0, EMPTY)
    mean = nll_sum / n_tokens
    try:
        ppl = math.exp(mean)
    except OverflowError:
        ppl = math.inf
    return ScoredItem(key, ppl, mean, n_tokens, None)


def too_long(key: str) -> ScoredItem:
    return ScoredItem(key, None, None, 0, TOO_LONG)


class _Progress:
    """Logs items/s and scored tokens/s about every ``every_s`` seconds and at the end."""

    def __init__(self, what: str, total: int, every_s: float = 10.0):
        self.what, self.total, self.every_s = what, total, every_s
        self.t0 = self.last = time.monotonic()
        self.items = self.tokens = 0

    def update(self, items: int, tokens: int) -> None:
        self.items += items
        self.tokens += tokens
        now = time.monotonic()
        if now - self.last >= self.every_s or self.items >= self.total:
            dt = max(now - self.t0, 1e-9)
            log.info("%s: %d/%d items, %.1f items/s, %.0f tokens/s", self.what, self.items,
                     self.total, self.items / dt, self.tokens / dt)
            self.last = now


def _log_summary(what: str, results: Sequence[ScoredItem], how: Counter) -> None:
    n = len(results)
    reasons = Counter(r.reason for r in results if r.reason)
    ppl = [r.ppl for r in results if r.ppl is not None]
    log.info("%s: %d items, %d scored, unscored %s; ids built by %s (fallback %.1f%%)%s",
             what, n, len(ppl), dict(reasons), dict(how),
             100.0 * how.get("fallback", 0) / max(sum(how.values()), 1),
             f"; median ppl {float(np.median(ppl)):.3f}" if ppl else "")


# ----------------------------------------------------------------------------- scorers


class Scorer(Protocol):
    def score(self, items: Sequence[PerplexityItem]) -> list[ScoredItem]:
        """One result per item, in the caller's order."""
        ...

    def describe(self) -> dict:
        """Backend, model and options, for provenance."""
        ...

    def close(self) -> None:
        ...


def token_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches, longest first, each padded batch (rows x longest
    row) within ``batch_tokens``; a row longer than the budget is a batch of its own.
    Sorting by length keeps padding small; the longest batch comes first so an
    out-of-memory shows at once, not after hours."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


class TransformersScorer:
    """Mean assistant-token NLL with transformers: right-padded batches under a token
    budget, float32 log-softmax on the assistant positions only.

    ``batch_tokens`` bounds a batch's padded size (rows x longest row), and with it the
    logits tensor (at most ``batch_tokens`` x vocabulary in the model's dtype; prompt
    positions are skipped where the model takes ``logits_to_keep``); the float32
    log-softmax runs one row at a time. ``dtype="auto"`` is the checkpoint's dtype on
    GPU and float32 on CPU (bfloat16 matmuls are slow or missing on many CPUs). ``model``/``tokenizer`` take objects
    already loaded (tests); otherwise both are loaded from ``model_path``.
    """

    def __init__(self, model_path: str, revision: str | None = None, dtype: str = "auto",
                 device: str | None = None, batch_tokens: int = 16384,
                 max_length: int = 32768, model: Any = None, tokenizer: Any = None):
        import torch

        if batch_tokens < 1 or max_length < 2:
            raise ValueError(f"batch_tokens must be >= 1 and max_length >= 2, got "
                             f"{batch_tokens} and {max_length}")
        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model_path, revision=revision)
        if model is None:
            from transformers import AutoModelForCausalLM

            if dtype == "auto":
                torch_dtype: Any = "auto" if self.device != "cpu" else torch.float32
            else:
                torch_dtype = getattr(torch, dtype)
            model = AutoModelForCausalLM.from_pretrained(model_path, revision=revision,
                                                         dtype=torch_dtype).to(self.device)
        model.eval()
        self.tok, self.model = tokenizer, model
        self.model_path, self.revision, self.dtype = model_path, revision, dtype
        self.batch_tokens, self.max_length = batch_tokens, max_length
        self.pad_id = next((t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id)
                            if t is not None), 0)  # masked out: any id does
        # Logits for the prompt positions are never needed; models that take
        # logits_to_keep skip them (the lm_head over the vocabulary is the big cost).
        self.keep_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    def describe(self) -> dict:
        import transformers

        return {"backend": "transformers", "transformers": transformers.__version__,
                "model": self.model_path, "revision": self.revision, "dtype": self.dtype,
                "dtype_resolved": str(next(self.model.parameters()).dtype),
                "device": self.device, "batch_tokens": self.batch_tokens,
                "max_length": self.max_length}

    def close(self) -> None:
        pass

    def batch_nll(self, rows: list[Tokenized]) -> list[tuple[float, int]]:
        """(summed NLL, assistant tokens) per row from one forward pass."""
        torch = self.torch
        lengths = [len(r.input_ids) for r in rows]
        width = max(lengths)
        ids = torch.tensor([r.input_ids + [self.pad_id] * (width - len(r.input_ids))
                            for r in rows], device=self.device)
        mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths], device=self.device)
        # Token j is predicted at position j - 1: keep positions first_pred .. width - 1.
        first_pred = min(r.n_prompt for r in rows) - 1
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "use_cache": False}
        if self.keep_logits:
            kwargs["logits_to_keep"] = width - first_pred
        logits = self.model(**kwargs).logits
        offset = width - logits.shape[1]  # position of logits[:, 0]
        out = []
        for b, r in enumerate(rows):
            n = len(r.input_ids)
            if n - r.n_prompt == 0:
                out.append((0.0, 0))
                continue
            pred = logits[b, r.n_prompt - 1 - offset:n - 1 - offset].float()
            target = ids[b, r.n_prompt:n]
            nll = torch.nn.functional.cross_entropy(pred, target, reduction="none")
            out.append((float(nll.double().sum()), n - r.n_prompt))
        return out

    def score(self, items: Sequence[PerplexityItem]) -> list[ScoredItem]:
        results: list[ScoredItem | None] = [None] * len(items)
        ready: list[tuple[int, Tokenized]] = []
        how: Counter = Counter()
        for i, item in enumerate(items):
            try:
                tok = tokenize(self.tok, item, self.max_length)
            except ItemTooLong as exc:
                log.warning("%s: not scored", exc)
                results[i] = too_long(item.key)
                continue
            how[tok.how] += 1
            ready.append((i, tok))
        progress = _Progress("perplexity (transformers)", len(ready))
        with self.torch.inference_mode():
            for batch in token_batches([len(t.input_ids) for _, t in ready], self.batch_tokens):
                rows = [ready[k] for k in batch]
                nlls = self.batch_nll([t for _, t in rows])
                for (i, _), (nll, n) in zip(rows, nlls):
                    results[i] = scored(items[i].key, nll, n)
                progress.update(len(rows), sum(n for _, n in nlls))
        _log_summary("perplexity (transformers)", results, how)  # type: ignore[arg-type]
        return results  # type: ignore[return-value]


def _sampling_params_class() -> Any:
    from vllm import SamplingParams

    return SamplingParams


class VLLMScorer:
    """Mean assistant-token NLL from vLLM's ``prompt_logprobs``: each conversation is
    submitted as token ids for a one-token greedy generation, and the logprob of the
    actual token at each assistant position is read back (``prompt_logprobs=0`` returns
    exactly that token's; vLLM reports raw-logit logprobs, before any sampling setting).

    Engine arguments as in :mod:`distillab.gen_vllm` (same CPU overrides); ``chunk_size``
    items per ``LLM.generate`` call bounds the memory held by the per-position logprob
    dicts. An item needs one free position for the generated token, so the limit is
    ``min(max_length, max_model_len - 1)``. ``llm`` takes an engine already built.
    """

    def __init__(self, model_path: str, revision: str | None = None,
                 tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, dtype: str = "auto",
                 enforce_eager: bool = False, seed: int = 0, max_length: int = 32768,
                 chunk_size: int = 256, extra_engine_args: dict | None = None, llm: Any = None):
        from distillab.gen_vllm import engine_kwargs, platform_overrides

        if chunk_size < 1:
            raise ValueError(f"vllm.chunk_size must be >= 1, got {chunk_size}")
        self.model_path, self.revision = model_path, revision
        self.engine_args = engine_kwargs(model_path, revision, tensor_parallel_size, 1,
                                         max_model_len, gpu_memory_utilization, dtype, seed,
                                         enforce_eager, extra_engine_args)
        self.platform_overrides: dict = {}
        if llm is None:
            from vllm import LLM
            from vllm.platforms import current_platform

            self.platform_overrides = platform_overrides(current_platform.is_cpu(),
                                                         self.engine_args)
            t0 = time.monotonic()
            llm = LLM(**{**self.engine_args, **self.platform_overrides})
            log.info("vLLM engine for %s ready in %.0f s", model_path, time.monotonic() - t0)
        self.llm = llm
        self.tok = llm.get_tokenizer()
        self.max_model_len = llm.model_config.max_model_len
        self.max_length = min(max_length, self.max_model_len - 1)
        self.chunk_size = chunk_size

    @staticmethod
    def _params() -> Any:
        params_cls = _sampling_params_class()
        kwargs: dict[str, Any] = dict(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        try:  # the logprob dicts' token strings are not needed
            return params_cls(**kwargs, detokenize=False)
        except TypeError:
            return params_cls(**kwargs)

    def describe(self) -> dict:
        from distillab.gen_vllm import _vllm_version

        args = self.engine_args
        return {"backend": "vllm", **_vllm_version(), "model": self.model_path,
                "revision": self.revision, "tensor_parallel_size": args["tensor_parallel_size"],
                "dtype": args["dtype"], "max_model_len": self.max_model_len,
                "max_length": self.max_length,
                "gpu_memory_utilization": args["gpu_memory_utilization"],
                "enforce_eager": args["enforce_eager"], "seed": args["seed"],
                "chunk_size": self.chunk_size,
                "platform_overrides": dict(self.platform_overrides)}

    def close(self) -> None:
        """Shut the engine down (its processes and GPU memory), as the generator does."""
        import gc

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

    @staticmethod
    def nll_from_prompt_logprobs(tok: Tokenized, prompt_logprobs: Sequence[Any]
                                 ) -> tuple[float, int]:
        """(summed NLL, assistant tokens) from one output's ``prompt_logprobs``: a list
        over the prompt positions (the first None) of dicts token id -> ``Logprob``."""
        ids = tok.input_ids
        if prompt_logprobs is None or len(prompt_logprobs) != len(ids):
            raise RuntimeError(f"vLLM returned prompt_logprobs for "
                               f"{None if prompt_logprobs is None else len(prompt_logprobs)} "
                               f"positions, the prompt has {len(ids)}")
        total = 0.0
        for j in range(tok.n_prompt, len(ids)):
            entry = prompt_logprobs[j][ids[j]]
            total -= float(getattr(entry, "logprob", entry))
        return total, len(ids) - tok.n_prompt

    def score(self, items: Sequence[PerplexityItem]) -> list[ScoredItem]:
        results: list[ScoredItem | None] = [None] * len(items)
        ready: list[tuple[int, Tokenized]] = []
        how: Counter = Counter()
        for i, item in enumerate(items):
            try:
                tok = tokenize(self.tok, item, self.max_length)
            except ItemTooLong as exc:
                log.warning("%s: not scored", exc)
                results[i] = too_long(item.key)
                continue
            how[tok.how] += 1
            ready.append((i, tok))
        params = self._params() if ready else None
        progress = _Progress("perplexity (vllm)", len(ready))
        for start in range(0, len(ready), self.chunk_size):
            chunk = ready[start:start + self.chunk_size]
            outputs = self.llm.generate([{"prompt_token_ids": t.input_ids} for _, t in chunk],
                                        params, use_tqdm=False)
            if len(outputs) != len(chunk):
                raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(chunk)} "
                                   "prompts")
            tokens = 0
            for (i, tok), out in zip(chunk, outputs):
                nll, n = self.nll_from_prompt_logprobs(tok, out.prompt_logprobs)
                results[i] = scored(items[i].key, nll, n)
                tokens += n
            progress.update(len(chunk), tokens)
        _log_summary("perplexity (vllm)", results, how)  # type: ignore[arg-type]
        return results  # type: ignore[return-value]


# Keys of curation.perplexity that are not scorer options.
_NOT_SCORER_KEYS = {"model", "backend", "gpus", "threshold", "per_teacher"}
_VLLM_KEYS = {"tensor_parallel_size", "gpu_memory_utilization", "max_model_len",
              "enforce_eager", "seed", "chunk_size", "engine_args"}


def make_scorer(backend: str, model_dir: str, options: dict) -> Scorer:
    """The scorer for ``curation.perplexity``'s options on a prepared model dir.

    Keys: ``batch_tokens`` (16384, transformers), ``max_length`` (32768), ``dtype``
    (``auto``), and for vLLM under ``vllm:`` the keys of :class:`VLLMScorer`
    (``tensor_parallel_size``, ``gpu_memory_utilization``, ``max_model_len``,
    ``enforce_eager``, ``seed``, ``chunk_size``, ``engine_args``). ``model``,
    ``backend``, ``gpus`` and the thresholds are ignored here.
    """
    from distillab.models import load_location

    unknown = sorted(set(options) - _NOT_SCORER_KEYS - {"batch_tokens", "max_length", "dtype",
                                                        "vllm"})
    if unknown:
        raise ValueError(f"unknown curation.perplexity options {unknown}")
    path, revision = load_location(model_dir)
    max_length = options.get("max_length", 32768)
    dtype = options.get("dtype", "auto")
    if backend == "transformers":
        return TransformersScorer(path, revision, dtype=dtype,
                                  batch_tokens=options.get("batch_tokens", 16384),
                                  max_length=max_length)
    if backend == "vllm":
        extra = dict(options.get("vllm") or {})
        unknown = sorted(set(extra) - _VLLM_KEYS)
        if unknown:
            raise ValueError(f"unknown curation.perplexity.vllm options {unknown}")
        return VLLMScorer(path, revision, dtype=dtype, max_length=max_length,
                          extra_engine_args=extra.pop("engine_args", None), **extra)
    raise ValueError(f"curation.perplexity.backend: unknown backend {backend!r}")


# ----------------------------------------------------------------------------- threshold


def perplexity_threshold(values: np.ndarray, max_ppl: float | None,
                         max_percentile: float | None) -> float | None:
    """The effective cut of one teacher: a response with ``ppl > cut`` is dropped.

    - ``max_ppl`` alone: that absolute value;
    - ``max_percentile`` alone: that percentile (0–100, numpy's linear interpolation) of
      the teacher's scored perplexities; NaN/None (unscored) values are ignored, and with
      no scored value there is no percentile cut;
    - both: the lower of the two (the stricter cut applies);
    - neither: None, nothing is dropped.

    Percentile 100 is the largest value, so (the cut being strict) it drops nothing.
    """
    if max_ppl is not None and not max_ppl > 0:
        raise ValueError(f"max_ppl must be > 0, got {max_ppl}")
    if max_percentile is not None and not 0 <= max_percentile <= 100:
        raise ValueError(f"max_percentile must be within 0..100, got {max_percentile}")
    cuts = [] if max_ppl is None else [float(max_ppl)]
    if max_percentile is not None:
        arr = np.asarray(values, dtype=float).ravel()
        arr = arr[~np.isnan(arr)]
        if arr.size:
            cuts.append(float(np.percentile(arr, max_percentile)))
    return min(cuts) if cuts else None


# ----------------------------------------------------------------------------- stage


def items_for_teacher(accepted: list[dict], queries: dict[str, dict], system_prompt: str,
                      instructions: dict[str, str]) -> list[PerplexityItem]:
    """One item per accepted response: the prompt and assistant turn exactly as the SFT
    row will hold them (``distillab.curate.sft_rows``: system prompt, the query's turns
    with the category instruction, the ``<think>/<answer>`` response)."""
    from distillab import prompts

    items = []
    for r in accepted:
        q = queries[r["query_id"]]
        prompt = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
            prompts.user_messages(q["messages"], q["category"], instructions)
        items.append(PerplexityItem(r["query_id"], prompt,
                                    prompts.format_response(r["think"] or "", r["answer"] or "")))
    return items


def perplexity_from_snakemake(smk: Any, prov: Any) -> None:
    from distillab import prompts, schemas
    from distillab.io import read_rows, write_table

    teacher = smk.wildcards.teacher
    p = smk.params
    accepted = read_rows(smk.input.accepted, schemas.VERIFIED)
    queries = {q["query_id"]: q for q in read_rows(smk.input.queries, schemas.QUERY)}
    missing = [r["query_id"] for r in accepted if r["query_id"] not in queries]
    if missing:
        raise ValueError(f"perplexity: {len(missing)} accepted responses have no query "
                         f"(first: {missing[0]!r})")
    instructions = {**prompts.DEFAULT_INSTRUCTIONS, **p.prompts.get("instructions", {})}
    system_prompt = p.prompts.get("system_prompt", prompts.PAPER_SYSTEM_PROMPT)
    items = items_for_teacher(accepted, queries, system_prompt, instructions)
    options = dict(p.scorer)
    scorer = make_scorer(options.get("backend", "transformers"), smk.input.model[0], options)
    try:
        results = scorer.score(items)
        described = scorer.describe()
    finally:
        scorer.close()
    rows = [{"query_id": r["query_id"], "teacher": teacher, "category": r["category"],
             "ppl": s.ppl, "mean_nll": s.mean_nll, "n_scored_tokens": s.n_scored_tokens,
             "reason": s.reason} for r, s in zip(accepted, results)]
    write_table(smk.output.scores, rows, schemas.PERPLEXITY)
    unscored = dict(Counter(s.reason for s in results if s.reason))
    n_scored = sum(s.ppl is not None for s in results)
    log.info("teacher %s: %d of %d responses scored (%.1f%%), unscored %s", teacher, n_scored,
             len(results), 100.0 * n_scored / max(len(results), 1), unscored)
    prov.add(rows_in=len(accepted), rows_out=len(rows), scored=n_scored, unscored=unscored,
             scorer=described)
