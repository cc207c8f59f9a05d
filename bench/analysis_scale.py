"""The analysis stage at the paper's scale: three teachers × 1.9M responses on this machine.

Synthesises, per teacher, an SFT set (``parallel/<teacher>.parquet``, schema SFT_ROW) and
its perplexity scores (``perplexity/<teacher>.parquet``) with the paper's category mix
and lengths drawn to match the paper's per-teacher means (PAPER.md §6), then runs
:func:`distillab.analysis.analyze` in a fresh process — every statistic, Figures 2–5,
stats.md and the curation funnel — sampling the process's peak RSS.

The baseline, measured in the same run and the same way, is a process that only reads
the columns the analysis needs (``n_tokens``, ``category``, ``ppl``) from the same files:
the floor any analysis of these files pays. The figure to watch is the ratio.

Writes bench/results/analysis_scale.json. Target (issue 6): ≤ 10 minutes, ≤ 8 GB.

    python bench/analysis_scale.py [--rows 1900000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from distillab import schemas  # noqa: E402

# PAPER.md §1: share of instances per category; §6: mean response tokens per teacher.
CATEGORY_SHARE = {"chat": 0.418, "math": 0.295, "code": 0.171, "science": 0.084, "if": 0.031}
MEAN_TOKENS = {
    "AM-Thinking-v1": {"math": 3757, "code": 5176, "chat": 2629, "science": 2018, "if": 1915},
    "Qwen3-235B-A22B": {"math": 4196, "code": 5220, "chat": 2252, "science": 1736, "if": 1152},
    "DeepSeek-R1": {"math": 3785, "code": 4177, "chat": 1684, "science": 1793, "if": 1191},
}
PPL_MEAN = {"AM-Thinking-v1": 2.5, "Qwen3-235B-A22B": 3.0, "DeepSeek-R1": 2.9}  # Figure 5
SIGMA = 0.9  # log-normal spread of lengths


def _messages(n: int) -> pa.Array:
    """n conversations of a short system, user and assistant turn (text is not analysed)."""
    roles = pa.array(["system", "user", "assistant"] * n)
    content = pa.array(["s", "q", "a"] * n)
    structs = pa.StructArray.from_arrays([roles, content], names=["role", "content"])
    offsets = pa.array(np.arange(0, 3 * n + 1, 3, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, structs)


def synthesise(workdir: Path, rows: int, seed: int = 0) -> dict[str, dict[str, str]]:
    rng = np.random.default_rng(seed)
    cats = np.array(list(CATEGORY_SHARE))
    paths: dict[str, dict[str, str]] = {}
    for teacher, means in MEAN_TOKENS.items():
        share = np.array(list(CATEGORY_SHARE.values()))
        index = rng.choice(len(cats), size=rows, p=share / share.sum())
        category = cats[index]
        mean_of = np.array([means[c] for c in cats], dtype=float)
        mu = np.log(mean_of[index]) - SIGMA**2 / 2  # so the log-normal's mean is the paper's
        n_tokens = np.maximum(1, rng.lognormal(mu, SIGMA)).astype(np.int32)
        ids = pa.array([f"q{i:08d}" for i in range(rows)])
        sft = pa.table({"messages": _messages(rows), "query_id": ids,
                        "teacher": pa.array([teacher] * rows), "category": pa.array(category),
                        "n_tokens": pa.array(n_tokens)}, schema=schemas.SFT_ROW)
        ppl = 1 + rng.gamma(2.0, (PPL_MEAN[teacher] - 1) / 2.0, size=rows)
        ppl_table = pa.table({"query_id": ids, "teacher": pa.array([teacher] * rows),
                              "category": pa.array(category), "ppl": pa.array(ppl),
                              "mean_nll": pa.array(np.log(ppl)),
                              "n_scored_tokens": pa.array(n_tokens),
                              "reason": pa.nulls(rows, pa.string())}, schema=schemas.PERPLEXITY)
        sft_path, ppl_path = workdir / f"{teacher}.sft.parquet", workdir / f"{teacher}.ppl.parquet"
        pq.write_table(sft, sft_path)
        pq.write_table(ppl_table, ppl_path)
        paths[teacher] = {"sft": str(sft_path), "ppl": str(ppl_path), "cut": float(
            np.percentile(ppl, 95))}
    return paths


def _child(mode: str, spec_path: str) -> None:
    """Run in a fresh process; print wall time and peak RSS as JSON."""
    spec = json.loads(Path(spec_path).read_text())
    t0 = time.perf_counter()
    if mode == "baseline":
        for p in spec["paths"].values():
            pq.read_table(p["sft"], columns=["n_tokens", "category"])
            pq.read_table(p["ppl"], columns=["ppl", "category"])
    else:
        from distillab.analysis import analyze

        curation = {}
        for t, p in spec["paths"].items():
            per_cat = {c: {"queries": spec["rows"], "accepted_queries": spec["rows"]}
                       for c in CATEGORY_SHARE}
            curation[t] = ({"per_category": per_cat},
                           {"perplexity": {"cut": p["cut"]},
                            "per_category": {c: {"kept": 0} for c in CATEGORY_SHARE}})
        analyze({t: p["sft"] for t, p in spec["paths"].items()}, spec["out"], bin_tokens=1024,
                n_bins=10, perplexity={t: p["ppl"] for t, p in spec["paths"].items()},
                curation=curation)
    wall = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": wall, "peak_rss_mb": rss_mb}))


def _run_child(mode: str, spec_path: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(spec_path)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_900_000, help="responses per teacher")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench/results/analysis_scale.json"))
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="analysis_scale_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        paths = synthesise(workdir, args.rows)
        synth_s = time.perf_counter() - t0
        spec = workdir / "spec.json"
        spec.write_text(json.dumps({"paths": paths, "rows": args.rows,
                                    "out": str(workdir / "analysis")}))
        baseline = _run_child("baseline", spec)
        analysis = _run_child("analysis", spec)
        stats = json.loads((workdir / "analysis/stats.json").read_text())
        result = {
            "benchmark": "analysis_scale",
            "what": "distillab.analysis.analyze on 3 teachers: stats, Figures 2-5, stats.md, funnel",
            "rows_per_teacher": args.rows,
            "teachers": list(MEAN_TOKENS),
            "response_tokens_per_teacher": {t: s["tokens"] for t, s in stats["per_teacher"].items()},
            "synthesis_s": round(synth_s, 1),
            "baseline": {"what": "read the analysed columns only", **baseline},
            "analysis": analysis,
            "ratio_wall_vs_baseline": round(analysis["wall_s"] / baseline["wall_s"], 2),
            "targets": {"wall_s": 600, "peak_rss_mb": 8192},
            "meets_targets": analysis["wall_s"] <= 600 and analysis["peak_rss_mb"] <= 8192,
            "mean_ppl": {t: round(s["mean"], 3) for t, s in stats["perplexity"].items()},
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
