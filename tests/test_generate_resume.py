"""Resume after preemption, for real: a Snakemake generate job is killed with SIGKILL
part-way, the workflow is run again, and the output holds exactly one row per
(query, round, sample) — none lost, none doubled — while the requests finished before
the kill are taken from the partial file, not generated again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from micro import REPO, micro_config, snakemake

TARGET = "results/micro/generate/smol-a/r1/000.parquet"


def _config(workdir: Path) -> Path:
    cfg = micro_config()
    cfg["teachers"] = {"smol-a": {**cfg["teachers"]["smol-a"], "batch_size": 1,
                                  "sampling": {**cfg["teachers"]["smol-a"]["sampling"], "n": 2,
                                               "max_new_tokens": 24}}}
    cfg["queries"]["n_shards"] = 1
    cfg["generation"].update(max_rounds=1, flush_every=1)
    path = workdir / "resume.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_generate_killed_with_sigkill_resumes_exactly_once(tmp_path):
    config = _config(tmp_path)
    output = tmp_path / TARGET
    partial = Path(f"{output}.partial")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
           str(tmp_path), "--configfile", str(config), "--cores", "1", TARGET]
    # Own session, so the kill reaches Snakemake and the job's script alike (a preempted
    # SLURM job loses its whole process tree the same way).
    log = tmp_path / "first.log"
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 900
        while len(list(partial.glob("part-*.parquet"))) < 2:
            assert proc.poll() is None, ("the workflow ended before the job could be killed:\n"
                                         + log.read_text()[-3000:])
            assert time.monotonic() < deadline, "no partial part appeared"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not output.exists()
    before = pd.concat(pd.read_parquet(p) for p in sorted(partial.glob("part-*.parquet")))
    finished = set(before.query_id)
    assert finished

    done = snakemake(tmp_path, config, "--unlock")
    assert done.returncode == 0, done.stderr[-3000:]
    rerun = snakemake(tmp_path, config, "--rerun-incomplete", TARGET)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]

    rows = pd.read_parquet(output)
    shard = pd.read_parquet(tmp_path / "results/micro/queries/shards/000.parquet")
    keys = list(zip(rows.query_id, rows["round"], rows["sample"]))
    assert sorted(keys) == sorted((q, 1, s) for q in shard.query_id for s in range(2))
    assert len(keys) == len(set(keys))  # none doubled
    # the finished requests came from the partial file, byte for byte, not a new sample
    kept = rows[rows.query_id.isin(finished)].set_index(["query_id", "sample"]).text
    assert kept.to_dict() == before.set_index(["query_id", "sample"]).text.to_dict()
    prov = json.loads(Path(f"{output}.prov.json").read_text())
    assert prov["queries_resumed"] == len(finished)
    assert prov["queries_resumed"] + prov["queries_generated"] == len(shard)
    assert not partial.exists()  # cleaned up once the output is written
