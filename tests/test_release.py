"""distillab.release: the student's HF model dir with its evaluation results in the card."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from distillab.io import write_json
from distillab.release import model_index, release_student, split_card

CARD = """---
base_model: "models/base"
library_name: transformers
tags: [distillab, sft]
---

# SFT student distilled from t

- rows used: 14 of 14
"""


def result(bench: str, pass_at_1: float, stderr: float, **extra) -> dict:
    return {"benchmark": bench, "k": 4, "n_problems": 8, "pass_at_1": pass_at_1,
            "pass_at_1_stderr": stderr, "mean_response_tokens": 123.25, "no_answer_rate": 0.125,
            "sampling": {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 80},
            "engine": {"backend": "transformers", "transformers": "5.23.0"}, **extra}


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    ckpt = tmp_path / "train" / "s__t"
    (ckpt / "sub").mkdir(parents=True)
    (ckpt / "config.json").write_text('{"model_type": "llama"}')
    (ckpt / "model.safetensors").write_bytes(b"\0" * 1024)
    (ckpt / "sub" / "extra.json").write_text("{}")
    (ckpt / "README.md").write_text(CARD)
    (ckpt / "provenance.json").write_text('{"rule": "train"}')
    (ckpt / ".snakemake_timestamp").write_text("")
    return ckpt


@pytest.fixture
def results(tmp_path) -> list[str]:
    paths = []
    for r in (result("demo_math", 0.375, 0.125),
              result("math500", 0.5, 0.0625, benchmark_source={
                  "repo_id": "HuggingFaceH4/MATH-500", "revision": "6e4ed1a", "split": "test"},
                  engine={"backend": "vllm", "vllm": "0.32.0", "tensor_parallel_size": 4})):
        path = tmp_path / "eval" / "s__t" / f"{r['benchmark']}.json"
        write_json(path, r)
        paths.append(str(path))
    return paths


def test_release_links_the_checkpoint_and_adds_the_results_to_the_card(checkpoint, results,
                                                                       tmp_path):
    out = tmp_path / "release" / "s__t"
    facts = release_student(checkpoint, results, out, "s__t")
    assert facts == {"linked": 3, "copied": 0, "benchmarks": ["demo_math", "math500"]}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "README.md", "config.json", "model.safetensors", "sub/extra.json"]
    # the weights are the checkpoint's bytes, not a copy; the card is the release's own
    assert (out / "model.safetensors").stat().st_ino == (checkpoint / "model.safetensors").stat().st_ino
    assert (out / "README.md").stat().st_ino != (checkpoint / "README.md").stat().st_ino
    assert (checkpoint / "README.md").read_text() == CARD  # the checkpoint is untouched
    # Snakemake's timestamp of the checkpoint dir is not shared: touching the release's
    # must not date the checkpoint anew (its evaluations would rerun)
    assert not (out / ".snakemake_timestamp").exists()
    meta, body = split_card((out / "README.md").read_text())
    assert meta["base_model"] == "models/base" and meta["tags"] == ["distillab", "sft"]
    [index] = meta["model-index"]
    assert index["name"] == "s__t"
    assert [r["dataset"] for r in index["results"]] == [
        {"name": "demo_math", "type": "demo_math"},
        {"name": "math500", "type": "HuggingFaceH4/MATH-500", "revision": "6e4ed1a",
         "split": "test"}]
    assert [r["metrics"][0]["value"] for r in index["results"]] == [37.5, 50.0]
    assert body.startswith("\n# SFT student distilled from t\n")
    assert "| demo_math | 37.50 | 12.50 | 4 | 8 | 123.2 | 12.5 |" in body
    assert "| math500 | 50.00 | 6.25 | 4 | 8 | 123.2 | 12.5 |" in body
    assert "| math500 | temperature=0.6, top_p=0.95, max_new_tokens=80 | vllm 0.32.0, TP 4 |" in body
    assert "| demo_math | temperature=0.6, top_p=0.95, max_new_tokens=80 | transformers 5.23.0 |" in body
    assert f"`{results[0]}`" in body
    assert not list(out.parent.glob(".*tmp"))


def test_a_rerun_replaces_the_release(checkpoint, results, tmp_path):
    out = tmp_path / "release" / "s__t"
    release_student(checkpoint, results, out, "s__t")
    (out / "stale.bin").write_bytes(b"x")
    release_student(checkpoint, results[:1], out, "s__t")
    assert not (out / "stale.bin").exists()
    meta, _ = split_card((out / "README.md").read_text())
    assert len(meta["model-index"][0]["results"]) == 1


def test_a_checkpoint_without_a_card_gets_one(checkpoint, results, tmp_path):
    (checkpoint / "README.md").unlink()
    out = tmp_path / "r"
    release_student(checkpoint, results, out, "s__t")
    meta, body = split_card((out / "README.md").read_text())
    assert list(meta) == ["model-index"] and body.lstrip().startswith("## Evaluation results")


def test_bad_inputs_are_named(checkpoint, results, tmp_path):
    broken = json.loads(Path(results[1]).read_text())
    del broken["pass_at_1"]
    Path(results[1]).write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"math500.json: field 'pass_at_1': missing"):
        release_student(checkpoint, results, tmp_path / "r", "s__t")
    (checkpoint / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="not an HF model dir"):
        release_student(checkpoint, results, tmp_path / "r", "s__t")
    assert not (tmp_path / "r").exists()


def test_split_card_without_front_matter():
    assert split_card("# title\n") == ({}, "# title\n")
    assert split_card("---\na: 1\n---\nbody") == ({"a": 1}, "body")


def test_model_index_is_what_the_hub_reads():
    [entry] = model_index("m", [result("aime2024", 0.25, 0.1)])
    # the hub's schema: name, results[{task{type}, dataset{name, type}, metrics[{type, value}]}]
    assert yaml.safe_load(yaml.safe_dump(entry)) == {
        "name": "m", "results": [{
            "task": {"type": "text-generation", "name": "Text Generation"},
            "dataset": {"name": "aime2024", "type": "aime2024"},
            "metrics": [{"type": "pass@1", "value": 25.0,
                         "name": "pass@1 (%, mean over k=4 samples)"}]}]}


def test_transformers_loads_the_release(tiny_model, results, tmp_path):
    transformers = pytest.importorskip("transformers")
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_model, ckpt)
    out = tmp_path / "release"
    release_student(ckpt, results, out, "tiny")
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert model.config.num_hidden_layers == 2 and tok.eos_token == "<|im_end|>"
