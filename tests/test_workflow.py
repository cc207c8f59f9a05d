"""The real DAG on a micro study in a temp dir: every stage runs, a second run has nothing
to do, and changing one teacher's sampling reruns only that teacher's branch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from micro import REPO, micro_config, planned_jobs, snakemake

slow = pytest.mark.slow


@slow
def test_micro_study_produces_report_with_provenance(micro_study):
    workdir, _ = micro_study
    root = workdir / "results/micro"
    summary = json.loads((root / "report/summary.json").read_text())
    assert set(summary["models"]) == {"smol-student__smol-a", "smol-student__smol-b"}
    for row in summary["table1_accuracy"]["demo_math"].values():
        assert 0.0 <= row["pass_at_1"] <= 1.0 and row["n_problems"] == 3 and row["k"] == 1
    assert "Table 1" in (root / "report/summary.md").read_text()
    # the retry rounds: round 1 asks every shard query; later rounds only what is left
    for teacher, rounds in summary["rounds"].items():
        assert [r["round"] for r in rounds][:1] == [1], teacher
        asked = [r["queries_asked"] for r in rounds]
        assert asked == sorted(asked, reverse=True), teacher
        assert rounds[-1]["accepted_cumulative"] == sum(r["accepted"] for r in rounds)
    assert "## Retry rounds" in (root / "report/summary.md").read_text()
    # every parquet/json artifact has a sidecar, every dir output a provenance.json
    for path in root.rglob("*"):
        if path.name.endswith(".prov.json"):
            continue
        if path.suffix == ".parquet" or (path.suffix == ".json" and "eval" in path.parts):
            assert Path(str(path) + ".prov.json").exists(), path
    for d in [root / "models/smollm2-135m-instruct", root / "train/smol-student__smol-a"]:
        assert (d / "provenance.json").exists()
    # the checkpoint is a loadable HF dir with a model card
    assert (root / "train/smol-student__smol-a/README.md").exists()
    # its release: the checkpoint's files linked, and a card with the eval results
    release = root / "release/smol-student__smol-a"
    card = (release / "README.md").read_text()
    assert "## Evaluation results" in card and "model-index:" in card and "| demo_math |" in card
    assert (release / "config.json").stat().st_ino == (
        root / "train/smol-student__smol-a/config.json").stat().st_ino
    assert (release / "provenance.json").exists()
    # every category has its verifier: code ran in the sandbox, IF through IFEval
    verified = pd.concat(pd.read_parquet(p) for p in (root / "verify").rglob("*.parquet"))
    by_category = verified.groupby("category")["verifier"].agg(set).to_dict()
    assert by_category["code"] == {"code"} and by_category["if"] == {"if"}
    assert by_category["math"] == {"math"}
    for details in verified[verified.category == "code"]["details"].map(json.loads):
        # a response without a fenced program never reaches the sandbox; all others did
        assert (details.get("status") == "no_code"
                or details["sandbox"]["isolation"] in {"bwrap", "rlimits+netns"}), details
    # nothing disappears: every clean query was either kept or rejected with a reason
    prov = json.loads((root / "queries/clean.parquet.prov.json").read_text())
    assert prov["counts"]["in"] == prov["counts"]["kept"] + sum(prov["counts"]["rejected"].values())


@slow
def test_micro_study_filters_account_for_every_accepted_row(micro_study):
    workdir, _ = micro_study
    root = workdir / "results/micro"
    for teacher in ("smol-a", "smol-b"):
        accepted = set(pd.read_parquet(root / f"accepted/{teacher}.parquet").query_id)
        scores = pd.read_parquet(root / f"perplexity/{teacher}.parquet")
        flags = pd.read_parquet(root / f"ngrams/{teacher}.parquet")
        assert set(scores.query_id) == accepted == set(flags.query_id)
        assert (scores.ppl.dropna() >= 1.0).all() and scores.ppl.notna().any()
        kept = set(pd.read_parquet(root / f"curated/{teacher}.parquet").query_id)
        rejected = pd.read_parquet(root / f"curated/{teacher}.rejected.parquet")
        assert kept | set(rejected.query_id) == accepted and not kept & set(rejected.query_id)
        stats = json.loads((root / f"curated/{teacher}.stats.json").read_text())
        assert stats["perplexity"]["cut"] is not None  # the demo cuts at the 95th percentile
        assert sum(c.get("kept", 0) for c in stats["per_category"].values()) == len(kept)
    md = (root / "report/summary.md").read_text()
    for section in ("## Curation funnel", "## Perplexity of accepted responses",
                    "## Most frequent n-grams", "![perplexity](perplexity.png)"):
        assert section in md, section


@slow
def test_moving_a_perplexity_cut_does_not_rescore(micro_study, tmp_path):
    workdir, config = micro_study
    cfg = yaml.safe_load(config.read_text())
    cfg["curation"]["perplexity"]["per_teacher"] = {"smol-a": {"max_ppl": 3.0}}
    changed = tmp_path / "cut.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(workdir, changed)
    rules = {r for r, _ in jobs}
    assert {"curate", "parallel", "train", "evaluate", "analysis", "report"} <= rules
    assert not {"perplexity", "ngrams", "generate", "verify", "accepted"} & rules
    for rule, wildcards in jobs:
        assert "smol-b" not in wildcards, (rule, wildcards)


@slow
def test_second_run_has_nothing_to_do(micro_study):
    workdir, config = micro_study
    assert planned_jobs(workdir, config) == set()


@slow
def test_changing_one_teacher_reruns_only_its_branch(micro_study, tmp_path):
    workdir, config = micro_study
    cfg = yaml.safe_load(config.read_text())
    cfg["teachers"]["smol-a"]["sampling"]["temperature"] = 0.7
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(workdir, changed)
    rules = {r for r, _ in jobs}
    assert {"generate", "verify", "accepted", "curate", "parallel", "train", "evaluate",
            "analysis", "report"} <= rules
    for rule, wildcards in jobs:
        assert "smol-b" not in wildcards, (rule, wildcards)
    assert not {"prepare_model", "normalize_source", "clean_queries", "shard_queries"} & rules


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c["teachers"]["smol-a"]["sampling"].update(tempreature=0.5),
     "teachers.smol-a.sampling.tempreature"),
    (lambda c: c["verification"].update(threshold=1.5), "verification.threshold"),
])
def test_bad_config_fails_before_any_job_naming_the_key(tmp_path, mutate, key):
    cfg = micro_config()
    mutate(cfg)
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, config, "-n")
    assert proc.returncode != 0
    assert f"config key {key}" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_paper_study_plans_without_network():
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--cores", "1",
         "--configfile", str(REPO / "configs/paper.yaml"), "--directory", str(REPO)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rule in ("generate", "verify", "train", "eval_generate", "evaluate", "release", "report"):
        assert re.search(rf"^{rule}\s+\d+", proc.stdout, re.M), rule
    # 3 students (one per teacher) x (AIME24 2 + AIME25 2 + MATH500 4 + LCB 4 parts)
    assert re.search(r"^eval_generate\s+36$", proc.stdout, re.M)
    assert re.search(r"^evaluate\s+12$", proc.stdout, re.M)


@slow
def test_paper_study_with_r1_behind_an_endpoint_plans():
    """The overlay turns DeepSeek-R1 into an openai teacher: its generate jobs read no
    local model, so R1's 671B weights are not prepared; nothing else changes."""
    def plan(*configs: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n",
             "--cores", "1", "--directory", str(REPO), "--configfile",
             *[str(REPO / c) for c in configs]],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "DISTILLAB_R1_URL": "http://r1:8000/v1"},
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    def jobs(stdout: str) -> dict[str, int]:
        return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stdout, re.M)}

    vllm = jobs(plan("configs/paper.yaml"))
    endpoint = jobs(plan("configs/paper.yaml", "configs/overlays/deepseek-r1-endpoint.yaml"))
    assert endpoint["prepare_model"] == vllm["prepare_model"] - 1
    assert endpoint["generate"] == vllm["generate"]
