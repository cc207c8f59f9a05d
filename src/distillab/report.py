"""The study report: the analogs of the paper's Table 1 (accuracy) and Table 2 (mean
response length; with ``evaluation.reference: paper`` the paper's own numbers beside them,
labelled "paper"), the length-by-difficulty figure (``length_by_difficulty.png``, the
"adaptive length" finding), verification and curation counts, the analysis figures, and the sha256
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


def _one_line(text: str, width: int) -> str:
    """A span for a table cell: one line, no backticks or pipes, at most ``width`` chars."""
    flat = " ".join(text.split()).replace("`", "'").replace("|", "/")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# --- the paper's numbers (PAPER.md §8), shown beside a study with evaluation.reference: paper

# The paper's teachers, by the hub id of their weights (how a study teacher is matched).
PAPER_TEACHERS = {"AM-Thinking-v1": "a-m-team/AM-Thinking-v1",
                  "Qwen3-235B-A22B": "Qwen/Qwen3-235B-A22B",
                  "DeepSeek-R1": "deepseek-ai/DeepSeek-R1"}
_AM, _QWEN, _R1 = PAPER_TEACHERS
# Table 1: accuracy (%) of the Qwen2.5-32B students distilled from each teacher, by
# benchmark kind.
PAPER_TABLE1 = {"aime2024": {_AM: 84.3, _QWEN: 79.4, _R1: 70.9},
                "aime2025": {_AM: 72.2, _QWEN: 62.2, _R1: 52.8},
                "math500": {_AM: 98.4, _QWEN: 93.9, _R1: 95.8},
                "livecodebench": {_AM: 65.9, _QWEN: 59.6, _R1: 57.0}}
# The teachers' own scores (%) the paper quotes (no MATH500 numbers).
PAPER_TEACHER_SCORES = {"aime2024": {_AM: 85.3, _QWEN: 85.7, _R1: 79.8},
                        "aime2025": {_AM: 74.4, _QWEN: 81.5, _R1: 70.0},
                        "livecodebench": {_AM: 70.3, _QWEN: 70.7, _R1: 64.3}}
# Table 2: mean generation length (tokens per sample) of the students.
PAPER_TABLE2 = {"aime2024": {_AM: 15273.8, _QWEN: 13516.4, _R1: 11853.5},
                "aime2025": {_AM: 18199.2, _QWEN: 16975.7, _R1: 13495.9},
                "math500": {_AM: 3495.7, _QWEN: 6429.4, _R1: 3613.0},
                "livecodebench": {_AM: 23426.9, _QWEN: 13576.7, _R1: 30731.0}}
PAPER_SOURCE = ("PAPER.md §8 (a-m-team 2025, \"Not All Correct Answers Are Equal\"): "
                "Table 1, the teachers' reference scores, Table 2")


def _benchmark_kind(evals: list[dict], benchmark: str) -> str | None:
    """The kind of a benchmark's results (older results carry none: then its name)."""
    kinds = {e.get("kind") for e in evals if e["benchmark"] == benchmark} - {None}
    return kinds.pop() if len(kinds) == 1 else benchmark


def paper_reference(benchmark_kinds: dict[str, str | None],
                    teacher_repos: dict[str, str | None] | None = None) -> dict:
    """The paper's numbers keyed like the study's tables: benchmark -> column label ->
    value. Columns are labelled ``paper: <teacher>-distilled`` (students) and ``paper:
    <teacher> (teacher)``; a benchmark whose kind the paper did not report gets none.
    The paper's teachers the study also uses (matched by their weights' hub id, or by
    name) come first, in the study's order."""
    teacher_repos = teacher_repos or {}
    matched: dict[str, str] = {}
    for teacher, repo in teacher_repos.items():
        for paper_teacher, paper_repo in PAPER_TEACHERS.items():
            if repo == paper_repo or teacher.lower() == paper_teacher.lower():
                matched.setdefault(paper_teacher, teacher)
    order = list(matched) + [t for t in PAPER_TEACHERS if t not in matched]
    students = {t: f"paper: {t}-distilled" for t in order}
    teachers = {t: f"paper: {t} (teacher)" for t in order}

    def table(values: dict[str, dict[str, float]], labels: dict[str, str]) -> dict:
        return {b: {labels[t]: values[kind][t] for t in order}
                for b, kind in benchmark_kinds.items() if kind in values}

    return {"source": PAPER_SOURCE,
            "columns": [{"label": students[t], "paper_teacher": t,
                         "study_teacher": matched.get(t)} for t in order],
            "teacher_columns": [{"label": teachers[t], "paper_teacher": t,
                                 "study_teacher": matched.get(t)} for t in order],
            "table1_accuracy": table(PAPER_TABLE1, students),
            "table1_teachers": table(PAPER_TEACHER_SCORES, teachers),
            "table2_mean_response_tokens": table(PAPER_TABLE2, students)}


def length_by_group(evals: list[dict], key: str = "level") -> dict:
    """benchmark -> model -> group -> {mean_tokens, accuracy, n_problems}, for the results
    broken down by ``key`` (MATH500's ``level``)."""
    out: dict[str, dict[str, dict]] = {}
    for e in sorted(evals, key=lambda e: (e["benchmark"], e["model"])):
        groups = (e.get("groups") or {}).get(key)
        if groups:
            out.setdefault(e["benchmark"], {})[e["model"]] = groups
    return out


def _model_label(model: str, info: dict) -> str:
    if info.get("kind") == "student":
        return f"{info['student']} ← {info['teacher']}"
    return f"{model} (teacher)"


def figure_length_by_difficulty(evals: list[dict], model_info: dict[str, dict],
                                colors: dict[str, str] | None, path: str | Path) -> dict:
    """``length_by_difficulty.png``: the "adaptive length" finding (PAPER.md §8, Table 2).

    Left, one panel per benchmark whose problems have difficulty levels (MATH500 levels
    1-5): mean response tokens per level, one line per model. Right: mean response tokens
    per benchmark, one bar per model. A student has its teacher's colour (the analysis
    figures' palette), solid; a teacher evaluated as a reference is dashed / hatched.
    Without levels only the bars are drawn and the title says so. Returns what was drawn.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from distillab.analysis import teacher_colors
    from distillab.io import atomic_path

    models = sorted({e["model"] for e in evals},
                    key=lambda m: (model_info[m]["kind"] != "student", model_info[m]["teacher"], m))
    teachers = sorted({model_info[m]["teacher"] for m in models})
    palette = {**teacher_colors(teachers), **(colors or {})}
    markers = "osD^vP*X"
    students = sorted({model_info[m]["student"] for m in models
                       if model_info[m].get("kind") == "student"})

    def style(m: str) -> dict:
        info = model_info[m]
        student = info.get("kind") == "student"
        return {"color": palette.get(info["teacher"], "0.4"),
                "linestyle": "-" if student else "--",
                "marker": markers[students.index(info["student"]) % len(markers)]
                if student else "s",
                "markerfacecolor": None if student else "white"}

    levels = length_by_group(evals, "level")
    benchmarks = sorted({e["benchmark"] for e in evals})
    bars = {b: {e["model"]: e.get("mean_response_tokens") for e in evals if e["benchmark"] == b}
            for b in benchmarks}
    note = None if levels else ("no benchmark here has difficulty levels (MATH500 levels 1-5):\n"
                                "per-benchmark means only")
    n_panels = len(levels) + 1
    fig = Figure(figsize=(max(8.0, 5.2 * n_panels + 1.0), 4.8 + (0.4 if note else 0)), dpi=120,
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    lines: dict[str, dict[str, list]] = {}
    for ax, (bench, per_model) in zip(axes, levels.items()):
        lines[bench] = {}
        for m in models:
            if m not in per_model:
                continue
            points = sorted((int(g), v["mean_tokens"]) for g, v in per_model[m].items())
            lines[bench][m] = points
            ax.plot([x for x, _ in points], [y for _, y in points], linewidth=1.8,
                    markersize=6, label=_model_label(m, model_info[m]), **style(m))
        all_levels = sorted({x for pts in lines[bench].values() for x, _ in pts})
        ax.set_xticks(all_levels)
        ax.set_xlabel(f"{bench}: difficulty level (1 = easiest)")
        ax.set_ylabel("mean response tokens per sample")
        ax.set_title(f"{bench}: length by level")
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
    ax = axes[-1]
    width = 0.8 / max(1, len(models))
    hatches = ["", "..", "xx", "oo", "--", "++"]
    labelled = len(models) * len(benchmarks) <= 24
    for j, m in enumerate(models):
        pairs = [(i + (j - (len(models) - 1) / 2) * width, bars[b].get(m))
                 for i, b in enumerate(benchmarks)]
        pairs = [(x, y) for x, y in pairs if y is not None]  # no result: no bar
        s = style(m)
        drawn = ax.bar([x for x, _ in pairs], [y for _, y in pairs], width=width,
                       color=s["color"], edgecolor="black", linewidth=0.4,
                       hatch=hatches[students.index(model_info[m]["student"]) % len(hatches)]
                       if s["linestyle"] == "-" else "//",
                       label=None if levels else _model_label(m, model_info[m]))
        if labelled:
            ax.bar_label(drawn, fmt="{:.0f}", fontsize=7, padding=1)
    ax.set_xticks(range(len(benchmarks)), benchmarks, rotation=20 if len(benchmarks) > 3 else 0)
    ax.set_xlabel("benchmark")
    ax.set_ylabel("mean response tokens per sample")
    ax.set_title("mean length per benchmark")
    ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 3),
                   frameon=False, fontsize=9)
    title = "Response length by difficulty and benchmark (adaptive length)"
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=11)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return {"models": models, "levels": lines, "bars": bars, "note": note,
            "colors": {m: style(m)["color"] for m in models}}


def build_summary(study: str, evals: list[dict], model_info: dict[str, dict],
                  verification: dict[str, dict], curation: dict[str, dict],
                  analysis: dict, rounds: dict[str, list[dict]] | None = None, *,
                  reference: str | None = None,
                  teacher_repos: dict[str, str | None] | None = None) -> dict:
    """The report's numbers. ``reference="paper"`` adds the paper's (``reference``:
    :func:`paper_reference`, matched to the study's teachers through ``teacher_repos``,
    teacher -> hub id of its weights)."""
    if reference not in (None, "paper"):
        raise ValueError(f"unknown reference {reference!r} (known: paper)")
    benchmarks = sorted({e["benchmark"] for e in evals})
    kinds = {b: _benchmark_kind(evals, b) for b in benchmarks}
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
        "benchmark_kinds": kinds,
        "reference": paper_reference(kinds, teacher_repos) if reference == "paper" else None,
        "length_by_level": length_by_group(evals, "level"),
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
    ref = summary.get("reference")
    paper1 = [c["label"] for c in ref["columns"] + ref["teacher_columns"]] if ref else []
    paper2 = [c["label"] for c in ref["columns"]] if ref else []
    lines += ["## Table 1: accuracy (pass@1 %, mean over k samples ± standard error)", ""]
    if ref:
        lines += ["Columns labelled *paper* are the paper's numbers, not measured here "
                  f"({ref['source']}); – where the paper reports none.", ""]
    lines += ["| benchmark | " + " | ".join([label[m] for m in models] + paper1) + " |",
              "|---|" + "---|" * (len(models) + len(paper1))]
    for b, row in summary["table1_accuracy"].items():
        cells = [_fmt_pct(row[m]["pass_at_1"], row[m]["stderr"]) if m in row else "–" for m in models]
        paper = {**(ref or {}).get("table1_accuracy", {}).get(b, {}),
                 **(ref or {}).get("table1_teachers", {}).get(b, {})}
        cells += [_fmt_num(paper.get(c)) for c in paper1]
        ks = sorted({v["k"] for v in row.values()})
        lines.append(f"| {b} (k={','.join(map(str, ks))}) | " + " | ".join(cells) + " |")
    lines += ["", "## Table 2: mean response length (tokens per sample)", "",
              "| benchmark | " + " | ".join([label[m] for m in models] + paper2) + " |",
              "|---|" + "---|" * (len(models) + len(paper2))]
    for b, row in summary["table2_mean_response_tokens"].items():
        paper = (ref or {}).get("table2_mean_response_tokens", {}).get(b, {})
        lines.append(f"| {b} | " + " | ".join([_fmt_num(row.get(m)) for m in models]
                                              + [_fmt_num(paper.get(c)) for c in paper2]) + " |")
    for b, per_model in (summary.get("length_by_level") or {}).items():
        groups = sorted({g for v in per_model.values() for g in v}, key=lambda g: (len(g), g))
        lines += ["", f"## Response length by difficulty level: {b} (mean tokens per sample; "
                      "accuracy %)", "",
                  "| model | " + " | ".join(f"level {g}" for g in groups) + " |",
                  "|---|" + "---|" * len(groups)]
        for m in models:
            if m in per_model:
                stats = per_model[m]
                cells = [f"{stats[g]['mean_tokens']:.1f} ({100 * stats[g]['accuracy']:.1f})"
                         if g in stats else "–" for g in groups]
                lines.append(f"| {label[m]} | " + " | ".join(cells) + " |")
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
    analysis = summary["analysis"]
    if analysis.get("funnel"):
        from distillab.analysis import FUNNEL_STEPS

        lines += ["", "## Curation funnel (rows per step, per category)", "",
                  "Filters in order: structure, high-frequency n-grams, perplexity; then the "
                  "parallel policy. Every dropped row is in `curated/<teacher>.rejected.parquet` "
                  "or `parallel/<teacher>.rejected.parquet` with its reason.", "",
                  "| teacher | category | " + " | ".join(lbl for _, lbl in FUNNEL_STEPS) + " |",
                  "|---|---|" + "---:|" * len(FUNNEL_STEPS)]
        for teacher, per_cat in analysis["funnel"].items():
            for cat, row in per_cat.items():
                b = "**" if cat == "all" else ""
                lines.append(f"| {teacher} | {b}{cat}{b} | "
                             + " | ".join(str(row[k]) for k, _ in FUNNEL_STEPS) + " |")
    if analysis.get("perplexity"):
        lines += ["", "## Perplexity of accepted responses (Figure 5)", "",
                  "| teacher | scored | mean | median | Q1 | Q3 | upper whisker | cut | above cut |",
                  "|---|---|---|---|---|---|---|---|---|"]
        f2 = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
        for teacher, s in analysis["perplexity"].items():
            lines.append(f"| {teacher} | {s['scored']} | {f2(s['mean'])} | {f2(s['median'])} | "
                         f"{f2(s['q1'])} | {f2(s['q3'])} | {f2(s['whisker_high'])} | "
                         f"{f2(s['cut'])} | {s['above_cut']} |")
    if summary.get("ngrams"):
        lines += ["", "## Most frequent n-grams (high-frequency filter)", "",
                  "| teacher | n | max count | frequent n-grams | rows dropped | top n-gram "
                  "(occurrences) |", "|---|---|---|---|---|---|"]
        for teacher, ng in summary["ngrams"].items():
            top = ng["top"][0] if ng["top"] else None
            shown = "–" if top is None else (
                f"`{_one_line(top['text'], 60)}` ({top['count']})")
            lines.append(f"| {teacher} | {ng['spec']['n']} | {ng['spec']['max_count']} | "
                         f"{ng['stats']['frequent_ngrams']} | {ng['stats']['flagged_rows']} | "
                         f"{shown} |")
    per_teacher = analysis.get("per_teacher", {})
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
    ngrams = {}
    for path in smk.input.ngram_top:
        top = read_json(path)
        ngrams[top["teacher"]] = {k: top[k] for k in ("spec", "stats")} | {"top": top["top"][:5]}
    model_info = {m: dict(i) for m, i in p.model_info.items()}
    trained = {}
    for ckpt in smk.input.checkpoints:
        prov_path = Path(ckpt) / "provenance.json"
        trained[Path(ckpt).name] = read_json(prov_path).get("trained", True) if prov_path.exists() else True
    for m, info in model_info.items():
        if info["kind"] == "student":
            info["trained"] = trained.get(m, True)
    summary = build_summary(p.study, evals, model_info, verification, curation, analysis, rounds,
                            reference=getattr(p, "reference", None),
                            teacher_repos=getattr(p, "teacher_repos", None))
    summary["ngrams"] = ngrams
    out_dir = Path(smk.output.summary_json).parent
    figures = []
    for fig in smk.input.figures:
        dest = out_dir / Path(fig).name
        shutil.copyfile(fig, dest)
        figures.append(str(dest))
    length_figure = getattr(smk.output, "length_by_difficulty", None)
    if length_figure:
        drawn = figure_length_by_difficulty(evals, model_info, analysis.get("colors"),
                                            length_figure)
        summary["length_by_difficulty_note"] = drawn["note"]
        figures.append(str(length_figure))
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
