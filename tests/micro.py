"""The micro study: the demo config shrunk so the whole DAG runs in a few minutes on
2 cores. Shared by the workflow, rerun, resume and SLURM tests (the session fixture
``micro_study`` in conftest.py runs it once)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def micro_config() -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["study"] = "micro"
    cfg["models"] = {"smollm2-135m-instruct": cfg["models"]["smollm2-135m-instruct"]}
    cfg["queries"]["sources"][0]["path"] = str(REPO / "data/demo/queries.jsonl")
    # Seeded generation is deterministic on a given machine; the micro study is sized so
    # both SmolLM2 teachers end with a non-empty SFT set (an empty one is a clear error
    # of the train stage, tested in test_train.py).
    cfg["queries"]["sources"][0]["max_per_category"] = {"math": 6, "science": 3, "code": 1, "if": 1}
    smol = {
        "model": "smollm2-135m-instruct",
        "backend": "transformers",
        "demonstrations": 1,
        "batch_size": 8,
        "sampling": {"temperature": 0.5, "top_p": 0.95, "top_k": 0, "max_new_tokens": 48, "seed": 1, "n": 1},
    }
    cfg["teachers"] = {"smol-a": smol, "smol-b": {**smol, "sampling": {**smol["sampling"], "temperature": 0.7}}}
    cfg["curation"]["parallel_policy"] = "per_teacher"
    training = cfg["students"]["smol-student"]["training"]
    training.update(max_steps=2, per_device_train_batch_size=2, max_length=384)
    cfg["evaluation"]["evaluate_teachers"] = False
    cfg["evaluation"]["sampling"]["max_new_tokens"] = 32
    bench = cfg["evaluation"]["benchmarks"]["demo_math"]
    bench.update(path=str(REPO / "data/demo/benchmark.jsonl"), k=1, max_problems=3)
    cfg["evaluation"]["benchmarks"] = {"demo_math": bench}
    cfg["queries"]["decontamination"]["benchmarks"] = ["demo_math"]
    return cfg


def snakemake(workdir: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
           str(workdir), "--configfile", str(config), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1500)


def planned_jobs(workdir: Path, config: Path) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run plans."""
    proc = snakemake(workdir, config, "-n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs, rule = set(), None
    for line in proc.stdout.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line.strip())
        if m:
            rule = m.group(1)
            jobs.add((rule, ""))
        m = re.match(r"^wildcards: (.*)$", line.strip())
        if m and rule:
            jobs.discard((rule, ""))
            jobs.add((rule, m.group(1)))
    return jobs
