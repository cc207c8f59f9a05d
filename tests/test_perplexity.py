"""Perplexity of accepted responses (distillab.perplexity).

Every numeric check runs the ``tiny_model`` fixture (a random 2-layer Llama with a ChatML
template, built locally) and compares against a hand computation from one unbatched
forward pass. The ordering check (repetitive text below random text) has a version that
needs no downloaded model (the tiny model is first trained on the repetitive text) and
one on the demo's SmolLM2-135M-Instruct, skipped where that model dir is absent.
The vLLM scorer's bookkeeping is checked against a stand-in engine that computes prompt
logprobs with the tiny model; the real-engine comparison is marked ``vllm``.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from distillab import perplexity
from distillab.perplexity import (ItemTooLong, PerplexityItem, ScoredItem, TransformersScorer,
                                  VLLMScorer, make_scorer, perplexity_threshold, plain_prompt,
                                  token_batches, tokenize, tokenize_item)

torch = pytest.importorskip("torch")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO_ROOT / "results/demo/models/smollm2-135m-instruct"

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
PROMPT = [SYSTEM, {"role": "user", "content": "What is 3 plus 4?"}]
RESPONSES = [
    "<think> 3 + 4 = 7 </think> <answer> The answer is \\boxed{7}. </answer>",
    "7",
    "<think>\nTom has 5 apples and buys 3 more: 5 + 3 = 8.\n</think>\n<answer>\n"
    "He has \\boxed{8} apples.\n</answer>",
    "The reasoning process and answer are enclosed within tags. " * 3,
]
MULTI_TURN = [SYSTEM, {"role": "user", "content": "What is 3 plus 4?"},
              {"role": "assistant", "content": "<answer> 7 </answer>"},
              {"role": "user", "content": "And 5 more?"}]


def _items() -> list[PerplexityItem]:
    items = [PerplexityItem(f"r{i}", PROMPT, r) for i, r in enumerate(RESPONSES)]
    items.append(PerplexityItem("multi", MULTI_TURN, "<think> 7 + 5 = 12 </think> 12"))
    return items


@pytest.fixture(scope="module")
def tiny(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    return tok, model


def _scorer(tiny, **kw) -> TransformersScorer:
    tok, model = tiny
    return TransformersScorer("tiny", model=model, tokenizer=tok, dtype="float32",
                              device="cpu", **kw)


def hand_mean_nll(model, ids: list[int], n_prompt: int) -> float:
    """Mean NLL of ids[n_prompt:] from one unbatched forward pass over all of ids."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    targets = torch.tensor(ids[n_prompt:])
    picked = logp[n_prompt - 1:len(ids) - 1].gather(1, targets[:, None]).squeeze(1)
    return float(-picked.double().mean())


def _eot(tok) -> int:
    return tok.convert_tokens_to_ids("<|im_end|>")


# ------------------------------------------------------------------------------- tokens


def test_assistant_tokens_are_the_response_and_end_of_turn(tiny):
    tok, _ = tiny
    for item in _items():
        t = tokenize(tok, item, None)
        assert t.how == "template"
        prompt_ids = tok(tok.apply_chat_template(item.prompt_messages, tokenize=False,
                                                 add_generation_prompt=True),
                         add_special_tokens=False).input_ids
        assert t.input_ids[:t.n_prompt] == prompt_ids
        # the response's own tokens and <|im_end|>; ChatML's newline after it is not scored
        assert t.input_ids[t.n_prompt:] == (tok(item.response, add_special_tokens=False)
                                            .input_ids + [_eot(tok)])
        assert tok.decode(t.input_ids[t.n_prompt:]) == item.response + "<|im_end|>"
        assert tokenize_item(tok, item, None) == (t.input_ids, t.n_prompt)


def test_too_long_raises_with_counts(tiny):
    tok, _ = tiny
    item = _items()[0]
    ids, _ = tokenize_item(tok, item, None)
    assert tokenize_item(tok, item, len(ids))[0] == ids  # exactly max_length fits
    with pytest.raises(ItemTooLong) as err:
        tokenize_item(tok, item, len(ids) - 1)
    assert (err.value.n_tokens, err.value.max_length) == (len(ids), len(ids) - 1)


TRIM_CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}"
               "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
               "{% endif %}")


def test_template_without_clean_prefix_falls_back(tiny_model, tiny):
    """A template that trims the content (the rendered turn is not prompt + response):
    the ids are prompt ids + the response on its own + the end-of-turn token."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = TRIM_CHATML
    item = PerplexityItem("trim", PROMPT, "  <answer> The answer is 7. </answer>\n\n")
    t = tokenize(tok, item, None)
    prompt_ids = tok(tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True),
                     add_special_tokens=False).input_ids
    assert t.how == "fallback"
    assert t.input_ids == (prompt_ids + tok(item.response, add_special_tokens=False).input_ids
                           + [_eot(tok)])
    assert t.n_prompt == len(prompt_ids)
    # where a template does extend the prompt cleanly, both constructions agree
    clean = PerplexityItem("clean", PROMPT, RESPONSES[0])
    assert tokenize(tok, clean, None).input_ids == tokenize(tiny[0], clean, None).input_ids
    # and the fallback ids are scored like any others
    (res,) = _scorer((tok, tiny[1])).score([item])
    assert res.mean_nll == pytest.approx(hand_mean_nll(tiny[1], t.input_ids, t.n_prompt),
                                         abs=1e-5)
    assert res.n_scored_tokens == len(t.input_ids) - t.n_prompt


SPACE_CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}"
                "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant "
                "{% endif %}")


def test_boundary_merge_is_caught_by_the_prefix_check(tiny_model):
    """A generation prompt ending in a space ("[/INST] "-style): the rendered text is
    prompt + response + tail, but the space merges with the response's first word, so
    the prompt ids are no prefix of the whole conversation's. The fallback keeps the
    prompt ids the model was prompted with at generation time."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = SPACE_CHATML
    item = PerplexityItem("ws", PROMPT, "answer is 7")
    prompt_text = tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    prompt_ids = tok(prompt_text, add_special_tokens=False).input_ids
    whole = tok(tok.apply_chat_template(PROMPT + [{"role": "assistant", "content":
                                                   item.response}], tokenize=False),
                add_special_tokens=False).input_ids
    assert whole[:len(prompt_ids)] != prompt_ids  # " answer" is one token in the whole
    t = tokenize(tok, item, None)
    assert t.how == "fallback"
    assert t.input_ids[:t.n_prompt] == prompt_ids
    assert t.input_ids[t.n_prompt:] == (tok(item.response, add_special_tokens=False).input_ids
                                        + [_eot(tok)])


def test_base_model_plain_rendering(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = None
    item = PerplexityItem("base", PROMPT, "The answer is 7.")
    prompt = plain_prompt(PROMPT)
    assert prompt == ("system: You are a helpful assistant.\n\nuser: What is 3 plus 4?"
                      "\n\nassistant: ")
    t = tokenize(tok, item, None)
    assert t.how == "plain"
    assert tok.decode(t.input_ids) == prompt + item.response
    # the token carrying the separator space and the first word is the first one scored
    assert tok.decode(t.input_ids[:t.n_prompt]) == prompt.rstrip(" ")
    assert tok.decode(t.input_ids[t.n_prompt:]) == " " + item.response


# ------------------------------------------------------------------------------- scores


def test_masked_nll_equals_a_hand_computation(tiny):
    tok, model = tiny
    items = _items()
    results = _scorer(tiny).score(items)
    for item, res in zip(items, results):
        ids, n_prompt = tokenize_item(tok, item, None)
        expected = hand_mean_nll(model, ids, n_prompt)
        assert res.key == item.key and res.reason is None
        assert res.mean_nll == pytest.approx(expected, abs=1e-5)
        assert res.ppl == pytest.approx(math.exp(expected), rel=1e-5)
        assert res.n_scored_tokens == len(ids) - n_prompt


def test_batching_padding_and_sorting_do_not_change_scores(tiny):
    items = _items() * 2
    lengths = [len(tokenize_item(tiny[0], it, None)[0]) for it in items]
    assert len(set(lengths)) > 3  # mixed lengths: padding really happens
    one_batch = _scorer(tiny, batch_tokens=10**6).score(items)
    one_by_one = _scorer(tiny, batch_tokens=1).score(items)
    middle = _scorer(tiny, batch_tokens=3 * max(lengths)).score(items)
    for a, b, c, item in zip(one_batch, one_by_one, middle, items):
        assert a.key == b.key == c.key == item.key  # input order kept
        assert a.mean_nll == pytest.approx(b.mean_nll, abs=1e-5)
        assert c.mean_nll == pytest.approx(b.mean_nll, abs=1e-5)
        assert a.n_scored_tokens == b.n_scored_tokens == c.n_scored_tokens


@pytest.mark.parametrize("budget", [1, 50, 200, 10**6])
def test_token_batches_cover_everything_within_budget(budget):
    lengths = [5, 40, 17, 40, 3, 99, 60, 60, 1]
    batches = token_batches(lengths, budget)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        width = max(lengths[i] for i in b)
        assert len(b) == 1 or len(b) * width <= budget
    assert lengths[batches[0][0]] == max(lengths)  # the biggest batch first


def test_prompt_tokens_count_only_as_context(tiny):
    """The same response under two prompts: the same scored tokens, different scores
    (the prompt conditions them), and a prompt 5x longer adds no scored token."""
    tok, _ = tiny
    response = RESPONSES[0]
    short = PerplexityItem("short", PROMPT, response)
    long_prompt = [SYSTEM, {"role": "user", "content": "What is 3 plus 4? " * 5}]
    long = PerplexityItem("long", long_prompt, response)
    a, b = _scorer(tiny).score([short, long])
    n_response = len(tok(response, add_special_tokens=False).input_ids) + 1  # + <|im_end|>
    assert a.n_scored_tokens == b.n_scored_tokens == n_response
    assert tokenize_item(tok, long, None)[1] > tokenize_item(tok, short, None)[1] + 20
    assert a.mean_nll != pytest.approx(b.mean_nll, abs=1e-4)


def test_too_long_items_are_null_and_the_rest_still_scored(tiny):
    items = _items()
    lengths = [len(tokenize_item(tiny[0], it, None)[0]) for it in items]
    limit = sorted(lengths)[2]
    free = _scorer(tiny).score(items)
    capped = _scorer(tiny, max_length=limit).score(items)
    assert [r.key for r in capped] == [it.key for it in items]
    for n, a, b in zip(lengths, free, capped):
        if n > limit:
            assert b == ScoredItem(a.key, None, None, 0, "too_long")
        else:
            assert b.mean_nll == pytest.approx(a.mean_nll, abs=1e-6) and b.reason is None
    assert sum(r.reason == "too_long" for r in capped) == sum(n > limit for n in lengths) > 0


def _rep_and_random(tok, prompt, repeats):
    """The repetitive text and a text of as many random tokens: drawn from the " word"
    tokens that tokenize back to themselves, so the random text is exactly that long."""
    rep = " " + ("the cat sat on the mat. " * repeats).rstrip()
    n = len(tok(rep, add_special_tokens=False).input_ids)
    pool = []
    for i in range(min(len(tok), 8000)):
        text = tok.decode([i])
        if (text.startswith(" ") and text[1:].isalpha()
                and tok(text, add_special_tokens=False).input_ids == [i]):
            pool.append(text)
    assert len(pool) >= 20
    rng = random.Random(0)
    rand = "".join(rng.choice(pool) for _ in range(n))
    assert len(tok(rand, add_special_tokens=False).input_ids) == n
    return PerplexityItem("rep", prompt, rep), PerplexityItem("rand", prompt, rand)


def test_repetitive_text_beats_random_text_after_learning_it(tiny_model, tiny):
    """No downloaded model: the tiny model is trained a few dozen steps on the repetitive
    text (a model that learned it must find it far less surprising than random tokens)."""
    from transformers import AutoModelForCausalLM

    tok, _ = tiny
    rep, rand = _rep_and_random(tok, PROMPT, 8)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    ids, _ = tokenize_item(tok, rep, None)
    x = torch.tensor([ids])
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    a, b = _scorer((tok, model)).score([rep, rand])
    assert a.n_scored_tokens == b.n_scored_tokens
    assert a.ppl < 2.0 and b.ppl > 10 * a.ppl, (a, b)


def _real_model() -> str:
    for path in (os.environ.get("DISTILLAB_VLLM_MODEL"), DEMO_MODEL):
        if path and (Path(path) / "config.json").is_file():
            return str(path)
    pytest.skip(f"no SmolLM2 model dir at {DEMO_MODEL} (make demo) or in "
                "DISTILLAB_VLLM_MODEL")


def test_repetitive_text_beats_random_text_under_a_real_model(one_thread):
    scorer = TransformersScorer(_real_model(), dtype="float32", device="cpu")
    rep, rand = _rep_and_random(scorer.tok, PROMPT, 30)
    a, b = scorer.score([rep, rand])
    assert a.ppl < 3.0 and b.ppl > 10 * a.ppl, (a, b)


# ---------------------------------------------------------------------------- threshold


def test_threshold_absolute_percentile_both_none():
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert perplexity_threshold(values, 3.5, None) == 3.5
    assert perplexity_threshold(values, None, 50) == 3.0
    assert perplexity_threshold(values, None, 95) == pytest.approx(4.8)  # linear
    assert perplexity_threshold(values, None, 100) == 5.0
    assert perplexity_threshold(values, None, 0) == 1.0
    assert perplexity_threshold(values, 3.5, 95) == 3.5  # the lower cut
    assert perplexity_threshold(values, 10.0, 50) == 3.0
    assert perplexity_threshold(values, None, None) is None


def test_threshold_ignores_unscored_values():
    with_nan = np.array([1.0, np.nan, 2.0, 3.0, np.nan, 4.0, 5.0])
    with_none = np.array([None, 1.0, 2.0, 3.0, 4.0, 5.0, None], dtype=object)
    for values in (with_nan, with_none, [1.0, None, 2.0, 3.0, 4.0, 5.0]):
        assert perplexity_threshold(values, None, 50) == 3.0
    assert perplexity_threshold(np.array([np.nan]), None, 95) is None  # nothing scored
    assert perplexity_threshold(np.array([]), 20.0, 95) == 20.0


@pytest.mark.parametrize("max_ppl,pct,field", [(None, -1, "max_percentile"),
                                               (None, 100.5, "max_percentile"),
                                               (0.0, None, "max_ppl"), (-3, 50, "max_ppl")])
def test_threshold_rejects_bad_settings(max_ppl, pct, field):
    with pytest.raises(ValueError, match=field):
        perplexity_threshold(np.array([1.0, 2.0]), max_ppl, pct)


# ---------------------------------------------------------------------- vLLM scorer


class StandInParams:
    def __init__(self, **kw):
        self.kw = kw


class StandInLLM:
    """``vllm.LLM`` for the calls the scorer makes: prompt logprobs from the tiny model,
    each position's dict holding the actual token and a decoy."""

    def __init__(self, tok, model, max_model_len=4096):
        self.tok, self.model = tok, model
        self.model_config = SimpleNamespace(max_model_len=max_model_len)
        self.calls: list[int] = []
        self.params: list = []

    def get_tokenizer(self):
        return self.tok

    def generate(self, prompts, params, use_tqdm):
        assert use_tqdm is False
        self.calls.append(len(prompts))
        self.params.append(params)
        outs = []
        for p in prompts:
            ids = p["prompt_token_ids"]
            assert len(ids) < self.model_config.max_model_len
            with torch.no_grad():
                logp = torch.log_softmax(self.model(torch.tensor([ids])).logits[0].float(), -1)
            plp = [None]
            for j in range(1, len(ids)):
                decoy = (ids[j] + 1) % logp.shape[1]
                plp.append({decoy: SimpleNamespace(logprob=0.0),
                            ids[j]: SimpleNamespace(logprob=float(logp[j - 1, ids[j]]))})
            outs.append(SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=plp))
        return outs


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(perplexity, "_sampling_params_class", lambda: StandInParams)
    return StandInLLM


def test_vllm_scorer_reads_prompt_logprobs_like_the_transformers_scorer(tiny, stand_in):
    tok, model = tiny
    items = _items()
    llm = stand_in(tok, model)
    got = VLLMScorer("tiny", llm=llm, chunk_size=2).score(items)
    want = _scorer(tiny).score(items)
    assert llm.calls == [2, 2, 1]
    assert llm.params[0].kw == {"max_tokens": 1, "prompt_logprobs": 0, "temperature": 0.0,
                                "detokenize": False}
    for a, b in zip(got, want):
        assert a.key == b.key and a.n_scored_tokens == b.n_scored_tokens
        assert a.mean_nll == pytest.approx(b.mean_nll, abs=1e-5)


def test_vllm_scorer_too_long_leaves_room_for_the_generated_token(tiny, stand_in):
    tok, model = tiny
    items = _items()
    lengths = [len(tokenize_item(tok, it, None)[0]) for it in items]
    limit = sorted(lengths)[2]
    scorer = VLLMScorer("tiny", llm=stand_in(tok, model, max_model_len=limit + 1),
                        max_length=10**6)
    assert scorer.max_length == limit
    res = scorer.score(items)
    assert [r.reason for r in res] == ["too_long" if n > limit else None for n in lengths]
    assert all(r.ppl is not None for r, n in zip(res, lengths) if n <= limit)


def test_vllm_scorer_rejects_mismatched_logprobs():
    t = perplexity.Tokenized([5, 6, 7], 2, "template")
    with pytest.raises(RuntimeError, match="2 positions, the prompt has 3"):
        VLLMScorer.nll_from_prompt_logprobs(t, [None, {6: -1.0}])
    assert VLLMScorer.nll_from_prompt_logprobs(
        t, [None, {6: -1.0}, {7: SimpleNamespace(logprob=-0.5)}]) == (0.5, 1)


# --------------------------------------------------------------------- make_scorer, stage


def test_make_scorer_transformers_options(tiny_model):
    scorer = make_scorer("transformers", tiny_model,
                         {"model": "tiny", "backend": "transformers", "gpus": 0,
                          "batch_tokens": 123, "max_length": 77, "dtype": "float32"})
    assert isinstance(scorer, TransformersScorer)
    d = scorer.describe()
    assert (d["batch_tokens"], d["max_length"], d["dtype_resolved"], d["model"]) == (
        123, 77, "torch.float32", tiny_model)
    with pytest.raises(ValueError, match="batch_size"):
        make_scorer("transformers", tiny_model, {"batch_size": 3})
    with pytest.raises(ValueError, match="backend"):
        make_scorer("llamacpp", tiny_model, {})


def test_make_scorer_vllm_options_and_model_ref(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(perplexity, "VLLMScorer", lambda *a, **kw: seen.update(args=a, **kw))
    (tmp_path / "model_ref.json").write_text(
        '{"source": "hub", "repo_id": "Qwen/QwQ-32B", "revision": "abc123"}')
    make_scorer("vllm", str(tmp_path),
                {"model": "qwq-32b", "backend": "vllm", "gpus": 2, "max_length": 40960,
                 "dtype": "bfloat16", "vllm": {"tensor_parallel_size": 2,
                                               "gpu_memory_utilization": 0.85,
                                               "engine_args": {"max_num_seqs": 64}}})
    assert seen == {"args": ("Qwen/QwQ-32B", "abc123"), "dtype": "bfloat16",
                    "max_length": 40960, "extra_engine_args": {"max_num_seqs": 64},
                    "tensor_parallel_size": 2, "gpu_memory_utilization": 0.85}
    with pytest.raises(ValueError, match="tensor_parallel"):
        make_scorer("vllm", str(tmp_path), {"vllm": {"tensor_parallel": 2}})


def _row(schema, **values):
    return {name: values.get(name) for name in schema.names}


def test_stage_scores_the_sft_conversation(tiny_model, tiny, tmp_path):
    from distillab import prompts, schemas
    from distillab.curate import sft_rows
    from distillab.io import read_rows, write_table

    queries = [_row(schemas.QUERY, query_id=f"q{i}", source="s", category=c,
                    messages=[{"role": "user", "content": f"What is {i} plus 4?"}])
               for i, c in enumerate(["math", "chat", "math"])]
    accepted = [_row(schemas.VERIFIED, query_id=f"q{i}", teacher="t", round=0, sample=0,
                     think=f"{i} + 4 = {i + 4}", answer=f"\\boxed{{{i + 4}}}",
                     category=q["category"], text="x", passed=True)
                for i, q in enumerate(queries)]
    accepted[2]["think"] = "long " * 150  # over max_length
    write_table(tmp_path / "accepted.parquet", accepted, schemas.VERIFIED)
    write_table(tmp_path / "queries.parquet", queries, schemas.QUERY)
    added = {}
    smk = SimpleNamespace(
        wildcards=SimpleNamespace(teacher="t"),
        input=SimpleNamespace(accepted=str(tmp_path / "accepted.parquet"),
                              queries=str(tmp_path / "queries.parquet"), model=[tiny_model]),
        output=SimpleNamespace(scores=str(tmp_path / "ppl.parquet")),
        params=SimpleNamespace(prompts={"system_prompt": "Be brief."},
                               scorer={"model": "tiny", "backend": "transformers",
                                       "batch_tokens": 4096, "max_length": 200,
                                       "dtype": "float32"}))
    perplexity.perplexity_from_snakemake(smk, SimpleNamespace(add=added.update))
    rows = read_rows(smk.output.scores, schemas.PERPLEXITY)
    assert [(r["query_id"], r["teacher"], r["category"]) for r in rows] == [
        ("q0", "t", "math"), ("q1", "t", "chat"), ("q2", "t", "math")]
    assert rows[2]["ppl"] is None and rows[2]["reason"] == "too_long"
    assert (added["rows_in"], added["scored"], added["unscored"]) == (3, 2, {"too_long": 1})
    assert added["scorer"]["backend"] == "transformers"
    # the scored conversation is exactly the SFT row the student trains on
    instructions = dict(prompts.DEFAULT_INSTRUCTIONS)
    items = perplexity.items_for_teacher(accepted, {q["query_id"]: q for q in queries},
                                         "Be brief.", instructions)
    sft, _ = sft_rows({"t": accepted}, "t", {q["query_id"]: q for q in queries}, "per_teacher",
                      "Be brief.", instructions, len)
    for item, row in zip(items, sft):
        assert item.prompt_messages + [{"role": "assistant", "content": item.response}] == \
            row["messages"]
    tok, model = tiny
    for item, r in zip(items[:2], rows[:2]):
        ids, n = tokenize_item(tok, item, None)
        assert r["mean_nll"] == pytest.approx(hand_mean_nll(model, ids, n), abs=1e-5)
        assert r["n_scored_tokens"] == len(ids) - n and r["reason"] is None


# ------------------------------------------------------------------- real vLLM engine


@pytest.mark.vllm
def test_real_vllm_agrees_with_transformers(one_thread):
    """vLLM's prompt logprobs and transformers' forward pass give the same mean NLL on
    the demo's SmolLM2 (float32 on CPU; ``make vllm-test`` provides vllm and the model)."""
    pytest.importorskip("vllm", reason="vllm not installed: run `make vllm-test`")
    model = _real_model()
    items = _items()
    items.append(PerplexityItem("rep", PROMPT, "the cat sat on the mat. " * 30))
    vllm_scorer = VLLMScorer(model, dtype="float32", max_model_len=1024, enforce_eager=True,
                             seed=0, chunk_size=3)
    try:
        got = vllm_scorer.score(items)
    finally:
        vllm_scorer.close()
    want = TransformersScorer(model, dtype="float32", device="cpu").score(items)
    for a, b in zip(got, want):
        assert a.key == b.key and a.n_scored_tokens == b.n_scored_tokens > 0
        assert a.mean_nll == pytest.approx(b.mean_nll, rel=1e-2, abs=1e-3), (a, b)
