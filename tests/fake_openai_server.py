"""A small OpenAI-compatible HTTP server on loopback, for tests/test_gen_openai.py and
bench/openai_overhead.py.

Serves ``POST /v1/chat/completions`` and ``POST /v1/completions`` over HTTP/1.1 with
keep-alive, like vLLM's and hosted servers, with replies derived from the request: the
content is ``echo <id> seed=<seed>``, where the id is the last message's content (chat)
or the prompt (text), so a test can tell which request and which sample a reply belongs
to. Every request is recorded (path, headers, body, the fault applied, arrival time).

Fault injection, per prompt id, one fault per attempt in order (``faults[id]``):
``429``, ``429:<seconds>`` (with ``Retry-After``), ``400``/``401``/``404``/``422``,
``500``/``502``/``503``/``504``, ``slow`` (answers only after ``slow_s``, beyond the
client's timeout), ``drop`` (closes the connection without a reply), ``reset`` (TCP
reset), ``truncated`` (closes mid-body), ``badjson`` (a complete reply whose body is cut
JSON). ``gates[id]`` holds a request until the test sets the event; ``delays[id]`` adds
latency.

It runs an asyncio server in a thread of its own, with a minimal HTTP/1.1 parser (only
what an HTTP client sends for a JSON POST): the stdlib's ThreadingHTTPServer topped out
near 500 requests/s on 2 cores, which made the server, not the client, what the overhead
bench measured. It lives in tests/ (test code, not part of the package); the bench
imports it from there.

    python tests/fake_openai_server.py --latency 0.02  # prints its URL, serves until stdin closes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import sys
import threading
import time
from http import HTTPStatus
from typing import Any


def _error(message: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind}}


def _response(status: int, payload: bytes, headers: dict | None = None,
              length: int | None = None) -> bytes:
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload) if length is None else length}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


class FakeOpenAIServer:
    """Start with ``with FakeOpenAIServer() as server:``; ``server.base_url`` ends in /v1."""

    def __init__(self, *, latency_s: float = 0.0, api_key: str | None = None,
                 reasoning_field: str | None = None, usage: bool = True, slow_s: float = 5.0,
                 record: bool = True):
        self.latency_s = latency_s
        self.api_key = api_key  # when set, requests must carry "Authorization: Bearer <key>"
        self.reasoning_field = reasoning_field  # "reasoning_content" | "reasoning" | None
        self.usage = usage
        self.slow_s = slow_s
        self.record = record  # off in the bench: a list of 10^4 bodies is not free
        self.faults: dict[str, list[str]] = {}
        self.gates: dict[str, threading.Event] = {}
        self.delays: dict[str, float] = {}
        self.log: list[dict] = []
        self.in_flight = self.max_in_flight = self.served = 0
        self.finished: list[str] = []  # prompt ids the server is done with, in order
        self._lock = threading.Lock()  # the tests read what the server thread writes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._connections: set[asyncio.Task] = set()
        self._server: asyncio.Server | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> "FakeOpenAIServer":
        loop = self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def serve() -> None:
            # backlog: the default of 100 is fine, but a client opening hundreds of
            # connections at once should queue, not be refused.
            self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0,
                                                      backlog=1024)
            self._port = self._server.sockets[0].getsockname()[1]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(serve())
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-openai-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        for gate in self.gates.values():
            gate.set()
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._connections):  # slow replies, gated requests
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()
        self._loop = None

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    # -- what the tests look at ---------------------------------------------------------

    def attempts(self, prompt_id: str) -> list[dict]:
        """The recorded requests for one prompt id, in arrival order."""
        with self._lock:
            return [r for r in self.log if r["id"] == prompt_id]

    def reply(self, chat: bool, prompt_id: str, body: dict) -> dict:
        """The deterministic completion for a request."""
        words = f"echo {prompt_id} seed={body.get('seed')}".split()
        thinking = f"thinking about {prompt_id}".split() if self.reasoning_field else []
        max_tokens = body.get("max_tokens") or 1 << 30
        finish = "stop"
        if len(thinking) + len(words) > max_tokens:
            words = words[:max(0, max_tokens - len(thinking))]
            finish = "length"
        content = " ".join(words)
        if chat:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if self.reasoning_field:
                message[self.reasoning_field] = " ".join(thinking)
            choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": " " + content, "finish_reason": finish}
        out: dict[str, Any] = {"id": "cmpl-fake", "object": "chat.completion" if chat
                               else "text_completion", "model": body.get("model"),
                               "choices": [choice]}
        if self.usage:
            n = len(thinking) + len(words)
            out["usage"] = {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}
        return out

    # -- the server ---------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:  # keep-alive: requests one after another on this connection
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, path, _ = head[0].split(" ", 2)
                headers = {}
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length") or 0))
                if not await self._request(method, path, headers, raw, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client hung up (or gave up waiting), or the server is stopping
        finally:
            self._connections.discard(task)
            if not writer.transport.is_closing():
                writer.close()

    async def _request(self, method: str, path: str, headers: dict, raw: bytes,
                       writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is to be closed."""
        try:
            body = json.loads(raw)
        except ValueError:
            writer.write(_response(400, json.dumps(_error("body is not JSON")).encode()))
            return True
        if method == "POST" and path == "/v1/chat/completions":
            chat, prompt_id = True, str(body["messages"][-1]["content"])
        elif method == "POST" and path == "/v1/completions":
            chat, prompt_id = False, str(body["prompt"])
        else:
            writer.write(_response(404, json.dumps(_error(f"no route {path}")).encode()))
            return True
        with self._lock:
            plan = self.faults.get(prompt_id)
            fault = plan.pop(0) if plan else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.record:
                self.log.append({"path": path, "id": prompt_id, "headers": headers,
                                 "body": body, "fault": fault, "t": time.monotonic()})
        try:
            return await self._answer(chat, prompt_id, body, headers, fault, writer)
        finally:
            with self._lock:
                self.in_flight -= 1
                self.served += 1
                self.finished.append(prompt_id)

    async def _answer(self, chat: bool, prompt_id: str, body: dict, headers: dict,
                      fault: str | None, writer: asyncio.StreamWriter) -> bool:
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            # Echoes the key it got, as careless servers do: the client must mask it.
            sent = headers.get("authorization", "").removeprefix("Bearer ")
            writer.write(_response(401, json.dumps(_error(
                f"Incorrect API key provided: {sent}", "authentication_error")).encode()))
            return True
        if fault is not None:
            status, _, retry_after = fault.partition(":")
            if status.isdigit():
                extra = {"Retry-After": retry_after} if retry_after else None
                writer.write(_response(int(status), json.dumps(_error(
                    f"injected {status} for {prompt_id}", "server_error")).encode(), extra))
                return True
            if fault == "drop":  # no reply at all: FIN
                return False
            if fault == "reset":  # RST instead of FIN
                writer.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return False
        gate = self.gates.get(prompt_id)
        waited = 0.0
        while gate is not None and not gate.is_set() and waited < 10:  # bounded: no hang
            await asyncio.sleep(0.005)
            waited += 0.005
        delay = self.latency_s + self.delays.get(prompt_id, 0.0)
        if fault == "slow":
            delay += self.slow_s
        if delay > 0:
            await asyncio.sleep(delay)
        payload = json.dumps(self.reply(chat, prompt_id, body)).encode()
        if fault == "truncated":  # promises the whole body, sends half, hangs up
            writer.write(_response(200, payload[:len(payload) // 2], length=len(payload)))
            await writer.drain()
            return False
        if fault == "badjson":  # well-framed HTTP, cut JSON
            payload = payload[:len(payload) // 2]
        writer.write(_response(200, payload))
        await writer.drain()
        return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added to every reply")
    args = ap.parse_args()
    server = FakeOpenAIServer(latency_s=args.latency, record=False).start()
    print(server.base_url, flush=True)
    try:
        sys.stdin.read()  # serves until stdin closes (the parent exits) or it is killed
    finally:
        server.stop()


if __name__ == "__main__":
    main()
