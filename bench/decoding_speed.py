"""Per-step sampling and stop-string cost on a model's real vocabulary: transformers'
own ``TopPLogitsWarper`` + ``StopStringCriteria`` against ``distillab.decoding``.

Both sides run in the same process on the same logits; figures are ratios.

    python bench/decoding_speed.py --model results/demo/models/gemma-3-270m \
        --out bench/results/decoding_speed_gemma.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from transformers import (AutoTokenizer, LogitsProcessorList, StopStringCriteria,
                          TemperatureLogitsWarper, TopPLogitsWarper)

from distillab.decoding import SamplingWarper, StopOnText
from distillab.io import write_json

STOP = ["</answer>", "\nQuestion:"]


def timed(fn, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--out", default="bench/results/decoding_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(args.model)
    vocab = len(tok)
    g = torch.Generator().manual_seed(0)
    # Peaked like a trained model's next-token logits.
    logits = torch.randn(args.batch, vocab, generator=g) * 3
    ids = torch.randint(0, vocab, (args.batch, 300), generator=g)

    theirs = LogitsProcessorList([TemperatureLogitsWarper(0.6), TopPLogitsWarper(0.95)])
    ours = SamplingWarper(0.6, top_p=0.95)
    warp_theirs = timed(lambda: theirs(ids, logits.clone()), args.steps)
    warp_ours = timed(lambda: ours(ids, logits.clone()), args.steps)
    same = torch.equal(torch.isinf(theirs(ids, logits.clone())), torch.isinf(ours(ids, logits.clone())))

    t0 = time.perf_counter()
    criteria = StopStringCriteria(tok, STOP)
    stop_setup_theirs = time.perf_counter() - t0
    stop_theirs = timed(lambda: criteria(ids, logits), args.steps)
    ours_stop = StopOnText(tok, STOP, prompt_width=260)
    stop_ours = timed(lambda: ours_stop(ids, logits), args.steps)

    result = {
        "benchmark": "decoding_speed", "model": args.model, "vocab": vocab,
        "batch": args.batch, "steps": args.steps, "platform": platform.platform(),
        "torch": torch.__version__,
        "top_p_same_tokens_kept": same,
        "top_p_s_per_step": {"transformers": round(warp_theirs / args.steps, 4),
                             "distillab": round(warp_ours / args.steps, 4)},
        "top_p_speedup": round(warp_theirs / warp_ours, 1),
        "stop_strings_setup_s": {"transformers": round(stop_setup_theirs, 2), "distillab": 0.0},
        "stop_strings_s_per_step": {"transformers": round(stop_theirs / args.steps, 5),
                                    "distillab": round(stop_ours / args.steps, 5)},
        "stop_strings_total_s_for_80_steps": {
            "transformers": round(stop_setup_theirs + 80 * stop_theirs / args.steps, 2),
            "distillab": round(80 * stop_ours / args.steps, 2)},
    }
    write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
