"""The replay backend: released responses looked up by the query ids the query stage gave
the same release, so released data flows through verification like generated data."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from distillab.config import ConfigError, validate_config
from distillab.gen_replay import NOT_IN_RELEASE, ReplayGenerator
from distillab.generate import (FlushPolicy, GenRequest, SamplingSpec, TeacherSpec,
                                generate_shard, make_generator)
from distillab.queries import iter_normalized
from test_am_format import RELEASE, write_release
from test_generate import REPO


@pytest.fixture()
def release(tmp_path):
    folder = write_release(tmp_path / "am")
    spec = {"name": "am", "format": "am_release", "path": str(folder / "*.jsonl")}
    queries = [row for kind, row in iter_normalized(spec) if kind == "query"]
    return spec, queries


def _requests(queries):
    return [GenRequest(q["query_id"], messages=q["messages"]) for q in queries]


def test_replay_returns_each_querys_released_response(release):
    spec, queries = release
    gen = ReplayGenerator(spec)
    outs = dict(gen.generate(_requests(queries), SamplingSpec(n=1), []))
    released = {q["query_id"]: json.loads(q["meta"])["am"] for q in queries}
    answered = 0
    for i, q in enumerate(queries):
        [out] = outs[i]
        if "response" in released[q["query_id"]]:  # the release has an answer to replay
            assert out.finish_reason == "stop" and out.text
            assert out.text.startswith("<think>") or "<think>" not in out.text
            answered += 1
        else:
            assert out.finish_reason == NOT_IN_RELEASE and out.text == ""
    assert answered == sum(1 for rows in RELEASE.values() for r in rows
                           if r["conversations"][-1]["from"] == "assistant")
    assert gen.describe()["found"] == answered


def test_query_from_another_source_is_recorded_not_dropped(release):
    spec, queries = release
    stranger = GenRequest("not-a-release-query", messages=[{"role": "user", "content": "x"}])
    [(i, [out])] = list(ReplayGenerator(spec).generate([stranger], SamplingSpec(n=1), []))
    assert i == 0 and out.finish_reason == NOT_IN_RELEASE and out.n_tokens == 0


def test_model_name_filter(release):
    spec, queries = release
    outs = dict(ReplayGenerator(spec, model_name="other-model").generate(
        _requests(queries), SamplingSpec(n=1), []))
    # only the multi-turn row's *first* reply is by other-model, and that is not the
    # final turn that is replayed: nothing matches
    assert all(o[0].finish_reason == NOT_IN_RELEASE for o in outs.values())
    ours = dict(ReplayGenerator(spec, model_name="am_thinking_v1").generate(
        _requests(queries), SamplingSpec(n=1), []))
    assert sum(o[0].finish_reason == "stop" for o in ours.values()) > 5


def test_replay_needs_one_sample(release):
    spec, queries = release
    with pytest.raises(ValueError, match="one response per query"):
        list(ReplayGenerator(spec).generate(_requests(queries), SamplingSpec(n=2), []))


def test_replay_through_generate_shard(release, tmp_path, tiny_model):
    """As a teacher: the same stage, tokens counted with the teacher's tokenizer."""
    spec, queries = release
    cfg = {"model": "m", "backend": "replay", "replay": {"source": "am"},
           "sampling": {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 8, "n": 1}}
    teacher = TeacherSpec.from_config("am-thinking", cfg, {}, "chat")
    rows, counts = generate_shard(
        queries, teacher, 1, 0, tmp_path / "000.parquet",
        lambda: make_generator("replay", tiny_model, None, teacher.options,
                               queries_config={"sources": [spec]}), FlushPolicy(every=3))
    assert len(rows) == len(queries) and counts["backend"]["backend"] == "replay"
    stop = [r for r in rows if r["finish_reason"] == "stop"]
    assert stop and all(r["n_tokens"] > 0 and r["think"] and r["answer"] for r in stop)


def _demo_with_replay() -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["queries"]["sources"].append({"name": "am", "format": "am_release",
                                      "path": "/data/am/*.jsonl"})
    cfg["teachers"]["am"] = {"model": "smollm2-135m-instruct", "backend": "replay",
                             "replay": {"source": "am"}, "max_rounds": 1,
                             "sampling": {"temperature": 0.6, "top_p": 0.95,
                                          "max_new_tokens": 8, "n": 1}}
    return cfg


def test_config_accepts_a_replay_teacher():
    validate_config(_demo_with_replay())


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t["sampling"].update(n=2), "sampling.n: a replay teacher"),
    (lambda t: t.pop("max_rounds"), "max_rounds: a replay teacher"),
    (lambda t: t["replay"].update(source="demo"), "is not an am_release query source"),
    (lambda t: t.pop("replay"), "'replay' is a required property"),
])
def test_config_rejects_bad_replay_teachers(mutate, message):
    cfg = _demo_with_replay()
    mutate(cfg["teachers"]["am"])
    with pytest.raises(ConfigError, match=message):
        validate_config(copy.deepcopy(cfg))


def test_the_response_comes_from_the_row_the_query_came_from(tmp_path):
    """The same question twice in a release: the query stage keeps one row (here the
    second, as if the first had failed a filter); replay answers from that row."""
    from test_am_format import assistant, human, row

    twice = {"math": [row(human("What is 3 + 4?", "math", ground_truth="7"),
                          assistant("first row", "\\boxed{8}")),
                      row(human("What is 3 + 4?", "math", ground_truth="7"),
                          assistant("second row", "\\boxed{7}"))]}
    spec = {"name": "am", "format": "am_release", "path": str(write_release(tmp_path, twice))}
    first, second = [r for kind, r in iter_normalized(spec) if kind == "query"]
    assert first["query_id"] == second["query_id"]
    kept = json.loads(second["meta"])["source_id"]
    gen = ReplayGenerator(spec, source_ids={second["query_id"]: kept})
    [(_, [out])] = list(gen.generate(_requests([second]), SamplingSpec(n=1), []))
    assert "second row" in out.text
    [(_, [out])] = list(ReplayGenerator(spec).generate(_requests([second]), SamplingSpec(n=1), []))
    assert "first row" in out.text  # without the pin: the first row in file order
