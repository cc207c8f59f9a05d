"""Generation speed on this CPU: what batching, the shared-prefix KV cache, int8
dynamic quantization and threads buy for the transformers backend.

The prompts are the demo study's own (system prompt + one category-matched
demonstration + a demo query), so the shared prefix is as long as in a real run.
Figures are ratios against a baseline (batch 1, float32, no prefix cache, 1 thread)
measured in the same run, since absolute tok/s on shared machines is noisy.

    python bench/generation_speed.py --model results/demo/models/qwen2.5-coder-0.5b-instruct \
        --out bench/results/generation_speed_qwen.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from distillab.generate import (PromptSpec, SamplingSpec, TransformersGenerator, build_request,
                                generate_all)
from distillab.io import iter_jsonl, write_json

QUERIES = Path(__file__).resolve().parents[1] / "data" / "demo" / "queries.jsonl"


def run(model: str, batch_size: int, quantization: str | None, threads: int,
        prefix_cache: bool, queries: list[dict], max_new_tokens: int) -> dict:
    torch.set_num_threads(threads)
    gen = TransformersGenerator(model, batch_size=batch_size, quantization=quantization,
                                prefix_cache=prefix_cache)
    spec = PromptSpec(demonstrations=1)
    requests = [build_request(str(i), [{"role": "user", "content": q["prompt"]}], q["category"],
                              spec) for i, q in enumerate(queries)]
    prompt_tokens = sum(len(gen.tok(gen.render(r), add_special_tokens=False).input_ids)
                        for r in requests)
    # Useful tokens only (up to EOS), so waiting on a batch's longest row counts as cost.
    sampling = SamplingSpec(temperature=0.0, max_new_tokens=max_new_tokens, seed=0)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    outs = generate_all(gen, requests, sampling, [])
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    tokens = sum(o[0].n_tokens for o in outs)
    return {"batch_size": batch_size, "quantization": quantization, "threads": threads,
            "prefix_cache": prefix_cache, "prompts": len(queries),
            "prompt_tokens": prompt_tokens, "new_tokens": tokens, "wall_s": round(wall, 2),
            "tok_per_s": round(tokens / wall, 2), "tok_per_cpu_s": round(tokens / cpu, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--out", default="bench/results/generation_speed.json")
    args = ap.parse_args()
    # Math and science queries alternate, so batches mix two demonstration prefixes
    # unless the generator groups them.
    by_cat = {c: [q for _, q in iter_jsonl(QUERIES) if q["category"] == c] for c in ("math", "science")}
    queries = [by_cat[c][i // 2] for i in range(args.prompts) for c in [("math", "science")[i % 2]]]
    configs = [  # (batch, quantization, threads, prefix_cache); the first is the baseline
        (1, None, 1, False), (16, None, 1, False), (16, None, 1, True), (16, None, 2, True),
        (16, "int8_dynamic", 1, False), (16, "int8_dynamic", 1, True),
        (16, "int8_dynamic", 2, True)]
    rows = [run(args.model, b, q, t, pc, queries, args.max_new_tokens) for b, q, t, pc in configs]
    base = rows[0]["tok_per_s"]
    for r in rows:
        r["speedup_vs_baseline"] = round(r["tok_per_s"] / base, 2)
    result = {"benchmark": "generation_speed", "model": args.model,
              "baseline": "batch 1, float32, no prefix cache, 1 thread",
              "max_new_tokens": args.max_new_tokens, "host_cpus": os.cpu_count(),
              "platform": platform.platform(), "torch": torch.__version__, "runs": rows}
    write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
