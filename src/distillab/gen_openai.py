"""The ``openai`` backend: any OpenAI-compatible endpoint (``vllm serve``, a hosted API).

A teacher with ``backend: openai`` is configured under ``openai:`` (the names are the
keyword arguments of :class:`OpenAIGenerator`; :func:`from_options` reads them):

``base_url`` (required)
    e.g. ``http://node17:8000/v1``; requests go to ``{base_url}/chat/completions``
    (chat requests) and ``{base_url}/completions`` (plain-text requests).
``model``
    the name the server serves (default: the teacher's model).
``api_key_env``
    name of the environment variable holding the API key, read once at construction and
    sent as ``Authorization: Bearer``; unset: no key is sent (a local ``vllm serve``).
    The key never appears in logs, exceptions, ``describe()`` or ``repr()``.
``concurrency`` (16)
    samples in flight at once (one HTTP request each).
``timeout_s`` (600)
    wall-clock limit of one attempt (connect, wait and read together).
``max_retries`` (6)
    retries per sample after the first attempt.
``backoff_base_s`` (1.0), ``backoff_max_s`` (60.0)
    retry *k* waits ``uniform(0, min(backoff_max_s, backoff_base_s * 2**(k-1)))`` (full
    jitter), or the server's ``Retry-After`` / ``retry-after-ms`` when it sends one,
    capped at ``backoff_max_s``.
``extra_body``
    further JSON fields of every request (e.g. ``chat_template_kwargs``), merged last; a
    field set to ``null`` removes the field (e.g. ``seed: null`` for an API that rejects
    seeds).
``progress_interval_s`` (60)
    seconds between progress lines (samples done, rate, retries by cause).
``on_client_error`` (``fail``)
    what a 400/413/422 reply does: ``fail`` ends the job (a wrong setting fails every
    request: better to stop at once); ``record`` keeps the sample as an empty response
    with finish reason ``error`` (counted, and failed by verification), for runs where a
    few prompts exceed the server's context length.

What is sent: ``temperature``, ``top_p``, ``max_tokens`` (= ``max_new_tokens``), ``stop``
(when non-empty) and ``seed``; ``top_k`` and ``min_p`` only when set (non-zero). vLLM's
server takes ``top_k``/``min_p`` as extra sampling parameters; hosted APIs (OpenAI,
DeepSeek) may reject or ignore them, and DeepSeek's reasoner ignores temperature/top_p.
A request with ``n`` samples becomes ``n`` HTTP requests with ``n=1`` and seeds
``seed, seed+1, ...`` (the request's own seed, else ``sampling.seed``): hosted APIs such
as DeepSeek's do not support ``n``, and a retried sample does not redo the others.

Retried (exponential backoff, full jitter): HTTP 408, 429 and every 5xx, timeouts,
connection errors and resets, and 200 replies whose body is not the expected JSON.
Other statuses (400, 401, 403, 404, 422, ...) fail at once with the status and the
server's message (400/413/422 may be recorded instead: ``on_client_error``). A sample that still fails after ``max_retries`` retries fails the
whole ``generate()`` call, naming the request key, the attempts and the last error;
results yielded before that are the caller's to keep (the generate stage has flushed
them, and a rerun resumes).

Replies: ``message.content`` is the text (``''`` when null), ``message.reasoning_content``
(DeepSeek's API, vLLM's reasoning parser) or ``message.reasoning`` (newer vLLM) the
separate reasoning, ``usage.completion_tokens`` the token count (reasoning included);
a server that sends no ``usage`` gets ``n_tokens == 0``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import queue
import random
import threading
import time
from collections import Counter
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

import httpx2

from distillab.generate import GenOutput, GenRequest, SamplingSpec
from distillab.parse import ANSWER_CLOSE, ANSWER_OPEN

log = logging.getLogger(__name__)

# 408/429 and every 5xx are the server (or a proxy in front of it: 520-524) being busy or
# restarting; other 4xx mean the request itself is wrong and would fail again.
RETRYABLE_STATUS = frozenset({408, 429})

OPTIONS = ("base_url", "model", "api_key_env", "concurrency", "timeout_s", "max_retries",
           "backoff_base_s", "backoff_max_s", "extra_body", "progress_interval_s",
           "on_client_error")

# A server error message is shown up to this many characters.
MAX_MESSAGE_CHARS = 500


class OpenAIBackendError(RuntimeError):
    """A request failed for good (non-retryable status, or retries exhausted)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


# Statuses that condemn one request, not the setup (a prompt over the context length, a
# parameter the model rejects): with ``on_client_error: record`` the sample is recorded
# as an empty response with finish reason "error" instead of ending the job.
REQUEST_ERROR_STATUS = frozenset({400, 413, 422})


class _Retryable(Exception):
    """One failed attempt worth retrying: ``cause`` is the counter it goes to."""

    def __init__(self, cause: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.cause = cause
        self.retry_after = retry_after


def retry_after_seconds(headers: httpx2.Headers | dict, now: float | None = None) -> float | None:
    """The wait a server asks for: ``retry-after-ms`` (OpenAI), ``Retry-After`` in seconds
    or as an HTTP date; None when absent or unreadable."""
    headers = httpx2.Headers(headers)
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(retry: int, base_s: float, max_s: float, retry_after: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``retry`` (1-based): the server's Retry-After
    when given, else full jitter over an exponentially growing window; both capped."""
    if retry_after is not None:
        return min(retry_after, max_s)
    window = min(max_s, base_s * 2.0 ** min(retry - 1, 60))  # no float overflow
    return (rng or random).uniform(0.0, window)


def _root_cause(exc: BaseException) -> str:
    """The message of an exception, or of the OS error under it when it has none (a reset
    surfaces as an empty ``ReadError`` over httpcore2's over ``ConnectionResetError``)."""
    if str(exc):
        return str(exc)
    root = exc
    for _ in range(10):  # exception chains can loop
        nxt = root.__cause__ or root.__context__
        if nxt is None:
            break
        root = nxt
    return f"{type(root).__name__}: {root}" if str(root) else type(root).__name__


def _public_url(url: str) -> str:
    """``url`` without user:password (provenance must not carry credentials)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # IPv6
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


class OpenAIGenerator:
    """Generation through an OpenAI-compatible endpoint (module docstring: the options).

    ``generate()`` runs an asyncio loop in a background thread with ``concurrency``
    workers sharing one HTTP connection pool; each request's ``n`` samples are handed to
    the calling thread through a queue as soon as they are all done, so the caller can
    flush while other requests are in flight.
    """

    def __init__(self, model: str, base_url: str, api_key_env: str | None = None,
                 concurrency: int = 16, timeout_s: float = 600.0, max_retries: int = 6,
                 backoff_base_s: float = 1.0, backoff_max_s: float = 60.0,
                 extra_body: dict | None = None, progress_interval_s: float = 60.0,
                 on_client_error: str = "fail"):
        if not model:
            raise ValueError("openai backend: no model name (set openai.model)")
        if concurrency < 1 or timeout_s <= 0 or max_retries < 0:
            raise ValueError("openai backend: concurrency >= 1, timeout_s > 0 and "
                             "max_retries >= 0 required")
        if on_client_error not in ("fail", "record"):
            raise ValueError(f"openai backend: on_client_error must be fail or record, not "
                             f"{on_client_error!r}")
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"openai backend: base_url {_public_url(base_url)!r} is not an "
                             "http(s) URL (e.g. http://node17:8000/v1)")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self._api_key: str | None = None
        if api_key_env is not None:
            key = os.environ.get(api_key_env)
            if not key:
                raise ValueError(f"openai backend: environment variable {api_key_env!r} "
                                 f"(openai.api_key_env) is {'empty' if key == '' else 'not set'}")
            self._api_key = key
        self.concurrency = concurrency
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.extra_body = dict(extra_body or {})
        self.progress_interval_s = float(progress_interval_s)
        self.on_client_error = on_client_error
        # Written by the loop thread, read by stats() from any thread.
        self._lock = threading.Lock()
        self._requests = self._samples = self._failures = self._request_errors = 0
        self._retries: Counter[str] = Counter()
        self._completion_tokens = 0
        # httpx2 logs every request at INFO: one line per sample, 10^5 per job. Quieted
        # unless someone configured that logger on purpose.
        httpx_log = logging.getLogger("httpx2")
        if httpx_log.level == logging.NOTSET:
            httpx_log.setLevel(logging.WARNING)

    def __repr__(self) -> str:
        return (f"OpenAIGenerator(model={self.model!r}, base_url="
                f"{_public_url(self.base_url)!r}, concurrency={self.concurrency})")

    # -- provenance ---------------------------------------------------------------------

    def stats(self) -> dict:
        """Counters since construction: HTTP attempts, samples done, retries by cause
        (``http_<status>``, ``timeout``, ``connection``, ``bad_body``), failed samples."""
        with self._lock:
            return {"requests": self._requests, "samples": self._samples,
                    "retries": dict(sorted(self._retries.items())),
                    "failures": self._failures, "request_errors": self._request_errors,
                    "completion_tokens": self._completion_tokens}

    def describe(self) -> dict:
        return {"backend": "openai", "base_url": _public_url(self.base_url),
                "model": self.model, "api_key_env": self.api_key_env,
                "concurrency": self.concurrency, "timeout_s": self.timeout_s,
                "max_retries": self.max_retries, "backoff_base_s": self.backoff_base_s,
                "backoff_max_s": self.backoff_max_s, "extra_body": self.extra_body,
                "httpx2": httpx2.__version__, "stats": self.stats()}

    def close(self) -> None:
        """Nothing held between calls: each ``generate()`` opens and closes its pool."""

    # -- requests -----------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        """``text`` with the API key masked (a server may echo the key it was sent).
        Placeholder keys under 6 characters (``vllm serve --api-key x``) are left alone:
        masking every ``x`` would garble the message and protect nothing."""
        key = self._api_key
        return text.replace(key, "***") if key and len(key) >= 6 else text

    def request_body(self, request: GenRequest, sampling: SamplingSpec, stop: list[str],
                     sample: int) -> tuple[str, dict]:
        """``(path, JSON body)`` of one sample of ``request``."""
        seed = (request.seed if request.seed is not None else sampling.seed) + sample
        body: dict[str, Any] = {"model": self.model}
        if request.messages is not None:
            path, body["messages"] = "/chat/completions", request.messages
        else:
            path, body["prompt"] = "/completions", request.text
        body.update(temperature=sampling.temperature, top_p=sampling.top_p,
                    max_tokens=sampling.max_new_tokens, seed=seed)
        if stop:
            body["stop"] = list(stop)
        if sampling.top_k > 0:
            body["top_k"] = sampling.top_k
        if sampling.min_p > 0:
            body["min_p"] = sampling.min_p
        for k, v in self.extra_body.items():
            if v is None:
                body.pop(k, None)
            else:
                body[k] = v
        return path, body

    def _parse(self, data: Any, chat: bool, stop: list[str] | None = None) -> GenOutput:
        """The sample in a 200 reply; anything unexpected is a retryable bad body.

        Servers strip the stop string that ended a sample; it is put back (the transformers
        and vLLM backends keep it), so ``<answer>…</answer>`` stays whole: from vLLM's
        ``stop_reason`` when the server sends it (null at end-of-sequence: nothing to put
        back), else when the sample stopped inside an open ``<answer>`` and ``</answer>``
        is a stop string (such servers cannot tell a stop string from end-of-sequence).
        """
        try:
            choice = data["choices"][0]
            if chat:
                msg = choice["message"]
                text = msg.get("content")
                reasoning = next((msg[k] for k in ("reasoning_content", "reasoning")
                                  if msg.get(k) is not None), None)
            else:
                text, reasoning = choice.get("text"), None
            usage = data.get("usage") or {}
            n_tokens = usage.get("completion_tokens") or 0
            if not isinstance(text, (str, type(None))) or not isinstance(
                    reasoning, (str, type(None))) or not isinstance(n_tokens, int):
                raise TypeError("unexpected field types")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            detail = data.get("error") if isinstance(data, dict) else None
            raise _Retryable("bad_body", f"unexpected reply ({type(exc).__name__}: {exc}"
                             f"{'; error: ' + str(detail) if detail else ''})") from None
        text = text or ""
        finish = str(choice.get("finish_reason") or "unknown")
        if finish == "stop" and stop:
            if "stop_reason" in choice:  # vLLM: the stop string, or null/a token id at EOS
                matched = choice["stop_reason"]
            elif ANSWER_CLOSE in stop and text.rfind(ANSWER_OPEN) > text.rfind(ANSWER_CLOSE):
                matched = ANSWER_CLOSE  # other servers do not say which stop ended it
            else:
                matched = None
            if isinstance(matched, str) and matched in stop and not text.endswith(matched):
                text += matched
        return GenOutput(text=text, n_tokens=n_tokens, finish_reason=finish,
                         reasoning=reasoning)

    def _error_message(self, resp: httpx2.Response) -> str:
        try:
            data = resp.json()
            # {"error": {"message": ...}} (OpenAI), {"message": ...}, {"detail": ...}
            err = data.get("error", data) if isinstance(data, dict) else data
            if isinstance(err, dict):
                err = err.get("message") or err.get("detail") or err
            msg = err if isinstance(err, str) else json.dumps(err)
        except ValueError:
            msg = resp.text
        return self._redact(msg.strip()[:MAX_MESSAGE_CHARS])

    async def _attempt(self, client: httpx2.AsyncClient, path: str, body: dict) -> GenOutput:
        """One HTTP request; raises _Retryable or OpenAIBackendError on failure."""
        try:
            async with asyncio.timeout(self.timeout_s):
                resp = await client.post(self.base_url + path, json=body)
        except (TimeoutError, httpx2.TimeoutException):
            raise _Retryable("timeout", f"no reply within {self.timeout_s:g} s") from None
        except (httpx2.NetworkError, httpx2.RemoteProtocolError) as exc:
            raise _Retryable("connection", f"{type(exc).__name__}: "
                             f"{self._redact(_root_cause(exc))}") from None
        except httpx2.HTTPError as exc:  # e.g. a malformed request: retrying cannot help
            raise OpenAIBackendError(f"{type(exc).__name__}: {self._redact(str(exc))}") from None
        status = resp.status_code
        if 200 <= status < 300:
            try:
                data = resp.json()
            except ValueError as exc:
                raise _Retryable("bad_body", f"reply is not JSON ({exc})") from None
            return self._parse(data, chat=path == "/chat/completions", stop=body.get("stop"))
        message = f"HTTP {status}: {self._error_message(resp)}"
        if status in RETRYABLE_STATUS or status >= 500:
            raise _Retryable(f"http_{status}", message, retry_after_seconds(resp.headers))
        raise OpenAIBackendError(message, status)

    async def _sample(self, client: httpx2.AsyncClient, request: GenRequest, path: str,
                      body: dict, sample: int) -> GenOutput:
        """One sample with retries."""
        where = f"request {request.key!r} sample {sample}"
        for attempt in range(1, self.max_retries + 2):
            with self._lock:
                self._requests += 1
            try:
                out = await self._attempt(client, path, body)
            except OpenAIBackendError as exc:
                if self.on_client_error == "record" and exc.status in REQUEST_ERROR_STATUS:
                    with self._lock:
                        self._request_errors += 1
                    log.warning("%s: %s: recorded as an error response", where, exc)
                    return GenOutput(text="", n_tokens=0, finish_reason="error")
                with self._lock:
                    self._failures += 1
                raise OpenAIBackendError(f"{where} to {_public_url(self.base_url)}{path}: "
                                         f"{exc} (not retried)") from None
            except _Retryable as exc:
                if attempt > self.max_retries:
                    with self._lock:
                        self._failures += 1
                    raise OpenAIBackendError(
                        f"{where} to {_public_url(self.base_url)}{path}: gave up after "
                        f"{attempt} attempts (max_retries={self.max_retries}); last error: "
                        f"{exc}") from None
                delay = backoff_delay(attempt, self.backoff_base_s, self.backoff_max_s,
                                      exc.retry_after)
                with self._lock:
                    self._retries[exc.cause] += 1
                    total = sum(self._retries.values())
                log.warning("%s: %s; retry %d of %d in %.2f s (%d retries so far)", where,
                            exc, attempt, self.max_retries, delay, total)
                await asyncio.sleep(delay)
                continue
            with self._lock:
                self._samples += 1
                self._completion_tokens += out.n_tokens
            return out
        raise AssertionError("unreachable")

    async def _run(self, requests: Sequence[GenRequest], sampling: SamplingSpec,
                   stop: list[str], out: queue.Queue, control: "_Control") -> None:
        control.attach()
        jobs = ((i, s) for i in range(len(requests)) for s in range(sampling.n))
        pending: dict[int, list[GenOutput | None]] = {}
        total = len(requests) * sampling.n
        done = 0
        t0 = last_log = time.monotonic()

        async def worker(client: httpx2.AsyncClient) -> None:
            nonlocal done, last_log
            # One shared job iterator: each worker takes the next sample when it is free,
            # so at most `concurrency` samples are in flight and memory stays flat.
            for i, s in jobs:
                path, body = self.request_body(requests[i], sampling, stop, s)
                outs = pending.setdefault(i, [None] * sampling.n)
                outs[s] = await self._sample(client, requests[i], path, body, s)
                done += 1
                if all(o is not None for o in outs):
                    out.put((i, pending.pop(i)))
                now = time.monotonic()
                if now - last_log >= self.progress_interval_s or done == total:
                    last_log = now
                    st = self.stats()
                    log.info("openai %s: %d/%d samples, %.2f samples/s, %d HTTP requests, "
                             "retries %s", self.model, done, total, done / max(now - t0, 1e-9),
                             st["requests"], st["retries"] or "none")

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        limits = httpx2.Limits(max_connections=self.concurrency,
                               max_keepalive_connections=self.concurrency)
        # asyncio.timeout bounds the whole attempt; httpx2's own (per phase) is a backstop.
        timeout = httpx2.Timeout(self.timeout_s, connect=min(self.timeout_s, 30.0))
        async with httpx2.AsyncClient(headers=headers, limits=limits, timeout=timeout) as client:
            try:
                async with asyncio.TaskGroup() as tg:  # the first failure cancels the rest
                    for _ in range(min(self.concurrency, total)):
                        tg.create_task(worker(client))
            except BaseExceptionGroup as group:  # the caller wants the error, not a group
                raise group.exceptions[0] from None

    def generate(self, requests: Sequence[GenRequest], sampling: SamplingSpec,
                 stop: list[str]) -> Iterator[tuple[int, list[GenOutput]]]:
        """Yield ``(index, sampling.n outputs)`` per request as it finishes (any order)."""
        if not requests:
            return
        out: queue.Queue = queue.Queue()
        control = _Control()

        def main() -> None:
            try:
                asyncio.run(self._run(requests, sampling, stop, out, control))
            except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread
                out.put(exc)
            finally:
                control.attach()  # releases a caller still waiting for the loop to start
                out.put(_DONE)

        thread = threading.Thread(target=main, name="openai-generate", daemon=True)
        thread.start()
        control.started.wait()
        yielded = 0
        try:
            while (item := out.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yielded += 1
                yield item
            if yielded != len(requests):  # a bug, not a server fault: never pass silently
                raise RuntimeError(f"openai backend: {yielded} of {len(requests)} requests "
                                   "finished")
        finally:
            # The caller stopped early or a request failed: stop the loop, not the process.
            control.cancel()
            thread.join(timeout=30)


_DONE = object()  # the loop thread's last word


class _Control:
    """The loop thread's event loop and main task, so the caller's thread can cancel it."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task | None = None

    def attach(self) -> None:
        if not self.started.is_set():
            try:
                self.loop = asyncio.get_running_loop()
                self.task = asyncio.current_task()
            except RuntimeError:  # called from main()'s finally: the loop is gone
                pass
            self.started.set()

    def cancel(self) -> None:
        if self.loop is not None and self.task is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.task.cancel)
            except RuntimeError:  # the loop closed in between
                pass


def from_options(model_name: str | None, options: dict) -> OpenAIGenerator:
    """The generator for a teacher's ``openai:`` section (names: module docstring)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"openai backend: unknown options {unknown} (known: {list(OPTIONS)})")
    if "base_url" not in options:
        raise ValueError("openai backend: openai.base_url is required")
    kwargs = {k: v for k, v in options.items() if k != "model"}
    return OpenAIGenerator(model=options.get("model") or model_name, **kwargs)
