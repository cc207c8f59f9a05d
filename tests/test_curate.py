"""accepted → curated → parallel (distillab.curate)."""

from __future__ import annotations

import json
import random

import pytest

from distillab import prompts, schemas
from distillab.curate import (CurationInputs, StructureSpec, curate, select_accepted, sft_rows,
                              structure_problem, turn_problem, verification_stats)
from distillab.io import table_from_rows


def vrow(qid: str, round_: int, sample: int, passed: bool, teacher: str = "t", *,
         think: str = "reasoning here", answer: str = "\\boxed{1}", finish: str = "stop",
         text: str | None = None, verifier: str = "math", category: str = "math") -> dict:
    """A VERIFIED row."""
    if text is None:
        text = f"<think>\n{think}\n</think>\n<answer>\n{answer}\n</answer>"
    return {"query_id": qid, "teacher": teacher, "round": round_, "sample": sample,
            "text": text, "think": think, "answer": answer, "n_tokens": 10,
            "finish_reason": finish, "gen_params_hash": "h", "verifier": verifier,
            "score": 1.0 if passed else 0.0, "passed": passed, "details": "{}",
            "verifier_version": "v1", "elapsed_s": 0.01, "category": category}


def query(qid: str, category: str = "math", content: str = "What is 1?") -> dict:
    return {"query_id": qid, "source": "demo", "category": category,
            "messages": [{"role": "user", "content": content}],
            "reference": json.dumps({"answer": "1"}), "tests": None, "constraints": None,
            "meta": "{}"}


# --- select_accepted -----------------------------------------------------------------------

def test_select_accepted_earliest_round_then_lowest_sample():
    rows = [
        vrow("q1", 1, 0, False), vrow("q1", 1, 2, True), vrow("q1", 1, 1, True),
        vrow("q1", 2, 0, True),
        vrow("q2", 2, 1, True), vrow("q2", 3, 0, True), vrow("q2", 1, 0, False),
        vrow("q3", 1, 0, False), vrow("q3", 2, 0, False),
    ]
    for seed in range(5):  # input order must not matter
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        got = select_accepted(shuffled)
        assert [(r["query_id"], r["round"], r["sample"]) for r in got] == [
            ("q1", 1, 1), ("q2", 2, 1)]
        assert all(r["passed"] for r in got)


def test_select_accepted_round_beats_sample():
    got = select_accepted([vrow("q", 2, 0, True), vrow("q", 1, 5, True)])
    assert (got[0]["round"], got[0]["sample"]) == (1, 5)


def test_select_accepted_none_passed():
    assert select_accepted([vrow("q", 1, 0, False)]) == []
    assert select_accepted([]) == []


def test_select_accepted_output_is_schema_valid():
    got = select_accepted([vrow("b", 1, 0, True), vrow("a", 1, 0, True)])
    assert [r["query_id"] for r in got] == ["a", "b"]
    table_from_rows(got, schemas.VERIFIED)


# --- verification_stats ----------------------------------------------------------------------

def test_verification_stats_counts_and_rates():
    queries = [query("m1"), query("m2"), query("m3"), query("s1", "science"),
               query("c1", "code")]
    verified = [
        vrow("m1", 1, 0, False), vrow("m1", 1, 1, True), vrow("m1", 2, 0, True),
        vrow("m2", 1, 0, False), vrow("m2", 2, 0, True),
        vrow("m3", 1, 0, False),
        vrow("s1", 1, 0, True, verifier="science_choice"),
        vrow("s1", 1, 1, False, verifier="science_choice"),
        vrow("c1", 1, 0, False, verifier="unverified"),
    ]
    stats = verification_stats(queries, verified)
    assert list(stats) == ["code", "math", "science"]
    m = stats["math"]
    assert (m["queries"], m["responses"], m["passed_responses"], m["accepted_queries"]) == (3, 6, 3, 2)
    assert m["response_pass_rate"] == pytest.approx(0.5)
    assert m["query_accept_rate"] == pytest.approx(2 / 3)
    assert m["verifiers"] == {"math": 6}
    assert m["accepted_by_round"] == {"1": 1, "2": 1}
    s = stats["science"]
    assert (s["queries"], s["responses"], s["passed_responses"], s["accepted_queries"]) == (1, 2, 1, 1)
    assert s["query_accept_rate"] == 1.0 and s["response_pass_rate"] == 0.5
    assert s["verifiers"] == {"science_choice": 2}
    c = stats["code"]
    assert c["accepted_queries"] == 0 and c["query_accept_rate"] == 0.0
    assert c["accepted_by_round"] == {}
    json.dumps(stats)  # written to accepted/<teacher>.stats.json


def test_verification_stats_category_without_responses():
    stats = verification_stats([query("i1", "if")], [])
    assert stats["if"]["responses"] == 0
    assert stats["if"]["response_pass_rate"] is None
    assert stats["if"]["query_accept_rate"] == 0.0


# --- structure_problem -----------------------------------------------------------------------

def test_structure_clean_row_passes():
    assert structure_problem(vrow("q", 1, 0, True)) is None


@pytest.mark.parametrize("over,reason", [
    ({"think": ""}, "empty_think"),
    ({"think": "  \n "}, "empty_think"),
    ({"think": None}, "empty_think"),
    ({"answer": None}, "missing_answer"),
    ({"answer": " "}, "missing_answer"),
    ({"finish_reason": "length"}, "truncated"),
])
def test_structure_problems(over, reason):
    row = vrow("q", 1, 0, True)
    row.update(over)
    assert structure_problem(row) == reason


def test_structure_runaway_repetition():
    loop = "so the answer is " * 6
    row = vrow("q", 1, 0, True, think="start " + loop)
    assert structure_problem(row) == "repetition"


def test_structure_short_repeats_are_fine():
    # four repeats of a phrase, or a repeated short token, are not a runaway loop
    row = vrow("q", 1, 0, True, think="check: 2+2=4. " * 4 + "ok ok ok ok ok")
    assert structure_problem(row) is None


def test_curate_keeps_clean_and_records_drops():
    accepted = [vrow("a", 1, 0, True), vrow("b", 1, 0, True, think=""),
                vrow("c", 1, 0, True, finish="length", category="science")]
    kept, rejected, funnel = curate(accepted, {"a": "math", "b": "math", "c": "science"})
    assert [r["query_id"] for r in kept] == ["a"]
    assert rejected == [
        {"query_id": "b", "teacher": "t", "category": "math", "stage": "curate",
         "reason": "empty_think", "detail": None},
        {"query_id": "c", "teacher": "t", "category": "science", "stage": "curate",
         "reason": "truncated", "detail": None},
    ]
    assert funnel == {"math": {"accepted": 2, "kept": 1, "structure": 1,
                               "structure:empty_think": 1},
                      "science": {"accepted": 1, "structure": 1, "structure:truncated": 1}}
    table_from_rows(rejected, schemas.CURATED_REJECTED)


@pytest.mark.parametrize("roles,problem", [
    (["user", "assistant"], None),
    (["system", "user", "assistant"], None),
    (["user", "assistant", "user", "assistant"], None),
    (["user", "assistant", "assistant"], "odd_turns"),
    (["user"], "odd_turns"),
    (["user", "user", "assistant", "assistant"], "turns_not_alternating"),
    (["assistant", "user"], "turns_not_alternating"),
])
def test_turn_problem(roles, problem):
    assert turn_problem([{"role": r, "content": "x"} for r in roles]) == problem


def test_structure_checks_the_conversation_turns():
    row = vrow("q", 1, 0, True)
    one_user = [{"role": "user", "content": "hi"}]
    assert structure_problem(row, query_messages=one_user) is None
    assert structure_problem(row, query_messages=one_user * 2) == "odd_turns"
    assert structure_problem(row, query_messages=one_user * 2 + [
        {"role": "assistant", "content": "a"}]) == "turns_not_alternating"


def test_repetition_settings_come_from_the_spec():
    row = vrow("q", 1, 0, True, think="start " + "so the answer is " * 3)
    assert structure_problem(row) is None  # 3 repeats < the default 5
    assert structure_problem(row, StructureSpec(repetition_min_repeats=3)) == "repetition"
    assert structure_problem(row, StructureSpec(repetition_min_unit_chars=40,
                                                repetition_min_repeats=3)) is None


def test_filters_apply_in_order_and_funnel_counts_each():
    accepted = [vrow(q, 1, 0, True) for q in ("a", "b", "c", "d", "e")]
    accepted[0]["think"] = ""  # structure, even though its n-gram and ppl are also bad
    cat_of = dict.fromkeys("abcde", "math")
    inputs = CurationInputs(
        query_messages={q: [{"role": "user", "content": "q"}] for q in "abcde"},
        ngram_windows={"a": 3, "b": 2, "c": 0, "d": 0, "e": 0},
        ngram_spans={"a": "span a", "b": "span b", "c": None, "d": None, "e": None},
        ppl={"a": 50.0, "b": 50.0, "c": 12.0, "d": 3.0, "e": None}, ppl_cut=10.0)
    kept, rejected, funnel = curate(accepted, cat_of, StructureSpec(), inputs)
    assert [r["query_id"] for r in kept] == ["d", "e"]  # e: unscored is kept, and counted
    assert [(r["query_id"], r["reason"], r["detail"]) for r in rejected] == [
        ("a", "empty_think", None),
        ("b", "high_frequency_ngram", "span b"),
        ("c", "perplexity_above_cut", "ppl 12 > cut 10"),
    ]
    assert funnel["math"] == {"accepted": 5, "structure": 1, "structure:empty_think": 1,
                              "high_frequency_ngram": 1,
                              "high_frequency_ngram:high_frequency_ngram": 1,
                              "perplexity": 1, "perplexity:perplexity_above_cut": 1,
                              "perplexity_unscored": 1, "kept": 2}


def test_no_cut_keeps_every_scored_row():
    inputs = CurationInputs(ppl={"a": 1e6}, ppl_cut=None)
    kept, rejected, _ = curate([vrow("a", 1, 0, True)], {"a": "math"}, StructureSpec(), inputs)
    assert len(kept) == 1 and not rejected


def test_filter_inputs_that_miss_a_row_fail_naming_it():
    inputs = CurationInputs(ngram_windows={"other": 0})
    with pytest.raises(ValueError, match="n-gram flags: no row for query_id 'a'"):
        curate([vrow("a", 1, 0, True)], {"a": "math"}, StructureSpec(), inputs)


# --- sft_rows --------------------------------------------------------------------------------

INSTR = dict(prompts.DEFAULT_INSTRUCTIONS)
SYSTEM = prompts.PAPER_SYSTEM_PROMPT


@pytest.fixture
def three_teachers():
    queries = {q["query_id"]: q for q in [query("q1", content="What is 1?"),
                                          query("q2", content="What is 2?"),
                                          query("q3", "science", content="Which gas?"),
                                          query("q4", content="What is 4?")]}
    curated = {
        "A": [vrow("q1", 1, 0, True, "A", think=" think A1 ", answer="ans A1\n"),
              vrow("q2", 1, 0, True, "A"), vrow("q3", 1, 0, True, "A", category="science"),
              vrow("q4", 1, 0, True, "A")],
        "B": [vrow("q1", 1, 0, True, "B"), vrow("q3", 1, 0, True, "B", category="science")],
        "C": [vrow("q1", 2, 0, True, "C"), vrow("q3", 1, 0, True, "C", category="science"),
              vrow("q4", 1, 0, True, "C")],
    }
    return curated, queries


def count_words(text: str) -> int:
    return len(text.split())


def test_sft_rows_intersection(three_teachers):
    curated, queries = three_teachers
    rows, rejected = sft_rows(curated, "A", queries, "intersection", SYSTEM, INSTR, count_words)
    assert [r["query_id"] for r in rows] == ["q1", "q3"]
    assert {r["teacher"] for r in rows} == {"A"}
    assert [r["category"] for r in rows] == ["math", "science"]
    assert rejected == [
        {"query_id": "q2", "teacher": "A", "category": "math", "stage": "parallel",
         "reason": "not accepted by B,C", "detail": None},
        {"query_id": "q4", "teacher": "A", "category": "math", "stage": "parallel",
         "reason": "not accepted by B", "detail": None},
    ]
    table_from_rows(rows, schemas.SFT_ROW)
    table_from_rows(rejected, schemas.CURATED_REJECTED)


def test_sft_rows_intersection_same_queries_for_every_teacher(three_teachers):
    curated, queries = three_teachers
    ids = {t: [r["query_id"] for r in sft_rows(curated, t, queries, "intersection", SYSTEM,
                                                INSTR, count_words)[0]] for t in curated}
    assert ids == {"A": ["q1", "q3"], "B": ["q1", "q3"], "C": ["q1", "q3"]}


def test_sft_rows_per_teacher(three_teachers):
    curated, queries = three_teachers
    rows, rejected = sft_rows(curated, "A", queries, "per_teacher", SYSTEM, INSTR, count_words)
    assert [r["query_id"] for r in rows] == ["q1", "q2", "q3", "q4"]
    assert rejected == []
    rows_b, _ = sft_rows(curated, "B", queries, "per_teacher", SYSTEM, INSTR, count_words)
    assert [r["query_id"] for r in rows_b] == ["q1", "q3"]


def test_sft_row_messages_format(three_teachers):
    curated, queries = three_teachers
    rows, _ = sft_rows(curated, "A", queries, "per_teacher", SYSTEM, INSTR, count_words)
    row = rows[0]
    system, user, assistant = row["messages"]
    assert system == {"role": "system", "content": SYSTEM}
    assert user == {"role": "user", "content": "What is 1?\n\n" + prompts.MATH_INSTRUCTION}
    assert assistant == {"role": "assistant",
                         "content": "<think>\nthink A1\n</think>\n<answer>\nans A1\n</answer>"}
    assert row["n_tokens"] == count_words(assistant["content"])
    # the science instruction for science queries; demonstrations never appear
    sci = next(r for r in rows if r["category"] == "science")
    assert sci["messages"][1]["content"].endswith(INSTR["science"])
    assert len(sci["messages"]) == 3
    assert all("What is 12 + 7?" not in m["content"] for r in rows for m in r["messages"])
    # queries are not mutated by building the rows
    assert queries["q1"]["messages"] == [{"role": "user", "content": "What is 1?"}]


def test_sft_rows_multi_turn_keeps_conversation(three_teachers):
    curated, queries = three_teachers
    queries["q1"]["messages"] = [{"role": "user", "content": "Hi"},
                                 {"role": "assistant", "content": "Hello"},
                                 {"role": "user", "content": "What is 1?"}]
    rows, _ = sft_rows(curated, "A", queries, "per_teacher", "sys", INSTR, count_words)
    msgs = rows[0]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
    assert msgs[1]["content"] == "Hi"
    assert msgs[3]["content"].endswith(prompts.MATH_INSTRUCTION)


# --- round_stats -----------------------------------------------------------------------------

def test_round_stats_counts_attempts_per_round():
    from distillab.curate import round_stats

    verified = [
        vrow("a", 1, 0, True), vrow("a", 1, 1, False),   # accepted in round 1
        vrow("b", 1, 0, False), vrow("b", 1, 1, False),
        vrow("c", 1, 0, False), vrow("c", 1, 1, False),
        vrow("b", 2, 0, False), vrow("b", 2, 1, True),   # accepted in round 2
        vrow("c", 2, 0, False), vrow("c", 2, 1, False),
        vrow("c", 3, 0, False), vrow("c", 3, 1, False),  # never accepted
    ]
    stats = round_stats(4, verified)  # query d was never asked (e.g. unverified)
    assert [(s["round"], s["queries_asked"], s["responses"], s["accepted"],
             s["accepted_cumulative"]) for s in stats] == [
        (1, 3, 6, 1, 1), (2, 2, 4, 1, 2), (3, 1, 2, 0, 2)]
    assert stats[0]["tokens_generated"] == 60 and stats[-1]["accepted_share_cumulative"] == 0.5
    assert round_stats(0, []) == []
    # a configured round with nothing left to ask still shows, with zeros
    last = round_stats(4, verified, [1, 2, 3, 4])[-1]
    assert (last["round"], last["queries_asked"], last["accepted_cumulative"]) == (4, 0, 2)
