"""Incremental reruns, proven by the jobs a dry run plans against the completed micro
study (the session fixture ``micro_study``; nothing here changes it): each change reruns
exactly its part of the DAG. tests/test_workflow.py covers a finished run (nothing to do),
one teacher's sampling (its branch only) and a moved perplexity cut (no rescoring)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from micro import REPO, snakemake

pytestmark = pytest.mark.slow

QUERY_STAGE = {"prepare_model", "normalize_source", "clean_queries",
               "decontaminate_embeddings", "shard_queries"}
TEACHERS = {"smol-a", "smol-b"}
# a student's release carries its eval results: any new evaluation rewrites its card
RELEASES = {("release", (("student", "smol-student"), ("teacher", t))) for t in TEACHERS}


def plan(workdir: Path, config: Path, snakefile: Path | None = None) -> set[tuple[str, tuple]]:
    """(rule, sorted wildcard items) of every job a dry run plans (as micro.planned_jobs,
    optionally with another Snakefile: the last ``-s`` wins)."""
    extra = ["-s", str(snakefile)] if snakefile else []
    proc = snakemake(workdir, config, "-n", *extra)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs, rule, wildcards = set(), None, {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line.strip())
        if m:
            if rule:
                jobs.add((rule, tuple(sorted(wildcards.items()))))
            rule, wildcards = m.group(1), {}
        m = re.match(r"^wildcards: (.*)$", line.strip())
        if m and rule:
            wildcards = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
    if rule:
        jobs.add((rule, tuple(sorted(wildcards.items()))))
    return jobs


def mutated(config: Path, tmp_path: Path, change) -> Path:
    cfg = yaml.safe_load(config.read_text())
    change(cfg)
    out = tmp_path / "changed.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return out


def test_verifier_threshold_reruns_from_verify_down(micro_study, tmp_path):
    workdir, config = micro_study

    def change(cfg):
        cfg["verification"]["threshold"] = 0.5

    jobs = plan(workdir, mutated(config, tmp_path, change))
    rules = {r for r, _ in jobs}
    assert rules == {"verify", "generate", "accepted", "perplexity", "ngrams", "curate",
                     "parallel", "train", "eval_generate", "evaluate", "release", "export_am",
                     "analysis", "report", "all"}
    # every verdict is redone; round 1's responses are kept. Round 2 asks what round 1 did
    # not accept, which depends on the threshold, so it is generated again.
    verify = [dict(w) for r, w in jobs if r == "verify"]
    assert len(verify) == 8 and {v["teacher"] for v in verify} == TEACHERS
    generate = [dict(w) for r, w in jobs if r == "generate"]
    assert generate and {g["round"] for g in generate} == {"2"}
    assert not QUERY_STAGE & rules


def test_adding_a_benchmark_plans_only_its_evaluations_and_the_report(micro_study, tmp_path):
    workdir, config = micro_study

    def change(cfg):
        # the demo's bundled second benchmark (config.yaml), not in the micro study
        science = yaml.safe_load((REPO / "config.yaml").read_text())["evaluation"]["benchmarks"]["demo_science"]
        science.update(path=str(REPO / "data/demo/benchmark.jsonl"), k=1, max_problems=2)
        cfg["evaluation"]["benchmarks"]["demo_science"] = science

    jobs = plan(workdir, mutated(config, tmp_path, change))
    students = {f"smol-student__{t}" for t in TEACHERS}
    assert jobs == {("evaluate", (("benchmark", "demo_science"), ("model", m))) for m in students} | {
        ("eval_generate", (("benchmark", "demo_science"), ("model", m), ("part", "0")))
        for m in students} | RELEASES | {("report", ()), ("all", ())}


def test_more_eval_jobs_regenerate_only_the_evaluations(micro_study, tmp_path):
    """Splitting a benchmark's generation over 2 jobs plans its parts, its grading and the
    report: nothing upstream, and the other benchmarks are kept."""
    workdir, config = micro_study
    [bench] = yaml.safe_load(config.read_text())["evaluation"]["benchmarks"]

    def change(cfg):
        cfg["evaluation"]["benchmarks"][bench]["jobs"] = 2

    jobs = plan(workdir, mutated(config, tmp_path, change))
    students = {f"smol-student__{t}" for t in TEACHERS}
    assert jobs == {("evaluate", (("benchmark", bench), ("model", m))) for m in students} | {
        ("eval_generate", (("benchmark", bench), ("model", m), ("part", p)))
        for m in students for p in ("0", "1")} | RELEASES | {("report", ()), ("all", ())}


def test_adding_a_teacher_plans_only_its_branch(micro_study, tmp_path):
    workdir, config = micro_study

    def change(cfg):
        smol = cfg["teachers"]["smol-a"]
        cfg["teachers"]["smol-c"] = {**smol, "sampling": {**smol["sampling"], "temperature": 0.9}}

    jobs = plan(workdir, mutated(config, tmp_path, change))
    rules = {r for r, _ in jobs}
    assert rules == {"generate", "verify", "accepted", "perplexity", "ngrams", "curate",
                     "parallel", "train", "eval_generate", "evaluate", "release", "export_am",
                     "analysis", "report", "all"}
    for rule, wildcards in jobs:
        values = "/".join(v for _, v in wildcards)
        assert not any(t in values for t in TEACHERS), (rule, wildcards)
        if rule not in {"analysis", "report", "all"}:
            assert "smol-c" in values, (rule, wildcards)
    assert sum(r == "generate" for r, _ in jobs) == 4  # 2 rounds x 2 shards


def _copy_of_the_workflow(dest: Path) -> Path:
    """The Snakefile with its rules, scripts, package and captions, in a temp dir: its
    Snakefile puts *its* src/ first on sys.path, so the code params hash the copy."""
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("rules", "scripts", "src", "envs", "docs/report"):
        shutil.copytree(REPO / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest / "Snakefile"


@pytest.fixture
def workflow_copy(tmp_path) -> Path:
    copy = tmp_path / "workflow"
    copy.mkdir()
    return _copy_of_the_workflow(copy)


# rules whose `code` param hashes the module, and everything downstream of them
@pytest.mark.parametrize("module, expected", [
    ("report", {"report"}),
    ("ngram_filter", {"ngrams", "curate", "parallel", "train", "eval_generate", "evaluate",
                      "release", "export_am", "analysis", "report"}),
])
def test_editing_package_code_reruns_the_rules_that_use_it(micro_study, workflow_copy,
                                                           module, expected):
    workdir, config = micro_study
    # control: the unedited copy plans nothing (its paths differ, its code does not)
    assert plan(workdir, config, snakefile=workflow_copy) == set()
    path = workflow_copy.parent / f"src/distillab/{module}.py"
    path.write_text(path.read_text() + "\n# an edit\n")
    jobs = plan(workdir, config, snakefile=workflow_copy)
    assert {r for r, _ in jobs} == expected | {"all"}
