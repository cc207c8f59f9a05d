"""distillab.generate: stop handling, pending queries, specs and the transformers backend
(on a tiny randomly initialised Llama with a tokenizer trained offline)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from distillab import prompts, schemas
from distillab.config import validate_config
from distillab.generate import (GenOutput, GenRequest, PromptSpec, SamplingSpec, TeacherSpec,
                                _cut_at_stop, build_request, generate_all, generate_responses,
                                make_generator, pending_queries)
from distillab.io import table_from_rows

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_cfg() -> dict:
    return validate_config(yaml.safe_load((REPO / "config.yaml").read_text()))


# --- _cut_at_stop ----------------------------------------------------------------------------

@pytest.mark.parametrize("text,stop,expected", [
    ("no stop here", ["</answer>"], ("no stop here", False)),
    ("anything", [], ("anything", False)),
    ("<think>a</think><answer>1</answer> trailing", ["</answer>"],
     ("<think>a</think><answer>1</answer>", True)),
    ("Answer: 4\nQuestion: next one", ["</answer>", "\nQuestion:"], ("Answer: 4", True)),
    # the earliest stop wins, whatever the list order
    ("<answer>1</answer>\nQuestion: x", ["\nQuestion:", "</answer>"], ("<answer>1</answer>", True)),
    ("a\nQuestion: b</answer>", ["</answer>", "\nQuestion:"], ("a", True)),
    ("</answer>", ["</answer>"], ("</answer>", True)),
    ("x</answer></answer>", ["</answer>"], ("x</answer>", True)),
])
def test_cut_at_stop(text, stop, expected):
    assert _cut_at_stop(text, stop) == expected


# --- pending_queries -------------------------------------------------------------------------

def _q(qid):
    return {"query_id": qid, "category": "math", "messages": [{"role": "user", "content": qid}]}


def _v(qid, passed, verifier="math"):
    return {"query_id": qid, "passed": passed, "verifier": verifier}


def test_pending_queries():
    shard = [_q("a"), _q("b"), _q("c"), _q("d")]
    r1 = [_v("a", True), _v("b", False), _v("b", False)]
    r2 = [_v("b", False), _v("c", True), _v("zzz", True)]
    assert [q["query_id"] for q in pending_queries(shard, [])] == ["a", "b", "c", "d"]
    assert [q["query_id"] for q in pending_queries(shard, [r1])] == ["b", "c", "d"]
    assert [q["query_id"] for q in pending_queries(shard, [r1, r2])] == ["b", "d"]
    # one passing sample out of several is enough
    r3 = [_v("d", False), _v("d", True)]
    assert [q["query_id"] for q in pending_queries(shard, [r1, r2, r3])] == ["b"]


def test_pending_queries_unverified_is_settled():
    """A category without a verifier cannot pass by retrying: no further rounds."""
    shard = [_q("code1"), _q("math1")]
    r1 = [_v("code1", False, "unverified"), _v("math1", False)]
    assert [q["query_id"] for q in pending_queries(shard, [r1])] == ["math1"]


# --- specs -----------------------------------------------------------------------------------

def test_sampling_spec_from_config():
    spec = SamplingSpec.from_config({"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 12})
    assert spec == SamplingSpec(temperature=0.7, top_p=0.9, top_k=0, max_new_tokens=12, seed=0, n=1)


def test_teacher_spec_from_config(demo_cfg):
    cfg = demo_cfg["teachers"]["qwen-coder-0.5b"]
    spec = TeacherSpec.from_config("qwen-coder-0.5b", cfg, demo_cfg["prompts"], "chat")
    assert spec.model == "qwen2.5-coder-0.5b-instruct" and spec.backend == "transformers"
    assert spec.sampling == SamplingSpec(**cfg["sampling"])
    assert spec.sampling.temperature == cfg["sampling"]["temperature"] and spec.sampling.min_p == 0.0
    assert spec.prompt.system_prompt == prompts.PAPER_SYSTEM_PROMPT
    assert spec.prompt.demonstrations == 1 and spec.prompt.style == "chat"
    assert spec.prompt.instructions == prompts.DEFAULT_INSTRUCTIONS
    assert spec.options["batch_size"] == 16
    assert spec.prompt.stop_strings() == ["</answer>"]


def test_fewshot_teacher_stops_at_next_question(demo_cfg):
    cfg = demo_cfg["teachers"]["gemma-270m-base"]
    spec = TeacherSpec.from_config("gemma-270m-base", cfg, demo_cfg["prompts"], "fewshot")
    assert spec.prompt.stop_strings() == ["</answer>", prompts.FEWSHOT_STOP]
    assert spec.prompt.demonstrations == 2


def test_prompt_spec_instruction_override():
    spec = PromptSpec.from_config({"instructions": {"code": ""}}, "chat", 0)
    assert spec.instructions["code"] == ""
    assert spec.instructions["math"] == prompts.MATH_INSTRUCTION
    assert spec.system_prompt == prompts.PAPER_SYSTEM_PROMPT


def test_params_hash(demo_cfg):
    cfg = copy.deepcopy(demo_cfg["teachers"]["smollm2-135m"])
    base = TeacherSpec.from_config("smollm2-135m", cfg, demo_cfg["prompts"], "chat")
    again = TeacherSpec.from_config("smollm2-135m", copy.deepcopy(cfg), demo_cfg["prompts"], "chat")
    assert base.params_hash() == again.params_hash()
    hotter = copy.deepcopy(cfg)
    hotter["sampling"]["temperature"] = 0.9
    h2 = TeacherSpec.from_config("smollm2-135m", hotter, demo_cfg["prompts"], "chat")
    assert h2.params_hash() != base.params_hash()
    longer = copy.deepcopy(cfg)
    longer["sampling"]["max_new_tokens"] = 97
    assert TeacherSpec.from_config("x", longer, demo_cfg["prompts"], "chat").params_hash() \
        != base.params_hash()
    other_prompt = TeacherSpec.from_config("smollm2-135m", cfg, {"system_prompt": "Be brief."},
                                           "chat")
    assert other_prompt.params_hash() != base.params_hash()
    fewshot = TeacherSpec.from_config("smollm2-135m", cfg, demo_cfg["prompts"], "fewshot")
    assert fewshot.params_hash() != base.params_hash()
    # the teacher's name is not a generation parameter
    assert TeacherSpec.from_config("renamed", cfg, demo_cfg["prompts"], "chat").params_hash() \
        == base.params_hash()


def test_min_p_accepted_by_schema_is_usable(demo_cfg):
    cfg = copy.deepcopy(demo_cfg)
    cfg["teachers"]["smollm2-135m"]["sampling"]["min_p"] = 0.05
    validate_config(cfg)  # the schema allows it
    spec = TeacherSpec.from_config("smollm2-135m", cfg["teachers"]["smollm2-135m"],
                                   cfg["prompts"], "chat")
    assert spec.sampling.min_p == 0.05


def test_make_generator_unknown_backend():
    with pytest.raises(ValueError, match="unknown generation backend 'nope'"):
        make_generator("nope", "/nowhere", None, {})


# --- generate_responses with a fake generator --------------------------------------------------

class EchoGenerator:
    """Returns a fixed, well-formed response; records what it was asked."""

    def __init__(self):
        self.calls = []

    def generate(self, requests, sampling, stop):
        self.calls.append((list(requests), sampling, stop))
        for i, _ in enumerate(requests):
            yield i, [GenOutput(f"<think>\nr{i}s{s}\n</think>\n<answer>\n{i}\n</answer>", 5 + s,
                                "stop" if s == 0 else "length") for s in range(sampling.n)]

    def describe(self):
        return {"backend": "echo"}


def test_generate_responses_rows(demo_cfg):
    cfg = copy.deepcopy(demo_cfg["teachers"]["smollm2-135m"])
    cfg["sampling"]["n"] = 2
    teacher = TeacherSpec.from_config("smollm2-135m", cfg, demo_cfg["prompts"], "chat")
    gen = EchoGenerator()
    rows = generate_responses([_q("a"), _q("b")], teacher, gen, round_=3, seed=1234)
    requests, sampling, stop = gen.calls[0]
    assert [r.key for r in requests] == ["a", "b"]
    assert [r.messages[-1]["content"] for r in requests] == [
        "a\n\n" + prompts.MATH_INSTRUCTION, "b\n\n" + prompts.MATH_INSTRUCTION]
    assert requests[0].messages[0] == {"role": "system", "content": prompts.PAPER_SYSTEM_PROMPT}
    assert requests[0].seed != requests[1].seed  # per query, stable across restarts
    assert sampling.seed == 1234 and sampling.n == 2  # the stage's seed replaces the config's
    assert stop == ["</answer>"]
    assert [(r["query_id"], r["sample"]) for r in rows] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert all(r["round"] == 3 and r["teacher"] == "smollm2-135m" for r in rows)
    assert all(r["gen_params_hash"] == teacher.params_hash() for r in rows)
    assert rows[1]["think"] == "r0s1" and rows[1]["answer"] == "0"
    assert rows[1]["finish_reason"] == "length" and rows[1]["n_tokens"] == 6
    table_from_rows(rows, schemas.RESPONSE)


def test_generate_responses_nothing_pending(demo_cfg):
    teacher = TeacherSpec.from_config("t", demo_cfg["teachers"]["smollm2-135m"],
                                      demo_cfg["prompts"], "chat")
    gen = EchoGenerator()
    assert generate_responses([], teacher, gen, 1, 0) == []
    assert gen.calls == []


# --- the transformers backend on a tiny random Llama ---------------------------------------------

def _gen(path: str, **kw):
    from distillab.generate import TransformersGenerator

    return TransformersGenerator(path, device="cpu", **kw)


def _force_token(gen, token_id: int) -> None:
    """Make the model emit ``token_id`` at every step, whatever the input."""
    import torch

    lm = gen.model.lm_head
    forced = torch.nn.Linear(lm.in_features, lm.out_features, bias=True)
    with torch.no_grad():
        forced.weight.zero_()
        forced.bias.fill_(-10.0)
        forced.bias[token_id] = 10.0
    gen.model.lm_head = forced


GREEDY = SamplingSpec(temperature=0.0, max_new_tokens=6, n=2)
PROMPTS = [  # caller order is not length order
    "a much longer question that goes on and on about apples, think step by step please",
    "short",
    "a medium question about 3 plus 4",
]


def _run(gen, texts, sampling, stop):
    """Plain-text prompts through the backend, outputs in the caller's order."""
    return generate_all(gen, [GenRequest(str(i), text=t) for i, t in enumerate(texts)],
                        sampling, stop)


def test_render_chat_and_fewshot(tiny_model):
    gen = _gen(tiny_model)
    msgs = [{"role": "user", "content": "What is 3 plus 4?"}]
    chat = gen.render(build_request("q", msgs, "math", PromptSpec(demonstrations=1)))
    assert chat.startswith("<|im_start|>system\n" + prompts.PAPER_SYSTEM_PROMPT + "<|im_end|>")
    assert chat.endswith("<|im_start|>assistant\n")
    assert chat.count("<|im_start|>user") == 2  # one demonstration + the query
    assert "What is 3 plus 4?\n\n" + prompts.MATH_INSTRUCTION in chat
    few = gen.render(build_request("q", msgs, "math",
                                   PromptSpec(style="fewshot", demonstrations=2)))
    assert few.endswith("Answer:") and "<|im_start|>" not in few


def test_batched_generation_keeps_caller_order(tiny_model):
    batched = _run(_gen(tiny_model, batch_size=2), PROMPTS, GREEDY, [])
    assert [len(outs) for outs in batched] == [2, 2, 2]
    single = _gen(tiny_model, batch_size=1)
    for prompt, outs in zip(PROMPTS, batched):
        alone = _run(single, [prompt], dataclasses.replace(GREEDY, n=1), [])[0][0]
        for o in outs:
            assert (o.text, o.n_tokens) == (alone.text, alone.n_tokens)
    # different prompts give different continuations, so the order check above has teeth
    assert len({outs[0].text for outs in batched}) == 3


def test_length_finish_when_max_new_tokens_hit(tiny_model):
    outs = _run(_gen(tiny_model, batch_size=4), PROMPTS, GREEDY, ["</answer>"])
    for row in outs:
        for o in row:
            assert o.finish_reason == "length"
            assert o.n_tokens == GREEDY.max_new_tokens
            assert o.text


def test_same_seed_same_output(tiny_model):
    gen = _gen(tiny_model, batch_size=4)
    hot = SamplingSpec(temperature=2.0, top_p=1.0, max_new_tokens=8, seed=11, n=3)
    first = _run(gen, PROMPTS, hot, [])
    second = _run(gen, PROMPTS, hot, [])
    assert [[o.text for o in r] for r in first] == [[o.text for o in r] for r in second]
    other = _run(gen, PROMPTS, dataclasses.replace(hot, seed=12), [])
    assert [[o.text for o in r] for r in other] != [[o.text for o in r] for r in first]
    # sampled, not greedy: the n samples of one prompt differ
    assert len({o.text for o in first[0]}) > 1


def test_eos_gives_stop_and_no_tokens(tiny_model):
    gen = _gen(tiny_model, batch_size=4)
    _force_token(gen, gen.tok.eos_token_id)
    outs = _run(gen, PROMPTS, GREEDY, ["</answer>"])
    for row in outs:
        for o in row:
            assert (o.text, o.n_tokens, o.finish_reason) == ("", 0, "stop")


def test_stop_string_cuts_and_gives_stop(tiny_model):
    gen = _gen(tiny_model, batch_size=4)
    q = gen.tok.convert_tokens_to_ids("Q")
    assert gen.tok.decode([q]) == "Q"
    _force_token(gen, q)
    sampling = SamplingSpec(temperature=0.0, max_new_tokens=10, n=1)
    stopped = _run(gen, PROMPTS[:2], sampling, ["QQQ"])
    for [o] in stopped:
        assert o.finish_reason == "stop"
        assert o.text == ""  # a stop other than </answer> is dropped
        assert o.n_tokens == 3
    running = _run(gen, PROMPTS[:2], sampling, ["</answer>"])
    for [o] in running:
        assert (o.text, o.n_tokens, o.finish_reason) == ("Q" * 10, 10, "length")


def test_generate_responses_with_transformers(tiny_model, demo_cfg):
    cfg = copy.deepcopy(demo_cfg["teachers"]["smollm2-135m"])
    cfg["sampling"].update(max_new_tokens=5, n=2)
    teacher = TeacherSpec.from_config("tiny", cfg, demo_cfg["prompts"], "chat")
    gen = make_generator("transformers", tiny_model, None, {"batch_size": 3})
    queries = [_q("what is 3 plus 4?"), _q("apples")]
    rows = generate_responses(queries, teacher, gen, round_=1, seed=5)
    assert [(r["query_id"], r["sample"]) for r in rows] == [
        ("what is 3 plus 4?", 0), ("what is 3 plus 4?", 1), ("apples", 0), ("apples", 1)]
    assert all(0 < r["n_tokens"] <= 5 for r in rows)
    assert all(r["finish_reason"] in ("stop", "length") for r in rows)
    table = table_from_rows(rows, schemas.RESPONSE)
    assert table.num_rows == 4
    again = generate_responses(queries, teacher, gen, round_=1, seed=5)
    assert [r["text"] for r in again] == [r["text"] for r in rows]


def test_int8_dynamic_quantization_runs_on_cpu(tiny_model):
    gen = _gen(tiny_model, batch_size=2, quantization="int8_dynamic")
    outs = _run(gen, PROMPTS[:2], dataclasses.replace(GREEDY, n=1), [])
    assert all(o.n_tokens == GREEDY.max_new_tokens for [o] in outs)


def test_unknown_quantization(tiny_model):
    with pytest.raises(ValueError, match="unknown quantization 'int4'"):
        _gen(tiny_model, quantization="int4")


@pytest.mark.parametrize("rows, expected", [
    ([[1, 2, 3], [1, 2, 4], [1, 2]], 2),
    ([[5, 6], [5, 6]], 2),
    ([[1], [2]], 0),
    ([[7, 8, 9]], 3),
])
def test_common_prefix_len(rows, expected):
    from distillab.generate import common_prefix_len

    assert common_prefix_len(rows) == expected


def test_shared_prefix_cache_matches_plain_batching(tiny_model):
    """Prompts sharing the system prompt and a demonstration: the prefix is run once
    and repeated over the batch, suffixes padded in the middle; greedy outputs equal
    those of plain left-padded batching and of one prompt at a time."""
    gen = _gen(tiny_model, batch_size=3)
    spec = PromptSpec(demonstrations=1)
    questions = ["What is 3 plus 4?", "Tom has 5 apples and buys 3 more. How many apples?",
                 "3 plus 4", "What is 4 plus 3, think step by step?"]
    rendered = [gen.render(build_request(q, [{"role": "user", "content": q}], "math", spec)) for q in questions]
    rows = [gen.tok(r, add_special_tokens=False).input_ids for r in rendered]
    inputs = gen._batch_inputs(rows[:3])
    assert "past_key_values" in inputs  # the shared-prefix path is the one under test
    mask = inputs["attention_mask"].tolist()
    assert any(m[0] == 1 and m[-1] == 1 and 0 in m for m in mask)  # padded in the middle

    cached = _run(gen, rendered, GREEDY, [])
    plain = _gen(tiny_model, batch_size=3, prefix_cache=False)
    assert "past_key_values" not in plain._batch_inputs(rows[:3])
    assert cached == _run(plain, rendered, GREEDY, [])
    single = _gen(tiny_model, batch_size=1)
    for prompt, outs in zip(rendered, cached):
        alone = _run(single, [prompt], dataclasses.replace(GREEDY, n=1), [])[0][0]
        assert all((o.text, o.n_tokens) == (alone.text, alone.n_tokens) for o in outs)
    assert len({outs[0].text for outs in cached}) > 1


# --- resume after a killed job: PartialResponses and generate_shard ------------------------------

class CrashingGenerator(EchoGenerator):
    """Echo backend that dies after ``crash_after`` finished queries (a preempted job)."""

    def __init__(self, crash_after: int | None = None):
        super().__init__()
        self.crash_after = crash_after
        self.asked: list[str] = []

    def generate(self, requests, sampling, stop):
        for k, (i, outs) in enumerate(super().generate(requests, sampling, stop)):
            if self.crash_after is not None and k == self.crash_after:
                raise KeyboardInterrupt("preempted")
            self.asked.append(requests[i].key)
            yield i, outs


def _teacher(demo_cfg, n=2):
    cfg = copy.deepcopy(demo_cfg["teachers"]["smollm2-135m"])
    cfg["sampling"]["n"] = n
    return TeacherSpec.from_config("t", cfg, demo_cfg["prompts"], "chat")


def test_generate_shard_resumes_without_regenerating(demo_cfg, tmp_path):
    from distillab.generate import FlushPolicy, generate_shard

    teacher = _teacher(demo_cfg)
    queries = [_q(f"q{i}") for i in range(7)]
    out = tmp_path / "r1" / "000.parquet"
    first = CrashingGenerator(crash_after=5)
    with pytest.raises(KeyboardInterrupt):
        generate_shard(queries, teacher, 1, 9, out, lambda: first, FlushPolicy(every=2))
    # flushed every 2 queries, and once more as the error passed: all 5 finished survive
    parts = sorted((tmp_path / "r1" / "000.parquet.partial").glob("part-*.parquet"))
    assert len(parts) == 3
    second = CrashingGenerator()
    rows, counts = generate_shard(queries, teacher, 1, 9, out, lambda: second, FlushPolicy(every=2))
    assert second.asked == ["q5", "q6"]  # the finished ones were not asked again
    assert counts["queries_resumed"] == 5 and counts["queries_generated"] == 2
    assert [(r["query_id"], r["sample"]) for r in rows] == [
        (f"q{i}", s) for i in range(7) for s in range(2)]  # one row each, in query order


def test_duplicate_query_ids_fail_before_generating(demo_cfg, tmp_path):
    from distillab.generate import generate_shard

    gen = CrashingGenerator()
    with pytest.raises(ValueError, match="query id 'a' twice in the shard"):
        generate_shard([_q("a"), _q("b"), _q("a")], _teacher(demo_cfg), 1, 0,
                       tmp_path / "000.parquet", lambda: gen)
    assert gen.asked == []


def test_parts_after_a_gap_do_not_overwrite(demo_cfg, tmp_path):
    from distillab.generate import FlushPolicy, generate_shard

    teacher = _teacher(demo_cfg, n=1)
    out = tmp_path / "000.parquet"
    with pytest.raises(KeyboardInterrupt):
        generate_shard([_q(f"q{i}") for i in range(4)], teacher, 1, 0, out,
                       lambda: CrashingGenerator(crash_after=3), FlushPolicy(every=1))
    partial = tmp_path / "000.parquet.partial"
    (partial / "part-000002.parquet").unlink()  # q1 lost by hand: a gap
    gen = CrashingGenerator()
    rows, _ = generate_shard([_q(f"q{i}") for i in range(4)], teacher, 1, 0, out, lambda: gen,
                             FlushPolicy(every=1))
    assert gen.asked == ["q1", "q3"]
    assert [r["query_id"] for r in rows] == ["q0", "q1", "q2", "q3"]


def test_resumed_rows_are_split_by_the_current_parser(demo_cfg, tmp_path):
    """Parts store think/answer as split when generated; the output re-splits the text."""
    import pandas as pd

    from distillab.generate import generate_shard

    teacher = _teacher(demo_cfg, n=1)
    out = tmp_path / "000.parquet"
    with pytest.raises(KeyboardInterrupt):
        generate_shard([_q("a"), _q("b")], teacher, 1, 0, out,
                       lambda: CrashingGenerator(crash_after=1))
    [part] = (tmp_path / "000.parquet.partial").glob("part-*.parquet")
    stale = pd.read_parquet(part).assign(think="old split", answer="old")
    table_from_rows(stale.to_dict("records"), schemas.RESPONSE)
    stale.to_parquet(part)
    rows, _ = generate_shard([_q("a"), _q("b")], teacher, 1, 0, out, CrashingGenerator)
    assert (rows[0]["think"], rows[0]["answer"]) == ("r0s0", "0")


def test_generate_shard_nothing_left_never_opens_the_model(demo_cfg, tmp_path):
    from distillab.generate import generate_shard

    teacher = _teacher(demo_cfg, n=1)
    queries = [_q("a"), _q("b")]
    out = tmp_path / "000.parquet"
    generate_shard(queries, teacher, 1, 3, out, CrashingGenerator)
    # the job died after its last flush, before writing the output: the rerun loads nothing

    def no_model():
        raise AssertionError("model loaded although every query was done")

    rows, counts = generate_shard(queries, teacher, 1, 3, out, no_model)
    assert counts["queries_resumed"] == 2 and len(rows) == 2


def test_partial_parts_of_other_settings_are_discarded(demo_cfg, tmp_path):
    from distillab.generate import generate_shard

    queries = [_q("a"), _q("b")]
    out = tmp_path / "000.parquet"
    generate_shard(queries, _teacher(demo_cfg, n=1), 1, 3, out, CrashingGenerator)
    hotter = copy.deepcopy(demo_cfg["teachers"]["smollm2-135m"])
    hotter["sampling"]["temperature"] = 1.1
    teacher = TeacherSpec.from_config("t", hotter, demo_cfg["prompts"], "chat")
    gen = CrashingGenerator()
    rows, counts = generate_shard(queries, teacher, 1, 3, out, lambda: gen)
    assert gen.asked == ["a", "b"] and counts["queries_resumed"] == 0
    assert {r["gen_params_hash"] for r in rows} == {teacher.params_hash()}


def test_finished_queries_no_longer_pending_are_ignored(demo_cfg, tmp_path):
    from distillab.generate import generate_shard

    teacher = _teacher(demo_cfg, n=1)
    out = tmp_path / "000.parquet"
    generate_shard([_q("a"), _q("b")], teacher, 2, 3, out, CrashingGenerator)
    rows, counts = generate_shard([_q("b")], teacher, 2, 3, out, CrashingGenerator)
    assert [r["query_id"] for r in rows] == ["b"] and counts["queries_resumed"] == 1


def test_reasoning_returned_apart_is_put_back_in_think():
    """Hosted R1 returns reasoning_content beside the content: one record format."""
    from distillab.generate import response_rows

    out = GenOutput("The answer is \\boxed{4}.", 12, "stop", reasoning="2 + 2 = 4")
    [row] = response_rows(_q("a"), [out], "r1", 1, "h")
    assert row["think"] == "2 + 2 = 4" and row["answer"] == "The answer is \\boxed{4}."
    assert row["text"].startswith("<think>\n2 + 2 = 4\n</think>")


def test_open_answer_is_none_whatever_the_finish_reason():
    """The split reads the text only: a backend whose server strips the stop string puts
    it back (gen_openai), so an open <answer> here means a cut-off answer."""
    from distillab.generate import response_rows

    outs = [GenOutput("<think>x</think><answer>42", 5, "stop"),
            GenOutput("<think>x</think><answer>42", 5, "length"),
            GenOutput("<think>x</think><answer>42</answer>", 5, "stop")]
    assert [r["answer"] for r in response_rows(_q("a"), outs, "t", 1, "h")] == [None, None, "42"]


def test_gen_request_needs_exactly_one_prompt_form():
    with pytest.raises(ValueError, match="exactly one of messages and text"):
        GenRequest("k")
    with pytest.raises(ValueError, match="exactly one"):
        GenRequest("k", messages=[], text="x")


def test_operational_knobs_do_not_change_the_params_hash(demo_cfg):
    from distillab.generate import semantic_options

    cfg = {"model": "m", "backend": "openai", "sampling": {"temperature": 0.6, "top_p": 0.9,
                                                           "max_new_tokens": 8},
           "openai": {"base_url": "http://a:8000/v1", "model": "served", "concurrency": 4}}
    moved = copy.deepcopy(cfg)
    moved["openai"].update(base_url="http://b:9000/v1", concurrency=64)
    spec = lambda c: TeacherSpec.from_config("t", c, demo_cfg["prompts"], "chat")  # noqa: E731
    assert spec(cfg).params_hash() == spec(moved).params_hash()
    assert semantic_options(cfg) == semantic_options(moved)
    other = copy.deepcopy(cfg)
    other["openai"]["model"] = "another-model"
    assert spec(other).params_hash() != spec(cfg).params_hash()
