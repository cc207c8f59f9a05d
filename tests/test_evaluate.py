"""distillab.evaluate: benchmarks from config specs, prompts, LiveCodeBench grading, the
metrics stored in a result, and resuming a preempted evaluation."""

from __future__ import annotations

import base64
import copy
import json
import math
import pickle
import statistics
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from distillab import benchmarks, metrics, prompts, schemas
from distillab.config import ConfigError, validate_config
from distillab.evaluate import (benchmark_kind, benchmark_prompt, benchmark_source,
                                collect_parts, engine_params, eval_gpus, eval_jobs, evaluate,
                                generate_part, grade, load_benchmark, model_fingerprint,
                                part_problems, score, summarize)
from distillab.generate import FlushPolicy, GenOutput, PromptSpec, build_request
from distillab.io import read_json, read_rows, sha256_file
from distillab.verify import VerifySettings
from distillab.verify_code import CodeVerifierConfig

REPO = Path(__file__).resolve().parents[1]
DEMO_BENCH = REPO / "data" / "demo" / "benchmark.jsonl"
SAMPLING = {"temperature": 0.6, "top_p": 0.95, "top_k": 0, "max_new_tokens": 64, "seed": 3}


def demo_spec(**over) -> dict:
    spec = {"format": "jsonl", "path": str(DEMO_BENCH), "filter": {"category": "math"},
            "id_field": "id", "text_field": "prompt", "category": "math", "k": 2}
    spec.update(over)
    return spec


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def demo_cfg() -> dict:
    return validate_config(yaml.safe_load((REPO / "config.yaml").read_text()))


@pytest.fixture(scope="module")
def paper_cfg() -> dict:
    return validate_config(yaml.safe_load((REPO / "configs" / "paper.yaml").read_text()))


# --- loading: kinds, legacy specs, config specs ---------------------------------------------

def test_load_demo_benchmark_math_filter():
    raw = [json.loads(line) for line in DEMO_BENCH.read_text().splitlines() if line.strip()]
    expected = [r for r in raw if r["category"] == "math"]
    assert 0 < len(expected) < len(raw)
    problems = load_benchmark("demo_math", demo_spec())
    assert [p["query_id"] for p in problems] == [r["id"] for r in expected]
    first, row = problems[0], expected[0]
    assert first["source"] == "demo_math"
    assert first["category"] == "math"
    assert first["messages"] == [{"role": "user", "content": row["prompt"]}]
    assert json.loads(first["reference"]) == row["reference"]
    assert first["tests"] is None and first["constraints"] is None
    assert json.loads(first["meta"]) == row["meta"]
    assert set(first) == {"query_id", "source", "category", "messages", "reference", "tests",
                          "constraints", "meta"}


def test_legacy_format_jsonl_is_kind_jsonl():
    legacy = demo_spec()
    assert benchmark_kind("demo_math", legacy) == "jsonl"
    kind = {k: v for k, v in demo_spec().items() if k != "format"} | {"kind": "jsonl"}
    assert load_benchmark("demo_math", kind) == load_benchmark("demo_math", legacy)


def test_hf_format_without_a_kind_is_refused_naming_the_kinds():
    spec = {"format": "hf", "repo_id": "x/y", "revision": "main", "split": "train",
            "category": "math", "k": 1}
    with pytest.raises(ValueError, match=r"aime2024: format 'hf' without a kind; set kind "
                                         r"to one of math500, aime2024"):
        load_benchmark("aime2024", spec)
    with pytest.raises(ValueError, match="unknown kind 'aime2099'"):
        benchmark_kind("x", {"kind": "aime2099"})


def test_load_demo_benchmark_max_problems():
    full = load_benchmark("demo_math", demo_spec())
    head = load_benchmark("demo_math", demo_spec(max_problems=3))
    assert head == full[:3]
    assert len(load_benchmark("demo_math", demo_spec(max_problems=10_000))) == len(full)


def test_load_demo_benchmark_science_filter():
    problems = load_benchmark("demo_science", demo_spec(filter={"category": "science"},
                                                        category="science"))
    assert problems and all(p["category"] == "science" for p in problems)
    assert all(p["query_id"].startswith("bench-") for p in problems)


def test_filter_matching_nothing_is_an_error():
    with pytest.raises(ValueError, match="no problems"):
        load_benchmark("x", demo_spec(filter={"category": "poetry"}))


def test_answer_field_mapping_math500_like(tmp_path):
    path = write_jsonl(tmp_path / "test.jsonl", [
        {"problem": "Compute $1+1$.", "solution": "...", "answer": "2", "subject": "Algebra",
         "level": 1, "unique_id": "test/algebra/1.json"},
        {"problem": "Find $x$.", "solution": "...", "answer": 7, "subject": "Algebra",
         "level": 2, "unique_id": "test/algebra/2.json"},
    ])
    spec = {"format": "jsonl", "path": str(path), "id_field": "unique_id",
            "text_field": "problem", "answer_field": "answer", "category": "math", "k": 4}
    problems = load_benchmark("math500", spec)
    assert [p["query_id"] for p in problems] == ["test/algebra/1.json", "test/algebra/2.json"]
    assert problems[0]["messages"] == [{"role": "user", "content": "Compute $1+1$."}]
    assert json.loads(problems[0]["reference"]) == {"answer": "2"}
    assert json.loads(problems[1]["reference"]) == {"answer": "7"}  # numbers become strings
    assert problems[0]["source"] == "math500"
    # the same file as kind math500 also carries level and subject for the breakdown
    typed = load_benchmark("math500", {"kind": "math500", "path": str(path), "k": 4})
    assert [json.loads(p["meta"]) for p in typed] == [{"level": 1, "subject": "Algebra"},
                                                      {"level": 2, "subject": "Algebra"}]
    with pytest.raises(ValueError, match="category 'code', but kind math500 problems are 'math'"):
        load_benchmark("math500", {"kind": "math500", "path": str(path), "k": 4,
                                   "category": "code"})


def test_path_expands_env(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "b.jsonl", [{"id": 1, "prompt": "p", "reference": None}])
    monkeypatch.setenv("DISTILLAB_TEST_BENCH", str(tmp_path))
    problems = load_benchmark("b", {"kind": "jsonl", "path": "${DISTILLAB_TEST_BENCH}/b.jsonl",
                                    "category": "math", "k": 1})
    assert problems[0]["query_id"] == "1"
    assert problems[0]["reference"] is None


def test_missing_answer_field_names_file_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "test.jsonl", [
        {"problem": "a", "answer": "1", "unique_id": "u1"},
        {"problem": "b", "unique_id": "u2"},
    ])
    spec = {"format": "jsonl", "path": str(path), "id_field": "unique_id",
            "text_field": "problem", "answer_field": "answer", "category": "math", "k": 1}
    with pytest.raises(ValueError, match=rf"{path}:2: field 'answer': missing"):
        load_benchmark("m", spec)


def test_missing_text_field_names_it(tmp_path):
    path = write_jsonl(tmp_path / "test.jsonl", [{"id": "a", "question": "q"}])
    spec = {"format": "jsonl", "path": str(path), "category": "math", "k": 1}  # defaults
    with pytest.raises(ValueError, match=rf"{path}:1: field 'prompt': missing"):
        load_benchmark("m", spec)


def test_malformed_benchmark_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "prompt": "x"}\n{oops\n')
    with pytest.raises(ValueError, match=rf"{path}:2: malformed JSON"):
        load_benchmark("m", {"format": "jsonl", "path": str(path), "category": "math", "k": 1})


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"benchmark gone: no such file .*nope\.jsonl"):
        load_benchmark("gone", demo_spec(path=str(tmp_path / "nope.jsonl")))


def test_code_benchmark_keeps_tests(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"id": "c1", "prompt": "write f", "tests": [{"input": "1", "output": "2"}]}])
    p = load_benchmark("c", {"format": "jsonl", "path": str(path), "category": "code", "k": 1})[0]
    assert json.loads(p["tests"]) == [{"input": "1", "output": "2"}]
    assert p["category"] == "code"


def test_demo_config_benchmarks_load(demo_cfg):
    for name, spec in demo_cfg["evaluation"]["benchmarks"].items():
        assert spec["kind"] == "jsonl" and spec["format"] == "jsonl"
        problems = load_benchmark(name, spec)
        assert len(problems) == spec["max_problems"]
        assert {p["category"] for p in problems} == {spec["category"]}


def test_paper_config_benchmarks_follow_the_paper(paper_cfg):
    ev = paper_cfg["evaluation"]
    specs = ev["benchmarks"]
    assert {n: (s["kind"], s["k"]) for n, s in specs.items()} == {
        "aime2024": ("aime2024", 64), "aime2025": ("aime2025", 64), "math500": ("math500", 4),
        "livecodebench": ("livecodebench", 16)}
    lcb = specs["livecodebench"]
    assert (lcb["release"], lcb["date_window"]) == ("release_v5", ["2024-10-01", "2025-02-01"])
    assert all(s["revision"] for s in specs.values())
    assert ev["sampling"] | {} == {"temperature": 0.6, "top_p": 0.95, "top_k": 0,
                                   "max_new_tokens": 49152, "seed": 0, "n": 1}
    assert ev["backend"] == "vllm" and ev["reference"] == "paper"
    assert eval_gpus(ev) == ev["tensor_parallel_size"] == 4
    assert paper_cfg["prompts"]["instructions"]["math"] == prompts.MATH_INSTRUCTION


def test_paper_specs_dispatch_to_their_loaders(paper_cfg, monkeypatch):
    calls = []

    def fake(kind):
        def load(name, spec):
            calls.append((name, kind, spec.get("repo_id"), spec.get("revision")))
            category = "code" if kind == "livecodebench" else "math"
            return [benchmarks._query(f"{name}-1", name, category, "q", reference={"answer": "1"})]
        return load

    for kind in benchmarks.KINDS:
        monkeypatch.setitem(benchmarks.LOADERS, kind, fake(kind))
    for name, spec in paper_cfg["evaluation"]["benchmarks"].items():
        assert load_benchmark(name, spec)[0]["query_id"] == f"{name}-1"
    specs = paper_cfg["evaluation"]["benchmarks"]
    assert calls == [(n, s["kind"], s["repo_id"], s["revision"]) for n, s in specs.items()]


def _merged(paper: dict, overlay: Path) -> dict:
    from snakemake.utils import update_config

    cfg = copy.deepcopy(paper)
    update_config(cfg, yaml.safe_load(overlay.read_text()))
    return cfg


def test_local_benchmarks_overlay_merges_and_validates():
    paper = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())
    cfg = validate_config(_merged(paper, REPO / "configs/overlays/local-benchmarks.yaml"))
    specs = cfg["evaluation"]["benchmarks"]
    for name in ("aime2024", "aime2025", "math500"):
        assert specs[name]["path"] == f"${{DISTILLAB_SHARED_BENCHMARKS}}/{name}/test.jsonl"
        assert specs[name]["format"] == "jsonl" and specs[name]["kind"] == name
        assert specs[name]["k"] == paper["evaluation"]["benchmarks"][name]["k"]
    assert "path" not in specs["livecodebench"]


@pytest.mark.benchmarks
def test_local_benchmarks_overlay_loads_the_shared_copies(shared_benchmarks, monkeypatch):
    monkeypatch.setenv("DISTILLAB_SHARED_BENCHMARKS", str(shared_benchmarks))
    paper = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())
    cfg = validate_config(_merged(paper, REPO / "configs/overlays/local-benchmarks.yaml"))
    specs = cfg["evaluation"]["benchmarks"]
    sizes = {n: len(load_benchmark(n, specs[n])) for n in ("aime2024", "aime2025", "math500")}
    assert sizes == {"aime2024": 30, "aime2025": 30, "math500": 500}
    source = benchmark_source("math500", specs["math500"])
    assert source == {"files": [{"path": str(shared_benchmarks / "math500/test.jsonl"),
                                 "sha256": "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132"}]}


@pytest.mark.parametrize("mutate, fragment", [
    # a hub kind without a local path needs the hub: format hf + revision
    (lambda s: s.update(kind="math500", k=4), "'format' is a required property"),
    (lambda s: s.update(kind="math500", k=4, format="hf", repo_id="HuggingFaceH4/MATH-500",
                        split="test"), "'revision' is a required property"),
    # the pre-kind layout: format hf must now say what the rows are
    (lambda s: s.update(format="hf", repo_id="x/y", revision="main", split="train",
                        category="math", k=1), "'kind' is a required property"),
    (lambda s: s.update(kind="livecodebench_public", k=1), "'path' is a required property"),
    (lambda s: s.update(kind="jsonl", path="x.jsonl", k=1), "'category' is a required property"),
])
def test_schema_refuses_incomplete_specs(demo_cfg, mutate, fragment):
    cfg = copy.deepcopy(demo_cfg)
    spec: dict = {}
    mutate(spec)
    cfg["evaluation"]["benchmarks"]["demo_math"] = spec
    with pytest.raises(ConfigError, match="evaluation.benchmarks.demo_math") as info:
        validate_config(cfg)
    assert fragment in str(info.value)


def test_benchmark_source_local_and_hub(tmp_path):
    path = write_jsonl(tmp_path / "b.jsonl", [{"id": 1, "prompt": "p"}])
    assert benchmark_source("b", {"kind": "jsonl", "path": str(path)}) == {
        "files": [{"path": str(path), "sha256": sha256_file(path)}]}
    hub = benchmark_source("m", {"kind": "math500", "repo_id": "HuggingFaceH4/MATH-500",
                                 "revision": "abc", "split": "test"})
    assert hub == {"repo_id": "HuggingFaceH4/MATH-500", "revision": "abc",
                   "hub": "HuggingFaceH4/MATH-500@abc", "split": "test"}
    lcb = benchmark_source("l", {"kind": "livecodebench", "revision": "r", "release": "release_v5"})
    assert lcb["hub"] == "livecodebench/code_generation_lite@r"


def test_engine_gpus_and_params():
    assert eval_gpus({}) == 0
    assert eval_gpus({"backend": "transformers", "gpus": 1}) == 1
    assert eval_gpus({"backend": "vllm", "tensor_parallel_size": 2,
                      "pipeline_parallel_size": 2}) == 4
    with pytest.raises(ValueError, match="evaluation.gpus: 2 GPUs, but the vllm engine uses"):
        eval_gpus({"backend": "vllm", "tensor_parallel_size": 4, "gpus": 2})
    params = engine_params({"backend": "vllm", "tensor_parallel_size": 4, "gpus": 4,
                            "gpu_memory_utilization": 0.8, "dtype": "bfloat16",
                            "vllm": {"chunk_size": 64, "enforce_eager": True},
                            "flush_every": 1, "sampling": {}, "benchmarks": {}})
    # operational knobs (memory share, chunking, GPU count, flushing) rerun nothing
    assert params == {"backend": "vllm", "tensor_parallel_size": 4, "dtype": "bfloat16",
                      "vllm": {"enforce_eager": True}}


# --- prompts ----------------------------------------------------------------------------------

def test_lcb_prompt_is_sent_unmodified_and_math_gets_the_paper_instruction():
    prompt = PromptSpec()
    lcb_text = benchmarks.lcb_user_prompt("Add two numbers.", "")
    lcb = build_request("q", [{"role": "user", "content": lcb_text}], "code",
                        benchmark_prompt("livecodebench", prompt))
    assert lcb.messages == [{"role": "system", "content": prompts.PAPER_SYSTEM_PROMPT},
                            {"role": "user", "content": lcb_text}]
    # a jsonl code benchmark keeps the study's code instruction
    plain = build_request("q", [{"role": "user", "content": "Write f."}], "code",
                          benchmark_prompt("jsonl", prompt))
    assert plain.messages[-1]["content"].endswith(prompts.DEFAULT_INSTRUCTIONS["code"])
    math = build_request("q", [{"role": "user", "content": "What is 1+1?"}], "math",
                         benchmark_prompt("math500", prompt))
    assert math.messages[-1]["content"] == f"What is 1+1?\n\n{prompts.MATH_INSTRUCTION}"
    assert prompts.MATH_INSTRUCTION == ("Let's think step by step and output the final answer "
                                        "within \\boxed{}.")


# --- stand-in generators ------------------------------------------------------------------------

class StandIn:
    """A deterministic generator: ``answer(key, sample, seed) -> GenOutput``. Records the
    request keys it is asked for; raises after ``fail_after`` finished requests."""

    def __init__(self, answer, fail_after: int | None = None):
        self.answer, self.fail_after = answer, fail_after
        self.asked: list[str] = []
        self.finished = 0

    def generate(self, requests, sampling, stop):
        self.asked += [r.key for r in requests]
        for i, r in enumerate(requests):
            if self.fail_after is not None and self.finished >= self.fail_after:
                raise RuntimeError("preempted")
            self.finished += 1
            yield i, [self.answer(r.key, s, r.seed) for s in range(sampling.n)]

    def describe(self):
        return {"backend": "stand-in", "version": "1.0", "tensor_parallel_size": 1}


def boxed(value: str, tokens: int, finish: str = "stop") -> GenOutput:
    return GenOutput(text=f"<think>\nwork\n</think>\n<answer>\n\\boxed{{{value}}}\n</answer>",
                     n_tokens=tokens, finish_reason=finish)


# Five math problems at levels 1-5; the "model" answers problem i correctly on its first
# CORRECT[i] samples, writes longer answers on higher levels, gives no box on one sample
# of p5 and is cut off (finish "length") on one sample of p4.
K = 4
CORRECT = {"p1": 4, "p2": 3, "p3": 2, "p4": 1, "p5": 0}
LEVEL = {f"p{i}": i for i in range(1, 6)}


def level_answer(key: str, s: int, seed: int | None) -> GenOutput:
    tokens = 100 * LEVEL[key] + s
    if key == "p5" and s == 0:
        return GenOutput(text="<think>\nhmm\n</think>\n<answer>\nno idea\n</answer>",
                         n_tokens=tokens, finish_reason="stop")
    if key == "p4" and s == K - 1:
        return boxed("999", tokens, finish="length")
    return boxed(str(LEVEL[key] * 11) if s < CORRECT[key] else "0", tokens)


@pytest.fixture
def level_bench(tmp_path) -> dict:
    rows = [{"id": pid, "prompt": f"Problem {pid}.", "reference": {"answer": str(lvl * 11)},
             "meta": {"level": lvl, "difficulty": "easy" if lvl < 3 else "hard"}}
            for pid, lvl in LEVEL.items()]
    path = write_jsonl(tmp_path / "levels.jsonl", rows)
    return {"kind": "jsonl", "path": str(path), "category": "math", "k": K}


SETTINGS = VerifySettings(threshold=0.9, workers=1, timeout_s=30)


def run_eval(bench: dict, gen: StandIn, output: Path, **kw):
    return evaluate("student", "levels", bench, SAMPLING, PromptSpec(), SETTINGS,
                    lambda: gen, output=output, flush=FlushPolicy(every=1, interval_s=1e9), **kw)


def test_result_metrics_on_a_stand_in_generator(level_bench, tmp_path):
    result, samples, counts = run_eval(level_bench, StandIn(level_answer),
                                       tmp_path / "s.parquet")
    assert counts["queries_generated"] == 5 and counts["queries_resumed"] == 0
    assert len(samples) == 5 * K
    rates = {p: c / K for p, c in CORRECT.items()}
    assert result["per_problem_pass_rate"] == rates
    assert result["pass_at_1"] == pytest.approx(statistics.fmean(rates.values()))
    assert result["pass_at_1_stderr"] == pytest.approx(
        statistics.stdev(rates.values()) / math.sqrt(5))
    expected_k = {str(k): statistics.fmean(metrics.pass_at_k(K, c, k) for c in CORRECT.values())
                  for k in (1, 2, 4)}
    assert result["pass_at_k"] == pytest.approx(expected_k)
    assert list(result["pass_at_k"]) == ["1", "2", "4"]  # only k <= samples per problem
    tokens = [100 * LEVEL[p] + s for p in LEVEL for s in range(K)]
    assert result["mean_response_tokens"] == pytest.approx(statistics.fmean(tokens))
    assert result["median_response_tokens"] == pytest.approx(statistics.median(tokens))
    assert result["no_answer_rate"] == pytest.approx(1 / 20)
    assert result["truncated_rate"] == pytest.approx(1 / 20)
    levels = result["groups"]["level"]
    assert list(levels) == ["1", "2", "3", "4", "5"]
    assert {g: v["accuracy"] for g, v in levels.items()} == {
        str(LEVEL[p]): r for p, r in rates.items()}
    assert levels["3"] == {"n_problems": 1, "accuracy": 0.5, "mean_tokens": 301.5}
    assert list(result["groups"]["difficulty"]) == ["easy", "hard"]
    # the settings that move a score, stored beside it
    assert (result["k"], result["n_problems"], result["kind"]) == (K, 5, "jsonl")
    assert result["sampling"] == {**SAMPLING, "min_p": 0.0, "n": K}
    assert result["prompt"]["instruction"] == prompts.MATH_INSTRUCTION
    assert len(result["prompt_template_hash"]) == 12
    assert result["grader"] == ["math"] and result["grader_version"][0].startswith("math-verify")
    assert result["grading"] == {"threshold": 0.9}
    assert result["engine"]["backend"] == "stand-in" and result["engine"]["version"] == "1.0"
    assert result["engine"]["tensor_parallel_size"] == 1
    assert result["benchmark_source"]["files"][0]["sha256"] == sha256_file(level_bench["path"])
    assert result["date_window"] is None and result["release"] is None
    by_sample = {(s["problem_id"], s["sample"]): s for s in samples}
    assert by_sample[("p5", 0)]["answer"] is None
    assert by_sample[("p1", 0)]["answer"] == "11" and by_sample[("p1", 0)]["passed"]
    json.dumps(result)


def test_killed_evaluation_resumes_with_only_the_missing_samples(level_bench, tmp_path):
    reference, ref_samples, _ = run_eval(level_bench, StandIn(level_answer),
                                         tmp_path / "ref" / "s.parquet")
    output = tmp_path / "run" / "s.parquet"
    partial = Path(f"{output}.partial")
    first = StandIn(level_answer, fail_after=2)
    with pytest.raises(RuntimeError, match="preempted"):
        run_eval(level_bench, first, output)
    assert len(list(partial.glob("part-*.parquet"))) == 2  # flushed before the failure
    done = {r["query_id"] for p in partial.glob("part-*.parquet")
            for r in read_rows(p, schemas.RESPONSE)}
    assert done == set(first.asked[:2])

    second = StandIn(level_answer)
    result, samples, counts = run_eval(level_bench, second, output)
    assert sorted(second.asked) == sorted(set(LEVEL) - done)  # only what was missing
    assert (counts["queries_resumed"], counts["queries_generated"]) == (2, 3)
    assert samples == ref_samples
    assert len(result.pop("engine_runs")) == 2  # both runs generated part of it
    reference.pop("engine_runs")
    assert result == reference

    # a finished job resumes everything and opens no generator at all
    never = StandIn(level_answer, fail_after=0)
    again, _, counts = run_eval(level_bench, never, output)
    assert never.asked == [] and counts["queries_generated"] == 0
    assert again["pass_at_1"] == reference["pass_at_1"]


def test_changed_weights_or_sampling_discard_the_partial_parts(level_bench, tmp_path):
    output = tmp_path / "s.parquet"
    with pytest.raises(RuntimeError):
        run_eval(level_bench, StandIn(level_answer, fail_after=3), output,
                 fingerprint={"model": {"files": "aaa"}})
    retrained = StandIn(level_answer)
    run_eval(level_bench, retrained, output, fingerprint={"model": {"files": "bbb"}})
    assert sorted(retrained.asked) == sorted(LEVEL)  # the old weights' samples are gone


def test_model_fingerprint_follows_the_files(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"1")
    before = model_fingerprint(tmp_path / "m")
    assert model_fingerprint(tmp_path / "m") == before
    (tmp_path / "m" / "w.bin").write_bytes(b"22")
    assert model_fingerprint(tmp_path / "m") != before


def test_the_two_rules_generate_in_parts_and_score_the_whole(level_bench, tmp_path,
                                                            monkeypatch, demo_cfg):
    """eval_generate (2 parts) then evaluate, through their Snakemake entry points."""
    from distillab import evaluate as ev

    asked = []

    def fake_make_generator(backend, path, revision, options):
        asked.append({"backend": backend, "path": path, "options": options})
        return StandIn(level_answer)

    monkeypatch.setattr(ev, "make_generator", fake_make_generator)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    evaluation = {**demo_cfg["evaluation"], "batch_size": 4}
    out = tmp_path / "eval"
    common = dict(benchmark=level_bench, sampling=SAMPLING, prompts={}, prompt_style="chat",
                  demonstrations=0)
    facts: list[dict] = []
    parts = [(str(out / "levels" / f"part{p}.parquet"), str(out / "levels" / f"part{p}.json"))
             for p in range(2)]
    for part, (responses, info) in enumerate(parts):
        smk = SimpleNamespace(
            config={"evaluation": evaluation}, input=SimpleNamespace(model=str(model_dir)),
            output=SimpleNamespace(responses=responses, info=info),
            wildcards=SimpleNamespace(model="s__t", benchmark="levels", part=str(part)),
            params=SimpleNamespace(**common, jobs=2))
        facts.append({})
        ev.eval_generate_from_snakemake(smk, SimpleNamespace(add=facts[-1].update))
        assert not Path(f"{responses}.partial").exists()
    assert asked == [{"backend": "transformers", "path": str(model_dir),
                      "options": {"batch_size": 4}}] * 2
    # every other problem, in file order: parts of 3 and 2
    assert [read_json(i)["problem_ids"] for _, i in parts] == [["p1", "p3", "p5"], ["p2", "p4"]]
    assert [f["queries_generated"] for f in facts] == [3, 2]
    assert [f["rows_out"] for f in facts] == [3 * K, 2 * K]
    smk = SimpleNamespace(
        config={"evaluation": evaluation},
        input=SimpleNamespace(responses=[r for r, _ in parts], info=[i for _, i in parts]),
        output=SimpleNamespace(result=str(out / "levels.json"),
                               samples=str(out / "levels.samples.parquet")),
        wildcards=SimpleNamespace(model="s__t", benchmark="levels"),
        params=SimpleNamespace(**common, model_info={"kind": "student"},
                               verification={"threshold": 0.9, "workers": 1}))
    scored: dict = {}
    ev.evaluate_from_snakemake(smk, SimpleNamespace(add=scored.update))
    result = read_json(out / "levels.json")
    assert result["model_info"] == {"kind": "student"} and result["n_samples"] == 5 * K
    assert result["jobs"] == 2 and len(result["engine_runs"]) == 2
    assert result["per_problem_pass_rate"] == {p: c / K for p, c in CORRECT.items()}
    samples = read_rows(smk.output.samples, schemas.EVAL_SAMPLE)
    assert [s["problem_id"] for s in samples] == [p for p in LEVEL for _ in range(K)]
    assert scored["parts"] == 2 and scored["rows_out"] == 20


def test_parts_split_every_problem_once():
    problems = [{"query_id": f"q{i}"} for i in range(7)]
    split = [part_problems(problems, p, 3) for p in range(3)]
    assert [[q["query_id"] for q in part] for part in split] == [
        ["q0", "q3", "q6"], ["q1", "q4"], ["q2", "q5"]]
    assert part_problems(problems, 0, 1) == problems
    assert part_problems(problems[:1], 1, 2) == []  # more jobs than problems: empty parts
    with pytest.raises(ValueError, match="part 2 of 2"):
        part_problems(problems, 2, 2)
    assert eval_jobs({"jobs": 2}, {"k": 1}) == 2
    assert eval_jobs({"jobs": 2}, {"k": 1, "jobs": 4}) == 4
    assert eval_jobs({}, {"k": 1}) == 1


def _row(pid: str, s: int) -> dict:
    return {"query_id": pid, "sample": s, "text": "t"}


@pytest.mark.parametrize("parts, message", [
    ([([_row("a", 0), _row("a", 1)], {"part": 0, "k": 2, "problem_ids": ["a"]})],
     r"do not cover the benchmark: missing problems \['b'\]"),
    ([([_row("a", 0), _row("a", 1)], {"part": 0, "k": 2, "problem_ids": ["a"]}),
      ([_row("a", 0), _row("a", 1), _row("b", 0), _row("b", 1)],
       {"part": 1, "k": 2, "problem_ids": ["a", "b"]})],
     r"part1.parquet: problem 'a' is also in part0.parquet"),
    ([([_row("a", 0), _row("a", 1), _row("b", 0)], {"part": 0, "k": 2,
                                                    "problem_ids": ["a", "b"]})],
     r"part0.parquet: problem 'b' has samples \[0\], expected 0..1"),
    ([([_row("a", 0)], {"part": 0, "k": 1, "problem_ids": ["a", "b"]})],
     r"part0.parquet: k = 1, but the benchmark asks for k = 2"),
    ([([_row("c", 0), _row("c", 1)], {"part": 0, "k": 2, "problem_ids": ["a", "b"]})],
     r"part0.parquet: row for problem 'c'"),
])
def test_parts_that_are_not_one_split_are_refused_naming_the_file(parts, message):
    problems = [{"query_id": "a"}, {"query_id": "b"}]
    where = [f"part{i}.parquet" for i in range(len(parts))]
    with pytest.raises(ValueError, match=message):
        collect_parts(parts, problems, 2, where)


def test_samples_do_not_depend_on_the_number_of_jobs(level_bench, tmp_path):
    """The same samples and scores whether a benchmark is generated in 1 job or 3."""
    problems = load_benchmark("levels", level_bench)
    results = {}
    for jobs in (1, 3):
        parts = [generate_part("student", "levels", level_bench, SAMPLING, PromptSpec(),
                               lambda: StandIn(level_answer),
                               output=tmp_path / f"j{jobs}" / f"part{p}.parquet", part=p,
                               jobs=jobs, problems=problems) for p in range(jobs)]
        results[jobs] = score("student", "levels", level_bench, SAMPLING, PromptSpec(),
                              SETTINGS, parts, problems=problems)
    (one, one_samples), (three, three_samples) = results[1], results[3]
    assert one_samples == three_samples
    differ = {"jobs", "engine_runs"}
    assert {k: v for k, v in one.items() if k not in differ} == {
        k: v for k, v in three.items() if k not in differ}
    assert (one["jobs"], len(one["engine_runs"]), three["jobs"], len(three["engine_runs"])) == (
        1, 1, 3, 3)


# --- LiveCodeBench grading ----------------------------------------------------------------------

# n -> 2n on every test but n == 10, where it prints 0: 9 of tests 1..10 pass.
NINE_OF_TEN = "n = int(input())\nprint(0 if n == 10 else 2 * n)"
CORRECT_CODE = "n = int(input())\nprint(2 * n)"
# passes the first 10 tests and fails the 11th (n == 11), which a 10-test cap never runs
TEN_OF_ELEVEN = "n = int(input())\nprint(0 if n == 11 else 2 * n)"


def lcb_bench(tmp_path: Path, n_tests: int) -> dict:
    tests = [{"input": f"{n}\n", "output": f"{2 * n}\n", "testtype": "stdin"}
             for n in range(1, n_tests + 1)]
    private = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests[3:])))).decode()
    row = {"question_title": "double", "question_content": "Print twice n.",
           "platform": "atcoder", "question_id": "abc999_a", "contest_id": "abc999",
           "contest_date": "2024-12-01T00:00:00", "starter_code": "", "difficulty": "easy",
           "public_test_cases": json.dumps(tests[:3]), "private_test_cases": private,
           "metadata": "{}"}
    path = write_jsonl(tmp_path / f"lcb{n_tests}.jsonl", [row])
    return {"kind": "livecodebench", "path": str(path), "release": None,
            "date_window": ["2024-10-01", "2025-02-01"], "k": 3}


def code_answer(programs: list[str]):
    def answer(key: str, s: int, seed: int | None) -> GenOutput:
        body = "I cannot solve it." if programs[s] is None else f"```python\n{programs[s]}\n```"
        return GenOutput(text=f"<think>\nx\n</think>\n<answer>\n{body}\n</answer>",
                         n_tokens=50, finish_reason="stop")
    return answer


STUDY_CODE = VerifySettings(threshold=0.9, workers=1,
                            code=CodeVerifierConfig(max_tests=10, timeout_per_test_s=5.0))


def test_livecodebench_rules_fail_a_solution_passing_9_of_10_tests(tmp_path):
    bench = lcb_bench(tmp_path, 10)
    problems = load_benchmark("lcb", bench)
    assert len(json.loads(problems[0]["tests"])) == 10  # public + private
    gen = StandIn(code_answer([CORRECT_CODE, NINE_OF_TEN, None]))
    result, samples, _ = evaluate("m", "lcb", bench, SAMPLING, PromptSpec(), STUDY_CODE,
                                  lambda: gen, output=tmp_path / "s.parquet")
    assert [s["score"] for s in samples] == [1.0, 0.9, 0.0]
    assert [s["passed"] for s in samples] == [True, False, False]  # 0.9 >= 0.9, but not all
    assert result["pass_at_1"] == pytest.approx(1 / 3)
    assert result["grading"]["code"]["threshold"] == 1.0
    assert result["grading"]["code"]["max_tests"] is None
    assert result["grading"]["threshold"] == 0.9  # the study's, for other categories
    assert result["threshold"] == 1.0
    assert result["date_window"] == ["2024-10-01", "2025-02-01"]
    assert result["groups"]["difficulty"] == {"easy": {"n_problems": 1, "accuracy": 1 / 3,
                                                       "mean_tokens": 50.0}}
    assert samples[1]["answer"] == NINE_OF_TEN and samples[2]["answer"] is None
    assert result["no_answer_rate"] == pytest.approx(1 / 3)
    # the prompt went out exactly as LiveCodeBench wrote it
    assert result["prompt"]["instruction"] == ""
    # under the study's SFT settings the same 9/10 response passes (the contrast)
    from distillab.verify import verify_responses

    response = {"query_id": "abc999_a", "teacher": "m", "round": 0, "sample": 1,
                "text": "", "answer": f"```python\n{NINE_OF_TEN}\n```"}
    [study] = verify_responses([response], {p["query_id"]: p for p in problems}, STUDY_CODE)
    assert study["passed"] and study["score"] == 0.9


def test_livecodebench_rules_run_every_test_not_the_first_ten(tmp_path):
    problems = {p["query_id"]: p for p in load_benchmark("lcb", lcb_bench(tmp_path, 12))}
    response = {"query_id": "abc999_a", "teacher": "m", "round": 0, "sample": 0,
                "text": "", "answer": f"```python\n{TEN_OF_ELEVEN}\n```"}
    [verdict], grading = grade([response], problems, STUDY_CODE)
    details = json.loads(verdict["details"])
    assert details["n_tests"] == 12 and details["n_passed"] == 11
    assert not verdict["passed"]
    from distillab.verify import verify_responses

    [capped] = verify_responses([response], problems, STUDY_CODE)
    assert capped["passed"] and json.loads(capped["details"])["n_tests"] == 10


# --- a real (tiny) transformers model through make_generator --------------------------------

def test_transformers_backend_end_to_end(tiny_model, level_bench, tmp_path):
    from distillab.generate import make_generator

    bench = {**level_bench, "k": 2, "max_problems": 2}
    result, samples, counts = evaluate(
        "tiny", "levels", bench, {**SAMPLING, "max_new_tokens": 6}, PromptSpec(), SETTINGS,
        lambda: make_generator("transformers", tiny_model, None, {"batch_size": 4}),
        output=tmp_path / "s.parquet", options={"batch_size": 4})
    assert len(samples) == 4 and result["n_problems"] == 2
    assert all(0 < s["n_tokens"] <= 6 for s in samples)
    assert result["engine"]["backend"] == "transformers" and result["engine"]["transformers"]
    assert result["truncated_rate"] == 1.0  # the tiny model never stops by itself


# --- summarize ---------------------------------------------------------------------------------

def sample(pid: str, s: int, passed: bool, *, answer: str | None = "1", n_tokens: int = 10,
           finish: str = "stop") -> dict:
    return {"problem_id": pid, "sample": s, "text": "t", "answer": answer, "n_tokens": n_tokens,
            "finish_reason": finish, "score": float(passed), "passed": passed, "details": "{}"}


def test_summarize_hand_computed():
    samples = [
        sample("p1", 0, True, n_tokens=10), sample("p1", 1, False, answer=None, n_tokens=20),
        sample("p2", 0, True, n_tokens=30), sample("p2", 1, True, n_tokens=40),
        sample("p3", 0, False, answer="", n_tokens=50, finish="length"),
        sample("p3", 1, False, n_tokens=60, finish="length"),
        sample("p4", 0, True, n_tokens=70), sample("p4", 1, False, n_tokens=80),
    ]
    r = summarize("demo_math", "m", samples, k=2)
    # per-problem rates 0.5, 1, 0, 0.5 -> mean 0.5; sample stdev sqrt(1/6); n = 4
    assert r["per_problem_pass_rate"] == {"p1": 0.5, "p2": 1.0, "p3": 0.0, "p4": 0.5}
    assert r["pass_at_1"] == pytest.approx(0.5)
    assert r["pass_at_1_stderr"] == pytest.approx(math.sqrt(1 / 6) / 2)
    assert r["n_problems"] == 4 and r["k"] == 2
    assert r["no_answer_rate"] == pytest.approx(2 / 8)
    assert r["truncated_rate"] == pytest.approx(2 / 8)
    assert r["mean_response_tokens"] == pytest.approx(45)
    assert r["median_response_tokens"] == pytest.approx(45)
    # pass@2 per problem: 1, 1, 0, 1
    assert r["pass_at_k"] == pytest.approx({"1": 0.5, "2": 0.75})
    assert r["per_problem_mean_tokens"] == {"p1": 15.0, "p2": 35.0, "p3": 55.0, "p4": 75.0}
    assert r["groups"] == {}
    assert (r["benchmark"], r["model"]) == ("demo_math", "m")
    json.dumps(r)


def test_summarize_groups_by_meta():
    samples = [sample("a", 0, True, n_tokens=10), sample("b", 0, False, n_tokens=30),
               sample("c", 0, True, n_tokens=50)]
    meta = {"a": {"level": 2, "subject": "Algebra"}, "b": {"level": 1, "subject": "Algebra"},
            "c": {"subject": "Geometry"}}
    r = summarize("m", "x", samples, k=1, meta=meta)
    assert r["groups"]["level"] == {"1": {"n_problems": 1, "accuracy": 0.0, "mean_tokens": 30.0},
                                    "2": {"n_problems": 1, "accuracy": 1.0, "mean_tokens": 10.0}}
    assert r["groups"]["subject"]["Algebra"] == {"n_problems": 2, "accuracy": 0.5,
                                                 "mean_tokens": 20.0}


def test_summarize_pass_at_1_is_mean_of_problem_rates_not_of_samples():
    # p1 has 4 samples (all pass), p2 has 1 (fails): per-sample mean would be 0.8
    samples = [sample("p1", s, True) for s in range(4)] + [sample("p2", 0, False)]
    r = summarize("b", "m", samples, k=4)
    assert r["pass_at_1"] == pytest.approx(0.5)
    assert r["pass_at_1_stderr"] == pytest.approx(statistics.stdev([1.0, 0.0]) / math.sqrt(2))
    assert list(r["pass_at_k"]) == ["1"]  # p2 has one sample only


def test_summarize_single_problem_and_empty():
    r = summarize("b", "m", [sample("p", 0, True)], k=1)
    assert (r["pass_at_1"], r["pass_at_1_stderr"], r["n_problems"]) == (1.0, 0.0, 1)
    empty = summarize("b", "m", [], k=1)
    assert empty["n_problems"] == 0 and empty["pass_at_1"] == 0.0
    assert empty["mean_response_tokens"] is None and empty["pass_at_k"] == {}
    assert empty["no_answer_rate"] == 0.0 and empty["truncated_rate"] == 0.0


# --- the shared copies of the paper's benchmarks ------------------------------------------------

@pytest.mark.benchmarks
def test_load_math500(shared_benchmarks):
    spec = {"format": "jsonl", "path": str(shared_benchmarks / "math500" / "test.jsonl"),
            "id_field": "unique_id", "text_field": "problem", "answer_field": "answer",
            "category": "math", "k": 4}
    problems = load_benchmark("math500", spec)
    assert len(problems) == 500
    assert len({p["query_id"] for p in problems}) == 500
    assert all(json.loads(p["reference"])["answer"] for p in problems)
    assert all(p["messages"][0]["content"] for p in problems)
    typed = load_benchmark("math500", {"kind": "math500", "k": 4,
                                       "path": str(shared_benchmarks / "math500" / "test.jsonl")})
    assert sorted({json.loads(p["meta"])["level"] for p in typed}) == [1, 2, 3, 4, 5]


@pytest.mark.benchmarks
def test_load_aime2024(shared_benchmarks):
    spec = {"format": "jsonl", "path": str(shared_benchmarks / "aime2024" / "test.jsonl"),
            "id_field": "id", "text_field": "problem", "answer_field": "answer",
            "category": "math", "k": 64}
    problems = load_benchmark("aime2024", spec)
    assert len(problems) == 30
    assert len({p["query_id"] for p in problems}) == 30
    answers = [json.loads(p["reference"])["answer"] for p in problems]
    assert all(isinstance(a, str) and a.strip().isdigit() for a in answers), answers
