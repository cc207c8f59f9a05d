"""The workflow through a real SLURM cluster: the single-node test cluster of
``.ci/slurm/start.sh`` and ``profiles/slurm-test`` (snakemake-executor-plugin-slurm).

Run:  sudo .ci/slurm/start.sh && pytest -m slurm tests/test_slurm.py; sudo .ci/slurm/stop.sh
The cluster tests skip, with the reason, where no such cluster answers (no ``sinfo``, no
idle node, or a cluster that is not ``ClusterName=distillab-test``: the study is never sent
to a real cluster by a test). CI (.ci/run) starts one and sets DISTILLAB_REQUIRE_SLURM=1,
which turns the skip into a failure.

What one module-scoped run checks (``slurm_study``, ~8 min on 2 idle cores):
* a fault run: the query stage and round-1 generation of the study through the profile,
  while one running generate job is ``scancel``led and the generate script of another is
  SIGKILLed; both come back through ``retries:`` and the run succeeds;
* then the whole study in the same workdir: every job of the DAG is a SLURM job (an
  ``sbatch`` shim on PATH records each submission and SLURM's own view of it), every rule
  lands on the partition both profiles give it, and a rule whose ``gpu`` resource is > 0
  gets ``--gpus=N`` (generate, perplexity and train through the config's ``gpus`` keys,
  which are scheduling-only and change no output; eval_generate through ``evaluation.gpus``);
* the results equal the local run of the session fixture ``micro_study`` (see
  ``test_outputs_match_the_local_run`` for what is compared and why).
The study is the micro study with one teacher (smol-a, unchanged): every rule of the DAG
with half the generation/training work; the local run's smol-a branch is the reference.

Findings (plugin 2.8.0, jobstep 0.6.1, Snakemake 9.27.1, Debian SLURM 22.05.8):
* scancel with the sacct status command is never noticed: sacct reports the job as
  ``CANCELLED by <uid>`` and the plugin compares states with ``status in fail_stati``
  (exact string), so the job counts as running for ever and Snakemake hangs
  (check_active_jobs in __init__.py; the old cookiecutter profile fixed the same bug in
  2019, Snakemake-Profiles/slurm#22). Upstream-worthy: match ``status.split()[0]``.
* With ``slurm-status-command: squeue`` (our profile: no slurmdbd) squeue prints plain
  ``CANCELLED`` and ``FAILED``: the cancelled and the killed job are reported failed
  ("Detailed failure reason unavailable") and resubmitted with ``--attempt 2``; this test
  proves it. That is the workaround; clusters with slurmdbd keep the sacct bug.
* In squeue mode a job that has left squeue (finished more than MinJobAge ago, e.g. after
  a long stall of the Snakemake process) is treated as "not yet visible" and polled for
  ever (``status_lookup_id is None: yield j``): another silent hang. Upstream-worthy: give
  up after a bound and report it failed, or fall back to ``scontrol show job``.
* Without accounting, the plugin's fallback from squeue to sacct when MinJobAge is below 3x
  the first poll interval would hit the sacct hang above: keep MinJobAge >= 3 x
  ``slurm-init-seconds-before-status-checks`` (300 s vs 2 s here).
* Poll timing dominates small jobs: the first poll comes init seconds after a submission,
  then the interval grows by 10 s per poll that sees nothing finished (max 180 s). Our jobs
  take ~8 s; with init 5 they were seen after 20 s, with init 2 after 14 s.
* Profile ``set-resources`` replace a rule's own resource only for the keys they name: a
  rule's ``mem_mb`` wins over ``default-resources`` (16 GB train jobs would never fit a
  small CI node), so the test profile sizes every rule (checked below).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import yaml

from micro import REPO, micro_config, planned_jobs

PROFILE = REPO / "profiles/slurm-test"
USER_PROFILE = REPO / "profiles/slurm"
CLUSTER_NAME = "distillab-test"  # .ci/slurm/start.sh
TEACHER = "smol-a"
RUN_LIMIT_S = 1200               # per Snakemake run (the whole study takes ~5 min)
# GPUs each rule asks for in the test study: generate, perplexity and train from the
# config (slurm_config), eval_generate from evaluation.gpus; every other rule none.
EXPECTED_GPUS = {"generate": 1, "perplexity": 1, "train": 1, "eval_generate": 1}

slurm = pytest.mark.slurm
slow = pytest.mark.slow


# --- profiles (no cluster needed) --------------------------------------------------------

def _rules_and_gpu_rules() -> tuple[set[str], set[str]]:
    """Every rule of rules/*.smk, and those with a ``gpu`` resource."""
    rules, gpu_rules = set(), set()
    for smk in (REPO / "rules").glob("*.smk"):
        blocks = re.split(r"^\s*rule (\w+):", smk.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            rules.add(name)
            if re.search(r"^\s+gpu=", body, re.M):
                gpu_rules.add(name)
    return rules, gpu_rules


def _partition(profile: dict, rule: str) -> str:
    own = (profile.get("set-resources") or {}).get(rule, {})
    return own.get("slurm_partition", profile["default-resources"]["slurm_partition"])


def test_both_slurm_profiles_send_every_rule_to_the_same_partition():
    """The test profile mirrors the user-facing one: a rule that can ask for GPUs (a
    ``gpu`` resource in its rule or profile) goes to ``gpu``, every other to ``cpu``."""
    test_profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    user_profile = yaml.safe_load((USER_PROFILE / "config.yaml").read_text())
    rules, gpu_rules = _rules_and_gpu_rules()
    assert {"generate", "perplexity", "train", "verify"} <= gpu_rules
    for rule in sorted(rules):
        user_gpu = "gpu" in (user_profile["set-resources"].get(rule) or {})
        want = "gpu" if rule in gpu_rules or user_gpu else "cpu"
        assert _partition(user_profile, rule) == want, (rule, "profiles/slurm")
        assert _partition(test_profile, rule) == want, (rule, "profiles/slurm-test")
        # the test profile sizes every rule: a rule's own mem_mb (up to 16 GB) would win
        # over default-resources; >= 500 MB for the two Snakemake processes of a job
        mem = test_profile["set-resources"][rule]["mem_mb"]
        assert 500 <= mem <= 4000, (rule, mem)
    # GPU counts come from the study config (the rules' `gpu` resources), never the profile
    assert not any("gpu" in (r or {}) for r in user_profile["set-resources"].values())
    for key, value in {"executor": "slurm", "slurm-status-command": "squeue",
                       "slurm-no-account": True}.items():
        assert test_profile[key] == value, key
    assert test_profile["retries"] >= 1


# --- the test cluster ----------------------------------------------------------------------

def _cluster_problem() -> str | None:
    """Why the SLURM tests cannot run here, or None."""
    if shutil.which("sinfo") is None:
        return "no SLURM here: `sinfo` is not on PATH (start the test cluster: sudo .ci/slurm/start.sh)"
    try:
        info = subprocess.run(["sinfo", "-h", "-o", "%P|%T|%G"], capture_output=True,
                              text=True, timeout=30)
        if info.returncode:
            return f"no SLURM cluster answers: {info.stderr.strip()}"
        conf = subprocess.run(["scontrol", "show", "config"], capture_output=True,
                              text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "no SLURM cluster answers: sinfo/scontrol timed out"
    if conf.returncode:
        return f"no SLURM cluster answers: {conf.stderr.strip()}"
    name = re.search(r"^ClusterName\s*=\s*(\S+)", conf.stdout, re.M)
    if not name or name.group(1) != CLUSTER_NAME:
        return (f"the SLURM cluster here is {name.group(1) if name else '?'}, not the test "
                f"cluster {CLUSTER_NAME} of .ci/slurm/start.sh: not sending it the test study")
    rows = [line.split("|") for line in info.stdout.split()]
    if not any(state.startswith(("idle", "mixed")) for _, state, _ in rows):
        return f"the SLURM test cluster has no idle node: {info.stdout.strip()}"
    partitions = {p.rstrip("*") for p, _, _ in rows}
    if not {"cpu", "gpu"} <= partitions or not any("gpu" in g for _, _, g in rows):
        return f"the SLURM cluster lacks the cpu/gpu partitions or the fake GPUs: {info.stdout}"
    return None


@pytest.fixture(scope="module")
def slurm_cluster():
    problem = _cluster_problem()
    if problem and os.environ.get("DISTILLAB_REQUIRE_SLURM") == "1":  # CI (.ci/run)
        pytest.fail(f"DISTILLAB_REQUIRE_SLURM=1 but {problem}")
    if problem:
        pytest.skip(problem)
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.fail("a SLURM cluster answers but snakemake-executor-plugin-slurm is not "
                    "installed (requirements.txt; make setup)")


def slurm_config() -> dict:
    """The micro study with one teacher (smol-a, unchanged) and GPUs asked for by the
    config's scheduling-only keys (generate's params and the scorer ignore them)."""
    cfg = micro_config()
    cfg["teachers"] = {TEACHER: {**cfg["teachers"][TEACHER], "gpus": 1}}
    cfg["curation"]["perplexity"]["gpus"] = 1
    for student in cfg["students"].values():
        student["training"]["gpus"] = 1
    cfg["evaluation"]["gpus"] = 1
    return cfg


SHIM = """#!/bin/sh
# sbatch as the plugin calls it, plus a record of the call (each argument base64-encoded)
# and of SLURM's view of the job, one file per job in $DISTILLAB_SBATCH_LOG
out=$({real} "$@") || exit $?
echo "$out"
id=${{out%%;*}}
{{ printf 'ARGS'; for a in "$@"; do printf ' %s' "$(printf %s "$a" | base64 -w0)"; done; echo
  echo "JOB $(scontrol show job -o "$id")"; }} >"$DISTILLAB_SBATCH_LOG/$id.tmp"
mv "$DISTILLAB_SBATCH_LOG/$id.tmp" "$DISTILLAB_SBATCH_LOG/$id"
"""


@dataclass
class Submission:
    jobid: str
    rule: str
    wildcards: dict
    attempt: int
    args: list[str]
    slurm_view: str  # scontrol show job -o, right after the submission

    def opt(self, name: str) -> str | None:
        """The value of an sbatch option (``-p X``, ``--gpus=N``)."""
        for i, a in enumerate(self.args):
            if a == name and i + 1 < len(self.args):
                return self.args[i + 1]
            if a.startswith(name + "="):
                return a.split("=", 1)[1]
        return None

    def view(self, key: str) -> str | None:
        m = re.search(rf"\b{key}=(\S+)", self.slurm_view)
        return m.group(1) if m else None


def read_submissions(records: Path) -> list[Submission]:
    """What the sbatch shim recorded, in submission order."""
    import base64

    out = []
    paths = records.glob("[0-9]*") if records.is_dir() else []
    for path in sorted((p for p in paths if p.name.isdigit()), key=lambda p: int(p.name)):
        args_line, job_line = path.read_text().splitlines()[:2]
        args = [base64.b64decode(a).decode() for a in args_line.split()[1:]]
        wrap = next(a.split("=", 1)[1] for a in args if a.startswith("--wrap="))
        target = re.search(r"--target-jobs\s+'?(\w+):([^'\s]*)", wrap)
        attempt = re.search(r"--attempt\s+(\d+)", wrap)
        wildcards = dict(kv.split("=", 1) for kv in target.group(2).split(",") if kv)
        out.append(Submission(path.name, target.group(1), wildcards, int(attempt.group(1)),
                              args, job_line))
    return out


@dataclass
class Run:
    returncode: int
    log: str
    submissions: list[Submission]
    seconds: float
    faults: dict = field(default_factory=dict)  # shard -> (jobid, how)


def _script_pids(jobid: str, script: str) -> list[int]:
    """PIDs of a SLURM job's processes running ``script`` (Snakemake runs a ``script:``
    rule as ``python .snakemake/scripts/tmpXXXX.<script>``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if f"SLURM_JOB_ID={jobid}".encode() in env and script.encode() in cmd:
            pids.append(int(proc.name))
    return pids


def _run(workdir: Path, config: Path, env: dict, name: str, *targets: str,
         inject: dict | None = None) -> Run:
    """snakemake --profile profiles/slurm-test; ``inject`` {shard: "scancel"|"sigkill"}
    hits the round-1 generate job of that shard once its script runs."""
    sbatch_log = workdir / f"sbatch.{name}"
    sbatch_log.mkdir()
    env = {**env, "DISTILLAB_SBATCH_LOG": str(sbatch_log)}
    # SIGINT, not SIGTERM: on SIGTERM Snakemake waits for its "running" jobs for ever
    cmd = ["timeout", "-s", "INT", "-k", "60", str(RUN_LIMIT_S),
           sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(config),
           "--profile", str(PROFILE), *targets]
    log_path = workdir / f"snakemake.{name}.log"
    faults: dict = {}
    started = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        try:
            while inject and proc.poll() is None and len(faults) < len(inject):
                for sub in read_submissions(sbatch_log):
                    shard = sub.wildcards.get("shard")
                    if (sub.rule != "generate" or sub.attempt != 1 or shard not in inject
                            or shard in faults or sub.wildcards.get("round") != "1"):
                        continue
                    pids = _script_pids(sub.jobid, "generate.py")
                    if not pids:
                        continue
                    time.sleep(2)  # mid-generation: the model is loaded, tokens flow
                    if inject[shard] == "scancel":
                        subprocess.run(["scancel", sub.jobid], check=True)
                    else:
                        for pid in _script_pids(sub.jobid, "generate.py"):
                            os.kill(pid, signal.SIGKILL)
                    faults[shard] = (sub.jobid, inject[shard])
                time.sleep(0.5)
            proc.wait(timeout=RUN_LIMIT_S + 120)
        finally:
            if proc.poll() is None:
                proc.kill()
            leftover = [s.jobid for s in read_submissions(sbatch_log)]
            if leftover:
                subprocess.run(["scancel", *leftover], capture_output=True)
    return Run(proc.returncode, log_path.read_text(), read_submissions(sbatch_log),
               time.time() - started, faults)


@pytest.fixture(scope="module")
def slurm_study(slurm_cluster, tmp_path_factory):
    """(workdir, config, fault run, full run) of the test study through the cluster."""
    workdir = tmp_path_factory.mktemp("slurm")
    config = workdir / "slurm.yaml"
    config.write_text(yaml.safe_dump(slurm_config()))
    shim = workdir / "bin"
    shim.mkdir()
    (shim / "sbatch").write_text(SHIM.format(real=shutil.which("sbatch")))
    (shim / "sbatch").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    round1 = [f"results/micro/generate/{TEACHER}/r1/{s}.parquet" for s in ("000", "001")]
    faulty = _run(workdir, config, env, "faults", *round1,
                  inject={"000": "scancel", "001": "sigkill"})
    full = _run(workdir, config, env, "full")
    print(f"SLURM runs: faults {faulty.seconds:.0f} s, full {full.seconds:.0f} s")
    return workdir, config, faulty, full


# --- the tests -------------------------------------------------------------------------

@slow
@slurm
def test_cancelled_and_killed_jobs_are_retried(slurm_study):
    workdir, _, run, _ = slurm_study
    assert run.returncode == 0, run.log[-6000:]
    assert set(run.faults) == {"000", "001"}, f"no fault injected: {run.faults}\n{run.log[-3000:]}"
    for shard, (jobid, how) in run.faults.items():
        state = "CANCELLED" if how == "scancel" else "FAILED"
        assert f"SLURM-job '{jobid}' failed, SLURM status is: '{state}'" in run.log, (how, run.log[-4000:])
        again = [s for s in run.submissions if s.rule == "generate"
                 and s.wildcards == {"teacher": TEACHER, "round": "1", "shard": shard}]
        assert [s.attempt for s in again] == [1, 2], (shard, [(s.jobid, s.attempt) for s in again])
        out = workdir / f"results/micro/generate/{TEACHER}/r1/{shard}.parquet"
        assert out.exists() and not Path(f"{out}.partial").exists()


@slow
@slurm
def test_every_job_of_the_dag_ran_as_a_slurm_job(slurm_study, tmp_path):
    workdir, config, faulty, full = slurm_study
    assert full.returncode == 0, full.log[-6000:]
    assert planned_jobs(workdir, config) == set()  # complete: nothing left to do
    def job(rule: str, wildcards: dict) -> tuple:
        return rule, tuple(sorted(wildcards.items()))

    expected = {job(r, dict(kv.split("=", 1) for kv in w.split(", ") if kv))
                for r, w in planned_jobs(tmp_path, config) if r != "all"}
    submitted = {job(s.rule, s.wildcards) for s in faulty.submissions + full.submissions}
    assert submitted == expected
    # the main Snakemake ran nothing itself but the target rule
    assert set(re.findall(r"^localrule (\w+):", full.log, re.M)) <= {"all"}
    logs = workdir / ".snakemake/slurm_logs"
    assert {p.name for p in logs.iterdir()} == {f"rule_{r}" for r, _ in expected}


@slow
@slurm
def test_rules_get_their_partition_and_gpus(slurm_study):
    """What reached sbatch (-p, --gpus, --nodes) and what SLURM made of it."""
    _, _, faulty, full = slurm_study
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    seen = set()
    for sub in faulty.submissions + full.submissions:
        partition = _partition(profile, sub.rule)
        assert sub.opt("-p") == partition == sub.view("Partition"), (sub.rule, sub.args)
        gpus = EXPECTED_GPUS.get(sub.rule, 0)
        if gpus:
            assert partition == "gpu"
            assert sub.opt("--gpus") == str(gpus), (sub.rule, sub.args)
            assert sub.view("TresPerJob") == f"gres:gpu:{gpus}", sub.slurm_view
        else:
            assert sub.opt("--gpus") is None and "gres:gpu" not in sub.slurm_view, sub.rule
        if sub.rule == "generate":  # a transformers teacher: one node
            assert sub.opt("--nodes") == "1"
        mem = profile["set-resources"][sub.rule]["mem_mb"]
        assert sub.opt("--mem") == str(mem), (sub.rule, sub.args)
        seen.add(sub.rule)
    assert set(EXPECTED_GPUS) <= seen


def _strip_timing(obj):
    """JSON without wall-clock measurements (``elapsed_s``, trainer runtimes)."""
    if isinstance(obj, dict):
        return {k: _strip_timing(v) for k, v in obj.items()
                if k != "elapsed_s" and "runtime" not in k and "per_second" not in k}
    if isinstance(obj, list):
        return [_strip_timing(v) for v in obj]
    return obj


@slow
@slurm
def test_outputs_match_the_local_run(slurm_study, micro_study):
    """The SLURM run against the local micro study (same machine, same seeds).

    Files: the local run's results without the other teacher's (smol-b) files, logs
    included, and nothing else (no leftover ``.partial`` dirs of the killed jobs).
    Content: measured on this machine, everything seeded is byte-identical across a
    local and a SLURM run (same torch threads: Snakemake gives each job its `threads`), so
    the query stage, every generate shard (incl. the two that were cancelled/killed and
    retried), the perplexity scores, n-gram flags, SFT dataset, AM export, the prepared
    and trained model weights and the evaluation results must be equal byte for byte.
    The verify/accepted/curated tables carry each verifier call's ``elapsed_s``, and
    n-gram stats and train logs carry timings: equal without those. Not compared:
    provenance sidecars (host, time, run ids), logs' content, training_args.json (a temp
    output dir), and analysis/report, which summarize both teachers locally.
    """
    slurm_dir, _, _, full = slurm_study
    assert full.returncode == 0, full.log[-3000:]
    local = micro_study[0] / "results/micro"
    remote = slurm_dir / "results/micro"

    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}

    expected = {f for f in files(local) if "smol-b" not in f}
    assert files(remote) == expected

    identical = [f for f in expected if not f.startswith("logs/") and (
        f.startswith(("queries/", f"generate/{TEACHER}/", f"export/am/{TEACHER}/", "eval/"))
        or f in {f"perplexity/{TEACHER}.parquet", f"ngrams/{TEACHER}.parquet",
                 f"parallel/{TEACHER}.parquet", f"parallel/{TEACHER}.rejected.parquet",
                 f"accepted/{TEACHER}.stats.json", f"curated/{TEACHER}.stats.json",
                 f"curated/{TEACHER}.rejected.parquet"}
        or (f.startswith(("models/", "train/")) and f.endswith((".safetensors", ".json", ".jinja"))
            and not f.endswith(("provenance.json", "train_log.json", "training_args.json"))))
        and not f.endswith(".prov.json")]
    assert len(identical) > 30
    differ = [f for f in identical if (local / f).read_bytes() != (remote / f).read_bytes()]
    assert not differ, differ

    tables = [f"verify/{TEACHER}/r{r}/{s}.parquet" for r in (1, 2) for s in ("000", "001")]
    for f in tables + [f"accepted/{TEACHER}.parquet", f"curated/{TEACHER}.parquet"]:
        a, b = (pd.read_parquet(root / f).drop(columns="elapsed_s") for root in (local, remote))
        pd.testing.assert_frame_equal(a, b, obj=f)
    verdicts = pd.read_parquet(remote / f"verify/{TEACHER}/r1/000.parquet")
    assert {"query_id", "score", "passed"} <= set(verdicts.columns)
    for f in [f"ngrams/{TEACHER}.top.json", f"train/smol-student__{TEACHER}/train_log.json"]:
        a, b = (_strip_timing(json.loads((root / f).read_text())) for root in (local, remote))
        assert a == b, f
