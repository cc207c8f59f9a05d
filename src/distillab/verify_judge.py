"""LLM judge: the optional second stage of the math verifier and the science grader.

PAPER.md §4: math answers that math-verify rejects go to Qwen2.5-7B-Instruct, which
decides equivalence ("1 if either stage says correct"); free-form science answers are
rated by the same judge on a 0-5 similarity scale, normalized to [0, 1]. The paper does
not publish its judge prompts, so ours are written here and versioned: a prompt edit
must bump its ``version``, which every verdict records (``verifier_version``), so
verdicts judged under different prompts are never mixed unknowingly.

The judge is any :class:`distillab.generate.Generator` (the transformers backend in
this build), asked greedily, with a plain system + user chat: no study system prompt,
no demonstrations. Its reply must end in one machine-readable line ("Verdict: correct",
"Score: 4"); a reply without one counts as a failed judgement (score 0) and says so in
the details, next to the first 300 characters of the reply.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Sequence

from distillab.generate import Generator, PromptSpec, SamplingSpec, build_request, generate_all

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JudgePrompt:
    version: str
    system: str
    template: str  # str.format fields: question, reference, prediction


MATH_JUDGE = JudgePrompt(
    version="math-judge/v1",
    system="You are a careful grader of math answers. You compare a student's final "
           "answer with the reference answer and decide whether they are equivalent.",
    template=(
        "Problem:\n{question}\n\n"
        "Reference answer:\n{reference}\n\n"
        "Student's final answer:\n{prediction}\n\n"
        "Are the two answers mathematically equivalent? Equivalent means the same value, "
        "set, interval or expression, possibly written differently (fractions vs. "
        "decimals, simplified or not, with or without units). Answer with one final line, "
        "exactly \"Verdict: correct\" or \"Verdict: incorrect\"."
    ),
)

SCIENCE_JUDGE = JudgePrompt(
    version="science-judge/v1",
    system="You are a careful grader of science answers. You rate how well a student's "
           "answer matches the reference answer.",
    template=(
        "Question:\n{question}\n\n"
        "Reference answer:\n{reference}\n\n"
        "Student's answer:\n{prediction}\n\n"
        "Rate the student's answer against the reference on a 0-5 scale: 5 = same meaning, "
        "fully correct; 4 = correct with a minor omission or imprecision; 3 = partly "
        "correct; 2 = mostly wrong but related; 1 = wrong; 0 = no answer or unrelated. "
        "Answer with one final line, exactly \"Score: N\" with N an integer from 0 to 5."
    ),
)

JUDGE_PROMPTS = {"math": MATH_JUDGE, "science": SCIENCE_JUDGE}

_VERDICT = re.compile(r"verdict\s*[:：]\s*\**\s*(correct|incorrect)\b", re.IGNORECASE)
_SCORE = re.compile(r"score\s*[:：]\s*\**\s*([0-5])(?:\s*/\s*5)?\b", re.IGNORECASE)


def parse_math_verdict(reply: str) -> bool | None:
    """The last "Verdict: correct|incorrect" in ``reply``; None when there is none."""
    found = _VERDICT.findall(reply)
    return found[-1].lower() == "correct" if found else None


def parse_science_score(reply: str) -> int | None:
    """The last "Score: N" (0-5, "/5" allowed) in ``reply``; None when there is none."""
    found = _SCORE.findall(reply)
    return int(found[-1]) if found else None


@dataclass(frozen=True)
class JudgeItem:
    question: str
    reference: str
    prediction: str


def load_judge(cfg: dict, model_dir: str) -> "LLMJudge":
    """The judge of ``verification.judge``, its weights from the prepared ``model_dir``."""
    from distillab.generate import make_generator
    from distillab.models import load_location

    path, revision = load_location(model_dir)
    options = {k: cfg[k] for k in ("batch_size", "dtype", "quantization") if cfg.get(k)}
    generator = make_generator(cfg.get("backend", "transformers"), path, revision, options)
    return LLMJudge(generator, cfg["model"], SamplingSpec.from_config(cfg["sampling"]))


class LLMJudge:
    """Grades batches of (question, reference, prediction) with a generation backend."""

    def __init__(self, generator: Generator, name: str, sampling: SamplingSpec,
                 max_prediction_chars: int = 4000) -> None:
        self.generator, self.name = generator, name
        self.sampling = sampling
        self.max_prediction_chars = max_prediction_chars

    def version(self, kind: str) -> str:
        return f"judge:{self.name}/{JUDGE_PROMPTS[kind].version}"

    def _ask(self, kind: str, items: Sequence[JudgeItem]) -> list[str]:
        prompt = JUDGE_PROMPTS[kind]
        spec = PromptSpec(system_prompt=prompt.system, instructions={}, style="chat",
                          demonstrations=0)
        requests = [
            build_request(str(i), [{"role": "user", "content": prompt.template.format(
                question=item.question, reference=item.reference,
                prediction=item.prediction[: self.max_prediction_chars])}],
                f"judge-{kind}", spec)
            for i, item in enumerate(items)
        ]
        start = time.monotonic()
        outputs = generate_all(self.generator, requests, self.sampling, stop=[])
        log.info("judge %s: %d %s items in %.1f s", self.name, len(items), kind,
                 time.monotonic() - start)
        return [outs[0].full_text() for outs in outputs]

    def judge(self, kind: str, items: Sequence[JudgeItem]) -> list[tuple[float, dict[str, Any]]]:
        """``(score, details)`` per item: math 1.0/0.0, science score/5."""
        if kind not in JUDGE_PROMPTS:
            raise ValueError(f"no judge prompt for {kind!r} (have {sorted(JUDGE_PROMPTS)})")
        if not items:
            return []
        results = []
        for reply in self._ask(kind, items):
            details: dict[str, Any] = {"model": self.name, "prompt": JUDGE_PROMPTS[kind].version,
                                       "reply": reply[:300]}
            if kind == "math":
                verdict = parse_math_verdict(reply)
                details["verdict"] = verdict
                score = 1.0 if verdict else 0.0
            else:
                rating = parse_science_score(reply)
                details["rating"] = rating
                score = rating / 5 if rating is not None else 0.0
            if details.get("verdict", details.get("rating")) is None:
                details["error"] = "no verdict line in the judge's reply"
            results.append((score, details))
        return results
