"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_benchmarks() -> Path:
    """The folder holding the benchmark copies (``math500/test.jsonl``, …).

    ``$DISTILLAB_SHARED_BENCHMARKS`` when set, else ``<repo>/../shared/benchmarks``.
    Tests that need it are skipped, not failed, where it is absent: a fresh clone has no
    such folder.
    """
    configured = os.environ.get("DISTILLAB_SHARED_BENCHMARKS")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "benchmarks"
    if not path.is_dir():
        pytest.skip(f"no benchmarks folder at {path}: set DISTILLAB_SHARED_BENCHMARKS "
                    "to the folder holding math500/test.jsonl")
    return path


# A tiny random causal LM with a ChatML template, built locally (no hub): for tests that
# need a real transformers generator (tests/test_generate.py, tests/test_verify_judge.py).
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

CORPUS = [
    "What is 3 plus 4? Let's think step by step and output the final answer within \\boxed{}.",
    "<think> 3 + 4 = 7 </think> <answer> The answer is \\boxed{7}. </answer>",
    "Question: Tom has 5 apples and buys 3 more. How many apples does he have? Answer:",
    "You are a helpful assistant. The reasoning process and answer are enclosed within tags.",
]


@pytest.fixture(scope="module")
def one_thread():
    """A 32-wide model gains nothing from threads, and spinning threads on a busy 2-core
    machine make it 30x slower."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, one_thread) -> str:
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=360,
                                  special_tokens=["<|im_end|>", "<|endoftext|>", "<|im_start|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(CORPUS * 10, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>")
    tok.chat_template = CHATML
    assert (tok.eos_token_id, tok.pad_token_id) == (0, 1)

    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, initializer_range=0.2,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         bos_token_id=None, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # never end by itself: eos/pad logits are always 0
        model.lm_head.weight[tok.eos_token_id].zero_()
        model.lm_head.weight[tok.pad_token_id].zero_()
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def micro_study(tmp_path_factory):
    """The micro study (tests/micro.py), run once to completion for the whole session:
    (workdir, config path). Tests may dry-run against it but must not change it."""
    import yaml

    from micro import micro_config, snakemake

    workdir = tmp_path_factory.mktemp("micro")
    config = workdir / "micro.yaml"
    config.write_text(yaml.safe_dump(micro_config()))
    proc = snakemake(workdir, config)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return workdir, config
