"""distillab.report: Table 1 / Table 2 from hand-made eval results."""

from __future__ import annotations

import json

import pytest

from distillab.report import build_summary, render_markdown


def ev(bench: str, model: str, p: float, se: float, tokens: float | None, k: int = 4,
       n: int = 10) -> dict:
    return {"benchmark": bench, "model": model, "pass_at_1": p, "pass_at_1_stderr": se,
            "n_problems": n, "k": k, "mean_response_tokens": tokens}


MODEL_INFO = {
    "s2__tA": {"kind": "student", "student": "s2", "teacher": "tA", "base_model": "b",
               "prompt_style": "chat", "demonstrations": 0},
    "s1__tA": {"kind": "student", "student": "s1", "teacher": "tA", "base_model": "b",
               "prompt_style": "chat", "demonstrations": 0},
    "tA": {"kind": "teacher", "student": None, "teacher": "tA", "base_model": "tb",
           "prompt_style": "fewshot", "demonstrations": 2},
}

VERIFICATION = {"tA": {"math": {"queries": 4, "responses": 6, "passed_responses": 3,
                                "accepted_queries": 3, "verifiers": {"math": 6},
                                "accepted_by_round": {"1": 2, "2": 1},
                                "response_pass_rate": 0.5, "query_accept_rate": 0.75},
                       "code": {"queries": 1, "responses": 0, "passed_responses": 0,
                                "accepted_queries": 0, "verifiers": {},
                                "accepted_by_round": {}, "response_pass_rate": None,
                                "query_accept_rate": None}}}
CURATION = {"tA": {"accepted": 3, "curated": 2, "sft_rows": 2, "curate_rejected": 1,
                   "parallel_rejected": 0}}


@pytest.fixture
def summary() -> dict:
    evals = [
        ev("math", "tA", 0.9, 0.05, 120.0, k=4),
        ev("math", "s1__tA", 0.5, 0.1, 200.0, k=4),
        ev("math", "s2__tA", 0.25, 0.125, 150.5, k=4),
        ev("science", "s1__tA", 1 / 3, 0.02, None, k=2),  # s2 has no science result
        ev("science", "tA", 0.0, 0.0, 80.0, k=2),
    ]
    return build_summary("demo", evals, MODEL_INFO, VERIFICATION, CURATION,
                         {"per_teacher": {"tA": {"instances": 2, "tokens": 30, "mean": 15.0,
                                                 "median": 15.0, "std": 5.0,
                                                 "entropy_bits": 1.0}}})


def test_retry_rounds_table():
    rounds = {"tA": [{"round": 1, "queries_asked": 4, "responses": 8, "tokens_generated": 900,
                      "accepted": 2, "accepted_cumulative": 2, "accepted_share_cumulative": 0.5},
                     {"round": 2, "queries_asked": 2, "responses": 4, "tokens_generated": 500,
                      "accepted": 1, "accepted_cumulative": 3,
                      "accepted_share_cumulative": 0.75}]}
    s = build_summary("demo", [], {}, VERIFICATION, CURATION, {}, rounds)
    assert s["rounds"] == rounds
    assert table(render_markdown(s, []), "Retry rounds") == [
        ["teacher", "round", "queries asked", "responses", "tokens generated",
         "accepted in round", "accepted so far"],
        ["tA", "1", "4", "8", "900", "2", "2 (50%)"],
        ["tA", "2", "2", "4", "500", "1", "3 (75%)"]]


def table(md: str, heading: str) -> list[list[str]]:
    """The rows of the markdown table under ``heading`` as lists of cells."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## " + heading))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_build_summary_structure(summary):
    assert summary["study"] == "demo"
    assert summary["benchmarks"] == ["math", "science"]
    # students first (by teacher, then name), teachers last
    assert list(summary["models"]) == ["s1__tA", "s2__tA", "tA"]
    acc = summary["table1_accuracy"]
    assert acc["math"]["s1__tA"] == {"pass_at_1": 0.5, "stderr": 0.1, "n_problems": 10, "k": 4}
    assert "s2__tA" not in acc["science"]
    assert summary["table2_mean_response_tokens"]["math"] == {"tA": 120.0, "s1__tA": 200.0,
                                                              "s2__tA": 150.5}
    assert summary["table2_mean_response_tokens"]["science"]["s1__tA"] is None
    assert summary["verification"] == VERIFICATION and summary["curation"] == CURATION
    json.dumps(summary)


def test_render_table1(summary):
    md = render_markdown(summary, [])
    rows = table(md, "Table 1")
    assert rows[0] == ["benchmark", "s1 ← tA", "s2 ← tA", "tA (teacher)"]
    assert rows[1] == ["math (k=4)", "50.0 ± 10.0", "25.0 ± 12.5", "90.0 ± 5.0"]
    assert rows[2] == ["science (k=2)", "33.3 ± 2.0", "–", "0.0 ± 0.0"]
    assert len(rows) == 3


def test_render_table2(summary):
    md = render_markdown(summary, [])
    rows = table(md, "Table 2")
    assert rows[0] == ["benchmark", "s1 ← tA", "s2 ← tA", "tA (teacher)"]
    assert rows[1] == ["math", "200.0", "150.5", "120.0"]
    assert rows[2] == ["science", "–", "–", "80.0"]


def test_render_verification_curation_and_analysis(summary):
    md = render_markdown(summary, [])
    ver = table(md, "Verification")
    assert ["tA", "math", "4", "6", "3", "3", "75%", "math: 6"] in ver
    assert ["tA", "code", "1", "0", "0", "0", "–", ""] in ver
    cur = table(md, "Curation")
    assert cur[1] == ["tA", "3", "2", "2", "1", "0"]
    dist = table(md, "Training data distribution")
    assert dist[1] == ["tA", "2", "30", "15.0", "15.0", "5.0", "1.0"]


def test_render_figures_and_header(summary, tmp_path):
    fig = tmp_path / "report" / "lengths_hist.png"
    md = render_markdown(summary, [str(fig)])
    assert md.startswith("# distillab study `demo`")
    assert "![lengths_hist](lengths_hist.png)" in md
    assert "## Figures" not in render_markdown(summary, [])
    assert "student ← teacher" in md


def test_same_student_two_teachers_get_distinct_labels():
    info = {"s__a": {"kind": "student", "student": "s", "teacher": "a"},
            "s__b": {"kind": "student", "student": "s", "teacher": "b"}}
    summary = build_summary("x", [ev("m", "s__b", 0.1, 0.0, 1.0), ev("m", "s__a", 0.2, 0.0, 2.0)],
                            info, {}, {}, {})
    rows = table(render_markdown(summary, []), "Table 1")
    assert rows[0] == ["benchmark", "s ← a", "s ← b"]
    assert rows[1] == ["m (k=4)", "20.0 ± 0.0", "10.0 ± 0.0"]


def test_render_funnel_perplexity_and_ngrams(summary):
    summary["analysis"]["funnel"] = {"tA": {
        "math": {"queries": 4, "accepted": 3, "structure": 1, "high_frequency_ngram": 0,
                 "perplexity": 1, "curated": 1, "parallel": 1},
        "all": {"queries": 5, "accepted": 3, "structure": 1, "high_frequency_ngram": 0,
                "perplexity": 1, "curated": 1, "parallel": 1}}}
    summary["analysis"]["perplexity"] = {"tA": {
        "scored": 3, "mean": 2.5, "median": 2.0, "q1": 1.5, "q3": 3.25, "whisker_high": 4.0,
        "cut": 3.9, "above_cut": 1}}
    summary["ngrams"] = {"tA": {"spec": {"n": 20, "max_count": 20},
                                "stats": {"frequent_ngrams": 7, "flagged_rows": 2},
                                "top": [{"count": 31, "text": "a | span\nwith `ticks`"}]}}
    md = render_markdown(summary, [])
    funnel = table(md, "Curation funnel")
    assert funnel[0][:3] == ["teacher", "category", "queries"] and len(funnel[0]) == 9
    assert funnel[1] == ["tA", "math", "4", "3", "1", "0", "1", "1", "1"]
    assert funnel[2][1] == "**all**"
    assert table(md, "Perplexity")[1] == ["tA", "3", "2.50", "2.00", "1.50", "3.25", "4.00",
                                          "3.90", "1"]
    assert table(md, "Most frequent n-grams")[1] == ["tA", "20", "20", "7", "2",
                                                     "`a / span with 'ticks'` (31)"]


# --- the paper's numbers beside the study's (evaluation.reference: paper) --------------------

PAPER_INFO = {
    "sft__am": {"kind": "student", "student": "sft", "teacher": "am"},
    "sft__r1": {"kind": "student", "student": "sft", "teacher": "r1"},
}
TEACHER_REPOS = {"am": "a-m-team/AM-Thinking-v1", "r1": "deepseek-ai/DeepSeek-R1"}


def paper_evals() -> list[dict]:
    out = []
    for bench, kind in (("aime2024", "aime2024"), ("math500", "math500"), ("smoke", "jsonl")):
        for model, p, tokens in (("sft__am", 0.8, 15000.0), ("sft__r1", 0.7, 12000.0)):
            out.append({**ev(bench, model, p, 0.01, tokens, k=64 if kind == "aime2024" else 4),
                        "kind": kind})
    return out


def test_paper_reference_columns_in_tables_1_and_2():
    s = build_summary("paper", paper_evals(), PAPER_INFO, {}, {}, {}, reference="paper",
                      teacher_repos=TEACHER_REPOS)
    assert s["benchmark_kinds"] == {"aime2024": "aime2024", "math500": "math500",
                                    "smoke": "jsonl"}
    ref = s["reference"]
    # the paper's teachers the study uses first (matched by the weights' hub id)
    assert [c["label"] for c in ref["columns"]] == [
        "paper: AM-Thinking-v1-distilled", "paper: DeepSeek-R1-distilled",
        "paper: Qwen3-235B-A22B-distilled"]
    assert [c["study_teacher"] for c in ref["columns"]] == ["am", "r1", None]
    md = render_markdown(s, [])
    assert "Columns labelled *paper* are the paper's numbers, not measured here" in md
    t1 = table(md, "Table 1")
    assert t1[0] == ["benchmark", "sft ← am", "sft ← r1", "paper: AM-Thinking-v1-distilled",
                     "paper: DeepSeek-R1-distilled", "paper: Qwen3-235B-A22B-distilled",
                     "paper: AM-Thinking-v1 (teacher)", "paper: DeepSeek-R1 (teacher)",
                     "paper: Qwen3-235B-A22B (teacher)"]
    assert t1[1] == ["aime2024 (k=64)", "80.0 ± 1.0", "70.0 ± 1.0", "84.3", "70.9", "79.4",
                     "85.3", "79.8", "85.7"]
    assert t1[2] == ["math500 (k=4)", "80.0 ± 1.0", "70.0 ± 1.0", "98.4", "95.8", "93.9",
                     "–", "–", "–"]  # the paper quotes no MATH500 score for the teachers
    assert t1[3][3:] == ["–"] * 6  # a benchmark the paper has not
    t2 = table(md, "Table 2")
    assert t2[0][3:] == ["paper: AM-Thinking-v1-distilled", "paper: DeepSeek-R1-distilled",
                         "paper: Qwen3-235B-A22B-distilled"]
    assert t2[1] == ["aime2024", "15000.0", "12000.0", "15273.8", "11853.5", "13516.4"]
    assert t2[2] == ["math500", "15000.0", "12000.0", "3495.7", "3613.0", "6429.4"]
    json.dumps(s)


def test_no_reference_no_paper_columns(summary):
    assert summary["reference"] is None
    assert "paper" not in render_markdown(summary, [])
    with pytest.raises(ValueError, match="unknown reference"):
        build_summary("x", [], {}, {}, {}, {}, reference="qwen3-report")


def test_paper_columns_without_matching_teachers_keep_the_paper_order():
    s = build_summary("x", [{**ev("aime", "tA", 0.5, 0.0, 1.0), "kind": "aime2025"}],
                      MODEL_INFO, {}, {}, {}, reference="paper")
    assert list(s["reference"]["table1_accuracy"]["aime"].values()) == [72.2, 62.2, 52.8]
    # results from before kinds existed: matched by the benchmark's name
    old = build_summary("x", [ev("livecodebench", "tA", 0.5, 0.0, 1.0)], MODEL_INFO, {}, {},
                        {}, reference="paper")
    assert old["reference"]["table2_mean_response_tokens"]["livecodebench"][
        "paper: DeepSeek-R1-distilled"] == 30731.0


# --- length by difficulty -------------------------------------------------------------------

def level_evals() -> list[dict]:
    def levels(base: float, slope: float) -> dict:
        return {str(g): {"n_problems": 10, "accuracy": 1 - g / 10,
                         "mean_tokens": base + slope * g} for g in range(1, 6)}

    return [
        {**ev("math500", "s1__tA", 0.9, 0.01, 3000.0), "kind": "math500",
         "groups": {"level": levels(1000, 800), "subject": {}}},
        {**ev("math500", "tA", 0.95, 0.01, 2500.0), "kind": "math500",
         "groups": {"level": levels(1500, 300)}},
        {**ev("aime2024", "s1__tA", 0.5, 0.05, 15000.0), "kind": "aime2024",
         "groups": {"contest": {"AIME I": {"n_problems": 15, "accuracy": 0.5,
                                           "mean_tokens": 15000.0}}}},
    ]


def test_length_by_difficulty_figure_with_levels(tmp_path):
    from distillab.report import figure_length_by_difficulty

    path = tmp_path / "length_by_difficulty.png"
    drawn = figure_length_by_difficulty(level_evals(), MODEL_INFO, {"tA": "#123456"}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert drawn["note"] is None
    assert drawn["levels"]["math500"]["s1__tA"] == [(g, 1000 + 800 * g) for g in range(1, 6)]
    assert drawn["bars"] == {"aime2024": {"s1__tA": 15000.0},
                             "math500": {"s1__tA": 3000.0, "tA": 2500.0}}
    # a student has its teacher's colour (the analysis palette)
    assert drawn["colors"] == {"s1__tA": "#123456", "tA": "#123456"}


def test_length_by_difficulty_figure_without_levels(tmp_path, summary):
    from distillab.report import figure_length_by_difficulty

    evals = [ev("math", "s1__tA", 0.5, 0.1, 200.0), ev("science", "tA", 0.0, 0.0, 80.0),
             ev("science", "s2__tA", 0.1, 0.0, None)]
    path = tmp_path / "f.png"
    drawn = figure_length_by_difficulty(evals, MODEL_INFO, None, path)
    assert path.stat().st_size > 5_000
    assert drawn["levels"] == {} and "per-benchmark means only" in drawn["note"]
    assert drawn["bars"]["science"] == {"tA": 80.0, "s2__tA": None}


def test_length_by_level_table():
    s = build_summary("x", level_evals(), MODEL_INFO, {}, {}, {})
    assert set(s["length_by_level"]) == {"math500"}
    rows = table(render_markdown(s, []), "Response length by difficulty level: math500")
    assert rows[0] == ["model", "level 1", "level 2", "level 3", "level 4", "level 5"]
    assert rows[1] == ["s1 ← tA", "1800.0 (90.0)", "2600.0 (80.0)", "3400.0 (70.0)",
                       "4200.0 (60.0)", "5000.0 (50.0)"]
    assert rows[2][0] == "tA (teacher)"
