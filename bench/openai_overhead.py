"""Overhead of the ``openai`` backend against raw HTTP calls to the same local server.

The server is tests/fake_openai_server.py (the one the tests use, imported from there
rather than duplicated, so both exercise the same replies) in a separate process, so
its work does not share the client's interpreter. Each reply waits a fixed simulated
latency. The same request bodies are sent three ways at the same concurrency:

* raw_workers: ``httpx2.AsyncClient`` and ``concurrency`` loops posting the next body,
  JSON parsed, nothing else (the least any client must do: the ratios' denominator);
* raw_gather: the usual idiom, a task per request, a semaphore and ``gather``;
* pipeline: ``OpenAIGenerator.generate()`` as the generate stage calls it (worker pool,
  per-attempt timeout, retry bookkeeping, reply parsing, hand-off to the calling thread).

Figures are ratios and differences measured in the same run (the variants run
in rotating order, median of ``--repeats``), since absolute rates on a shared machine
are noisy.
Latency 0 is the worst case for overhead (the client is the bottleneck); a real teacher
takes seconds per reply, where the same per-request CPU cost disappears.

    python bench/openai_overhead.py --out bench/results/openai_overhead.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from distillab.gen_openai import OpenAIGenerator
from distillab.generate import GenRequest, SamplingSpec
from distillab.io import write_json

SERVER = Path(__file__).resolve().parents[1] / "tests" / "fake_openai_server.py"
SAMPLING = SamplingSpec(temperature=0.6, top_p=0.95, max_new_tokens=256, seed=0)
STOP = ["</answer>"]


def requests_for(m: int) -> list[GenRequest]:
    return [GenRequest(f"q{i}", messages=[
        {"role": "system", "content": "You are a helpful assistant. Think, then answer."},
        {"role": "user", "content": f"What is {i} + {i}? Put the answer in \\boxed{{}}."}],
        seed=i) for i in range(m)]


def _bodies(base_url: str, reqs: list[GenRequest]) -> list[tuple[str, dict]]:
    gen = OpenAIGenerator("fake", base_url)  # only to build the very bodies it would send
    return [gen.request_body(r, SAMPLING, STOP, 0) for r in reqs]


def _client(concurrency: int) -> httpx2.AsyncClient:
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx2.AsyncClient(limits=limits, timeout=60)


def run_raw_workers(base_url: str, reqs: list[GenRequest], concurrency: int) -> None:
    """The least work: ``concurrency`` loops posting the next body, JSON parsed."""
    bodies = iter(_bodies(base_url, reqs))

    async def run() -> None:
        async with _client(concurrency) as client:
            async def worker() -> None:
                for path, body in bodies:
                    resp = await client.post(base_url + path, json=body)
                    resp.raise_for_status()
                    resp.json()

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    asyncio.run(run())


def run_raw_gather(base_url: str, reqs: list[GenRequest], concurrency: int) -> None:
    """The usual idiom: one task per request, a semaphore, gather."""
    bodies = _bodies(base_url, reqs)

    async def run() -> None:
        sem = asyncio.Semaphore(concurrency)
        async with _client(concurrency) as client:
            async def one(path: str, body: dict) -> dict:
                async with sem:
                    resp = await client.post(base_url + path, json=body)
                    resp.raise_for_status()
                    return resp.json()

            await asyncio.gather(*(one(p, b) for p, b in bodies))

    asyncio.run(run())


def run_pipeline(base_url: str, reqs: list[GenRequest], concurrency: int) -> None:
    """As the generate stage calls it: results consumed one by one in the caller's thread."""
    gen = OpenAIGenerator("fake", base_url, concurrency=concurrency, timeout_s=60,
                          progress_interval_s=1e9)
    done = sum(1 for _ in gen.generate(reqs, SAMPLING, STOP))
    assert done == len(reqs) and gen.stats()["retries"] == {}


VARIANTS = {"raw_workers": run_raw_workers, "raw_gather": run_raw_gather,
            "pipeline": run_pipeline}


def timed(fn, *args) -> tuple[float, float]:
    """(wall s, CPU s of this process: both threads of the pipeline counted)."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - t0, time.process_time() - c0


def measure(base_url: str, m: int, concurrency: int, repeats: int) -> dict:
    reqs = requests_for(m)
    names = list(VARIANTS)
    for fn in VARIANTS.values():  # warm-up: imports, first connections
        fn(base_url, reqs[:200], concurrency)
    times: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for k in range(repeats):  # rotate the order, so drift hits every variant alike
        for name in names[k % 3:] + names[:k % 3]:
            times[name].append(timed(VARIANTS[name], base_url, reqs, concurrency))
    wall = {n: statistics.median(w for w, _ in t) for n, t in times.items()}
    cpu = {n: statistics.median(c for _, c in t) for n, t in times.items()}
    row: dict = {n: {"wall_s": round(wall[n], 3), "req_per_s": round(m / wall[n], 1),
                     "cpu_ms_per_request": round(cpu[n] / m * 1e3, 3),
                     "repeats_wall_s": [round(w, 3) for w, _ in times[n]]} for n in names}
    base = "raw_workers"
    row["wall_ratio_pipeline_over_raw_workers"] = round(wall["pipeline"] / wall[base], 3)
    row["wall_ratio_pipeline_over_raw_gather"] = round(wall["pipeline"] / wall["raw_gather"], 3)
    row["overhead_cpu_ms_per_request"] = round((cpu["pipeline"] - cpu[base]) / m * 1e3, 3)
    row["overhead_wall_ms_per_request"] = round((wall["pipeline"] - wall[base]) / m * 1e3, 3)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latencies", type=float, nargs="+", default=[0.02, 0.0],
                    help="simulated seconds per reply")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default="bench/results/openai_overhead.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load_before = os.getloadavg()  # other work on the machine shows up as noise
    runs = []
    for latency in args.latencies:
        server = subprocess.Popen([sys.executable, str(SERVER), "--latency", str(latency)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            base_url = server.stdout.readline().strip()
            row = {"latency_s": latency,
                   "ideal_wall_s": round(args.requests / args.concurrency * latency, 3)}
            row.update(measure(base_url, args.requests, args.concurrency, args.repeats))
            runs.append(row)
            print(json.dumps(row), flush=True)
        finally:
            server.stdin.close()  # the server exits when its stdin closes
            server.wait(timeout=30)
    result = {"benchmark": "openai_overhead",
              "baseline": "raw httpx2.AsyncClient calls, same bodies, same concurrency, same "
                          "server, same run: raw_workers (concurrency loops, the least work; "
                          "the ratios' denominator) and raw_gather (a task per request, a "
                          "semaphore, gather: the usual idiom)",
              "server": "tests/fake_openai_server.py in its own process (asyncio, "
                        "HTTP/1.1 keep-alive) on 127.0.0.1",
              "requests": args.requests, "concurrency": args.concurrency,
              "repeats": args.repeats, "statistic": "median", "host_cpus": os.cpu_count(),
              "python": platform.python_version(), "platform": platform.platform(),
              "httpx2": httpx2.__version__,
              "load_avg_1m_before_after": [round(load_before[0], 2),
                                           round(os.getloadavg()[0], 2)],
              "runs": runs}
    write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
