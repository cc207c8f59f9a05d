"""The ``openai`` backend against a real HTTP server on loopback (tests/fake_openai_server.py).

Backoff is kept tiny (backoff_base_s 0.01) so retries cost milliseconds; no assertion is a
stopwatch upper bound a loaded machine could miss (only counts, ordering and generous
lower bounds)."""

from __future__ import annotations

import json
import logging
import threading
from typing import Iterator

import pytest
from fake_openai_server import FakeOpenAIServer

from distillab.gen_openai import (OpenAIBackendError, OpenAIGenerator, backoff_delay,
                                  from_options, retry_after_seconds)
from distillab.generate import GenOutput, GenRequest, SamplingSpec, generate_all

KEY_ENV = "DISTILLAB_TEST_OPENAI_KEY"
SECRET = "sk-test-9f8e7d6c5b4a-SECRET"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(slow_s=3.0) as s:
        yield s


def make(server: FakeOpenAIServer, **kw) -> OpenAIGenerator:
    opts = dict(concurrency=4, timeout_s=5.0, max_retries=3, backoff_base_s=0.01,
                backoff_max_s=0.05)
    opts.update(kw)
    return OpenAIGenerator("fake-model", server.base_url, **opts)


def chat(key: str, content: str | None = None, seed: int | None = None) -> GenRequest:
    return GenRequest(key, messages=[{"role": "system", "content": "be brief"},
                                     {"role": "user", "content": content or key}], seed=seed)


SAMPLING = SamplingSpec(temperature=0.6, top_p=0.95, max_new_tokens=64, seed=7)


def test_chat_happy_path_and_body_fields(server):
    gen = make(server)
    outs = generate_all(gen, [chat("q1", seed=100), chat("q2")], SAMPLING, ["</answer>"])
    assert outs[0] == [GenOutput(text="echo q1 seed=100", n_tokens=3, finish_reason="stop")]
    assert outs[1][0].text == "echo q2 seed=7"  # no request seed: the sampling seed
    body = server.attempts("q1")[0]["body"]
    assert server.attempts("q1")[0]["path"] == "/v1/chat/completions"
    assert body["model"] == "fake-model" and body["messages"][0]["role"] == "system"
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"],
            body["stop"]) == (0.6, 0.95, 64, 100, ["</answer>"])
    # Off by default: hosted APIs may reject them; n is never sent (one sample a request).
    assert not {"top_k", "min_p", "n"} & set(body)
    assert "authorization" not in server.attempts("q1")[0]["headers"]  # no key configured
    assert gen.stats()["requests"] == 2 and gen.stats()["samples"] == 2


def test_text_requests_use_completions(server):
    gen = make(server)
    sampling = SamplingSpec(max_new_tokens=2, top_k=20, min_p=0.05, seed=1)
    [[out]] = generate_all(gen, [GenRequest("t1", text="Question: 1+1? Answer:")], sampling, [])
    rec = server.attempts("Question: 1+1? Answer:")[0]
    assert rec["path"] == "/v1/completions" and rec["body"]["prompt"] == "Question: 1+1? Answer:"
    assert rec["body"]["top_k"] == 20 and rec["body"]["min_p"] == 0.05
    assert "stop" not in rec["body"]  # empty stop list: not sent
    # max_tokens 2 cut the echo: finish_reason and usage come from the server.
    assert out == GenOutput(text=" echo Question:", n_tokens=2, finish_reason="length")


def test_extra_body_adds_and_removes_fields(server):
    gen = make(server, extra_body={"chat_template_kwargs": {"thinking": True}, "seed": None})
    generate_all(gen, [chat("q1")], SAMPLING, [])
    body = server.attempts("q1")[0]["body"]
    assert body["chat_template_kwargs"] == {"thinking": True} and "seed" not in body


def test_n_samples_are_separate_requests_with_consecutive_seeds(server):
    gen = make(server)
    sampling = SamplingSpec(n=3, seed=0)
    [outs] = generate_all(gen, [chat("q1", seed=40)], sampling, [])
    assert [o.text for o in outs] == ["echo q1 seed=40", "echo q1 seed=41", "echo q1 seed=42"]
    assert sorted(r["body"]["seed"] for r in server.attempts("q1")) == [40, 41, 42]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_returned_apart(field):
    with FakeOpenAIServer(reasoning_field=field) as server:
        [[out]] = generate_all(make(server), [chat("q1")], SAMPLING, [])
    assert out.reasoning == "thinking about q1" and out.text == "echo q1 seed=7"
    assert out.n_tokens == 6  # completion tokens include the reasoning
    assert out.full_text().startswith("<think>\nthinking about q1\n</think>")


def test_no_usage_means_zero_tokens():
    with FakeOpenAIServer(usage=False) as server:
        [[out]] = generate_all(make(server), [chat("q1")], SAMPLING, [])
    assert out.n_tokens == 0 and out.text == "echo q1 seed=7"


def test_indices_and_samples_match_under_concurrency(server):
    keys = [f"q{i:02d}" for i in range(30)]
    for i, k in enumerate(keys):  # uneven latencies: replies finish out of order
        server.delays[k] = (i * 7 % 5) * 0.01
    gen = make(server, concurrency=6)
    sampling = SamplingSpec(n=2, seed=3)
    seen = []
    for i, outs in gen.generate([chat(k) for k in keys], sampling, []):
        seen.append(i)
        assert [o.text for o in outs] == [f"echo {keys[i]} seed={3 + s}" for s in range(2)]
    assert sorted(seen) == list(range(30))
    assert len(server.log) == 60


def test_results_are_yielded_while_a_request_is_in_flight(server):
    """The slow request is held at the server until the test has received every other
    one: a generate() that yielded only at the end would reach the test after the slow
    reply (the gate times out after 10 s) and fail the check."""
    gate = server.gates["slow"] = threading.Event()
    gen = make(server, concurrency=2)
    order = []
    for i, _ in gen.generate([chat("slow")] + [chat(f"q{i}") for i in range(5)], SAMPLING, []):
        order.append(i)
        if len(order) == 5:
            assert "slow" not in server.finished and not gate.is_set()
            gate.set()
    assert order[-1] == 0 and sorted(order) == list(range(6))


def test_concurrency_is_bounded(server):
    server.latency_s = 0.03  # so requests overlap
    gen = make(server, concurrency=3)
    generate_all(gen, [chat(f"q{i}") for i in range(24)], SAMPLING, [])
    assert 2 <= server.max_in_flight <= 3


@pytest.mark.parametrize("faults, cause", [
    (["429"], "http_429"),
    (["429", "429"], "http_429"),
    (["500"], "http_500"),
    (["502", "503", "504"], None),
    (["slow"], "timeout"),
    (["drop"], "connection"),
    (["reset"], "connection"),
    (["truncated"], "connection"),
    (["badjson"], "bad_body"),
])
def test_faults_are_retried(server, faults, cause):
    server.faults["q1"] = list(faults)
    gen = make(server, timeout_s=2.0)
    outs = generate_all(gen, [chat("q1"), chat("q2")], SAMPLING, [])
    assert outs[0][0].text == "echo q1 seed=7"
    attempts = server.attempts("q1")
    assert [a["fault"] for a in attempts] == list(faults) + [None]
    retries = gen.stats()["retries"]
    assert sum(retries.values()) == len(faults)
    if cause:
        assert retries == {cause: len(faults)}
    assert len(server.attempts("q2")) == 1  # the other request is not disturbed


def test_every_fault_kind_in_a_row(server):
    plan = ["429", "500", "503", "slow", "drop", "reset", "truncated", "badjson"]
    server.faults["q1"] = list(plan)
    gen = make(server, timeout_s=2.0, max_retries=len(plan))
    [[out]] = generate_all(gen, [chat("q1")], SAMPLING, [])
    assert out.text == "echo q1 seed=7" and len(server.attempts("q1")) == len(plan) + 1
    assert gen.describe()["stats"]["retries"] == {
        "bad_body": 1, "connection": 3, "http_429": 1, "http_500": 1, "http_503": 1,
        "timeout": 1}


def test_retry_after_is_honoured(server):
    server.faults["q1"] = ["429:0.3"]
    gen = make(server, backoff_base_s=0.001, backoff_max_s=10)
    generate_all(gen, [chat("q1")], SAMPLING, [])
    first, second = server.attempts("q1")
    # A lower bound only: without Retry-After the wait would be at most 1 ms.
    assert second["t"] - first["t"] >= 0.25


def test_retry_after_parsing_and_backoff_bounds():
    assert retry_after_seconds({"Retry-After": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "150", "Retry-After": "9"}) == 0.15
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"},
                               now=1445412480.0) == 10.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None
    assert backoff_delay(3, 1.0, 60.0, retry_after=120.0) == 60.0  # capped
    delays = [backoff_delay(k, 1.0, 5.0) for k in range(1, 12) for _ in range(20)]
    assert all(0 <= d <= 5.0 for d in delays)
    assert max(backoff_delay(1, 1.0, 5.0) for _ in range(50)) <= 1.0


@pytest.mark.parametrize("status", ["400", "404", "422"])
def test_client_errors_fail_fast(server, status):
    server.faults["bad"] = [status]
    gen = make(server)
    with pytest.raises(OpenAIBackendError) as err:
        generate_all(gen, [chat("bad")], SAMPLING, [])
    msg = str(err.value)
    assert f"HTTP {status}" in msg and f"injected {status} for bad" in msg
    assert "'bad'" in msg and "not retried" in msg
    assert len(server.attempts("bad")) == 1 and gen.stats()["failures"] == 1


def test_retries_exhausted(server):
    server.faults["q1"] = ["500"] * 10
    gen = make(server, max_retries=2)
    with pytest.raises(OpenAIBackendError, match=r"'q1' sample 0 .*gave up after 3 attempts "
                                                 r"\(max_retries=2\); last error: HTTP 500"):
        generate_all(gen, [chat("q1")], SAMPLING, [])
    assert len(server.attempts("q1")) == 3


def test_results_before_a_failure_reach_the_caller(server):
    """A failed request ends generate(), but what finished first was yielded."""
    server.faults["q3"] = ["400"]
    server.delays["q3"] = 0.2
    gen = make(server, concurrency=1)
    got = []
    with pytest.raises(OpenAIBackendError):
        for i, _ in gen.generate([chat(f"q{i}") for i in range(5)], SAMPLING, []):
            got.append(i)
    assert got == [0, 1, 2]


def test_api_key_sent_but_never_shown(server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(KEY_ENV, SECRET)
    server.api_key = SECRET
    server.faults["q1"] = ["429", "drop", "500"]
    gen = from_options("fake-model", {"base_url": server.base_url, "api_key_env": KEY_ENV,
                                      "max_retries": 3, "backoff_base_s": 0.01,
                                      "timeout_s": 5})
    generate_all(gen, [chat("q1")], SAMPLING, [])
    assert all(r["headers"]["authorization"] == f"Bearer {SECRET}" for r in server.log)
    assert gen.describe()["api_key_env"] == KEY_ENV
    assert "retry 1 of 3" in caplog.text  # retries are logged ...
    # ... and the key is nowhere: logs, provenance, repr, the error of a rejected key.
    server.api_key = "the-right-key"  # now the server rejects the key and echoes it
    with pytest.raises(OpenAIBackendError) as err:
        generate_all(gen, [chat("q2")], SAMPLING, [])
    assert "HTTP 401" in str(err.value) and "Incorrect API key provided: ***" in str(err.value)
    assert len(server.attempts("q2")) == 1  # 401 is not retried
    for text in (caplog.text, json.dumps(gen.describe()), repr(gen), str(err.value),
                 repr(err.value)):
        assert SECRET not in text


def test_missing_key_variable(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ValueError, match=KEY_ENV):
        OpenAIGenerator("m", "http://127.0.0.1:9/v1", api_key_env=KEY_ENV)
    monkeypatch.setenv(KEY_ENV, "")
    with pytest.raises(ValueError, match=f"{KEY_ENV}.*empty"):
        OpenAIGenerator("m", "http://127.0.0.1:9/v1", api_key_env=KEY_ENV)


def test_from_options_and_describe(server):
    gen = from_options("teacher/model", {"base_url": server.base_url + "/", "concurrency": 2,
                                         "model": "served-name"})
    d = gen.describe()
    assert (d["backend"], d["model"], d["base_url"], d["concurrency"]) == (
        "openai", "served-name", server.base_url, 2)
    with pytest.raises(ValueError, match="unknown options.*'api_key'"):
        from_options("m", {"base_url": server.base_url, "api_key": SECRET})
    with pytest.raises(ValueError, match="not an http"):
        from_options("m", {"base_url": "node17:8000/v1"})
    userinfo = from_options("m", {"base_url": "http://user:pw@host:8000/v1"})
    assert userinfo.describe()["base_url"] == "http://host:8000/v1" and "pw" not in repr(userinfo)


def test_stopping_early_cancels_in_flight_requests(server):
    """A caller that stops iterating (its own error) does not leave the loop running."""
    server.latency_s = 0.02
    gen = make(server, concurrency=2)
    it = gen.generate([chat(f"q{i}") for i in range(50)], SAMPLING, [])
    next(it)
    it.close()
    served = server.served
    assert served < 50
    assert not any(t.name == "openai-generate" for t in threading.enumerate())


def test_server_down_is_retried_then_named():
    with FakeOpenAIServer() as gone:
        url = gone.base_url  # a port nobody listens on once the server stops
    gen = OpenAIGenerator("m", url, max_retries=1, backoff_base_s=0.01)
    with pytest.raises(OpenAIBackendError, match=r"'q1' sample 0 .*2 attempts.*ConnectError"):
        generate_all(gen, [chat("q1")], SAMPLING, [])
    assert gen.stats()["retries"] == {"connection": 1}


def test_make_generator_builds_it(server, monkeypatch):
    """The teacher config path: backend openai, options under ``openai``."""
    from distillab.generate import make_generator

    monkeypatch.setenv("FAKE_URL", server.base_url)
    gen = make_generator("openai", "org/teacher", None,
                         {"openai": {"base_url": "${FAKE_URL}", "concurrency": 2}})
    [[out]] = generate_all(gen, [chat("q1")], SAMPLING, [])
    assert out.text == "echo q1 seed=7" and server.log[0]["body"]["model"] == "org/teacher"


def test_generate_stage_resumes_after_the_endpoint_failed(server, tmp_path):
    """The generate stage over the endpoint: a permanent failure part-way ends the job
    with what finished before it flushed; the rerun asks only for the rest."""
    from distillab.generate import FlushPolicy, TeacherSpec, generate_shard

    cfg = {"model": "m", "backend": "openai", "openai": {"base_url": server.base_url},
           "sampling": {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 16, "n": 2}}
    teacher = TeacherSpec.from_config("api", cfg, {"instructions": {"math": ""}}, "chat")
    queries = [{"query_id": f"q{i}", "category": "math",
                "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(6)]
    out = tmp_path / "000.parquet"
    server.faults["q3"] = ["401"]
    server.delays["q3"] = 0.3  # q0-q2 finish first
    with pytest.raises(OpenAIBackendError, match="HTTP 401"):
        generate_shard(queries, teacher, 1, 5, out, lambda: make(server, concurrency=1),
                       FlushPolicy(every=1))
    before = {q: len(server.attempts(q)) for q in ("q0", "q1", "q2")}
    assert before == {"q0": 2, "q1": 2, "q2": 2}  # two samples each
    rows, counts = generate_shard(queries, teacher, 1, 5, out, lambda: make(server),
                                  FlushPolicy(every=1))
    assert {q: len(server.attempts(q)) for q in ("q0", "q1", "q2")} == before  # not again
    assert counts["queries_resumed"] == 3 and counts["queries_generated"] == 3
    assert [(r["query_id"], r["sample"]) for r in rows] == [
        (f"q{i}", s) for i in range(6) for s in range(2)]
    assert counts["backend"]["backend"] == "openai"


@pytest.mark.parametrize("choice, expected", [
    # vLLM names the stop string that ended the sample: put back
    ({"finish_reason": "stop", "stop_reason": "</answer>"}, "<answer>42</answer>"),
    # vLLM at end-of-sequence: stop_reason is null, nothing was stripped
    ({"finish_reason": "stop", "stop_reason": None}, "<answer>42"),
    # a server that does not say: an open answer ended by a stop is closed
    ({"finish_reason": "stop"}, "<answer>42</answer>"),
    # cut by the token limit: still open, graded as truncated
    ({"finish_reason": "length"}, "<answer>42"),
])
def test_stop_string_stripped_by_the_server_is_put_back(choice, expected):
    gen = OpenAIGenerator("m", "http://127.0.0.1:9/v1")
    data = {"choices": [{"message": {"content": "<answer>42"}, **choice}],
            "usage": {"completion_tokens": 3}}
    out = gen._parse(data, chat=True, stop=["</answer>"])
    assert out.text == expected


def test_client_errors_recorded_when_configured(server):
    server.faults["q1"] = ["400"]
    gen = make(server, on_client_error="record")
    outs = generate_all(gen, [chat("q0"), chat("q1")], SAMPLING, [])
    assert outs[1][0].finish_reason == "error" and outs[1][0].text == ""
    assert outs[0][0].finish_reason == "stop"
    assert gen.stats()["request_errors"] == 1 and len(server.attempts("q1")) == 1
    server.faults["q2"] = ["401"]  # not a request's fault: the job still ends
    with pytest.raises(OpenAIBackendError, match="HTTP 401"):
        generate_all(gen, [chat("q2")], SAMPLING, [])


def test_generate_from_snakemake_with_an_endpoint_teacher(server, tmp_path, monkeypatch):
    """The Snakemake entry of the stage, as the rule calls it, for an openai teacher: the
    endpoint comes from the live config, the served name from the model's hub id."""
    from types import SimpleNamespace

    from distillab import schemas
    from distillab.generate import generate_from_snakemake
    from distillab.io import read_rows, write_table
    from distillab.provenance import Provenance
    from distillab.workflow import Study

    monkeypatch.setenv("DISTILLAB_TEST_URL", server.base_url)
    config = {"teachers": {"r1": {"model": "deepseek-r1", "backend": "openai",
                                  "openai": {"base_url": "${DISTILLAB_TEST_URL}",
                                             "concurrency": 2},
                                  "sampling": {"temperature": 0.6, "top_p": 0.95,
                                               "max_new_tokens": 16, "n": 1, "seed": 0}}},
              "models": {"deepseek-r1": {"source": "hub", "repo_id": "deepseek-ai/DeepSeek-R1",
                                         "revision": "abc"}},
              "generation": {"max_rounds": 1, "flush_every": 1, "flush_interval_s": 60},
              "queries": {"sources": []}}
    shard = tmp_path / "000.parquet"
    write_table(shard, [{"query_id": f"q{i}", "source": "s", "category": "chat",
                         "messages": [{"role": "user", "content": f"q{i}"}], "reference": None,
                         "tests": None, "constraints": None, "meta": "{}"} for i in range(3)],
                schemas.QUERY)
    out = tmp_path / "r1" / "000.parquet"
    study = Study.__new__(Study)  # only the config-derived helpers below are used
    study.config = config
    smk = SimpleNamespace(
        params=SimpleNamespace(teacher=study.teacher_params("r1"), prompts={}, seed=1,
                               prompt_style="chat"),
        wildcards=SimpleNamespace(teacher="r1", round="1", shard="000"),
        input=SimpleNamespace(shard=str(shard), earlier=[],
                              model=study.teacher_generate_inputs("r1")),
        output=SimpleNamespace(responses=str(out)), config=config)
    prov = Provenance("generate")
    generate_from_snakemake(smk, prov)
    rows = read_rows(out, schemas.RESPONSE)
    assert [r["query_id"] for r in rows] == ["q0", "q1", "q2"]
    assert {r["body"]["model"] for r in server.log} == {"deepseek-ai/DeepSeek-R1"}
    assert prov.record["backend"]["backend"] == "openai"
    assert prov.record["queries_generated"] == 3
    assert not (tmp_path / "r1" / "000.parquet.partial").exists()
