"""The high-frequency n-gram filter (distillab.ngram_filter) on datasets whose answer is known.

A word-level tokenizer (1 whitespace-separated word = 1 token, built locally) makes every
count exact to reason about; a brute-force ``Counter`` over token tuples is the reference.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillab import ngram_filter
from distillab.ngram_filter import NgramFilterSpec, default_partitions, find_high_frequency_ngrams

PHRASE = "alpha beta gamma delta epsilon"


def word_tokenizer(texts: list[str], extra: tuple[str, ...] = ()):
    """A transformers fast tokenizer whose tokens are the whitespace-separated words."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for t in texts if t for w in t.split()} | set(extra))
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def write(tmp_path: Path, texts: list[str | None], name: str = "accepted.parquet") -> Path:
    path = tmp_path / name
    table = pa.table({"query_id": [f"q{i}" for i in range(len(texts))],
                      "teacher": ["t"] * len(texts), "text": pa.array(texts, pa.string())})
    pq.write_table(table, path)
    return path


def filler(rng: random.Random, k: int, tag: str) -> str:
    """k words that occur nowhere else in the dataset."""
    return " ".join(f"{tag}w{rng.randrange(10**9)}" for _ in range(k))


def run(tmp_path, texts, n=5, max_count=3, tokenizer=None, **kw):
    path = write(tmp_path, texts)
    tok = tokenizer or word_tokenizer([t for t in texts if t])
    kw.setdefault("progress", False)
    return find_high_frequency_ngrams(path, tok, NgramFilterSpec(n=n, max_count=max_count), **kw)


def flagged(result) -> list[int]:
    return [i for i, w in enumerate(result.rows.column("hf_windows").to_pylist()) if w > 0]


def reference(texts: list[str | None], n: int, max_count: int):
    """Brute force: (hf_windows per row, Counter of all windows)."""
    toks = [(t or "").split() for t in texts]
    counts = Counter(tuple(w[j:j + n]) for w in toks for j in range(len(w) - n + 1))
    hf = [sum(counts[tuple(w[j:j + n])] > max_count for j in range(len(w) - n + 1)) for w in toks]
    return hf, counts


# --- the known answers ------------------------------------------------------------------------

def test_phrase_in_max_count_plus_one_rows_flags_exactly_those_rows(tmp_path):
    rng = random.Random(0)
    texts = [filler(rng, 30, "a") for _ in range(40)]
    carriers = [3, 11, 12, 25]  # max_count + 1 = 4 rows
    for i in carriers:
        texts[i] = f"{filler(rng, 7, 'p')} {PHRASE} {filler(rng, 9, 's')}"
    res = run(tmp_path, texts, n=5, max_count=3)
    assert flagged(res) == carriers
    hf = res.rows.column("hf_windows").to_pylist()
    assert [hf[i] for i in carriers] == [1, 1, 1, 1]
    spans = res.rows.column("example_span").to_pylist()
    assert [spans[i] for i in carriers] == [PHRASE] * 4
    assert all(spans[i] is None for i in range(40) if i not in carriers)
    assert res.flagged_ids == [f"q{i}" for i in carriers]
    assert res.top == [{"count": 4, "text": PHRASE, "rows": 4}]
    assert res.stats["flagged_rows"] == 4 and res.stats["frequent_ngrams"] == 1
    assert res.stats["hash_collisions"] == 0
    assert res.rows.column("query_id").to_pylist() == [f"q{i}" for i in range(40)]
    assert res.rows.schema.types == [pa.string(), pa.int32(), pa.int32(), pa.string()]


def test_phrase_in_exactly_max_count_rows_is_not_flagged(tmp_path):
    rng = random.Random(1)
    texts = [filler(rng, 30, "a") for _ in range(40)]
    for i in (3, 11, 12):  # max_count = 3 rows: "more than max_count" is not met
        texts[i] = f"{filler(rng, 7, 'p')} {PHRASE} {filler(rng, 9, 's')}"
    res = run(tmp_path, texts, n=5, max_count=3)
    assert flagged(res) == [] and res.top == []
    assert res.rows.column("example_span").null_count == 40
    assert res.stats["frequent_ngrams"] == 0 and res.stats["flagged_rows"] == 0


def test_repeats_inside_one_row_count_as_occurrences(tmp_path):
    rng = random.Random(2)
    texts = [filler(rng, 20, "a") for _ in range(10)]
    texts[6] = " ".join([PHRASE] * 5)  # 25 tokens, 21 windows, all five rotations
    res = run(tmp_path, texts, n=5, max_count=3)
    assert flagged(res) == [6]
    # the phrase occurs 5 times, each of its 4 other rotations 4 times: all > 3
    assert res.rows.column("hf_windows").to_pylist()[6] == 21
    assert res.rows.column("example_span").to_pylist()[6] == PHRASE
    assert res.top[0] == {"count": 5, "text": PHRASE, "rows": 1}
    assert sorted(t["count"] for t in res.top) == [4, 4, 4, 4, 5]
    # one fewer repeat: the rotations occur 3 times and only the phrase itself (4) counts
    texts[6] = " ".join([PHRASE] * 4)
    res = run(tmp_path, texts, n=5, max_count=3)
    assert flagged(res) == [6] and res.rows.column("hf_windows").to_pylist()[6] == 4


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 4096])
def test_windows_never_cross_rows(tmp_path, batch_rows):
    """Row 2k ends with "alpha beta gamma", row 2k+1 starts with "delta epsilon": joined,
    the phrase would occur 10 times; split, no 5-token window repeats."""
    rng = random.Random(3)
    texts = []
    for _ in range(10):
        texts.append(f"{filler(rng, 6, 'h')} alpha beta gamma")
        texts.append(f"delta epsilon {filler(rng, 6, 't')}")
    res = run(tmp_path, texts, n=5, max_count=3, batch_rows=batch_rows)
    assert flagged(res) == [] and res.stats["frequent_ngrams"] == 0
    assert res.stats["windows"] == 10 * ((9 - 5 + 1) + (8 - 5 + 1))


def test_short_and_empty_rows_get_their_token_counts_and_are_never_flagged(tmp_path):
    texts = ["x y z w"] * 100 + ["", None, "   ", "x"] + ["x y z w v"] * 2
    res = run(tmp_path, texts, n=5, max_count=3)
    assert flagged(res) == []
    n_tokens = res.rows.column("n_tokens").to_pylist()
    assert n_tokens == [4] * 100 + [0, 0, 0, 1] + [5, 5]
    assert res.stats["windows"] == 2 and res.stats["tokens"] == 411
    assert res.stats["null_texts"] == 1
    # all rows empty or short: no windows at all, nothing spilled, still one row each
    res = run(tmp_path, ["", None, "a b"], n=5, max_count=1)
    assert res.rows.num_rows == 3 and res.stats["windows"] == 0 and flagged(res) == []
    assert res.rows.column("n_tokens").to_pylist() == [0, 0, 2]


def test_empty_file(tmp_path):
    res = run(tmp_path, [], tokenizer=word_tokenizer(["a"]))
    assert res.rows.num_rows == 0 and res.top == [] and res.stats["rows"] == 0


def random_texts(seed: int, rows: int = 150) -> list[str]:
    """Small vocabulary, skewed lengths: many n-grams repeat, around any threshold."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(rng.choice([3, 5, 8]))]
    texts = []
    for _ in range(rows):
        length = min(int(rng.expovariate(1 / 10)), 60)
        texts.append(" ".join(rng.choice(vocab) for _ in range(length)))
    return texts


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_counter(tmp_path, seed):
    rng = random.Random(100 + seed)
    texts = random_texts(seed)
    n, max_count = rng.choice([1, 2, 3, 4]), rng.choice([1, 3, 6, 15])
    res = run(tmp_path, texts, n=n, max_count=max_count, batch_rows=rng.choice([1, 16, 4096]),
              partitions=rng.choice([1, 3, 8]), top_k=5)
    hf, counts = reference(texts, n, max_count)
    assert res.rows.column("hf_windows").to_pylist() == hf
    assert flagged(res) == [i for i, v in enumerate(hf) if v]
    assert res.rows.column("n_tokens").to_pylist() == [len(t.split()) for t in texts]
    frequent = {g: c for g, c in counts.items() if c > max_count}
    assert res.stats["frequent_ngrams"] == len(frequent)
    assert res.stats["distinct_windows"] == len(counts)
    assert res.stats["windows"] == sum(counts.values())
    assert res.stats["bytes_spilled"] == 12 * sum(counts.values())
    assert res.stats["hash_collisions"] == 0
    # the top list: the largest counts, each with its own text and row count
    assert [t["count"] for t in res.top] == sorted(frequent.values(), reverse=True)[:5]
    for t in res.top:
        gram = tuple(t["text"].split())
        assert counts[gram] == t["count"]
        assert t["rows"] == sum(any(tuple(w.split()[j:j + n]) == gram
                                    for j in range(len(w.split()) - n + 1)) for w in texts)
    spans = res.rows.column("example_span").to_pylist()
    for i, text in enumerate(texts):
        w = text.split()
        first = next((tuple(w[j:j + n]) for j in range(len(w) - n + 1)
                      if counts[tuple(w[j:j + n])] > max_count), None)
        assert spans[i] == (" ".join(first) if first else None)


def test_result_independent_of_batch_rows_and_partitions(tmp_path):
    texts = random_texts(7, rows=300)
    tok = word_tokenizer(texts)
    results = [run(tmp_path, texts, n=3, max_count=4, tokenizer=tok, batch_rows=b, partitions=k)
               for b, k in ((4096, 1), (1, 1), (7, 5), (64, 64), (13, None))]
    assert results[0].stats["flagged_rows"] > 0
    for r in results[1:]:
        assert r.rows.equals(results[0].rows)
        assert r.top == results[0].top
        for key in ("windows", "distinct_windows", "frequent_ngrams", "flagged_rows"):
            assert r.stats[key] == results[0].stats[key]


def test_spill_dir_removed_after_success_and_after_an_error(tmp_path, monkeypatch):
    texts = random_texts(8, rows=60)
    spill = tmp_path / "spill"
    spill.mkdir()
    res = run(tmp_path, texts, n=2, max_count=3, tmp_dir=spill, batch_rows=10, partitions=4)
    assert res.stats["bytes_spilled"] > 0 and list(spill.iterdir()) == []

    calls = {"n": 0}
    real = ngram_filter._Encoder.encode

    def failing(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("tokenizer died")
        return real(self, batch)

    monkeypatch.setattr(ngram_filter._Encoder, "encode", failing)
    with pytest.raises(RuntimeError, match="tokenizer died"):
        run(tmp_path, texts, n=2, max_count=3, tmp_dir=spill, batch_rows=10, partitions=4)
    assert calls["n"] == 3 and list(spill.iterdir()) == []


def test_collision_only_over_counts_and_is_reported(tmp_path, monkeypatch):
    """Force two different tokens to hash alike: their phrases' counts merge (2 + 2 > 3),
    so both are flagged — a collision can only over-count — and pass 2 reports it."""
    texts = [f"pre{i} alpha beta gamma delta epsilon post{i}" for i in range(2)]
    texts += [f"pre{i} alpha beta gamma delta zeta post{i}" for i in range(2, 4)]
    tok = word_tokenizer(texts)
    eps, zeta = tok.convert_tokens_to_ids(["epsilon", "zeta"])
    real = ngram_filter._WindowHasher._mixed

    def colliding(self, ids):
        return real(self, np.where(ids == zeta, eps, ids).astype(ids.dtype))

    monkeypatch.setattr(ngram_filter._WindowHasher, "_mixed", colliding)
    res = run(tmp_path, texts, n=5, max_count=3, tokenizer=tok)
    assert flagged(res) == [0, 1, 2, 3]
    assert res.stats["hash_collisions"] == 2 and res.top[0]["count"] == 4
    # without the forced collision: nothing is frequent
    monkeypatch.setattr(ngram_filter._WindowHasher, "_mixed", real)
    assert flagged(run(tmp_path, texts, n=5, max_count=3, tokenizer=tok)) == []


# --- the tokenizer path ------------------------------------------------------------------------

def small_bpe():
    """A byte-level BPE with a special token, trained here (no network)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["The answer is 42. Let's think step by step.", "def f(x):\n    return x ** 2",
              "Ünïcode — café naïve 数学"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|im_end|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>")


@pytest.mark.parametrize("split_special", [False, True])
def test_fast_path_ids_equal_the_tokenizer_call(split_special):
    tok = small_bpe()
    tok.split_special_tokens = split_special
    texts = ["The answer is 42.<|im_end|>", "", "def f(x):\n    return x ** 2 café 数学 🙂",
             "  leading spaces\tand tabs  "]
    enc = ngram_filter._Encoder(tok)
    ids, lengths = enc.encode(texts)
    expected = tok(texts, add_special_tokens=False)["input_ids"]
    assert lengths.tolist() == [len(e) for e in expected]
    assert ids.tolist() == [i for e in expected for i in e]
    # the user's tokenizer is left as it was
    assert tok.backend_tokenizer.truncation is None


def test_bpe_tokenizer_and_bare_tokenizers_object(tmp_path):
    tok = small_bpe()
    boiler = "Let's think step by step. The answer is 42."
    texts = [f"{boiler} row {i} café" if i % 3 == 0 else f"return {i}" for i in range(30)]
    res = run(tmp_path, texts, n=8, max_count=5, tokenizer=tok)
    lens = [len(e) for e in tok(texts, add_special_tokens=False)["input_ids"]]
    assert res.rows.column("n_tokens").to_pylist() == lens
    assert [i for i in flagged(res)] == list(range(0, 30, 3))
    span = res.rows.column("example_span").to_pylist()[0]
    assert span and span in texts[0] and boiler.startswith(span)
    bare = run(tmp_path, texts, n=8, max_count=5, tokenizer=tok.backend_tokenizer)
    assert bare.rows.equals(res.rows)


# --- validation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    ({"n": 0}, "n"), ({"n": 2.5}, "n"), ({"n": True}, "n"), ({"max_count": 0}, "max_count"),
    ({"max_count": "20"}, "max_count"), ({"policy": "truncate"}, "policy"),
])
def test_bad_spec_raises_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"NgramFilterSpec\.{field}\b"):
        NgramFilterSpec(**kwargs)
    assert NgramFilterSpec() == NgramFilterSpec(n=20, max_count=20, policy="drop_row")


def test_missing_column_raises_naming_the_file_and_column(tmp_path):
    path = write(tmp_path, ["a b c"])
    tok = word_tokenizer(["a b c"])
    with pytest.raises(ValueError, match=r"accepted\.parquet.*'response'"):
        find_high_frequency_ngrams(path, tok, NgramFilterSpec(), text_column="response")
    with pytest.raises(ValueError, match=r"accepted\.parquet.*'qid'"):
        find_high_frequency_ngrams(path, tok, NgramFilterSpec(), id_column="qid")


def test_default_partitions():
    assert default_partitions(0) == 1 and default_partitions(100) == 1
    assert default_partitions(100_000) == 16 and default_partitions(1_900_000) == 256
    assert default_partitions(10**9) == 256


def test_snakemake_adapter_writes_flags_and_top(tmp_path):
    from distillab import schemas
    from distillab.io import read_json, read_rows

    rng = random.Random(9)
    texts = [filler(rng, 10, "a") for _ in range(10)]
    for i in (1, 4, 7):
        texts[i] = f"{PHRASE} {filler(rng, 3, 's')}"
    path = write(tmp_path, texts)
    tok_dir = tmp_path / "tok"
    word_tokenizer(texts).save_pretrained(tok_dir)
    smk = SimpleNamespace(
        input=SimpleNamespace(accepted=str(path), tokenizer=str(tok_dir)),
        output=SimpleNamespace(flags=str(tmp_path / "ngrams" / "t.parquet"),
                               top=str(tmp_path / "ngrams" / "t.top.json")),
        params=SimpleNamespace(spec={"n": 5, "max_count": 2, "policy": "drop_row"}),
        resources=SimpleNamespace(), wildcards=SimpleNamespace(teacher="t"))
    facts = {}
    ngram_filter.ngrams_from_snakemake(smk, SimpleNamespace(add=facts.update))
    rows = read_rows(smk.output.flags, schemas.NGRAM_FLAGS)
    assert [r["query_id"] for r in rows if r["hf_windows"]] == ["q1", "q4", "q7"]
    top = read_json(smk.output.top)
    assert top["top"] == [{"count": 3, "text": PHRASE, "rows": 3}]
    assert top["stats"]["flagged_rows"] == 3 and facts["rows_flagged"] == 3
