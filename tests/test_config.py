"""Config validation: the shipped configs pass; every kind of mistake fails before any job
runs with a ConfigError naming the key path; defaults are filled."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from distillab.config import ConfigError, load_config, load_schema, validate_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_raw() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.fixture(scope="module")
def paper_raw() -> dict:
    return yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())


@pytest.fixture
def demo(demo_raw) -> dict:
    return copy.deepcopy(demo_raw)


def fails(config: dict, *fragments: str) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


def a_teacher(cfg: dict) -> str:
    return "smollm2-135m" if "smollm2-135m" in cfg["teachers"] else next(iter(cfg["teachers"]))


# --- the shipped configs ---------------------------------------------------------------------

def test_schema_every_object_is_closed():
    """Every object with declared properties forbids others, so a misspelt key fails."""
    open_objects = []

    def walk(node, path):
        if isinstance(node, dict):
            if ("properties" in node and node.get("additionalProperties") is not False
                    and not path.endswith("/if")):  # an if clause only tests a value
                open_objects.append(path)
            for k, v in node.items():
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")

    walk(load_schema(), "")
    assert open_objects == []


def test_demo_config_validates(demo):
    out = validate_config(demo)
    assert out is demo
    assert out["study"] == "demo"


def test_paper_config_validates(paper_raw):
    cfg = validate_config(copy.deepcopy(paper_raw))
    assert cfg["curation"]["parallel_policy"] == "intersection"
    assert cfg["evaluation"]["evaluate_teachers"] is False  # explicit value kept
    assert set(cfg["evaluation"]["benchmarks"]) == {"aime2024", "aime2025", "math500",
                                                    "livecodebench"}


def test_load_config_reads_and_validates(tmp_path, demo_raw):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(demo_raw))
    cfg = load_config(str(path))
    assert cfg["teachers"][a_teacher(cfg)]["backend"] == "transformers"
    bad = copy.deepcopy(demo_raw)
    bad["unknown_section"] = {}
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="unknown_section"):
        load_config(str(path))


# --- defaults --------------------------------------------------------------------------------

def test_defaults_are_filled(demo):
    del demo["evaluation"]["evaluate_teachers"]
    del demo["evaluation"]["batch_size"]
    del demo["verification"]["workers"]
    del demo["verification"]["timeout_s"]
    t = a_teacher(demo)
    del demo["teachers"][t]["backend"]
    del demo["teachers"][t]["demonstrations"]
    for key in ("top_k", "seed", "n"):
        del demo["teachers"][t]["sampling"][key]
    del demo["analysis"]["bin_tokens"]
    del demo["queries"]["decontamination"]["ngram"]
    training = demo["students"]["smol-student"]["training"]
    del training["packing"], training["max_steps"]
    cfg = validate_config(demo)
    assert cfg["evaluation"]["evaluate_teachers"] is True
    assert cfg["evaluation"]["batch_size"] == 16
    assert cfg["verification"]["workers"] == 2
    assert cfg["verification"]["timeout_s"] == 10
    assert cfg["teachers"][t]["backend"] == "transformers"
    assert cfg["teachers"][t]["demonstrations"] == 0
    kept = {k: demo["teachers"][t]["sampling"][k] for k in ("temperature", "top_p", "max_new_tokens")}
    assert cfg["teachers"][t]["sampling"] == {**kept, "top_k": 0, "seed": 0, "n": 1}
    assert cfg["analysis"]["bin_tokens"] == 1024
    assert cfg["queries"]["decontamination"]["ngram"] == 13
    assert training["packing"] is False and training["max_steps"] == -1


def test_defaults_fill_through_refs_in_evaluation_sampling(demo):
    cfg = validate_config(demo)
    # evaluation.sampling is a $ref to the sampling definition: n and top_k get defaults
    assert cfg["evaluation"]["sampling"]["n"] == 1
    assert cfg["evaluation"]["benchmarks"]["demo_math"]["id_field"] == "id"


def test_defaults_fill_model_prompt_style(demo):
    cfg = validate_config(demo)
    assert cfg["models"]["smollm2-135m-instruct"]["prompt_style"] == "chat"
    assert cfg["models"]["gemma-3-270m"]["prompt_style"] == "fewshot"


def test_explicit_values_are_not_overwritten_by_defaults(demo):
    demo["verification"]["workers"] = 0
    demo["evaluation"]["evaluate_teachers"] = False
    cfg = validate_config(demo)
    assert cfg["verification"]["workers"] == 0
    assert cfg["evaluation"]["evaluate_teachers"] is False


# --- schema errors name the key path ----------------------------------------------------------

def test_unknown_top_level_key(demo):
    demo["tecahers"] = {}
    msg = fails(demo, "config key tecahers")
    assert "'tecahers' was unexpected" in msg


def test_misspelt_sampling_key(demo):
    t = a_teacher(demo)
    sampling = demo["teachers"][t]["sampling"]
    sampling["tempreature"] = sampling.pop("temperature")
    fails(demo, f"config key teachers.{t}.sampling.tempreature")


def test_misspelt_optional_sampling_key(demo):
    t = a_teacher(demo)
    demo["teachers"][t]["sampling"]["top_kk"] = 3
    fails(demo, f"teachers.{t}.sampling.top_kk")


def test_misspelt_training_key(demo):
    training = demo["students"]["smol-student"]["training"]
    training["learning_rat"] = training.pop("learning_rate")
    fails(demo, "students.smol-student.training.learning_rat")


def test_misspelt_benchmark_key(demo):
    bench = demo["evaluation"]["benchmarks"]["demo_math"]
    bench["text_feild"] = bench.pop("text_field")
    fails(demo, "evaluation.benchmarks.demo_math.text_feild")


def test_misspelt_teacher_option(demo):
    t = a_teacher(demo)
    demo["teachers"][t]["batchsize"] = 4
    fails(demo, f"teachers.{t}.batchsize")


def test_misspelt_model_key_is_named(demo):
    model = demo["models"]["gemma-3-270m"]
    model["sha265"] = model.pop("sha256")
    fails(demo, "models.gemma-3-270m.sha265")


def test_missing_required_model_key_names_the_model(demo):
    del demo["models"]["gemma-3-270m"]["sha256"]
    fails(demo, "config key models.gemma-3-270m", "sha256")


@pytest.mark.parametrize("path,value,fragment", [
    (("teachers", "@t", "sampling", "temperature"), -1, "minimum"),
    (("teachers", "@t", "sampling", "top_p"), 0, "minimum"),
    (("teachers", "@t", "sampling", "top_p"), 1.5, "maximum"),
    (("teachers", "@t", "demonstrations"), 3, "maximum"),
    (("verification", "threshold"), 1.2, "maximum"),
    (("generation", "max_rounds"), 0, "minimum"),
    (("queries", "n_shards"), 0, "minimum"),
    (("evaluation", "benchmarks", "demo_math", "k"), 0, "minimum"),
    (("students", "smol-student", "training", "learning_rate"), 0, "minimum"),
])
def test_out_of_range_value(demo, path, value, fragment):
    path = tuple(a_teacher(demo) if p == "@t" else p for p in path)
    node = demo
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    fails(demo, "config key " + ".".join(path) + ":", fragment)


@pytest.mark.parametrize("path,value", [
    (("generation", "max_rounds"), "two"),
    (("seed",), 1.5),
    (("teachers", "@t", "sampling", "max_new_tokens"), "96"),
    (("evaluation", "evaluate_teachers"), "yes"),
    (("queries", "sources"), {"name": "demo"}),
    (("students", "smol-student", "training", "packing"), 1),
])
def test_wrong_type(demo, path, value):
    path = tuple(a_teacher(demo) if p == "@t" else p for p in path)
    node = demo
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    fails(demo, "config key " + ".".join(path) + ":", "is not of type")


def test_wrong_enum_value(demo):
    demo["curation"]["parallel_policy"] = "intersect"
    fails(demo, "config key curation.parallel_policy", "intersection")


def test_missing_required_section(demo):
    del demo["curation"]
    fails(demo, "'curation' is a required property")


def test_bad_name_pattern(demo):
    demo["teachers"]["bad name!"] = demo["teachers"].pop(a_teacher(demo))
    fails(demo, "config key teachers", "bad name!")


def test_jsonl_benchmark_needs_path(demo):
    del demo["evaluation"]["benchmarks"]["demo_math"]["path"]
    fails(demo, "evaluation.benchmarks.demo_math", "'path' is a required property")


# --- cross-reference checks -----------------------------------------------------------------

def test_teacher_model_not_in_models(demo):
    t = a_teacher(demo)
    demo["teachers"][t]["model"] = "no-such-model"
    fails(demo, f"config key teachers.{t}.model", "'no-such-model'", "not defined under models")


def test_student_model_not_in_models(demo):
    demo["students"]["smol-student"]["model"] = "ghost"
    fails(demo, "config key students.smol-student.model", "'ghost'")


def test_curation_filter_defaults(demo):
    for key in ("structure", "ngram", "perplexity"):
        del demo["curation"][key]
    cur = validate_config(demo)["curation"]
    assert cur["structure"] == {"repetition_min_unit_chars": 8, "repetition_min_repeats": 5}
    assert cur["ngram"] == {"n": 20, "max_count": 20, "policy": "drop_row"}  # the paper's
    assert cur["perplexity"] is None


def test_perplexity_threshold_defaults_and_per_teacher(demo):
    teacher = a_teacher(demo)
    demo["curation"]["perplexity"] = {"model": "smollm2-135m-instruct",
                                      "per_teacher": {teacher: {"max_ppl": 5}}}
    ppl = validate_config(demo)["curation"]["perplexity"]
    assert ppl["threshold"] == {"max_ppl": None, "max_percentile": None}
    assert ppl["per_teacher"][teacher] == {"max_ppl": 5, "max_percentile": None}
    assert ppl["backend"] == "transformers" and ppl["gpus"] == 0


def test_perplexity_bad_values_are_named(demo):
    demo["curation"]["perplexity"]["threshold"] = {"max_percentile": 101}
    fails(demo, "curation.perplexity.threshold.max_percentile")
    demo["curation"]["perplexity"]["threshold"] = {"max_ppl": 0}
    fails(demo, "curation.perplexity.threshold.max_ppl")
    demo["curation"]["perplexity"]["threshold"] = {"max_pp": 3}
    fails(demo, "curation.perplexity.threshold.max_pp")


def test_perplexity_model_and_teachers_must_exist(demo):
    good = copy.deepcopy(demo)
    demo["curation"]["perplexity"]["model"] = "ghost"
    fails(demo, "config key curation.perplexity.model", "'ghost'")
    good["curation"]["perplexity"]["per_teacher"] = {"nobody": {"max_ppl": 3}}
    fails(good, "config key curation.perplexity.per_teacher.nobody")


def test_perplexity_vllm_gpus_match_the_engine(paper_raw):
    cfg = copy.deepcopy(paper_raw)
    cfg["curation"]["perplexity"]["gpus"] = 1  # the engine is tensor parallel 2
    fails(cfg, "config key curation.perplexity.gpus", "tensor x pipeline parallel = 2")


def test_ngram_settings_are_checked(demo):
    demo["curation"]["ngram"] = {"n": 0}
    fails(demo, "curation.ngram.n")
    demo["curation"]["ngram"] = {"n": 20, "policy": "drop_span"}
    fails(demo, "curation.ngram.policy")


def test_tokenizer_model_not_in_models(demo):
    demo["curation"]["tokenizer_model"] = "ghost"
    fails(demo, "config key curation.tokenizer_model", "'ghost'")


def test_decontamination_benchmark_not_defined(demo):
    demo["queries"]["decontamination"]["benchmarks"] = ["demo_math", "aime2099"]
    fails(demo, "config key queries.decontamination.benchmarks", "'aime2099'",
          "evaluation.benchmarks")


def test_student_teacher_name_clash(demo):
    t = a_teacher(demo)
    demo["students"][t] = demo["students"].pop("smol-student")
    msg = fails(demo, "teachers", "students", t)
    assert re.search(r"names used twice", msg)


def test_duplicate_source_names(demo):
    demo["queries"]["sources"].append(dict(demo["queries"]["sources"][0]))
    fails(demo, "config key queries.sources", "unique")


def test_paper_config_errors_too(paper_raw):
    cfg = copy.deepcopy(paper_raw)
    cfg["teachers"]["deepseek-r1"]["tensor_parallel_size"] = 0
    fails(cfg, "config key teachers.deepseek-r1.tensor_parallel_size", "minimum")


def test_bad_sandbox_mode_is_named(demo):
    demo["verification"]["code"]["sandbox"] = "firejail"
    fails(demo, "config key verification.code.sandbox", "rlimits+netns")


def test_bad_reward_model_fails_at_load_time(demo):
    demo["verification"]["chat"]["reward_model"] = {"model": "rm", "outputs": [0],
                                                    "combin": "sum"}
    fails(demo, "config key verification.chat.reward_model", "combin")


def test_backend_specific_teacher_keys(demo_raw):
    cfg = copy.deepcopy(demo_raw)
    cfg["teachers"]["smollm2-135m"]["nodes"] = 2
    fails(cfg, "config key teachers.smollm2-135m.nodes", "only for the vllm / openai backend")
    cfg = copy.deepcopy(demo_raw)
    cfg["teachers"]["smollm2-135m"]["openai"] = {"base_url": "http://x/v1"}
    fails(cfg, "config key teachers.smollm2-135m.openai", "backend is 'transformers'")


def test_paper_overlay_turns_r1_into_an_endpoint(paper_raw):
    overlay = yaml.safe_load((REPO / "configs/overlays/deepseek-r1-endpoint.yaml").read_text())
    cfg = copy.deepcopy(paper_raw)
    cfg["teachers"]["deepseek-r1"].update(overlay["teachers"]["deepseek-r1"])  # as Snakemake merges
    validate_config(cfg)
    assert cfg["teachers"]["deepseek-r1"]["backend"] == "openai"


def test_vllm_gpus_must_split_over_nodes(paper_raw):
    cfg = copy.deepcopy(paper_raw)
    cfg["teachers"]["deepseek-r1"]["nodes"] = 3
    fails(cfg, "config key teachers.deepseek-r1.nodes", "16 GPUs")
    cfg["teachers"]["deepseek-r1"]["nodes"] = 2
    cfg["teachers"]["deepseek-r1"]["gpus"] = 16
    fails(cfg, "config key teachers.deepseek-r1.gpus", "only for the transformers backend")
