"""The training stage: TRL's ``SFTTrainer`` fine-tunes a student on one teacher's SFT set.

PAPER.md §7, mapped to TRL 1.x:

- Each ``SFT_ROW`` becomes a *conversational prompt/completion* example: the prompt is every
  message but the last (system prompt included), the completion is the final assistant turn.
  With ``completion_only_loss=True`` the loss covers only the completion tokens (the final
  turn and its end-of-turn token), which is the paper's "only the final assistant response is
  the target" for multi-turn rows. This works with any chat template; ``assistant_only_loss``
  would need ``{% generation %}`` markers and would also train earlier assistant turns.
- Rows whose tokenized prompt+completion is longer than ``max_length`` are **dropped** before
  training (the paper excludes them), never truncated; the count goes into the returned facts
  and the model card. Lengths are measured with the very call TRL uses to tokenize
  (``apply_chat_template(prompt + completion, tokenize=True)``), so TRL's own truncation never
  fires on a kept row.
- ``packing`` uses TRL's best-fit-decreasing packing (``packing_strategy: bfd``), which is
  padding-free: the rows of a pack are concatenated and told apart by ``position_ids``.
  FlashAttention-2 (``attn_implementation`` defaults to it when CUDA and ``flash_attn`` are
  there) runs them as variable-length sequences; SDPA and eager (CPU) get a block-diagonal
  mask built by transformers from the same ``position_ids``, so rows never attend to each
  other either way (tests/test_train.py checks the SDPA case). Since over-long rows are
  dropped first, ``bfd`` never truncates a row. With packing a "sequence" of the global
  batch is one pack of up to ``max_length`` tokens.
- ``global_batch_size`` (optional) fixes per-device x accumulation x world size; the world
  size is ``gpus`` (per node) x ``nodes`` from the config, checked when the config is loaded
  (:func:`check_students`) and again against the launcher's ``WORLD_SIZE``. A value that does
  not divide evenly is rejected rather than silently rounded.
- The weights are loaded in float32. With ``bf16`` (GPU only) the trainer, or FSDP /
  DeepSpeed under a multi-GPU launch, runs bf16 mixed precision over fp32 master weights,
  not pure-bf16 training. CPU training is float32.
- More than one process (``gpus`` > 1 or ``nodes`` > 1) is launched with ``accelerate launch``
  and a config file from ``configs/accelerate/`` (FSDP full shard, or DeepSpeed ZeRO-3); see
  :func:`build_launch_command`. One process (the CPU demo, one GPU) trains in the job's own
  process.
- With ``save_steps`` the trainer checkpoints into ``<out_dir>.partial/checkpoint-N`` (not a
  declared output, so Snakemake leaves it after a failure); a rerun with the same
  fingerprint (dataset sha256, base model, seed, settings) resumes from the last complete
  checkpoint, anything else starts fresh and says why in the log.

The output dir is a plain HF checkpoint (LoRA adapters are merged before saving), written
into ``<out_dir>.partial/final`` and renamed onto ``out_dir`` only once complete; the partial
dir is then removed.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Keys every ``settings`` dict must carry (config.schema.yaml fills the defaults).
REQUIRED_SETTINGS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_length",
    "lr_scheduler_type",
    "warmup_ratio",
    "packing",
    "bf16",
    "gradient_checkpointing",
    "logging_steps",
    "weight_decay",
    "lora",
)
# Optional trainer settings and the value used when a settings dict leaves them out.
OPTIONAL_DEFAULTS: dict[str, Any] = {
    "global_batch_size": None,
    "attn_implementation": None,  # None/"auto": flash_attention_2 on CUDA with flash_attn, else sdpa
    "packing_strategy": "bfd",
    "save_steps": None,  # None: no intermediate checkpoints, so nothing to resume from
}
OPTIONAL_SETTINGS = tuple(OPTIONAL_DEFAULTS)
# The launch: GPUs per node, nodes, and the accelerate config used for > 1 process. Read
# by the workflow (the cluster job's resources) and by the launcher.
SCHEDULING_SETTINGS = ("gpus", "nodes", "distributed")
PACKING_STRATEGIES = ("bfd", "bfd_split", "wrapped")
# Settings that change neither the data order nor the weights: left out of the resume
# fingerprint, so e.g. a different checkpoint cadence still resumes.
NON_RESULT_SETTINGS = ("logging_steps", "save_steps")

LORA_DEFAULTS = {"dropout": 0.0, "target_modules": "all-linear"}

TRAIN_LOG = "train_log.json"
TRAINING_ARGS = "training_args.json"
MODEL_CARD = "README.md"
FINGERPRINT = "fingerprint.json"

# `distributed:` -> file in configs/accelerate/ (the launch of > 1 process)
ACCELERATE_CONFIGS = {"fsdp": "fsdp.yaml", "deepspeed_zero3": "deepspeed_zero3.yaml"}
DEFAULT_DISTRIBUTED = "fsdp"
BASE_PORT = 29500


# --- settings ------------------------------------------------------------------------------

def world_size_from_env() -> int:
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={raw!r} is not an integer") from None
    if n < 1:
        raise ValueError(f"WORLD_SIZE={n} must be >= 1")
    return n


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def launch_errors(settings: dict) -> list[str]:
    """Problems with the launch keys (gpus, nodes, distributed) and what they rule out."""
    errors: list[str] = []
    gpus, nodes = settings.get("gpus", 0), settings.get("nodes", 1)
    if gpus is not None and not (_is_int(gpus) and gpus >= 0):
        errors.append(f"gpus={gpus!r}: expected an integer >= 0 (GPUs per node)")
    if nodes is not None and not (_is_int(nodes) and nodes >= 1):
        errors.append(f"nodes={nodes!r}: expected an integer >= 1")
    distributed = settings.get("distributed", DEFAULT_DISTRIBUTED)
    if distributed is not None and distributed not in ACCELERATE_CONFIGS:
        errors.append(f"distributed={distributed!r}: expected one of {sorted(ACCELERATE_CONFIGS)}")
    if errors:
        return errors
    plan = launch_plan(settings)
    if plan["nodes"] > 1 and plan["gpus_per_node"] < 1:
        errors.append(f"nodes={plan['nodes']} needs gpus >= 1 per node (CPU training is one "
                      "process on one node)")
    if plan["world_size"] > 1 and settings.get("lora") is not None:
        errors.append(f"lora is trained in one process only, but gpus ({plan['gpus_per_node']}) "
                      f"x nodes ({plan['nodes']}) = {plan['world_size']} processes: set lora: null "
                      "or gpus: 1 and nodes: 1")
    return errors


def launch_plan(settings: dict) -> dict:
    """How many processes train: ``gpus`` per node (0: CPU) x ``nodes``.

    ``world_size`` > 1 means ``accelerate launch`` with ``distributed``'s config file.
    """
    gpus = settings.get("gpus") or 0
    nodes = settings.get("nodes") or 1
    per_node = max(1, gpus)
    world = per_node * nodes
    return {
        "gpus_per_node": gpus,
        "nodes": nodes,
        "processes_per_node": per_node,
        "world_size": world,
        "distributed": (settings.get("distributed") or DEFAULT_DISTRIBUTED) if world > 1 else None,
    }


def _world_text(settings: dict, world_size: int) -> str:
    plan = launch_plan(settings)
    if settings.get("gpus") and plan["world_size"] == world_size:
        return f"world size ({world_size} = gpus {plan['gpus_per_node']} x nodes {plan['nodes']})"
    return f"world size ({world_size})"


def global_batch_error(settings: dict, world_size: int) -> str | None:
    """Why ``global_batch_size`` cannot be reached exactly with this world size, or None."""
    global_batch = settings.get("global_batch_size")
    per_device = settings.get("per_device_train_batch_size")
    if global_batch is None or not _is_int(per_device) or not _is_int(global_batch):
        return None
    per_step = per_device * world_size
    if global_batch % per_step == 0:
        return None
    return (f"global_batch_size={global_batch} is not a multiple of per_device_train_batch_size "
            f"({per_device}) x {_world_text(settings, world_size)} = {per_step}; "
            f"gradient_accumulation_steps would be {global_batch / per_step:g}")


def check_students(config: dict) -> None:
    """Config-load check of every student's launch and batch arithmetic (no torch import).

    Raises ``distillab.config.ConfigError`` naming the key. Called when the Snakefile loads
    (rules/train.smk) so a paper config that cannot reach its global batch on its
    ``gpus`` x ``nodes`` fails before any job runs.
    """
    from distillab.config import ConfigError

    for name, spec in config.get("students", {}).items():
        training = spec.get("training") or {}
        where = f"config key students.{name}.training"
        errors = launch_errors(training)
        if not errors:
            problem = global_batch_error(training, launch_plan(training)["world_size"])
            if problem:
                errors.append(problem)
        if errors:
            raise ConfigError(f"{where}: " + "; ".join(errors))


def job_resources(settings: dict) -> dict:
    """The train job's scheduler resources (None: not set; Snakemake drops it).

    ``gpu`` is the job's total (``sbatch --gpus``), ``nodes`` its node count. A multi-node
    job is an ``mpi`` job for the SLURM executor: the jobstep plugin then runs the rule in
    the batch shell instead of a one-task ``srun`` step, so the rule's own ``srun`` (see
    :func:`build_launch_command`) can start one launcher per node; ``tasks`` = nodes gives
    ``--ntasks`` (one per node, as ``--nodes`` spreads them) and ``tasks_per_gpu=0`` keeps
    the plugin from turning ``tasks`` into ``--ntasks-per-gpu``.
    """
    plan = launch_plan(settings)
    multinode = plan["nodes"] > 1
    return {
        "gpu": plan["gpus_per_node"] * plan["nodes"],
        "nodes": plan["nodes"],
        "mpi": "srun" if multinode else None,
        "tasks": plan["nodes"] if multinode else None,
        "tasks_per_gpu": 0 if multinode else None,
    }


def student_resource(config: dict, student: str, key: str) -> Any:
    """One of :func:`job_resources` for a student of the config (rules/train.smk)."""
    return job_resources(config["students"][student]["training"])[key]


def resolve_settings(settings: dict, world_size: int | None = None) -> dict:
    """Validate ``settings`` and return a resolved copy.

    The copy has the final ``gradient_accumulation_steps`` (from ``global_batch_size`` when
    that is given), ``world_size`` and ``effective_global_batch``. The world size is
    ``world_size`` when given, else the launcher's ``WORLD_SIZE``, which must match the
    config's ``gpus`` x ``nodes`` when the config names GPUs. All problems are reported
    together in one ValueError.
    """
    if not isinstance(settings, dict):
        raise ValueError(f"training settings must be a mapping, got {type(settings).__name__}")
    errors: list[str] = []
    if world_size is None:
        world_size = world_size_from_env()
        if not launch_errors(settings) and settings.get("gpus"):
            planned = launch_plan(settings)["world_size"]
            if planned != world_size:
                errors.append(f"this launch has WORLD_SIZE={world_size} processes, but gpus "
                              f"({settings['gpus']}) x nodes ({settings.get('nodes') or 1}) = "
                              f"{planned}")
    global_batch = settings.get("global_batch_size")
    required = [k for k in REQUIRED_SETTINGS
                if not (k == "gradient_accumulation_steps" and global_batch is not None)]
    missing = [k for k in required if k not in settings]
    if missing:
        errors.append(f"missing keys {missing}")
    known = set(REQUIRED_SETTINGS) | set(OPTIONAL_SETTINGS) | set(SCHEDULING_SETTINGS)
    unknown = sorted(set(settings) - known)
    if unknown:
        errors.append(f"unknown keys {unknown} (known: {sorted(known)})")

    def check(key: str, ok: Any, expect: str) -> None:
        if key in settings and not ok(settings[key]):
            errors.append(f"{key}={settings[key]!r}: expected {expect}")

    check("learning_rate", lambda v: _is_num(v) and v > 0, "a number > 0")
    check("num_train_epochs", lambda v: _is_num(v) and v > 0, "a number > 0")
    check("max_steps", lambda v: _is_int(v) and (v == -1 or v >= 1), "-1 (use epochs) or an integer >= 1")
    check("per_device_train_batch_size", lambda v: _is_int(v) and v >= 1, "an integer >= 1")
    check("gradient_accumulation_steps", lambda v: _is_int(v) and v >= 1, "an integer >= 1")
    check("global_batch_size", lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1")
    check("max_length", lambda v: _is_int(v) and v >= 2, "an integer >= 2")
    check("lr_scheduler_type", lambda v: isinstance(v, str) and v in _scheduler_types(),
          f"one of {sorted(_scheduler_types())}")
    check("warmup_ratio", lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)")
    for key in ("packing", "bf16", "gradient_checkpointing"):
        check(key, lambda v: isinstance(v, bool), "true or false")
    check("logging_steps", lambda v: _is_int(v) and v >= 1, "an integer >= 1")
    check("weight_decay", lambda v: _is_num(v) and v >= 0, "a number >= 0")
    check("attn_implementation", lambda v: v is None or (isinstance(v, str) and v != ""),
          "null/'auto' or an attention implementation name (flash_attention_2, sdpa, eager, ...)")
    check("packing_strategy", lambda v: v in PACKING_STRATEGIES, f"one of {list(PACKING_STRATEGIES)}")
    check("save_steps", lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1")
    errors += launch_errors(settings)

    lora = settings.get("lora")
    if lora is not None:
        if not isinstance(lora, dict):
            errors.append(f"lora={lora!r}: expected null or a mapping {{r, alpha, dropout, target_modules}}")
        else:
            extra = sorted(set(lora) - {"r", "alpha", "dropout", "target_modules"})
            if extra:
                errors.append(f"lora: unknown keys {extra}")
            if not (_is_int(lora.get("r")) and lora["r"] >= 1):
                errors.append(f"lora.r={lora.get('r')!r}: expected an integer >= 1")
            if not (_is_num(lora.get("alpha")) and lora["alpha"] > 0):
                errors.append(f"lora.alpha={lora.get('alpha')!r}: expected a number > 0")
            dropout = lora.get("dropout", LORA_DEFAULTS["dropout"])
            if not (_is_num(dropout) and 0 <= dropout < 1):
                errors.append(f"lora.dropout={dropout!r}: expected a number in [0, 1)")
            tm = lora.get("target_modules", LORA_DEFAULTS["target_modules"])
            if not (isinstance(tm, str) or (isinstance(tm, list) and tm
                                            and all(isinstance(m, str) for m in tm))):
                errors.append(f"lora.target_modules={tm!r}: expected a string or a list of strings")

    if errors:
        raise ValueError("invalid training settings: " + "; ".join(errors))

    out = {k: settings[k] for k in REQUIRED_SETTINGS if k in settings}
    per_device = settings["per_device_train_batch_size"]
    if global_batch is not None:
        problem = global_batch_error(settings, world_size)
        if problem:
            raise ValueError(f"invalid training settings: {problem}")
        accum = global_batch // (per_device * world_size)
        given = settings.get("gradient_accumulation_steps")
        if given is not None and given != accum:
            log.info("global_batch_size=%d sets gradient_accumulation_steps=%d (config said %d)",
                     global_batch, accum, given)
        out["gradient_accumulation_steps"] = accum
    for key, default in OPTIONAL_DEFAULTS.items():
        out[key] = settings.get(key, default)
    if lora is not None:
        out["lora"] = {**LORA_DEFAULTS, **lora}
    out["world_size"] = world_size
    out["effective_global_batch"] = per_device * out["gradient_accumulation_steps"] * world_size
    return out


def _scheduler_types() -> set[str]:
    from transformers.trainer_utils import SchedulerType

    return {s.value for s in SchedulerType}


def resolve_attn_implementation(requested: str | None, cuda: bool) -> str:
    """The attention kernel: ``requested``, or for None/"auto" flash_attention_2 when CUDA
    and ``flash_attn`` are there, else sdpa. FlashAttention kernels need CUDA: on CPU a
    flash request falls back to sdpa (with a warning), like bf16 does."""
    flash = importlib.util.find_spec("flash_attn") is not None
    if requested in (None, "auto"):
        return "flash_attention_2" if cuda and flash else "sdpa"
    if "flash" in requested and not cuda:
        log.warning("no CUDA device: attn_implementation=%s is replaced by sdpa for CPU training",
                    requested)
        return "sdpa"
    if requested == "flash_attention_2" and not flash:
        raise ImportError("attn_implementation=flash_attention_2 needs the `flash-attn` package "
                          "(pip install flash-attn --no-build-isolation, matching torch and CUDA); "
                          "or set attn_implementation: sdpa (slower with packing) or null")
    return requested


# --- launch --------------------------------------------------------------------------------

def accelerate_config_dir() -> Path:
    """``configs/accelerate/`` of the checkout this package is imported from (the workflow
    puts the checkout's ``src/`` first on PYTHONPATH)."""
    return Path(__file__).resolve().parents[2] / "configs" / "accelerate"


def accelerate_config_file(settings: dict, config_dir: str | os.PathLike | None = None) -> Path | None:
    plan = launch_plan(settings)
    if plan["world_size"] == 1:
        return None
    return Path(config_dir or accelerate_config_dir()) / ACCELERATE_CONFIGS[plan["distributed"]]


def first_host(nodelist: str) -> str:
    """The first host of a SLURM hostlist (``gpu[007-010,012],gpu020`` -> ``gpu007``), as
    ``scontrol show hostnames $SLURM_JOB_NODELIST | head -n1`` prints it."""
    depth, end = 0, len(nodelist)
    for i, ch in enumerate(nodelist):  # the first top-level entry
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            end = i
            break
    entry = nodelist[:end].strip()
    host = re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[,-]", m.group(1))[0], entry)
    if not host or "[" in host or "]" in host:
        raise ValueError(f"cannot read the first host of SLURM_JOB_NODELIST={nodelist!r}")
    return host


def rendezvous_port(env: dict) -> int:
    """The main process port: per SLURM job (two jobs sharing a node do not collide), else
    the torch default."""
    job = env.get("SLURM_JOB_ID", "")
    return BASE_PORT + int(job) % 10000 if job.isdigit() else BASE_PORT


def build_launch_command(settings: dict, env: dict, job_path: str | os.PathLike, *,
                         python: str | None = None,
                         config_dir: str | os.PathLike | None = None) -> list[str]:
    """The argv that starts every training process, or [] for one process (in-process).

    One node, G > 1 GPUs: ``python -m accelerate.commands.launch --config_file <fsdp.yaml>
    --num_machines 1 --num_processes G ... -m distillab.train --job <job.json>``.

    N > 1 nodes (inside the SLURM allocation): ``srun`` starts one launcher per node, each
    with ``--machine_rank $SLURM_NODEID`` (expanded on its node by ``bash -c``), the first
    host of ``SLURM_JOB_NODELIST`` as ``--main_process_ip`` (node id 0 is that host) and a
    port derived from ``SLURM_JOB_ID``.
    """
    plan = launch_plan(settings)
    if plan["world_size"] == 1:
        return []
    problems = launch_errors(settings)
    if problems:
        raise ValueError("invalid training settings: " + "; ".join(problems))
    python = python or sys.executable
    config = accelerate_config_file(settings, config_dir)
    nodes, world = plan["nodes"], plan["world_size"]
    port = str(rendezvous_port(env))
    launch = [python, "-m", "accelerate.commands.launch", "--config_file", str(config),
              "--num_machines", str(nodes), "--num_processes", str(world)]
    worker = ["-m", "distillab.train", "--job", str(job_path)]
    if nodes == 1:
        return launch + ["--machine_rank", "0", "--main_process_port", port] + worker
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise ValueError(f"training.nodes={nodes}: a multi-node launch runs inside a SLURM "
                         "allocation (SLURM_JOB_NODELIST is not set); submit it with "
                         "--profile profiles/slurm, or set nodes: 1")
    have = env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES")
    if have and have.isdigit() and int(have) != nodes:
        raise ValueError(f"training.nodes={nodes}, but this SLURM job has {have} node(s) "
                         f"({nodelist})")
    script = ("exec " + shlex.join(launch) + ' --machine_rank "$SLURM_NODEID" '
              + shlex.join(["--main_process_ip", first_host(nodelist), "--main_process_port", port,
                            *worker]))
    srun = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1",
            f"--gpus-per-node={plan['gpus_per_node']}"]
    cpus = env.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit():
        srun.append(f"--cpus-per-task={cpus}")  # srun no longer inherits it from sbatch
    return srun + ["--kill-on-bad-exit=1", "bash", "-c", script]


def launch_params(settings: dict) -> dict | None:
    """What the rule passes as a param so a changed accelerate config reruns training:
    None for one process, else the plan and the config file's sha256."""
    path = accelerate_config_file(settings)
    if path is None:
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "missing"
    return {**launch_plan(settings), "accelerate_config": path.name, "sha256": digest}


# --- data ----------------------------------------------------------------------------------

def to_prompt_completion(row: dict, where: str) -> dict:
    """One SFT_ROW -> TRL conversational prompt/completion (final turn is the completion)."""
    messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"] or []]
    if len(messages) < 2:
        raise ValueError(f"{where}: query {row['query_id']!r} has {len(messages)} message(s); "
                         "need a prompt and a final assistant turn")
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"{where}: query {row['query_id']!r}: last message has role "
                         f"{messages[-1]['role']!r}, expected 'assistant'")
    for m in messages:
        if m["content"] is None:
            raise ValueError(f"{where}: query {row['query_id']!r}: a {m['role']} message has no content")
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def token_lengths(tokenizer: Any, examples: list[dict], chunk: int = 256) -> list[int]:
    """Tokens of prompt+completion per example, tokenized exactly as TRL's SFTTrainer does."""
    lengths: list[int] = []
    for i in range(0, len(examples), chunk):
        convs = [ex["prompt"] + ex["completion"] for ex in examples[i:i + chunk]]
        enc = tokenizer.apply_chat_template(convs, tokenize=True, return_dict=True)
        lengths.extend(len(ids) for ids in enc["input_ids"])
    return lengths


def load_sft_examples(dataset_path: str, tokenizer: Any, max_length: int) -> tuple[list[dict], dict]:
    """Read an SFT parquet, convert it, and drop rows over ``max_length`` tokens.

    Returns (kept examples, stats). Raises ValueError when no row is left.
    """
    from distillab import schemas
    from distillab.io import read_rows

    rows = read_rows(dataset_path, schemas.SFT_ROW)
    examples = [to_prompt_completion(r, dataset_path) for r in rows]
    lengths = token_lengths(tokenizer, examples)
    kept = [ex for ex, n in zip(examples, lengths) if n <= max_length]
    kept_lengths = [n for n in lengths if n <= max_length]
    teachers = sorted({r["teacher"] for r in rows})
    stats = {
        "rows_in": len(rows),
        "rows_used": len(kept),
        "rows_dropped_over_max_length": len(rows) - len(kept),
        "tokens_used": sum(kept_lengths),
        "max_tokens_used": max(kept_lengths, default=0),
        "max_tokens_in": max(lengths, default=0),
        "teachers": teachers,
    }
    if stats["rows_dropped_over_max_length"]:
        log.info("%s: dropped %d of %d rows over max_length=%d tokens (longest %d)", dataset_path,
                 stats["rows_dropped_over_max_length"], len(rows), max_length, stats["max_tokens_in"])
    if not kept:
        raise ValueError(
            f"{dataset_path}: no training rows left: {len(rows)} row(s) in, "
            f"{stats['rows_dropped_over_max_length']} dropped as longer than max_length={max_length} "
            f"tokens (longest {stats['max_tokens_in']})"
        )
    return kept, stats


# --- trainer -------------------------------------------------------------------------------

def _sft_config(resolved: dict, output_dir: str, seed: int, use_cpu: bool,
                attn_implementation: str = "sdpa") -> Any:
    from trl import SFTConfig

    names = {f.name for f in dataclasses.fields(SFTConfig)}
    bf16 = resolved["bf16"] and not use_cpu
    checkpointing = resolved["gradient_checkpointing"] and not use_cpu
    for key, value in (("bf16", resolved["bf16"]), ("gradient_checkpointing", resolved["gradient_checkpointing"])):
        if value and use_cpu:
            log.warning("no CUDA device: %s=true is turned off for CPU training", key)
    kwargs: dict[str, Any] = dict(
        output_dir=output_dir,
        learning_rate=float(resolved["learning_rate"]),
        num_train_epochs=float(resolved["num_train_epochs"]),
        max_steps=resolved["max_steps"],
        per_device_train_batch_size=resolved["per_device_train_batch_size"],
        gradient_accumulation_steps=resolved["gradient_accumulation_steps"],
        lr_scheduler_type=resolved["lr_scheduler_type"],
        weight_decay=float(resolved["weight_decay"]),
        logging_steps=resolved["logging_steps"],
        logging_first_step=True,
        max_length=resolved["max_length"],
        packing=resolved["packing"],
        packing_strategy=resolved["packing_strategy"],  # bfd: padding-free (position_ids)
        bf16=bf16,
        fp16=False,
        completion_only_loss=True,
        assistant_only_loss=False,
        report_to="none",
        # checkpoints (model, optimizer, scheduler, RNG, trainer state) for resuming; the
        # newest complete one replaces the older (rotation runs after trainer_state.json)
        save_strategy="steps" if resolved["save_steps"] else "no",
        save_steps=resolved["save_steps"] or 500,
        save_total_limit=1,
        save_only_model=False,
        eval_strategy="no",
        seed=seed,
        data_seed=seed,
        use_cpu=use_cpu,
        dataloader_num_workers=0,
        disable_tqdm=True,  # progress goes through logging (see _ProgressLogger)
        model_init_kwargs={"dtype": "float32", "attn_implementation": attn_implementation},
    )
    # transformers 5 renamed gradient_checkpointing -> activation_checkpointing (old name warns)
    # and replaced warmup_ratio by a fractional warmup_steps.
    if "activation_checkpointing" in names:
        kwargs["activation_checkpointing"] = checkpointing
        kwargs["gradient_checkpointing"] = checkpointing
    else:
        kwargs["gradient_checkpointing"] = checkpointing
    if "warmup_ratio" in names:
        kwargs["warmup_ratio"] = float(resolved["warmup_ratio"])
    else:
        kwargs["warmup_steps"] = float(resolved["warmup_ratio"])
    return SFTConfig(**kwargs)


def _lora_config(lora: dict) -> Any:
    try:
        from peft import LoraConfig
    except ImportError as exc:
        raise ImportError("settings.lora is set but the `peft` package is not installed; "
                          "install peft or set lora: null") from exc
    return LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora["target_modules"],
        bias="none",
        task_type="CAUSAL_LM",
    )


def _progress_logger() -> Any:
    from transformers import TrainerCallback

    class _ProgressLogger(TrainerCallback):
        """Logs every logged metric dict plus the wall time per optimizer step."""

        def __init__(self) -> None:
            self.step_times: list[float] = []
            self._t_step = 0.0
            self._since_log: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self._t_step = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            dt = time.perf_counter() - self._t_step
            self.step_times.append(dt)
            self._since_log.append(dt)
            log.debug("step %d/%d: %.2f s", state.global_step, state.max_steps, dt)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            if "loss" not in logs:  # the end-of-training summary
                log.info("train done: %s", json.dumps(logs, default=str))
                return
            mean = sum(self._since_log) / len(self._since_log) if self._since_log else float("nan")
            left = (state.max_steps - state.global_step) * mean if self._since_log else float("nan")
            self._since_log = []
            shown = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in logs.items()}
            log.info("step %d/%d (%.2f s/step, ~%.0f s left): %s", state.global_step,
                     state.max_steps, mean, left, json.dumps(shown, default=str))

    return _ProgressLogger()


def build_trainer(dataset_path: str, base_model: str, settings: dict, seed: int,
                  output_dir: str, callbacks: list | tuple = (),
                  resolved: dict | None = None) -> tuple[Any, dict, dict]:
    """Resolve settings, load tokenizer and data, build the ``SFTTrainer``.

    Returns (trainer, data stats, resolved settings). ``output_dir`` is the trainer's
    working dir, where ``save_steps`` checkpoints go. ``callbacks`` are extra
    ``TrainerCallback`` objects; ``resolved`` skips resolving ``settings`` again.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback, ProgressCallback
    from trl import SFTTrainer

    from distillab.models import load_location

    resolved = resolved or resolve_settings(settings)
    use_cpu = not torch.cuda.is_available()
    if resolved["world_size"] > 1:
        if use_cpu:
            raise RuntimeError(f"a launch of {resolved['world_size']} processes needs CUDA "
                               "devices; none is visible (CPU training is one process)")
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        if local > torch.cuda.device_count():
            raise RuntimeError(f"{local} processes on this node but only "
                               f"{torch.cuda.device_count()} CUDA device(s) visible")
    attn = resolve_attn_implementation(resolved["attn_implementation"], cuda=not use_cpu)
    location, revision = load_location(base_model)
    tokenizer = AutoTokenizer.from_pretrained(location, revision=revision)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"base model {base_model}: tokenizer has no chat template")
    examples, stats = load_sft_examples(dataset_path, tokenizer, resolved["max_length"])
    train_dataset = Dataset.from_list(examples)

    args = _sft_config(resolved, output_dir, seed, use_cpu, attn)
    if revision is not None:
        args.model_init_kwargs = {**args.model_init_kwargs, "revision": revision}
    peft_config = _lora_config(resolved["lora"]) if resolved["lora"] is not None else None
    trainer = SFTTrainer(
        model=location,
        args=args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    trainer.add_callback(_progress_logger())
    for cb in callbacks:
        trainer.add_callback(cb)
    if not resolved["packing"] and len(trainer.train_dataset) != stats["rows_used"]:
        log.warning("TRL kept %d of the %d rows handed to it", len(trainer.train_dataset),
                    stats["rows_used"])
    stats["train_sequences"] = len(trainer.train_dataset)  # packed rows when packing
    stats["device"] = "cpu" if use_cpu else torch.cuda.get_device_name(0)
    stats["attn_implementation"] = attn
    stats["precision"] = "bf16 mixed (fp32 weights)" if args.bf16 else "fp32"
    return trainer, stats, resolved


# --- outputs -------------------------------------------------------------------------------

def _tmp_dir(out_dir: str) -> Path:
    """Sibling temp dir of a single-process writer (copy_base_model)."""
    out = Path(out_dir)
    return out.with_name(f"{out.name}.tmp-{os.getpid()}")


def partial_dir(out_dir: str | os.PathLike) -> Path:
    """``<out_dir>.partial``: checkpoints, the resume fingerprint and the final model while it
    is written. Not a declared output, so Snakemake keeps it when the job fails."""
    out = Path(out_dir)
    return out.with_name(f"{out.name}.partial")


def _md_cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("|", "\\|").replace("\n", " ")


def _launch_text(facts: dict) -> str:
    if facts.get("world_size", 1) == 1:
        return f"1 process on {facts['device']}"
    return (f"{facts['world_size']} processes ({facts['nodes']} node(s) x "
            f"{facts['processes_per_node']} GPU(s), {facts['distributed']}) on {facts['device']}")


def model_card(base_model: str, dataset_path: str, dataset_sha256: str, resolved: dict,
               facts: dict, card_facts: dict | None) -> str:
    teacher = ", ".join(facts.get("teachers") or []) or "unknown"
    packing = (f"packed ({resolved.get('packing_strategy', 'bfd')}, padding-free)"
               if resolved.get("packing") else "not packed")
    resumed = facts.get("resumed_from_step")
    lines = [
        "---",
        f"base_model: {json.dumps(str(base_model))}",
        "library_name: transformers",
        "tags: [distillab, sft]",
        "---",
        "",
        f"# SFT student distilled from {teacher}",
        "",
        f"Fine-tuned from `{base_model}` with TRL `SFTTrainer` (prompt/completion format, loss on the "
        "final assistant turn only) by the distillab pipeline.",
        "",
        f"- teacher: {teacher}",
        f"- dataset: `{dataset_path}`",
        f"- dataset sha256: `{dataset_sha256}`",
        f"- rows used: {facts['rows_used']} of {facts['rows_in']} "
        f"({facts['rows_dropped_over_max_length']} dropped as longer than max_length="
        f"{resolved['max_length']} tokens, not truncated)",
        f"- optimizer steps: {facts['steps']}, effective global batch: {facts['effective_global_batch']}"
        f" ({packing})",
        f"- train loss (mean over the run): {facts['train_loss']:.4f}",
        f"- final logged loss: {facts['final_loss'] if facts['final_loss'] is None else round(facts['final_loss'], 4)}",
        f"- tokens trained: {facts['tokens_trained']} ({facts['tokens_trained_source']})",
        f"- train runtime: {facts['train_runtime_s']:.1f} s"
        + (f" (after resuming at step {resumed})" if resumed else ""),
        f"- launch: {_launch_text(facts)}; attention: {facts.get('attn_implementation', '?')}; "
        f"precision: {facts.get('precision', '?')}",
        "",
        "## Training settings",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {_md_cell(v)} |" for k, v in resolved.items()]
    lines += [f"| seed | {facts['seed']} |"]
    if card_facts:
        lines += ["", "## Provenance", "", "| fact | value |", "|---|---|"]
        lines += [f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in card_facts.items()]
    lines += ["", f"Trainer log history: `{TRAIN_LOG}`; full trainer arguments: `{TRAINING_ARGS}`.", ""]
    return "\n".join(lines)


def _save_model(trainer: Any, tmp: Path, lora: bool) -> None:
    if lora:
        model = trainer.accelerator.unwrap_model(trainer.model)
        merged = model.merge_and_unload()
        if trainer.is_world_process_zero():
            merged.save_pretrained(tmp)
            trainer.processing_class.save_pretrained(tmp)
    else:
        if getattr(trainer, "is_fsdp_enabled", False):
            # checkpoints stay sharded; the final model is one plain HF state dict
            trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        trainer.save_model(str(tmp))  # model + tokenizer (chat template included); all ranks
        if trainer.is_world_process_zero():
            (tmp / "training_args.bin").unlink(missing_ok=True)  # pickle; the JSON copy is ours


# --- resume --------------------------------------------------------------------------------

def run_fingerprint(dataset_sha256: str, base_model: str, resolved: dict, seed: int) -> dict:
    """What a checkpoint must have been trained on to be resumed: dataset, base model, seed
    and every setting that changes the weights or the data order (world size included)."""
    settings = {k: v for k, v in resolved.items() if k not in NON_RESULT_SETTINGS}
    base = Path(base_model)
    # a re-prepared base model at the same path shows in its files' sizes (cheap, no hashing)
    files = sorted([p.name, p.stat().st_size] for p in base.iterdir()
                   if p.is_file() and p.name not in ("provenance.json", "README.md")) \
        if base.is_dir() else None
    body = {"dataset_sha256": dataset_sha256, "base_model": str(base_model),
            "base_model_files": files, "seed": seed, "settings": settings}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    return {**body, "hash": digest}


def _checkpoint_step(path: Path) -> int | None:
    m = re.fullmatch(r"checkpoint-(\d+)", path.name)
    return int(m.group(1)) if m and path.is_dir() else None


def complete_checkpoints(partial: Path) -> list[Path]:
    """Checkpoint dirs whose ``trainer_state.json`` (written last) exists, oldest first."""
    if not partial.is_dir():
        return []
    found = [(step, p) for p in partial.iterdir()
             if (step := _checkpoint_step(p)) is not None and (p / "trainer_state.json").is_file()]
    return [p for _, p in sorted(found)]


def find_resume_checkpoint(partial: Path, fingerprint: dict) -> tuple[str | None, str]:
    """(the checkpoint to resume from or None, why) -- reads only, writes nothing."""
    checkpoints = complete_checkpoints(partial)
    if not checkpoints:
        return None, f"no checkpoint of an earlier run in {partial}"
    try:
        old = json.loads((partial / FINGERPRINT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, f"{partial} has checkpoints but no readable {FINGERPRINT}"
    if old.get("hash") != fingerprint["hash"]:
        changed = [k for k in ("dataset_sha256", "base_model", "base_model_files", "seed")
                   if old.get(k) != fingerprint[k]]
        new_s, old_s = fingerprint["settings"], old.get("settings") or {}
        changed += [f"settings.{k}" for k in sorted(set(new_s) | set(old_s))
                    if new_s.get(k) != old_s.get(k)]
        return None, (f"the checkpoints in {partial} are of a different run "
                      f"(changed: {', '.join(changed) or 'fingerprint format'})")
    last = checkpoints[-1]
    return str(last), f"resuming from {last} (step {_checkpoint_step(last)})"


# --- training ------------------------------------------------------------------------------

def train_sft(dataset_path: str, base_model: str, out_dir: str, settings: dict, seed: int,
              card_facts: dict | None = None, callbacks: list | tuple = ()) -> dict:
    """Fine-tune ``base_model`` on ``dataset_path``; write an HF model dir at ``out_dir``.

    Runs in every process of a launch (rank 0 writes). Resumes from the newest complete
    checkpoint in ``<out_dir>.partial`` when its fingerprint matches.

    Returns facts for provenance: rows_in, rows_used, rows_dropped_over_max_length, steps,
    train_loss (the trainer's mean over the run), final_loss (last logged), train_runtime_s,
    tokens_trained (TRL's count of non-padding input tokens fed in training, prompt and
    completion, all processes; falls back to rows' tokens x epochs trained), effective
    global batch, the launch (world size, nodes), resumed_from_step and a few more.
    """
    from distillab.io import sha256_file, write_json, write_text

    out = Path(out_dir)
    partial = partial_dir(out_dir)
    final = partial / "final"
    main = int(os.environ.get("RANK", "0")) == 0
    resolved = resolve_settings(settings)
    dataset_sha = sha256_file(dataset_path)
    fingerprint = run_fingerprint(dataset_sha, base_model, resolved, seed)
    # every rank decides from the same files before rank 0 changes any of them
    resume, why = find_resume_checkpoint(partial, fingerprint)
    resumed_from = _checkpoint_step(Path(resume)) if resume else None
    stale = resume is None and bool(complete_checkpoints(partial))
    try:
        trainer, stats, resolved = build_trainer(dataset_path, base_model, settings, seed,
                                                 str(partial), callbacks, resolved)
        accelerator = trainer.accelerator
        accelerator.wait_for_everyone()
        if main:
            if resume is None:
                (log.warning if stale else log.info)("starting fresh: %s", why)
                shutil.rmtree(partial, ignore_errors=True)
                partial.mkdir(parents=True)
                write_json(partial / FINGERPRINT, fingerprint)
            else:
                log.info("%s", why)
        accelerator.wait_for_everyone()
        log.info("training %s on %s: %d rows, %d sequences, %s", base_model, dataset_path,
                 stats["rows_used"], stats["train_sequences"],
                 json.dumps({k: v for k, v in resolved.items()}, default=str))
        result = trainer.train(resume_from_checkpoint=resume)
        progress = next(cb for cb in trainer.callback_handler.callbacks
                        if type(cb).__name__ == "_ProgressLogger")
        history = list(trainer.state.log_history)
        losses = [h["loss"] for h in history if "loss" in h]
        counted = getattr(trainer, "_total_train_tokens", None)
        if counted:
            tokens_trained = int(counted)
            source = "counted by TRL" + (" (steps after the resume only)" if resume else "")
        else:
            tokens_trained = int(round(stats["tokens_used"] * float(trainer.state.epoch or 0)))
            source = "estimate: dataset tokens x epochs trained"
        step_times = progress.step_times
        plan = launch_plan(settings)
        facts: dict[str, Any] = {
            "rows_in": stats["rows_in"],
            "rows_used": stats["rows_used"],
            "rows_dropped_over_max_length": stats["rows_dropped_over_max_length"],
            "train_sequences": stats["train_sequences"],
            "dataset_tokens_used": stats["tokens_used"],
            "teachers": stats["teachers"],
            "steps": int(result.global_step),
            "epochs_trained": float(trainer.state.epoch or 0),
            "train_loss": float(result.training_loss),
            "final_loss": float(losses[-1]) if losses else None,
            "train_runtime_s": float(result.metrics.get("train_runtime", 0.0)),
            "mean_step_s": sum(step_times) / len(step_times) if step_times else None,
            "tokens_trained": tokens_trained,
            "tokens_trained_source": source,
            "effective_global_batch": resolved["effective_global_batch"],
            "gradient_accumulation_steps": resolved["gradient_accumulation_steps"],
            "world_size": resolved["world_size"],
            "nodes": plan["nodes"],
            "processes_per_node": resolved["world_size"] // plan["nodes"],
            "distributed": plan["distributed"],
            "attn_implementation": stats["attn_implementation"],
            "precision": stats["precision"],
            "resumed_from_step": resumed_from,
            "lora": resolved["lora"] is not None,
            "device": stats["device"],
            "seed": seed,
            "dataset_sha256": dataset_sha,
        }
        if not math.isfinite(facts["train_loss"]):
            raise FloatingPointError(f"training {base_model} on {dataset_path}: loss is "
                                     f"{facts['train_loss']}")
        if main:
            shutil.rmtree(final, ignore_errors=True)
            final.mkdir(parents=True)
        accelerator.wait_for_everyone()
        _save_model(trainer, final, lora=resolved["lora"] is not None)
        if main:
            write_json(final / TRAIN_LOG, history)
            write_json(final / TRAINING_ARGS, trainer.args.to_dict())
            write_text(final / MODEL_CARD, model_card(base_model, dataset_path, dataset_sha,
                                                      resolved, facts, card_facts))
            facts["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
            shutil.rmtree(out, ignore_errors=True)
            os.replace(final, out)
            shutil.rmtree(partial, ignore_errors=True)
            log.info("wrote %s: %d steps, train loss %.4f, %.1f s", out, facts["steps"],
                     facts["train_loss"], facts["train_runtime_s"])
        accelerator.wait_for_everyone()
    except BaseException:
        if main:
            shutil.rmtree(final, ignore_errors=True)
            if partial.is_dir() and not complete_checkpoints(partial):
                shutil.rmtree(partial, ignore_errors=True)  # nothing to resume from
            elif partial.is_dir():
                log.warning("kept %s for a resume", complete_checkpoints(partial)[-1])
        raise
    return facts


# --- multi-process launch ------------------------------------------------------------------

def _run_logged(cmd: list[str], env: dict) -> None:
    """Run ``cmd``, passing each output line of every process into this job's log."""
    out = logging.getLogger(f"{__name__}.launch")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, bufsize=1)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            out.info("%s", line.rstrip())
    finally:
        rc = proc.wait()
    if rc:
        raise RuntimeError(f"the training launch exited with status {rc}: {shlex.join(cmd)}")


def launch_training(dataset_path: str, base_model: str, out_dir: str, settings: dict, seed: int,
                    card_facts: dict | None = None, env: dict | None = None) -> dict:
    """Train with more than one process: write the job spec, run
    :func:`build_launch_command`'s argv, and return the facts rank 0 wrote."""
    from distillab.io import write_json

    env = dict(os.environ if env is None else env)
    plan = launch_plan(settings)
    if plan["distributed"] == "deepspeed_zero3" and importlib.util.find_spec("deepspeed") is None:
        raise ImportError("training.distributed=deepspeed_zero3 needs the `deepspeed` package in "
                          "the train env (pip install deepspeed); or use distributed: fsdp")
    run_dir = Path(f"{out_dir}.launch")
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    job, facts_path = run_dir / "job.json", run_dir / "facts.json"
    write_json(job, {"dataset": str(dataset_path), "base_model": str(base_model),
                     "out_dir": str(out_dir), "settings": settings, "seed": seed,
                     "card_facts": card_facts, "facts": str(facts_path)})
    try:
        cmd = build_launch_command(settings, env, job)
        log.info("launching %d processes (%d node(s) x %d, %s): %s", plan["world_size"],
                 plan["nodes"], plan["processes_per_node"], plan["distributed"], shlex.join(cmd))
        _run_logged(cmd, env)
        if not facts_path.is_file():
            raise RuntimeError(f"the training launch exited 0 but rank 0 wrote no {facts_path}")
        return json.loads(facts_path.read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def run_job(job_path: str | os.PathLike) -> dict:
    """One process of a launch: train as the job spec says; rank 0 writes the facts."""
    from distillab.io import write_json

    spec = json.loads(Path(job_path).read_text(encoding="utf-8"))
    facts = train_sft(spec["dataset"], spec["base_model"], spec["out_dir"], spec["settings"],
                      int(spec["seed"]), card_facts=spec.get("card_facts"))
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(spec["facts"], facts)
    return facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m distillab.train",
        description="One process of a multi-process training launch (build_launch_command).")
    parser.add_argument("--job", required=True, help="the job spec JSON the launcher wrote")
    args = parser.parse_args(argv)
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(level=logging.INFO if rank == "0" else logging.WARNING, force=True,
                        format=f"%(asctime)s rank{rank} %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    run_job(args.job)
    return 0


# --- base-model copy and the Snakemake adapter ---------------------------------------------

def copy_base_model(base_model: str, out_dir: str, dataset_path: str, student: str,
                    teacher: str) -> dict:
    """The student of a teacher with no SFT rows is, by definition, its base model after
    zero steps. Copy it (atomically) with a model card that says so, so the study's DAG and
    tables stay complete and the row reads "untrained" instead of failing the whole run."""
    from distillab.io import sha256_file

    out = Path(out_dir)
    tmp = _tmp_dir(out_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base_model, tmp, ignore=shutil.ignore_patterns("provenance.json"))
    (tmp / "README.md").write_text(
        "---\nlibrary_name: transformers\ntags: [distillab, sft, untrained]\n---\n\n"
        f"# {student} <- {teacher} (untrained)\n\n"
        f"Teacher `{teacher}` has no SFT rows in `{dataset_path}` (sha256 "
        f"`{sha256_file(dataset_path)}`), so this is the unchanged base model `{base_model}`.\n",
        encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return {"trained": False, "rows_in": 0, "rows_used": 0, "steps": 0,
            "reason": "no SFT rows for this teacher (training.on_empty_dataset: copy_base)"}


def train_from_snakemake(smk: Any, prov: Any) -> None:
    """Snakemake adapter: train one student on one teacher's parallel dataset, in this
    process or, for more than one process, through ``accelerate launch``."""
    import pyarrow.parquet as pq

    settings = dict(smk.params.training)
    on_empty = settings.pop("on_empty_dataset", "fail")
    if pq.read_metadata(smk.input.dataset).num_rows == 0 and on_empty == "copy_base":
        log.warning("teacher %s has no SFT rows: the student is the base model (copy_base)",
                    smk.wildcards.teacher)
        facts = copy_base_model(smk.input.model, smk.output.checkpoint, smk.input.dataset,
                                smk.wildcards.student, smk.wildcards.teacher)
        prov.add(rows_out=0, **facts)
        return
    card_facts = {"student": smk.wildcards.student, "teacher": smk.wildcards.teacher}
    train = launch_training if launch_plan(settings)["world_size"] > 1 else train_sft
    facts = train(smk.input.dataset, smk.input.model, smk.output.checkpoint, settings,
                  int(smk.params.seed), card_facts=card_facts)
    prov.add(rows_out=facts["rows_used"], trained=True, **facts)


if __name__ == "__main__":
    sys.exit(main())
