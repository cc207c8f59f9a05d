"""Distribution analysis of the curated SFT datasets (PAPER.md §6, Figures 2–5).

The study's claim is that *which* teacher produced the correct answers matters, and the
first evidence is how differently the teachers' answers are distributed: how many
instances and tokens each contributes per category (Fig. 2), how response lengths spread
over fixed-width token bins (Fig. 3), and where the bulk and the mean of each length
distribution lie (Fig. 4). This stage turns one ``parallel/<teacher>.parquet`` per teacher
(schema :data:`distillab.schemas.SFT_ROW`) into ``stats.json``, ``stats.md`` and three
PNGs that a reader can compare at a glance; with the perplexity scores of the accepted
responses it adds Figure 5 (``perplexity.png``), and with the accepted and curated stats
the curation funnel (rows per category after each filter).

Conventions, chosen once so every number here can be checked by hand:

* **Binning.** Bins are right-closed: with width ``B`` and ``n_bins`` regular bins, bin
  ``k`` holds lengths ``k*B < n <= (k+1)*B``; bin 0 also holds 0. A length equal to an edge
  therefore goes to the bin on its *left*, which is what the paper's labels say ("≤1024"
  for the first bin, ">10240" for the overflow). Lengths ``> n_bins*B`` go to the overflow
  bin. Tick labels read "≤B", "B–2B", ..., ">N".
* **Spread.** ``std`` is the population standard deviation (ddof=0): it describes the
  dataset itself, not an estimate of a wider population, and is 0 (not undefined) for a
  single instance. ``median``, ``q1`` and ``q3`` use linear interpolation, the same
  quantiles matplotlib draws in the box plot, so the JSON and the figure agree.
* **Diversity.** ``entropy_bits`` is the Shannon entropy (base 2) of the binned length
  distribution including the overflow bin: 0 when every response falls in one bin,
  ``log2(n_bins + 1)`` when the bins are equally filled.
* **Empty datasets** give ``instances: 0`` and ``null`` statistics; the figures still
  render and say "no data", so one failed teacher does not hide the others.
* **Colours** are fixed per teacher name (palette index = position in the *sorted* names),
  so a teacher keeps its colour across figures and across runs with other teacher sets
  in a different order. :func:`teacher_colors` is public so later stages (report) reuse it.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas
directly, not through ``pyplot``: no global backend switch, no display needed, no figure
left open in a long-running Snakemake job.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow.parquet as pq
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cbook import boxplot_stats
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from distillab import schemas
from distillab.io import atomic_path, check_schema, write_json, write_text

__all__ = ["FUNNEL_STEPS", "analyze", "bin_index", "bin_labels", "entropy_bits", "funnel",
           "teacher_colors"]

DPI = 120

# Okabe–Ito, the colour-blind-safe palette, without its black (a black box would hide the
# median line). A ninth teacher switches every teacher to tab20.
_PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442")
_TAB20 = tuple(to_hex(c) for c in colormaps["tab20"].colors)

_CATEGORY_LABELS = {
    "math": "math",
    "code": "code",
    "science": "science",
    "if": "instruction following",
    "chat": "general chat",
}
_NO_DATA = "no data"


# ---------------------------------------------------------------------------- binning


def bin_index(n_tokens: np.ndarray, bin_tokens: int, n_bins: int) -> np.ndarray:
    """Bin of each length under the right-closed rule of the module docstring.

    ``k*B < n <= (k+1)*B`` → ``k``; ``n <= B`` (including 0) → 0; ``n > n_bins*B`` →
    ``n_bins`` (the overflow bin).
    """
    n = np.asarray(n_tokens, dtype=np.int64)
    return np.clip((n - 1) // bin_tokens, 0, n_bins)


def bin_labels(bin_tokens: int, n_bins: int) -> list[str]:
    """Tick labels for the ``n_bins + 1`` bins: "≤B", "B–2B", ..., ">n_bins*B"."""
    labels = [f"≤{bin_tokens}"]
    labels += [f"{k * bin_tokens}–{(k + 1) * bin_tokens}" for k in range(1, n_bins)]
    labels.append(f">{n_bins * bin_tokens}")
    return labels


def entropy_bits(counts: Sequence[int] | np.ndarray) -> float | None:
    """Shannon entropy in bits of a histogram; ``None`` when it holds no observation."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    if total <= 0:
        return None
    p = c[c > 0] / total
    # max(0, ·) removes the -0.0 a single-bin distribution gives.
    return max(0.0, float(-(p * np.log2(p)).sum()))


# ---------------------------------------------------------------------------- colours


def teacher_colors(teachers: Sequence[str], colors: dict[str, str] | None = None) -> dict[str, str]:
    """One colour per teacher: ``colors`` where given, else from the sorted-name palette.

    The palette index is the teacher's position among *all* sorted names (not just the
    ones lacking an explicit colour), so adding an override never shifts the others.
    """
    names = sorted(set(teachers))
    palette = _PALETTE if len(names) <= len(_PALETTE) else _TAB20
    given = colors or {}
    return {t: given.get(t, palette[names.index(t) % len(palette)]) for t in teachers}


# ---------------------------------------------------------------------------- stats


@dataclass(frozen=True)
class _Lengths:
    """Token counts and categories of one teacher's dataset, row-aligned."""

    n_tokens: np.ndarray  # int64
    category: np.ndarray  # object (str)


_NEEDED = ["category", "n_tokens"]


def _read_lengths(path: str | os.PathLike) -> _Lengths:
    """Read only the columns this stage needs, after checking the full SFT_ROW schema.

    Why not ``io.read_table``: it loads ``messages`` too, and the paper's datasets hold
    ~6B response tokens per teacher — tens of GB of text that this stage never looks at.
    The schema check is the same :func:`distillab.io.check_schema`, run on the file's
    schema, so a malformed artifact still fails here with the same message.
    """
    check_schema(pq.read_schema(path).empty_table(), schemas.SFT_ROW, where=str(path))
    table = pq.read_table(path, columns=_NEEDED)
    n = table.column("n_tokens")
    cat = table.column("category")
    if n.null_count or cat.null_count:
        raise ValueError(
            f"{path}: {n.null_count} null n_tokens and {cat.null_count} null category "
            "values; every SFT row must carry both"
        )
    lengths = np.asarray(n.to_numpy(zero_copy_only=False), dtype=np.int64)
    if lengths.size and lengths.min() < 0:
        raise ValueError(f"{path}: negative n_tokens ({int(lengths.min())})")
    return _Lengths(lengths, np.asarray(cat.to_pylist(), dtype=object))


def _summary(n: np.ndarray) -> dict[str, Any]:
    """instances, tokens, mean, median, std (ddof=0); nulls when ``n`` is empty."""
    if n.size == 0:
        return {"instances": 0, "tokens": 0, "mean": None, "median": None, "std": None}
    return {
        "instances": int(n.size),
        "tokens": int(n.sum(dtype=np.int64)),
        "mean": float(n.mean()),
        "median": float(np.median(n)),
        "std": float(n.std(ddof=0)),
    }


def _teacher_stats(
    data: _Lengths, categories: Sequence[str], bin_tokens: int, n_bins: int
) -> dict[str, Any]:
    n = data.n_tokens
    hist = np.bincount(bin_index(n, bin_tokens, n_bins), minlength=n_bins + 1)
    out = _summary(n)
    if n.size:
        q1, q3 = np.percentile(n, [25, 75])
        out |= {
            "q1": float(q1),
            "q3": float(q3),
            "share_short": float(hist[0] / n.size),
            "share_long": float(hist[-1] / n.size),
        }
    else:
        out |= {"q1": None, "q3": None, "share_short": None, "share_long": None}
    out["entropy_bits"] = entropy_bits(hist)
    out["histogram"] = [int(c) for c in hist]
    out["per_category"] = {c: _summary(n[data.category == c]) for c in categories}
    return out


def _ordered_categories(seen: set[str]) -> list[str]:
    """Categories present, in the schema's canonical order, unknown ones after, sorted."""
    known = [c for c in schemas.CATEGORIES if c in seen]
    return known + sorted(seen - set(schemas.CATEGORIES))


# ---------------------------------------------------------------------------- figures


def _scale(max_value: float) -> tuple[float, str]:
    """Divisor and suffix so axis numbers stay short: 1.2M rather than 1200000."""
    if max_value >= 1e9:
        return 1e9, "B"
    if max_value >= 1e6:
        return 1e6, "M"
    if max_value >= 1e4:
        return 1e3, "K"
    return 1.0, ""


def _fmt(value: float) -> str:
    """A mean label: whole tokens from 100 up, 3 significant digits below."""
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _bar_fmt(divisor: float, max_scaled: float) -> str:
    """One format for every bar label of a panel, so labels line up and compare."""
    if divisor == 1 or max_scaled >= 100:
        return "{:.0f}"
    return "{:.1f}" if max_scaled >= 10 else "{:.2f}"


def _no_data(ax: Any, text: str = _NO_DATA) -> None:
    """Say "no data" in the middle of an empty panel, with a y axis that shows nothing."""
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=12,
        color="0.45",
        style="italic",
    )


def _new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure with constrained layout (handles suptitle and outside legend)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _teacher_legend(
    fig: Figure, stats: dict[str, Any], colors: dict[str, str], with_entropy: bool = False
) -> None:
    """One legend below the panels, teachers in input order; empty ones say so.

    Below, not above: constrained layout does not stack an outside legend under a
    suptitle, so the two would overlap.
    """
    handles, labels = [], []
    for t in stats["teachers"]:
        s = stats["per_teacher"][t]
        if s["instances"] == 0:
            label = f"{t} (no data)"
        elif with_entropy:
            label = f"{t} (entropy {s['entropy_bits']:.2f} bits)"
        else:
            label = t
        handles.append(Patch(facecolor=colors[t], edgecolor="none"))
        labels.append(label)
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=min(len(handles), 4),
            frameon=False,
            fontsize=9,
        )


def _save(fig: Figure, path: Path) -> None:
    """Write the PNG atomically; the temp name ends in .tmp, so the format is explicit."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def _grouped_bars(
    ax: Any,
    teachers: Sequence[str],
    colors: dict[str, str],
    values: dict[str, Sequence[float]],
    n_groups: int,
    label_fmt: str | None,
) -> None:
    """Draw one bar per teacher inside each of ``n_groups`` groups at x = 0..n_groups-1."""
    width = 0.8 / max(1, len(teachers))
    x = np.arange(n_groups)
    for i, t in enumerate(teachers):
        offset = (i - (len(teachers) - 1) / 2) * width
        bars = ax.bar(
            x + offset,
            values[t],
            width,
            label=t,
            color=colors[t],
            edgecolor="white",
            linewidth=0.5,
        )
        if label_fmt is not None:
            ax.bar_label(
                bars, labels=[label_fmt.format(v) for v in values[t]], fontsize=7, padding=1
            )
    ax.set_xlim(-0.5, max(n_groups, 1) - 0.5)
    ax.margins(y=0.12)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)


def _figure_instances_tokens(stats: dict[str, Any], colors: dict[str, str], path: Path) -> None:
    """Figure 2: instances (left) and total response tokens (right) per category."""
    teachers, cats = stats["teachers"], stats["categories"]
    per = stats["per_teacher"]
    fig = _new_figure(min(18.0, max(9.0, 0.7 * len(cats) * max(len(teachers), 2) + 2)), 4.8)
    axes = fig.subplots(1, 2)
    panels = [
        ("instances", "instances", "Instances per category"),
        ("tokens", "response tokens", "Response tokens per category"),
    ]
    for ax, (key, unit, title) in zip(axes, panels):
        raw = {t: [per[t]["per_category"][c][key] for c in cats] for t in teachers}
        top = max((v for vs in raw.values() for v in vs), default=0)
        div, suffix = _scale(top)
        scaled = {t: [v / div for v in raw[t]] for t in teachers}
        crowded = len(cats) * len(teachers) > 24
        fmt = None if crowded else _bar_fmt(div, top / div)
        _grouped_bars(ax, teachers, colors, scaled, len(cats), fmt)
        # Two-word names on two lines: "instruction following" collides with its neighbours.
        ax.set_xticks(
            range(len(cats)), [_CATEGORY_LABELS.get(c, c).replace(" ", "\n") for c in cats]
        )
        ax.set_ylabel(f"{unit} ({suffix})" if suffix else unit)
        ax.set_title(title)
        if top == 0:
            _no_data(ax)
    fig.suptitle("Dataset composition by teacher", fontweight="bold")
    _teacher_legend(fig, stats, colors)
    _save(fig, path)


def _figure_histogram(stats: dict[str, Any], colors: dict[str, str], path: Path) -> None:
    """Figure 3: instances per response-length bin, one bar per teacher in each bin."""
    teachers = stats["teachers"]
    b, nb = stats["bin_tokens"], stats["n_bins"]
    hists = {t: stats["per_teacher"][t]["histogram"] for t in teachers}
    div, suffix = _scale(max((v for h in hists.values() for v in h), default=0))
    fig = _new_figure(max(9.0, 0.3 * (nb + 1) * max(len(teachers), 2) + 2), 5.2)
    ax = fig.subplots()
    scaled = {t: [v / div for v in hists[t]] for t in teachers}
    _grouped_bars(ax, teachers, colors, scaled, nb + 1, label_fmt=None)
    # The overflow bin is open-ended, so set it apart from the regular bins.
    ax.axvline(nb - 0.5, color="0.5", linestyle=":", linewidth=1)
    ax.set_xticks(range(nb + 1), bin_labels(b, nb), rotation=35, ha="right", rotation_mode="anchor")
    ax.set_xlabel(
        f"response tokens (bins of {b}; a length on an edge counts in the bin to its left)"
    )
    ax.set_ylabel(f"instances ({suffix})" if suffix else "instances")
    fig.suptitle("Response length distribution, all categories", fontweight="bold")
    _teacher_legend(fig, stats, colors, with_entropy=True)
    if not any(stats["per_teacher"][t]["instances"] for t in teachers):
        _no_data(ax)
    _save(fig, path)


def _figure_boxes(
    data: dict[str, _Lengths], stats: dict[str, Any], colors: dict[str, str], path: Path
) -> None:
    """Figure 4: box plots of response tokens per teacher, per category and overall.

    Whiskers reach the furthest point within 1.5×IQR of the box (seaborn's default, as in
    the paper); outliers are hidden so long tails do not squash the boxes. The mean is a
    white diamond labelled with its value, because the paper compares teachers by it.
    """
    teachers, cats = stats["teachers"], stats["categories"]
    panels = [*cats, "all"]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _new_figure(max(6.5, max(3.4, 1.0 * len(teachers) + 1.2) * ncols), 3.6 * nrows + 1.2)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, panel in zip(axes, panels):
        _box_panel(ax, data, teachers, colors, panel)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[: len(panels)]:
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("response tokens")
    sep = "\n" if ncols == 1 else " · "  # one panel is too narrow for the key on one line
    fig.suptitle(
        "Response tokens per teacher\n"
        f"box Q1–Q3 · line median · ◇ mean (labelled){sep}whiskers 1.5×IQR · outliers hidden"
    )
    _teacher_legend(fig, stats, colors)
    _save(fig, path)


def _boxes(ax: Any, stats_list: list[dict], positions: list[int], colors: list[str]) -> None:
    """Boxes as Figures 4 and 5 draw them: whiskers from ``stats_list`` (1.5×IQR), no
    outliers, the mean a white diamond, each box in its teacher's colour."""
    art = ax.bxp(
        stats_list,
        positions=positions,
        widths=0.6,
        showfliers=False,
        showmeans=True,
        patch_artist=True,
        meanprops={
            "marker": "D",
            "markerfacecolor": "white",
            "markeredgecolor": "black",
            "markersize": 5,
        },
        medianprops={"color": "black", "linewidth": 1.2},
    )
    for patch, c in zip(art["boxes"], colors):
        patch.set_facecolor(c)
        patch.set_alpha(0.75)


def _box_panel(
    ax: Any, data: dict[str, _Lengths], teachers: Sequence[str], colors: dict[str, str], panel: str
) -> None:
    """One box per teacher for ``panel`` (a category or "all"); gaps say "no data"."""
    stats_list: list[dict[str, Any]] = []
    positions: list[int] = []
    box_colors: list[str] = []
    empty: list[int] = []
    for pos, t in enumerate(teachers, start=1):
        d = data[t]
        n = d.n_tokens if panel == "all" else d.n_tokens[d.category == panel]
        if n.size == 0:
            empty.append(pos)
            continue
        stats_list.append(boxplot_stats(n, whis=1.5)[0])
        positions.append(pos)
        box_colors.append(colors[t])
    if stats_list:
        _boxes(ax, stats_list, positions, box_colors)
        for pos, s in zip(positions, stats_list):
            ax.annotate(
                _fmt(s["mean"]),
                (pos, s["mean"]),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7.5,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            )
        ax.set_ylim(bottom=0)
        for pos in empty:  # some teachers have data here, others not: mark the gap
            ax.text(
                pos,
                0.5,
                _NO_DATA,
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="center",
                fontsize=8,
                color="0.45",
                style="italic",
                rotation=90,
            )
    else:
        _no_data(ax)
    ax.set_xlim(0.4, len(teachers) + 0.6)
    # Long names (e.g. "Qwen3-235B-A22B") collide when horizontal; slant them instead.
    slant = max((len(t) for t in teachers), default=0) > 10
    ax.set_xticks(
        range(1, len(teachers) + 1),
        teachers,
        rotation=25 if slant else 0,
        ha="right" if slant else "center",
        rotation_mode="anchor",
    )
    ax.set_title("all categories" if panel == "all" else _CATEGORY_LABELS.get(panel, panel))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)


# ---------------------------------------------------------------------------- markdown


def _md_num(v: float | int | None, digits: int = 1) -> str:
    """Counts with thousands separators, statistics with ``digits`` decimals, null as —."""
    if v is None:
        return "—"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:,.{digits}f}"


def _md_pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _markdown(stats: dict[str, Any]) -> str:
    """The human-readable twin of stats.json, laid out like the paper's §6 tables."""
    teachers, cats = stats["teachers"], stats["categories"]
    b, nb = stats["bin_tokens"], stats["n_bins"]
    per = stats["per_teacher"]
    lines = [
        "# Distribution of the SFT datasets by teacher",
        "",
        "Token counts are of the final assistant turn under one shared tokenizer. "
        "`std` is the population standard deviation; `—` means no data.",
        "",
        "## Instances and tokens per teacher and category",
        "",
        "| teacher | category | instances | total tokens | share of tokens | mean | median | std |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in teachers:
        s = per[t]
        for c in cats:
            pc = s["per_category"][c]
            share = f"{100 * pc['tokens'] / s['tokens']:.1f}%" if s["tokens"] else "—"
            lines.append(
                f"| {t} | {c} | {_md_num(pc['instances'])} | {_md_num(pc['tokens'])} | {share} "
                f"| {_md_num(pc['mean'])} | {_md_num(pc['median'])} | {_md_num(pc['std'])} |"
            )
        lines.append(
            f"| **{t}** | **all** | **{_md_num(s['instances'])}** | **{_md_num(s['tokens'])}** "
            f"| {'100.0%' if s['tokens'] else '—'} | **{_md_num(s['mean'])}** "
            f"| **{_md_num(s['median'])}** | **{_md_num(s['std'])}** |"
        )
    max_h = math.log2(nb + 1)
    lines += [
        "",
        "## Length diversity",
        "",
        f"Bins are {b} tokens wide, right-closed (a length equal to an edge counts in the bin "
        f"to its left), {nb} bins plus an overflow bin >{nb * b}. Entropy is of the binned "
        f"distribution; its maximum, with every bin equally filled, is {max_h:.2f} bits.",
        "",
        f"| teacher | entropy (bits) | share ≤{b} | share >{nb * b} | Q1 | median | Q3 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in teachers:
        s = per[t]
        lines.append(
            f"| {t} | {_md_num(s['entropy_bits'], 3)} | {_md_pct(s['share_short'])} "
            f"| {_md_pct(s['share_long'])} | {_md_num(s['q1'])} | {_md_num(s['median'])} "
            f"| {_md_num(s['q3'])} |"
        )
    labels = bin_labels(b, nb)
    lines += [
        "",
        "## Instances per length bin",
        "",
        "| teacher | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for t in teachers:
        lines.append(f"| {t} | " + " | ".join(f"{c:,}" for c in per[t]["histogram"]) + " |")
    lines += _perplexity_markdown(stats) + _funnel_markdown(stats)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ perplexity (Fig. 5)


def _read_perplexity(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, int]:
    """Scored perplexities and their categories, plus the number of unscored rows."""
    check_schema(pq.read_schema(path).empty_table(), schemas.PERPLEXITY, where=str(path))
    table = pq.read_table(path, columns=["ppl", "category"])
    ppl = np.asarray(table.column("ppl").to_numpy(zero_copy_only=False), dtype=float)
    cat = np.asarray(table.column("category").to_pylist(), dtype=object)
    scored = ~np.isnan(ppl)
    return ppl[scored], cat[scored], int((~scored).sum())


def _ppl_summary(values: np.ndarray, cut: float | None) -> dict[str, Any]:
    """Box-plot numbers (the ones matplotlib draws) and how many lie above the cut."""
    if values.size == 0:
        return {"scored": 0, "mean": None, "median": None, "q1": None, "q3": None,
                "whisker_low": None, "whisker_high": None, "min": None, "max": None,
                "cut": cut, "above_cut": 0}
    box = boxplot_stats(values, whis=1.5)[0]
    return {
        "scored": int(values.size),
        "mean": float(values.mean()),
        "median": float(box["med"]),
        "q1": float(box["q1"]),
        "q3": float(box["q3"]),
        "whisker_low": float(box["whislo"]),
        "whisker_high": float(box["whishi"]),
        "min": float(values.min()),
        "max": float(values.max()),
        "cut": cut,
        "above_cut": int((values > cut).sum()) if cut is not None else 0,
    }


def _perplexity_stats(
    scores: dict[str, str], cuts: dict[str, float | None], categories: Sequence[str]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    per: dict[str, Any] = {}
    values: dict[str, np.ndarray] = {}
    for t, path in scores.items():
        ppl, cat, unscored = _read_perplexity(path)
        values[t] = ppl
        per[t] = _ppl_summary(ppl, cuts.get(t)) | {
            "unscored": unscored,
            "per_category": {c: _ppl_summary(ppl[cat == c], cuts.get(t)) for c in categories},
        }
    return per, values


def _figure_perplexity(
    values: dict[str, np.ndarray], stats: dict[str, Any], colors: dict[str, str], path: Path
) -> None:
    """Figure 5: perplexity of the accepted responses per teacher, with each teacher's cut.

    Same conventions as Figure 4 (whiskers 1.5×IQR, outliers hidden, labelled mean), so
    the paper's read-offs (AM mean 2.5, Qwen3 3.0, R1 2.9) compare directly. The cut is a
    dashed red bar over the teacher's box: what lies above it was dropped by ``curate``.
    """
    teachers = stats["teachers"]
    per = stats.get("perplexity") or {}
    fig = _new_figure(max(6.5, 1.4 * len(teachers) + 2.5), 5.0)
    ax = fig.subplots()
    shown = {t: values[t] for t in teachers if t in values and values[t].size}
    if not per:
        _no_data(ax, "perplexity filter off (curation.perplexity: null)")
    elif not shown:
        _no_data(ax)
    else:
        positions = [teachers.index(t) + 1 for t in shown]
        _boxes(ax, [boxplot_stats(v, whis=1.5)[0] for v in shown.values()], positions,
               [colors[t] for t in shown])
        for pos, t in zip(positions, shown):
            s = per[t]
            ax.annotate(f"{s['mean']:.2f}", (pos, s["mean"]), xytext=(0, 6),
                        textcoords="offset points", ha="center", va="bottom", fontsize=8,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                              "alpha": 0.8})
            if s["cut"] is not None:
                ax.hlines(s["cut"], pos - 0.38, pos + 0.38, colors="#d62728", linestyles="--",
                          linewidth=1.5)
                ax.annotate(f"cut {s['cut']:.2f}: {s['above_cut']:,} dropped", (pos + 0.38, s["cut"]),
                            xytext=(2, 0), textcoords="offset points", fontsize=7,
                            color="#d62728", va="center")
        ax.set_ylim(bottom=max(0.0, min(per[t]["whisker_low"] for t in shown) - 0.2))
    ax.set_xlim(0.4, len(teachers) + 0.6)
    slant = max((len(t) for t in teachers), default=0) > 10
    ax.set_xticks(range(1, len(teachers) + 1), teachers, rotation=25 if slant else 0,
                  ha="right" if slant else "center", rotation_mode="anchor")
    ax.set_ylabel("perplexity (assistant tokens, reference model)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle("Perplexity of accepted responses per teacher\n"
                 "box Q1–Q3 · line median · ◇ mean · whiskers 1.5×IQR · red: the teacher's cut")
    # the teachers' own legend would say "no data" for an empty SFT set; here what counts
    # is whether the teacher has scored responses
    fig.legend([Patch(facecolor=colors[t], edgecolor="none") for t in teachers],
               [t if t in shown else f"{t} (no scores)" for t in teachers],
               loc="outside lower center", ncols=min(len(teachers), 4), frameon=False,
               fontsize=9)
    _save(fig, path)


# ---------------------------------------------------------------------------- funnel

# The steps a query passes on its way into the SFT set, in order, with their labels.
FUNNEL_STEPS = (
    ("queries", "queries"),
    ("accepted", "accepted (verified)"),
    ("structure", "− structure"),
    ("high_frequency_ngram", "− high-freq. n-gram"),
    ("perplexity", "− perplexity"),
    ("curated", "curated"),
    ("parallel", "SFT rows (parallel policy)"),
)


def funnel(accepted_stats: dict[str, Any], curated_stats: dict[str, Any],
           sft_categories: np.ndarray, categories: Sequence[str]) -> dict[str, dict[str, int]]:
    """Rows per category at each curation step for one teacher, plus an ``all`` row.

    ``accepted_stats`` is ``accepted/<t>.stats.json``, ``curated_stats`` is
    ``curated/<t>.stats.json``, ``sft_categories`` the category column of the SFT set."""
    out: dict[str, dict[str, int]] = {}
    cats = list(dict.fromkeys([*categories, *accepted_stats["per_category"],
                               *curated_stats["per_category"]]))
    for c in cats:
        a = accepted_stats["per_category"].get(c, {})
        k = curated_stats["per_category"].get(c, {})
        out[c] = {
            "queries": int(a.get("queries", 0)),
            "accepted": int(a.get("accepted_queries", 0)),
            "structure": int(k.get("structure", 0)),
            "high_frequency_ngram": int(k.get("high_frequency_ngram", 0)),
            "perplexity": int(k.get("perplexity", 0)),
            "curated": int(k.get("kept", 0)),
            "parallel": int((sft_categories == c).sum()),
        }
    out["all"] = {key: sum(v[key] for v in out.values()) for key, _ in FUNNEL_STEPS}
    return out


def _funnel_markdown(stats: dict[str, Any]) -> list[str]:
    if not stats.get("funnel"):
        return []
    lines = ["", "## Curation funnel (rows per step, per category)", "",
             "Each filter is applied to what the previous one kept: structure, then "
             "high-frequency n-grams, then perplexity; the parallel policy last.", "",
             "| teacher | category | " + " | ".join(lbl for _, lbl in FUNNEL_STEPS) + " |",
             "|---|---|" + "---:|" * len(FUNNEL_STEPS)]
    for t, per_cat in stats["funnel"].items():
        for c, row in per_cat.items():
            bold = "**" if c == "all" else ""
            lines.append(f"| {t} | {bold}{c}{bold} | "
                         + " | ".join(f"{row[k]:,}" for k, _ in FUNNEL_STEPS) + " |")
    return lines


def _perplexity_markdown(stats: dict[str, Any]) -> list[str]:
    per = stats.get("perplexity")
    if not per:
        return []
    lines = ["", "## Perplexity of accepted responses (Figure 5)", "",
             "| teacher | scored | unscored | mean | median | Q1 | Q3 | upper whisker | cut "
             "| above cut |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t, s in per.items():
        lines.append(f"| {t} | {s['scored']:,} | {s['unscored']:,} | {_md_num(s['mean'], 2)} "
                     f"| {_md_num(s['median'], 2)} | {_md_num(s['q1'], 2)} "
                     f"| {_md_num(s['q3'], 2)} | {_md_num(s['whisker_high'], 2)} "
                     f"| {_md_num(s['cut'], 2)} | {s['above_cut']:,} |")
    return lines


# ---------------------------------------------------------------------------- entry


def analyze(
    datasets: dict[str, str],
    out_dir: str,
    bin_tokens: int = 1024,
    n_bins: int = 10,
    colors: dict[str, str] | None = None,
    perplexity: dict[str, str] | None = None,
    curation: dict[str, tuple[dict, dict]] | None = None,
) -> dict:
    """Compute per-teacher length statistics and write the stats and Figures 2–4.

    ``datasets`` maps teacher name → SFT parquet (:data:`schemas.SFT_ROW`); the mapping's
    order is the order of teachers in tables, legends and bar groups, and the key (not the
    file's ``teacher`` column) is the label. Writes ``stats.json`` (the returned dict),
    ``stats.md``, ``instances_tokens.png``, ``lengths_hist.png`` and ``lengths_box.png``
    into ``out_dir``, each atomically.

    Returned dict: ``teachers``, ``categories`` (present in any dataset, canonical order),
    ``bin_tokens``, ``n_bins``, ``colors`` (teacher → hex, as drawn), and ``per_teacher``:
    teacher → ``instances``, ``tokens``, ``mean``, ``median``, ``std``, ``q1``, ``q3``,
    ``entropy_bits``, ``share_short`` (first bin), ``share_long`` (overflow bin),
    ``histogram`` (``n_bins + 1`` counts) and ``per_category``: category → ``instances``,
    ``tokens``, ``mean``, ``median``, ``std`` (every category listed for every teacher,
    zero/null where the teacher has none).

    ``perplexity`` (teacher → :data:`schemas.PERPLEXITY` parquet) adds ``perplexity``:
    teacher → box-plot numbers, mean, cut and rows above it, overall and per category,
    and draws Figure 5 (``perplexity.png``, which says "filter off" without it).
    ``curation`` (teacher → (accepted stats, curated stats) JSON dicts) adds ``funnel``:
    teacher → category → rows at each of :data:`FUNNEL_STEPS`. The cut shown per teacher
    is the one ``curate`` applied (its stats), never recomputed here.
    """
    if not datasets:
        raise ValueError("analyze: no datasets given")
    if bin_tokens < 1 or n_bins < 1:
        raise ValueError(f"analyze: bin_tokens ({bin_tokens}) and n_bins ({n_bins}) must be >= 1")
    teachers = list(datasets)
    data = {t: _read_lengths(p) for t, p in datasets.items()}
    categories = _ordered_categories({str(c) for d in data.values() for c in d.category})
    palette = teacher_colors(teachers, colors)
    stats: dict[str, Any] = {
        "teachers": teachers,
        "categories": categories,
        "bin_tokens": int(bin_tokens),
        "n_bins": int(n_bins),
        "colors": palette,
        "per_teacher": {
            t: _teacher_stats(data[t], categories, bin_tokens, n_bins) for t in teachers
        },
    }
    ppl_values: dict[str, np.ndarray] = {}
    if perplexity:
        cuts = {t: ((curation or {}).get(t, ({}, {}))[1].get("perplexity") or {}).get("cut")
                for t in perplexity}
        stats["perplexity"], ppl_values = _perplexity_stats(perplexity, cuts, categories)
    if curation:
        stats["funnel"] = {t: funnel(*curation[t], data[t].category, categories)
                           for t in teachers if t in curation}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _figure_perplexity(ppl_values, stats, palette, out / "perplexity.png")
    _figure_instances_tokens(stats, palette, out / "instances_tokens.png")
    _figure_histogram(stats, palette, out / "lengths_hist.png")
    _figure_boxes(data, stats, palette, out / "lengths_box.png")
    write_text(out / "stats.md", _markdown(stats))
    write_json(out / "stats.json", stats)  # last: its presence means the stage finished
    return stats


def analysis_from_snakemake(smk: Any, prov: Any) -> None:
    """Snakemake adapter: one analysis over every teacher's parallel SFT dataset."""
    from distillab.io import read_json

    teachers = list(smk.params.teachers)
    datasets = dict(zip(teachers, smk.input.datasets))
    curation = {t: (read_json(a), read_json(c)) for t, a, c in
                zip(teachers, smk.input.accepted_stats, smk.input.curated_stats)}
    perplexity = dict(zip(teachers, smk.input.perplexity)) if smk.input.perplexity else None
    stats = analyze(datasets, str(Path(smk.output.stats).parent),
                    bin_tokens=smk.params.bin_tokens, n_bins=smk.params.n_bins,
                    perplexity=perplexity, curation=curation)
    prov.add(rows_in=sum(t["instances"] for t in stats["per_teacher"].values()))
