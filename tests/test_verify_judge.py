"""The LLM judge: reply parsing, which answers are asked, how scores merge, and a run
through a real transformers generator."""

from __future__ import annotations

import json

import pytest

from distillab.generate import GenOutput, SamplingSpec, TransformersGenerator
from distillab.verify import VerifySettings, verify_responses
from distillab.verify_judge import (
    JUDGE_PROMPTS,
    JudgeItem,
    LLMJudge,
    parse_math_verdict,
    parse_science_score,
)

GREEDY = SamplingSpec(temperature=0.0, max_new_tokens=8)


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("Both equal 1/2.\nVerdict: correct", True),
        ("Verdict: **incorrect**", False),
        ("verdict: Correct.", True),
        ("Verdict: correct ... wait, no.\nVerdict: incorrect", False),  # the last line wins
        ("They look the same to me.", None),
        ("Verdict: correctness unclear", None),
    ],
)
def test_parse_math_verdict(reply: str, verdict: bool | None) -> None:
    assert parse_math_verdict(reply) is verdict


@pytest.mark.parametrize(
    ("reply", "score"),
    [("Score: 5", 5), ("score: 3/5", 3), ("Score: **4**", 4), ("Score: 7", None),
     ("I'd give it a 4.", None), ("Score: 2\nOn reflection, Score: 1", 1)],
)
def test_parse_science_score(reply: str, score: int | None) -> None:
    assert parse_science_score(reply) == score


def test_prompts_are_versioned_and_fill_every_field() -> None:
    for kind, prompt in JUDGE_PROMPTS.items():
        assert prompt.version.startswith(f"{kind}-judge/v")
        text = prompt.template.format(question="Q?", reference="R", prediction="P")
        assert "Q?" in text and "R" in text and "P" in text


class ScriptedGenerator:
    """A stand-in *backend* (the Generator protocol) whose replies are given by the test,
    so the judge's parsing and the verifier's merging can be checked exactly. The real
    backend runs in test_judge_runs_through_a_real_generator."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []

    def generate(self, requests, sampling: SamplingSpec, stop: list[str]):
        for i, request in enumerate(requests):
            system, user = request.messages  # no demonstrations, no instruction suffix
            assert system["role"] == "system" and user["role"] == "user"
            self.prompts.append(system["content"] + "\n" + user["content"])
            yield i, [GenOutput(self.replies.pop(0), 3, "stop")]

    def describe(self) -> dict:
        return {"backend": "scripted"}


def _query(qid: str, category: str, answer: str, choices: list | None = None) -> dict:
    reference = {"answer": answer, **({"choices": choices} if choices else {})}
    return {"query_id": qid, "source": "t", "category": category,
            "messages": [{"role": "user", "content": f"question {qid}"}],
            "reference": json.dumps(reference), "tests": None, "constraints": None,
            "meta": "{}"}


def _response(qid: str, answer: str, sample: int = 0) -> dict:
    return {"query_id": qid, "teacher": "t", "round": 1, "sample": sample, "text": answer,
            "think": None, "answer": answer, "n_tokens": 1, "finish_reason": "stop",
            "gen_params_hash": ""}


def test_second_stage_asks_only_what_stage_one_failed() -> None:
    queries = {q["query_id"]: q for q in [
        _query("m1", "math", "1/2"), _query("m2", "math", "3"), _query("m3", "math", "4"),
        _query("s1", "science", "mitochondria"), _query("c1", "science", "B", ["x", "y"]),
    ]}
    responses = [
        _response("m1", "\\boxed{0.5}"),          # stage 1 passes: never judged
        _response("m2", "\\boxed{three}"),        # stage 1 fails: judged correct
        _response("m3", "the answer is four"),    # no box: nothing to judge
        _response("s1", "the powerhouse organelle"),  # free-form science: rated
        _response("c1", "\\boxed{A}"),            # multiple choice: exact, never judged
    ]
    backend = ScriptedGenerator(["Verdict: correct", "Score: 4"])
    judge = LLMJudge(backend, "judge-model", GREEDY)
    settings = VerifySettings(workers=0, judge_categories=("math", "science"))
    verdicts = verify_responses(responses, queries, settings, judge=judge)
    assert [v["score"] for v in verdicts] == [1.0, 1.0, 0.0, 0.8, 0.0]
    assert [v["passed"] for v in verdicts] == [True, True, False, False, False]
    assert len(backend.prompts) == 2
    assert "question m2" in backend.prompts[0] and "three" in backend.prompts[0]
    m2 = json.loads(verdicts[1]["details"])
    assert m2["method"] == "llm-judge" and m2["stage1_score"] == 0.0
    assert m2["judge"]["verdict"] is True and m2["judge"]["prompt"] == "math-judge/v1"
    assert verdicts[1]["verifier_version"].endswith("+judge:judge-model/math-judge/v1")
    assert "judge" not in verdicts[0]["verifier_version"]
    assert json.loads(verdicts[3]["details"])["judge"]["rating"] == 4


def test_judge_off_unless_categories_are_configured() -> None:
    queries = {"m": _query("m", "math", "3")}
    backend = ScriptedGenerator([])
    verdicts = verify_responses([_response("m", "\\boxed{three}")], queries,
                                VerifySettings(workers=0), judge=LLMJudge(backend, "j", GREEDY))
    assert verdicts[0]["score"] == 0.0 and backend.prompts == []


def test_a_reply_without_a_verdict_counts_as_no(tiny_model) -> None:
    """A real transformers generator (a tiny random model, so it never writes a verdict
    line): the judgement is recorded as failed and the stage-1 score stands."""
    judge = LLMJudge(TransformersGenerator(tiny_model, device="cpu"), "tiny", GREEDY)
    [(score, details)] = judge.judge("math", [JudgeItem("What is 1+2?", "3", "three")])
    assert score == 0.0
    assert details["verdict"] is None and details["error"].startswith("no verdict line")
    assert details["model"] == "tiny" and isinstance(details["reply"], str)
    with pytest.raises(ValueError, match="no judge prompt"):
        judge.judge("code", [JudgeItem("q", "r", "p")])
