"""The study report: the analogs of the paper's Table 1 (accuracy) and Table 2 (mean
response length), verification and curation counts, the analysis figures, and the sha256
of every file the numbers rest on (each of which has a sidecar naming its own inputs, so
any number traces back to the queries).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from distillab.io import read_json, sha256_file, write_json, write_text
from distillab.provenance import sidecar_path

log = logging.getLogger(__name__)


def _fmt_pct(x: float | None, se: float | None = None) -> str:
    if x is None:
        return "–"
    return f"{100 * x:.1f} ± {100 * se:.1f}" if se is not None else f"{100 * x:.1f}"


def _fmt_num(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def build_summary(study: str, evals: list[dict], model_info: dict[str, dict],
                  verification: dict[str, dict], curation: dict[str, dict],
                  analysis: dict, rounds: dict[str, list[dict]] | None = None) -> dict:
    benchmarks = sorted({e["benchmark"] for e in evals})
    models = sorted({e["model"] for e in evals},
                    key=lambda m: (model_info[m]["kind"] != "student", model_info[m]["teacher"], m))
    by_key = {(e["benchmark"], e["model"]): e for e in evals}
    accuracy = {b: {m: {"pass_at_1": by_key[(b, m)]["pass_at_1"],
                        "stderr": by_key[(b, m)]["pass_at_1_stderr"],
                        "n_problems": by_key[(b, m)]["n_problems"], "k": by_key[(b, m)]["k"]}
                    for m in models if (b, m) in by_key} for b in benchmarks}
    length = {b: {m: by_key[(b, m)]["mean_response_tokens"] for m in models if (b, m) in by_key}
              for b in benchmarks}
    return {
        "study": study,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "models": {m: model_info[m] for m in models},
        "benchmarks": benchmarks,
        "table1_accuracy": accuracy,
        "table2_mean_response_tokens": length,
        "verification": verification,
        "rounds": rounds or {},
        "curation": curation,
        "analysis": analysis,
    }


def render_markdown(summary: dict, figures: list[str]) -> str:
    models = list(summary["models"])
    label = {m: (f"{i['student']} ← {i['teacher']}"
                 + ("" if i.get("trained", True) else " (untrained: no SFT rows)")
                 if i["kind"] == "student" else f"{m} (teacher)")
             for m, i in summary["models"].items()}
    lines = [f"# distillab study `{summary['study']}`", "",
             f"Generated {summary['generated_at']}. Students are named `student ← teacher`; "
             "teacher rows are reference scores of the teachers themselves.", ""]
    lines += ["## Table 1: accuracy (pass@1 %, mean over k samples ± standard error)", "",
              "| benchmark | " + " | ".join(label[m] for m in models) + " |",
              "|---|" + "---|" * len(models)]
    for b, row in summary["table1_accuracy"].items():
        cells = [_fmt_pct(row[m]["pass_at_1"], row[m]["stderr"]) if m in row else "–" for m in models]
        ks = sorted({v["k"] for v in row.values()})
        lines.append(f"| {b} (k={','.join(map(str, ks))}) | " + " | ".join(cells) + " |")
    lines += ["", "## Table 2: mean response length (tokens per sample)", "",
              "| benchmark | " + " | ".join(label[m] for m in models) + " |",
              "|---|" + "---|" * len(models)]
    for b, row in summary["table2_mean_response_tokens"].items():
        lines.append(f"| {b} | " + " | ".join(_fmt_num(row.get(m)) for m in models) + " |")
    lines += ["", "## Verification (accepted queries / queries, per teacher and category)", "",
              "| teacher | category | queries | responses | passed responses | accepted | accept rate | verifiers |",
              "|---|---|---|---|---|---|---|---|"]
    for teacher, per_cat in summary["verification"].items():
        for cat, s in per_cat.items():
            rate = "–" if s["query_accept_rate"] is None else f"{100 * s['query_accept_rate']:.0f}%"
            verifiers = ", ".join(f"{k}: {v}" for k, v in sorted(s["verifiers"].items()))
            lines.append(f"| {teacher} | {cat} | {s['queries']} | {s['responses']} | "
                         f"{s['passed_responses']} | {s['accepted_queries']} | {rate} | {verifiers} |")
    if summary.get("rounds"):
        lines += ["", "## Retry rounds (a query is asked again until a response passes)", "",
                  "| teacher | round | queries asked | responses | tokens generated | accepted "
                  "in round | accepted so far |", "|---|---|---|---|---|---|---|"]
        for teacher, rounds in summary["rounds"].items():
            for r in rounds:
                share = r["accepted_share_cumulative"]
                so_far = f"{r['accepted_cumulative']}" + (
                    "" if share is None else f" ({100 * share:.0f}%)")
                lines.append(f"| {teacher} | {r['round']} | {r['queries_asked']} | "
                             f"{r['responses']} | {r['tokens_generated']} | {r['accepted']} | "
                             f"{so_far} |")
    lines += ["", "## Curation (rows per step)", "",
              "| teacher | accepted | curated | SFT rows | dropped by structure | dropped by parallel policy |",
              "|---|---|---|---|---|---|"]
    for teacher, c in summary["curation"].items():
        lines.append(f"| {teacher} | {c['accepted']} | {c['curated']} | {c['sft_rows']} | "
                     f"{c['curate_rejected']} | {c['parallel_rejected']} |")
    per_teacher = summary["analysis"].get("per_teacher", {})
    if per_teacher:
        lines += ["", "## Training data distribution (response tokens, shared tokenizer)", "",
                  "| teacher | instances | tokens | mean | median | std | entropy (bits) |",
                  "|---|---|---|---|---|---|---|"]
        for teacher, s in per_teacher.items():
            lines.append(f"| {teacher} | {s['instances']} | {s['tokens']} | {_fmt_num(s['mean'])} | "
                         f"{_fmt_num(s['median'])} | {_fmt_num(s['std'])} | "
                         f"{_fmt_num(s.get('entropy_bits'))} |")
    if figures:
        lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in figures]
    lines += ["", "Every number above rests on the files listed with their sha256 in "
              "`summary.json` (`inputs`); each has a `.prov.json` sidecar naming its own inputs.", ""]
    return "\n".join(lines)


def report_from_snakemake(smk: Any, prov: Any) -> None:
    p = smk.params
    evals = [read_json(path) for path in smk.input.evals]
    stats = [read_json(path) for path in smk.input.verification]
    verification = {s["teacher"]: s["per_category"] for s in stats}
    rounds = {s["teacher"]: s.get("rounds", []) for s in stats}
    curation = {}
    for teacher, acc, cur, par in zip(p.teachers, smk.input.accepted, smk.input.curated,
                                      smk.input.parallel):
        acc, cur, par = (read_json(sidecar_path(x)) for x in (acc, cur, par))
        curation[teacher] = {"accepted": acc["rows_out"], "curated": cur["rows_out"],
                             "curate_rejected": cur["rows_rejected"], "sft_rows": par["rows_out"],
                             "parallel_rejected": par["rows_rejected"]}
    analysis = read_json(smk.input.analysis)
    model_info = {m: dict(i) for m, i in p.model_info.items()}
    trained = {}
    for ckpt in smk.input.checkpoints:
        prov_path = Path(ckpt) / "provenance.json"
        trained[Path(ckpt).name] = read_json(prov_path).get("trained", True) if prov_path.exists() else True
    for m, info in model_info.items():
        if info["kind"] == "student":
            info["trained"] = trained.get(m, True)
    summary = build_summary(p.study, evals, model_info, verification, curation, analysis, rounds)
    out_dir = Path(smk.output.summary_json).parent
    figures = []
    for fig in smk.input.figures:
        dest = out_dir / Path(fig).name
        shutil.copyfile(fig, dest)
        figures.append(str(dest))
    inputs = {}
    for path in smk.input:
        if Path(path).is_dir():
            side = Path(path) / "provenance.json"
            if side.exists():
                inputs[str(side)] = sha256_file(side)
            continue
        inputs[path] = sha256_file(path)
        side = sidecar_path(path)
        if side.exists() and side != Path(path):
            inputs[str(side)] = sha256_file(side)
    summary["inputs"] = inputs
    write_json(smk.output.summary_json, summary)
    write_text(smk.output.summary_md, render_markdown(summary, figures))
    log.info("report: %d eval results, %d benchmarks, %d inputs hashed", len(evals),
             len(summary["benchmarks"]), len(inputs))
    prov.add(rows_in=len(evals))
