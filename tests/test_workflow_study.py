"""distillab.workflow: the DAG's names and input functions, and code_version."""

from __future__ import annotations

import copy
import importlib
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from distillab.config import validate_config
from distillab.workflow import Study, code_version

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_cfg() -> dict:
    return validate_config(yaml.safe_load((REPO / "config.yaml").read_text()))


@pytest.fixture(scope="module")
def paper_cfg() -> dict:
    return validate_config(yaml.safe_load((REPO / "configs" / "paper.yaml").read_text()))


@pytest.fixture
def demo(demo_cfg) -> dict:
    return copy.deepcopy(demo_cfg)


# --- names ---------------------------------------------------------------------------------

def test_root_shards_rounds(demo):
    demo["queries"]["n_shards"] = 3
    demo["generation"]["max_rounds"] = 4
    s = Study(demo)
    assert s.root == "results/demo"
    assert s.shards == ["000", "001", "002"]
    assert s.rounds == [1, 2, 3, 4]
    assert s.teachers == list(demo["teachers"])
    assert s.sources == ["demo"]
    assert s.benchmarks == ["demo_math", "demo_science"]


def test_paper_shard_names_are_zero_padded(paper_cfg):
    s = Study(paper_cfg)
    assert len(s.shards) == 512
    assert s.shards[0] == "000" and s.shards[-1] == "511"
    assert s.rounds == [1, 2, 3, 4]


def test_verified_path(demo):
    s = Study(demo)
    assert s.verified("t", 2, "001") == "results/demo/verify/t/r2/001.parquet"


@pytest.mark.parametrize("round_,expected", [
    (1, []),
    (2, ["results/demo/verify/t/r1/000.parquet"]),
    (3, ["results/demo/verify/t/r1/000.parquet", "results/demo/verify/t/r2/000.parquet"]),
])
def test_earlier_verified(demo, round_, expected):
    s = Study(demo)
    assert s.earlier_verified("t", round_, "000") == expected
    # Snakemake passes wildcards as strings
    assert s.earlier_verified("t", str(round_), "000") == expected


def test_all_verified_covers_every_round_and_shard(demo):
    demo["generation"]["max_rounds"] = 2
    demo["queries"]["n_shards"] = 2
    s = Study(demo)
    t = "smollm2-135m"
    assert s.all_verified(t) == [
        f"results/demo/verify/{t}/r1/000.parquet", f"results/demo/verify/{t}/r1/001.parquet",
        f"results/demo/verify/{t}/r2/000.parquet", f"results/demo/verify/{t}/r2/001.parquet",
    ]
    demo["teachers"][t]["max_rounds"] = 1  # a teacher's own number of rounds
    assert Study(demo).all_verified(t) == [f"results/demo/verify/{t}/r1/000.parquet",
                                           f"results/demo/verify/{t}/r1/001.parquet"]
    assert Study(demo).teacher_rounds("qwen-coder-0.5b") == [1, 2]


def test_generate_inputs_and_params(demo):
    demo["teachers"]["api"] = {**demo["teachers"]["smollm2-135m"], "backend": "openai",
                               "openai": {"base_url": "http://x/v1", "concurrency": 8}}
    s = Study(demo)
    assert s.teacher_generate_inputs("api") == []  # an endpoint: no local model to prepare
    assert s.teacher_generate_inputs("smollm2-135m") == ["results/demo/models/smollm2-135m-instruct"]
    assert s.teacher_params("api")["openai"] == {}  # address and concurrency are not tracked
    assert s.generate_code_version("api") != s.generate_code_version("smollm2-135m")


def test_model_dirs_and_prompt_style(demo):
    s = Study(demo)
    assert s.model_dir("m") == "results/demo/models/m"
    assert s.teacher_model_dir("gemma-270m-base") == "results/demo/models/gemma-3-270m"
    assert s.prompt_style("gemma-3-270m") == "fewshot"
    assert s.prompt_style("smollm2-135m-instruct") == "chat"


def test_source_and_benchmark_files(demo, paper_cfg):
    s = Study(demo)
    assert s.source_files("demo") == ["data/demo/queries.jsonl"]
    assert s.benchmark_files() == ["data/demo/benchmark.jsonl"]  # two benchmarks, one file
    assert s.benchmark_files([]) == []
    assert set(s.decontamination_benchmarks()) == {"demo_math", "demo_science"}
    # only what decontamination reads: evaluation-only keys never rerun the query stage
    assert s.decontamination_benchmarks()["demo_math"] == {
        "format": "jsonl", "path": "data/demo/benchmark.jsonl", "id_field": "id",
        "text_field": "prompt", "filter": {"category": "math"}}
    assert "k" not in Study(paper_cfg).decontamination_benchmarks()["livecodebench"]
    p = Study(paper_cfg)
    assert p.source_files("openr1-math-220k") == []  # hub sources have no local file
    assert p.benchmark_files() == []


def test_source_files_expand_env(demo, monkeypatch):
    monkeypatch.setenv("DISTILLAB_TEST_DATA", "/data/x")
    demo["queries"]["sources"][0]["path"] = "${DISTILLAB_TEST_DATA}/q.jsonl"
    assert Study(demo).source_files("demo") == ["/data/x/q.jsonl"]


# --- parallel policy -----------------------------------------------------------------------

def test_parallel_teachers_per_teacher(demo):
    demo["curation"]["parallel_policy"] = "per_teacher"
    s = Study(demo)
    for t in s.teachers:
        assert s.parallel_teachers(t) == [t]


def test_parallel_teachers_intersection(demo):
    demo["curation"]["parallel_policy"] = "intersection"
    s = Study(demo)
    for t in s.teachers:
        assert s.parallel_teachers(t) == s.teachers
    assert len(s.teachers) == 3


# --- evaluated models ----------------------------------------------------------------------

def test_eval_models_students_times_teachers_plus_teachers(demo):
    s = Study(demo)
    models = s.eval_models
    students = [f"smol-student__{t}" for t in s.teachers]
    assert list(models) == students + s.teachers
    st = models["smol-student__gemma-270m-base"]
    assert st == {"kind": "student", "student": "smol-student", "teacher": "gemma-270m-base",
                  "base_model": "smollm2-135m-instruct",
                  "model_dir": "results/demo/train/smol-student__gemma-270m-base",
                  "prompt_style": "chat", "demonstrations": 0}
    gemma = models["gemma-270m-base"]
    assert gemma["kind"] == "teacher" and gemma["student"] is None
    assert gemma["prompt_style"] == "fewshot"
    assert gemma["demonstrations"] == 2
    assert gemma["model_dir"] == "results/demo/models/gemma-3-270m"
    smol = models["smollm2-135m"]
    assert (smol["prompt_style"], smol["demonstrations"]) == ("chat", 1)


def test_eval_models_without_teachers(demo):
    demo["evaluation"]["evaluate_teachers"] = False
    s = Study(demo)
    assert set(s.eval_models) == {f"smol-student__{t}" for t in s.teachers}
    assert all(m["kind"] == "student" for m in s.eval_models.values())


def test_eval_models_two_students(demo):
    demo["students"]["second"] = copy.deepcopy(demo["students"]["smol-student"])
    s = Study(demo)
    students = [m for m, i in s.eval_models.items() if i["kind"] == "student"]
    assert len(students) == 2 * len(s.teachers)
    assert "second__qwen-coder-0.5b" in students


def test_eval_results_and_model_info(demo):
    s = Study(demo)
    results = s.eval_results()
    assert len(results) == len(s.eval_models) * len(s.benchmarks) == 6 * 2
    assert "results/demo/eval/smol-student__smollm2-135m/demo_math.json" in results
    assert "results/demo/eval/gemma-270m-base/demo_science.json" in results
    info = s.model_info()
    assert set(info) == set(s.eval_models)
    assert all("model_dir" not in i for i in info.values())
    assert info["gemma-270m-base"]["prompt_style"] == "fewshot"


def test_paper_eval_models_have_no_teachers(paper_cfg):
    s = Study(paper_cfg)
    assert list(s.eval_models) == ["qwen2.5-32b-sft__am-thinking-v1",
                                   "qwen2.5-32b-sft__qwen3-235b-a22b",
                                   "qwen2.5-32b-sft__deepseek-r1"]


# --- resources -----------------------------------------------------------------------------

def test_teacher_gpus_transformers_is_zero(demo):
    s = Study(demo)
    assert [s.teacher_gpus(t) for t in s.teachers] == [0, 0, 0]
    demo["teachers"]["smollm2-135m"]["tensor_parallel_size"] = 4  # ignored off vLLM
    assert Study(demo).teacher_gpus("smollm2-135m") == 0


def test_teacher_gpus_vllm_is_tp_times_pp(paper_cfg):
    s = Study(paper_cfg)
    assert s.teacher_gpus("am-thinking-v1") == 4
    assert s.teacher_gpus("qwen3-235b-a22b") == 8
    assert s.teacher_gpus("deepseek-r1") == 16


def test_teacher_gpus_vllm_defaults_to_one(demo):
    demo["teachers"]["smollm2-135m"]["backend"] = "vllm"
    assert Study(demo).teacher_gpus("smollm2-135m") == 1
    demo["teachers"]["smollm2-135m"]["pipeline_parallel_size"] = 3
    assert Study(demo).teacher_gpus("smollm2-135m") == 3


# --- code_version ----------------------------------------------------------------------------

@pytest.fixture
def temp_module(tmp_path, monkeypatch):
    name = f"dl_codever_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield name, path
    sys.modules.pop(name, None)


def test_code_version_stable_when_unchanged(temp_module):
    name, _ = temp_module
    v1 = code_version(name, "distillab.io")
    assert v1 == code_version(name, "distillab.io")
    assert v1 == code_version("distillab.io", name)  # argument order does not matter
    assert len(v1) == 12


def test_code_version_changes_with_source(temp_module):
    name, path = temp_module
    before = code_version(name, "distillab.io")
    path.write_text("X = 2\n")
    after = code_version(name, "distillab.io")
    assert after != before
    path.write_text("X = 1\n")
    assert code_version(name, "distillab.io") == before


def test_code_version_changes_after_import(temp_module):
    """An imported module's edits still count (the spec comes from sys.modules)."""
    name, path = temp_module
    importlib.import_module(name)
    before = code_version(name)
    path.write_text("X = 3  # edited\n")
    assert code_version(name) != before


def test_code_version_depends_on_which_modules(temp_module):
    name, _ = temp_module
    assert code_version(name) != code_version(name, "distillab.io")
    assert code_version("distillab.generate") != code_version("distillab.verify")


def test_code_version_unknown_module():
    with pytest.raises(ModuleNotFoundError):
        code_version("distillab_no_such_module_xyz")


def test_curation_filter_paths_and_params(demo):
    s = Study(demo)
    assert s.perplexity_scores("x") == [f"{s.root}/perplexity/x.parquet"]
    assert s.ngram_flags("x") == [f"{s.root}/ngrams/x.parquet"]
    assert s.perplexity_model_dir() == [s.model_dir(demo["curation"]["perplexity"]["model"])]
    # the cut is not a scoring param: moving it must not rescore
    assert "threshold" not in s.scorer_params() and "per_teacher" not in s.scorer_params()
    assert s.perplexity_threshold("x") == {"max_ppl": None, "max_percentile": 95}
    demo["curation"]["perplexity"]["per_teacher"] = {"x": {"max_ppl": 4.0}}
    assert Study(demo).perplexity_threshold("x") == {"max_ppl": 4.0, "max_percentile": 95}
    assert s.perplexity_gpus() == 0 and s.perplexity_env() == "../envs/models.yaml"


def test_curation_filters_off(demo):
    demo["curation"]["perplexity"] = None
    demo["curation"]["ngram"] = None
    s = Study(demo)
    assert s.perplexity_scores("x") == [] and s.ngram_flags("x") == []
    assert s.perplexity_model_dir() == [] and s.scorer_params() == {}
    assert s.perplexity_threshold("x") == {"max_ppl": None, "max_percentile": None}


def test_paper_perplexity_runs_on_gpus_with_vllm(paper_cfg):
    s = Study(paper_cfg)
    assert s.perplexity_gpus() == 2 and s.perplexity_env() == "../envs/vllm.yaml"
