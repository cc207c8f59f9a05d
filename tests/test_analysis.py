"""Distribution analysis on hand-built datasets whose every statistic is known in advance."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillab import io, schemas
from distillab.analysis import analyze, bin_index, bin_labels, entropy_bits, teacher_colors

PNGS = ("instances_tokens.png", "lengths_hist.png", "lengths_box.png")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# bin_tokens=64, n_bins=3 → bins ≤64 | 64–128 | 128–192 | >192
B, NB = 64, 3
LENGTHS = {
    # 64 and 128 sit exactly on edges and must go left; 193 is the first overflow value.
    "alpha": {"math": [10, 64, 65, 128], "code": [129, 193, 500]},
    "beta": {"math": [100, 100], "chat": [7]},
}


def _rows(teacher: str, by_cat: dict[str, list[int]]) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": "answer"},
            ],
            "query_id": f"{cat}-{i}",
            "teacher": teacher,
            "category": cat,
            "n_tokens": n,
        }
        for cat, lengths in by_cat.items()
        for i, n in enumerate(lengths)
    ]


def _write(tmp: Path, teacher: str, by_cat: dict[str, list[int]]) -> str:
    path = tmp / f"{teacher}.parquet"
    io.write_table(path, _rows(teacher, by_cat), schemas.SFT_ROW)
    return str(path)


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert len(data) > 10_000, f"{path.name} is suspiciously small ({len(data)} bytes)"


def _has_colour(png: Path, hex_colour: str) -> bool:
    """True when some pixel of the PNG has exactly this RGB (legend patches are opaque)."""
    img = mpimg.imread(png)[..., :3]
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    return bool(np.any(np.all(np.abs(img - rgb) < 1 / 255, axis=-1)))


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("analysis")
    datasets = {t: _write(tmp, t, cats) for t, cats in LENGTHS.items()}
    out = tmp / "out"
    return analyze(datasets, str(out), bin_tokens=B, n_bins=NB), out


# ---------------------------------------------------------------------------- binning


def test_bin_edges_go_left_and_overflow_is_open() -> None:
    n = np.array([0, 1, 64, 65, 128, 129, 192, 193, 10_000])
    assert bin_index(n, B, NB).tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3]


def test_bin_labels_name_the_edges_like_the_paper() -> None:
    assert bin_labels(64, 3) == ["≤64", "64–128", "128–192", ">192"]
    assert bin_labels(1024, 10)[0] == "≤1024"
    assert bin_labels(1024, 10)[-1] == ">10240"


def test_histogram_counts_include_edges_and_overflow(result: tuple[dict, Path]) -> None:
    stats, _ = result
    alpha = stats["per_teacher"]["alpha"]
    # 10, 64 | 65, 128 | 129 | 193, 500
    assert alpha["histogram"] == [2, 2, 1, 2]
    assert alpha["share_short"] == pytest.approx(2 / 7)
    assert alpha["share_long"] == pytest.approx(2 / 7)
    beta = stats["per_teacher"]["beta"]
    assert beta["histogram"] == [1, 2, 0, 0]
    assert beta["share_long"] == 0.0


# ---------------------------------------------------------------------------- stats


def test_totals_and_moments_per_teacher(result: tuple[dict, Path]) -> None:
    stats, _ = result
    assert stats["teachers"] == ["alpha", "beta"]
    assert stats["categories"] == ["math", "code", "chat"]  # schemas.CATEGORIES order
    assert (stats["bin_tokens"], stats["n_bins"]) == (B, NB)
    alpha_all = [n for ns in LENGTHS["alpha"].values() for n in ns]
    a = stats["per_teacher"]["alpha"]
    assert a["instances"] == 7
    assert a["tokens"] == sum(alpha_all) == 1089
    assert a["mean"] == pytest.approx(1089 / 7)
    assert a["median"] == 128
    assert a["std"] == pytest.approx(float(np.std(alpha_all)))  # population std
    assert (a["q1"], a["q3"]) == (pytest.approx(64.5), pytest.approx(161.0))


def test_per_category_stats_and_missing_categories(result: tuple[dict, Path]) -> None:
    stats, _ = result
    math_a = stats["per_teacher"]["alpha"]["per_category"]["math"]
    assert math_a == {
        "instances": 4,
        "tokens": 267,
        "mean": pytest.approx(66.75),
        "median": pytest.approx(64.5),
        "std": pytest.approx(float(np.std([10, 64, 65, 128]))),
    }
    assert stats["per_teacher"]["alpha"]["per_category"]["code"]["tokens"] == 822
    # beta has no code: listed with zero instances and null statistics
    code_b = stats["per_teacher"]["beta"]["per_category"]["code"]
    assert code_b == {"instances": 0, "tokens": 0, "mean": None, "median": None, "std": None}
    chat_b = stats["per_teacher"]["beta"]["per_category"]["chat"]
    assert chat_b["std"] == 0.0 and chat_b["mean"] == 7.0


def test_entropy_of_uniform_and_single_bin() -> None:
    assert entropy_bits([5, 5, 5, 5]) == pytest.approx(2.0)
    assert entropy_bits([0, 9, 0, 0]) == 0.0
    assert entropy_bits([0, 0, 0, 0]) is None


def test_entropy_from_analyze_matches_hand_value(result: tuple[dict, Path]) -> None:
    stats, _ = result
    p = np.array([2, 2, 1, 2]) / 7
    expected = float(-(p * np.log2(p)).sum())
    assert stats["per_teacher"]["alpha"]["entropy_bits"] == pytest.approx(expected)


def test_uniform_dataset_reaches_maximum_entropy(tmp_path: Path) -> None:
    path = _write(tmp_path, "u", {"math": [1, 100, 150, 999]})  # one per bin
    stats = analyze({"u": path}, str(tmp_path / "out"), bin_tokens=B, n_bins=NB)
    assert stats["per_teacher"]["u"]["entropy_bits"] == pytest.approx(math.log2(NB + 1))


# ---------------------------------------------------------------------------- outputs


def test_stats_json_is_the_returned_dict(result: tuple[dict, Path]) -> None:
    stats, out = result
    assert json.loads((out / "stats.json").read_text()) == stats


def test_figures_are_valid_pngs_and_no_temp_files_remain(result: tuple[dict, Path]) -> None:
    _, out = result
    for name in PNGS:
        _assert_png(out / name)
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_markdown_table_lists_teachers_categories_and_diversity(result: tuple[dict, Path]) -> None:
    _, out = result
    md = (out / "stats.md").read_text(encoding="utf-8")
    assert "| alpha | math | 4 | 267 |" in md
    assert "| beta | code | 0 | 0 | 0.0% | — | — | — |" in md
    assert "| **alpha** | **all** | **7** | **1,089** |" in md
    assert "## Length diversity" in md and "share ≤64" in md and "share >192" in md
    assert "| alpha | 2 | 2 | 1 | 2 |" in md  # the histogram table


def test_empty_dataset_gives_nulls_and_still_renders(tmp_path: Path) -> None:
    empty = _write(tmp_path, "empty", {})
    full = _write(tmp_path, "full", {"math": [5, 70]})
    stats = analyze({"empty": empty, "full": full}, str(tmp_path / "out"), bin_tokens=B, n_bins=NB)
    e = stats["per_teacher"]["empty"]
    assert e["instances"] == 0 and e["tokens"] == 0
    for key in ("mean", "median", "std", "q1", "q3", "entropy_bits", "share_short", "share_long"):
        assert e[key] is None, key
    assert e["histogram"] == [0] * (NB + 1)
    assert e["per_category"]["math"]["instances"] == 0
    for name in PNGS:
        _assert_png(tmp_path / "out" / name)


def test_only_empty_datasets_still_render(tmp_path: Path) -> None:
    empty = _write(tmp_path, "empty", {})
    stats = analyze({"empty": empty}, str(tmp_path / "out"))
    assert stats["categories"] == []
    assert stats["per_teacher"]["empty"]["per_category"] == {}
    for name in PNGS:
        _assert_png(tmp_path / "out" / name)
    assert "| empty | — | — | — |" in (tmp_path / "out" / "stats.md").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------- colours


def test_colours_depend_on_name_not_order() -> None:
    forward = teacher_colors(["alpha", "beta", "gamma"])
    backward = teacher_colors(["gamma", "beta", "alpha"])
    assert forward == backward
    assert len(set(forward.values())) == 3
    assert list(backward) == ["gamma", "beta", "alpha"]  # keeps the caller's order


def test_explicit_colours_override_without_shifting_others() -> None:
    base = teacher_colors(["alpha", "beta", "gamma"])
    over = teacher_colors(["alpha", "beta", "gamma"], {"beta": "#123456"})
    assert over["beta"] == "#123456"
    assert over["alpha"] == base["alpha"] and over["gamma"] == base["gamma"]


def test_every_figure_draws_each_teacher_in_its_colour(result: tuple[dict, Path]) -> None:
    stats, out = result
    assert stats["colors"] == teacher_colors(["alpha", "beta"])
    for name in PNGS:
        for teacher, colour in stats["colors"].items():
            assert _has_colour(out / name, colour), f"{teacher} colour missing in {name}"


# ---------------------------------------------------------------------------- errors


def test_bad_schema_and_null_lengths_are_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"category": ["math"], "n_tokens": [3]}), bad)
    with pytest.raises(io.SchemaError, match="fields missing"):
        analyze({"t": str(bad)}, str(tmp_path / "out"))
    nulls = tmp_path / "nulls.parquet"
    rows = _rows("t", {"math": [3]})
    rows[0]["n_tokens"] = None
    io.write_table(nulls, rows, schemas.SFT_ROW)
    with pytest.raises(ValueError, match="null n_tokens"):
        analyze({"t": str(nulls)}, str(tmp_path / "out"))


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no datasets"):
        analyze({}, str(tmp_path))
    path = _write(tmp_path, "t", {"math": [1]})
    with pytest.raises(ValueError, match="must be >= 1"):
        analyze({"t": path}, str(tmp_path / "out"), bin_tokens=0)


# ---------------------------------------------------------------------------- perplexity, funnel

# alpha: 1..9 scored plus one unscored row; beta: 2, 2, 2, 20 (20 is an outlier).
PPL = {"alpha": {"math": [1.0, 2.0, 3.0, 4.0, 5.0], "code": [6.0, 7.0, 8.0, 9.0, None]},
       "beta": {"math": [2.0, 2.0, 2.0, 20.0]}}


def _write_ppl(tmp: Path, teacher: str) -> str:
    rows = [{"query_id": f"{c}-{i}", "teacher": teacher, "category": c, "ppl": v,
             "mean_nll": None if v is None else math.log(v),
             "n_scored_tokens": 10, "reason": None if v is not None else "too_long"}
            for c, vs in PPL[teacher].items() for i, v in enumerate(vs)]
    path = tmp / f"{teacher}.ppl.parquet"
    io.write_table(path, rows, schemas.PERPLEXITY)
    return str(path)


def _accepted_stats(per_cat: dict[str, tuple[int, int]]) -> dict:
    return {"per_category": {c: {"queries": q, "accepted_queries": a}
                             for c, (q, a) in per_cat.items()}}


CURATION = {
    "alpha": (_accepted_stats({"math": (6, 5), "code": (5, 4), "if": (2, 0)}),
              {"perplexity": {"cut": 7.5},
               "per_category": {"math": {"accepted": 5, "structure": 1, "kept": 4},
                                "code": {"accepted": 4, "perplexity": 2,
                                         "high_frequency_ngram": 1, "kept": 1}}}),
    "beta": (_accepted_stats({"math": (6, 3), "chat": (1, 1)}),
             {"perplexity": {"cut": None},
              "per_category": {"math": {"accepted": 3, "kept": 3},
                               "chat": {"accepted": 1, "kept": 1}}}),
}


@pytest.fixture(scope="module")
def with_ppl(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("analysis_ppl")
    datasets = {t: _write(tmp, t, cats) for t, cats in LENGTHS.items()}
    scores = {t: _write_ppl(tmp, t) for t in LENGTHS}
    out = tmp / "out"
    return analyze(datasets, str(out), bin_tokens=B, n_bins=NB, perplexity=scores,
                   curation=CURATION), out


def test_perplexity_box_numbers_and_cut(with_ppl: tuple[dict, Path]) -> None:
    stats, _ = with_ppl
    a, b = stats["perplexity"]["alpha"], stats["perplexity"]["beta"]
    assert a["scored"] == 9 and a["unscored"] == 1
    assert (a["mean"], a["median"], a["q1"], a["q3"]) == (5.0, 5.0, 3.0, 7.0)
    assert (a["whisker_low"], a["whisker_high"], a["min"], a["max"]) == (1.0, 9.0, 1.0, 9.0)
    assert a["cut"] == 7.5 and a["above_cut"] == 2  # 8 and 9
    assert a["per_category"]["code"]["mean"] == 7.5 and a["per_category"]["code"]["scored"] == 4
    # 20 lies beyond Q3 + 1.5 IQR (6.5 + 1.5 * 4.5): no point inside lies above Q3, so
    # matplotlib's whisker ends at Q3 itself
    assert b["q1"] == 2.0 and b["q3"] == 6.5 and b["whisker_high"] == 6.5 and b["max"] == 20.0
    assert b["cut"] is None and b["above_cut"] == 0


def test_funnel_counts_every_step_per_category(with_ppl: tuple[dict, Path]) -> None:
    stats, _ = with_ppl
    f = stats["funnel"]["alpha"]
    assert f["math"] == {"queries": 6, "accepted": 5, "structure": 1, "high_frequency_ngram": 0,
                         "perplexity": 0, "curated": 4, "parallel": 4}
    assert f["code"] == {"queries": 5, "accepted": 4, "structure": 0, "high_frequency_ngram": 1,
                         "perplexity": 2, "curated": 1, "parallel": 3}
    assert f["if"]["queries"] == 2 and f["if"]["accepted"] == 0 and f["if"]["parallel"] == 0
    assert f["all"]["queries"] == 13 and f["all"]["parallel"] == 7
    assert stats["funnel"]["beta"]["chat"]["parallel"] == 1


def test_perplexity_figure_and_tables(with_ppl: tuple[dict, Path]) -> None:
    stats, out = with_ppl
    _assert_png(out / "perplexity.png")
    for teacher, colour in stats["colors"].items():
        assert _has_colour(out / "perplexity.png", colour), teacher
    md = (out / "stats.md").read_text(encoding="utf-8")
    assert "| alpha | 9 | 1 | 5.00 | 5.00 | 3.00 | 7.00 | 9.00 | 7.50 | 2 |" in md
    assert "| alpha | **all** | 13 | 9 | 1 | 1 | 2 | 5 | 7 |" in md
    assert json.loads((out / "stats.json").read_text()) == stats


def test_perplexity_figure_says_when_the_filter_is_off(result: tuple[dict, Path]) -> None:
    stats, out = result
    assert "perplexity" not in stats and "funnel" not in stats
    _assert_png(out / "perplexity.png")
