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
