"""The training stage: TRL SFT on a tiny random Llama with a tokenizer built offline."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("trl")

from distillab import schemas  # noqa: E402
from distillab.io import sha256_file, write_table  # noqa: E402
from distillab.train import (  # noqa: E402
    build_launch_command,
    build_trainer,
    check_students,
    first_host,
    job_resources,
    launch_plan,
    load_sft_examples,
    resolve_attn_implementation,
    resolve_settings,
    to_prompt_completion,
    train_sft,
)

REPO = Path(__file__).resolve().parents[1]
ACCELERATE_DIR = REPO / "configs" / "accelerate"

SYSTEM = "You are a careful assistant . Think step by step and put the answer in a box ."
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QA = [
    ("What is 2 plus 3 ?", "<think> 2 plus 3 is 5 </think> The answer is 5 ."),
    ("What is 7 minus 4 ?", "<think> 7 minus 4 is 3 </think> The answer is 3 ."),
    ("What is 6 times 2 ?", "<think> 6 times 2 is 12 </think> The answer is 12 ."),
    ("What is 9 plus 1 ?", "<think> 9 plus 1 is 10 </think> The answer is 10 ."),
    # two long rows (repeated reasoning) that a small max_length drops
    ("What is 8 plus 8 ?", "<think> " + "8 plus 8 is 16 . " * 12 + "</think> The answer is 16 ."),
    ("What is 5 times 5 ?", "<think> " + "5 times 5 is 25 . " * 12 + "</think> The answer is 25 ."),
]
BASE_SETTINGS = {
    "learning_rate": 1e-3,
    "num_train_epochs": 1,
    "max_steps": 3,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "max_length": 512,
    "lr_scheduler_type": "cosine",
    "warmup_ratio": 0.1,
    "packing": False,
    "bf16": False,
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "weight_decay": 0.0,
    "lora": None,
}


def sft_rows(qa=QA, teacher="teacher-a") -> list[dict]:
    rows = []
    for i, (q, a) in enumerate(qa):
        rows.append({
            "messages": [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": q},
                         {"role": "assistant", "content": a}],
            "query_id": f"q{i}", "teacher": teacher, "category": "math", "n_tokens": len(a.split()),
        })
    return rows


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer random Llama with a word-level ChatML tokenizer, saved as an HF dir."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]
    corpus = " ".join([SYSTEM, "system user assistant Hello hi"] + [q + " " + a for q, a in QA])
    words = sorted(set(re.findall(r"\w+|[^\w\s]+", corpus)) - set(specials))
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    backend.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                  eos_token="<|im_end|>", bos_token=None)
    tok.chat_template = CHATML
    path = tmp_path_factory.mktemp("tiny-llama")
    tok.save_pretrained(path)

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                         max_position_embeddings=512, bos_token_id=None,
                         eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<pad>"],
                         tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


@pytest.fixture()
def dataset(tmp_path) -> Path:
    path = tmp_path / "sft" / "teacher-a.parquet"
    write_table(path, sft_rows(), schemas.SFT_ROW)
    return path


def tokenizer_of(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def full_lengths(tok, rows) -> list[int]:
    return [len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
            for r in rows]


# --- end to end ------------------------------------------------------------------------------

@pytest.mark.parametrize("packing", [False, True])
def test_train_writes_a_loadable_model_dir(tiny_model, dataset, tmp_path, packing):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "students" / "smol"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("from an earlier run")  # replaced, not merged
    settings = dict(BASE_SETTINGS, packing=packing, max_steps=3 if not packing else 2)
    facts = train_sft(str(dataset), str(tiny_model), str(out), settings, seed=3,
                      card_facts={"student": "smol", "teacher_model": "teacher-a"})

    assert facts["rows_in"] == facts["rows_used"] == 6
    assert facts["rows_dropped_over_max_length"] == 0
    assert facts["steps"] == settings["max_steps"]
    assert math.isfinite(facts["train_loss"]) and math.isfinite(facts["final_loss"])
    assert facts["effective_global_batch"] == 2
    assert facts["tokens_trained"] > 0 and facts["train_runtime_s"] > 0
    assert facts["dataset_sha256"] == sha256_file(dataset)

    assert not (out / "stale.txt").exists()
    assert not list(out.parent.glob("smol.tmp-*"))
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template == CHATML
    prompt = tok.apply_chat_template([{"role": "system", "content": SYSTEM},
                                      {"role": "user", "content": "What is 2 plus 3 ?"}],
                                     add_generation_prompt=True, return_tensors="pt",
                                     return_dict=True)
    gen = model.generate(**prompt, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert gen.shape[1] > prompt["input_ids"].shape[1]

    log_history = json.loads((out / "train_log.json").read_text())
    losses = [h["loss"] for h in log_history if "loss" in h]
    assert losses and all(math.isfinite(x) for x in losses)
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front == {"base_model": str(tiny_model), "library_name": "transformers",
                     "tags": ["distillab", "sft"]}
    assert sha256_file(dataset) in card and str(dataset) in card
    assert "teacher-a" in card and "| learning_rate | 0.001 |" in card
    assert "rows used: 6 of 6 (0 dropped" in card
    assert "| student | smol |" in card
    assert json.loads((out / "training_args.json").read_text())["seed"] == 3


# --- dropping over-long rows -------------------------------------------------------------------

def test_rows_over_max_length_are_dropped_and_counted(tiny_model, dataset):
    tok = tokenizer_of(tiny_model)
    lengths = full_lengths(tok, sft_rows())
    limit = max(lengths[:4])  # the four short rows fit exactly, the two long ones do not
    assert min(lengths[4:]) > limit
    kept, stats = load_sft_examples(str(dataset), tok, limit)
    assert stats["rows_in"] == 6 and stats["rows_used"] == 4
    assert stats["rows_dropped_over_max_length"] == 2
    assert stats["tokens_used"] == sum(lengths[:4])
    assert [ex["completion"][0]["content"] for ex in kept] == [a for _, a in QA[:4]]


def test_all_rows_over_max_length_raises_naming_the_dataset(tiny_model, dataset, tmp_path):
    out = tmp_path / "student"
    with pytest.raises(ValueError, match=re.escape(str(dataset)) + ".*no training rows"):
        train_sft(str(dataset), str(tiny_model), str(out), dict(BASE_SETTINGS, max_length=8), seed=0)
    assert not out.exists() and not list(tmp_path.glob("student.tmp-*"))


def test_bad_rows_are_rejected():
    row = sft_rows()[0]
    ex = to_prompt_completion(row, "x.parquet")
    assert [m["role"] for m in ex["prompt"]] == ["system", "user"]
    assert ex["completion"] == [row["messages"][-1]]
    with pytest.raises(ValueError, match="q0.*expected 'assistant'"):
        to_prompt_completion(dict(row, messages=row["messages"][:-1]), "x.parquet")
    with pytest.raises(ValueError, match="need a prompt"):
        to_prompt_completion(dict(row, messages=row["messages"][-1:]), "x.parquet")


# --- loss mask ---------------------------------------------------------------------------------

def test_only_the_final_assistant_turn_is_trained(tiny_model, tmp_path):
    # a multi-turn row: the earlier assistant turn is prompt, only the last one is the target
    rows = sft_rows()[:3]
    rows[2]["messages"] = [{"role": "system", "content": SYSTEM},
                           {"role": "user", "content": "What is 2 plus 3 ?"},
                           {"role": "assistant", "content": "The answer is 5 ."},
                           {"role": "user", "content": "What is 6 times 2 ?"},
                           {"role": "assistant", "content": "The answer is 12 ."}]
    path = tmp_path / "multi.parquet"
    write_table(path, rows, schemas.SFT_ROW)
    trainer, stats, _ = build_trainer(str(path), str(tiny_model), dict(BASE_SETTINGS), 0,
                                      str(tmp_path / "work"))
    tok = trainer.processing_class
    system_ids = tok(SYSTEM, add_special_tokens=False)["input_ids"]
    assert len(trainer.train_dataset) == stats["rows_used"] == 3

    completion_tokens = 0
    for ex, row in zip(trainer.train_dataset, rows):
        ids, labels = ex["input_ids"], ex["labels"]
        prompt_ids = tok.apply_chat_template(row["messages"][:-1], tokenize=True,
                                             add_generation_prompt=True, return_dict=True)["input_ids"]
        n = len(prompt_ids)
        assert ids[:n] == prompt_ids
        assert all(label == -100 for label in labels[:n])  # system, user, earlier turns masked
        assert labels[n:] == ids[n:]  # every completion token is a target
        # the targets are exactly the final turn's content and its end-of-turn token
        expected = tok(row["messages"][-1]["content"] + "<|im_end|>\n", add_special_tokens=False)
        assert ids[n:] == expected["input_ids"]
        assert ids[n:][-1] == tok.convert_tokens_to_ids("<|im_end|>")  # learns to stop
        assert ids[2:2 + len(system_ids)] == system_ids  # <|im_start|> system <prompt>: masked
        completion_tokens += len(ids) - n

    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    assert batch["labels"].shape == batch["input_ids"].shape
    assert int((batch["labels"] != -100).sum()) == completion_tokens
    assert bool((batch["labels"][batch["attention_mask"] == 0] == -100).all())


# --- settings ----------------------------------------------------------------------------------

def test_global_batch_sets_gradient_accumulation(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    r = resolve_settings(dict(BASE_SETTINGS, per_device_train_batch_size=4, global_batch_size=64))
    assert r["gradient_accumulation_steps"] == 8 and r["world_size"] == 2
    assert r["effective_global_batch"] == 64
    monkeypatch.delenv("WORLD_SIZE")
    r = resolve_settings(dict(BASE_SETTINGS, per_device_train_batch_size=4, gradient_accumulation_steps=3))
    assert r["gradient_accumulation_steps"] == 3 and r["effective_global_batch"] == 12
    assert r["global_batch_size"] is None
    assert resolve_settings(dict(BASE_SETTINGS, gpus=1, nodes=1), world_size=1)  # job resources
    # without global_batch_size the accumulation key may be left out only when global is given
    no_accum = {k: v for k, v in BASE_SETTINGS.items() if k != "gradient_accumulation_steps"}
    assert resolve_settings(dict(no_accum, global_batch_size=6), world_size=1)[
        "gradient_accumulation_steps"] == 3


def test_global_batch_that_does_not_divide_is_rejected():
    with pytest.raises(ValueError, match=r"global_batch_size=10 is not a multiple of .* = 4"):
        resolve_settings(dict(BASE_SETTINGS, per_device_train_batch_size=2, global_batch_size=10),
                         world_size=2)


@pytest.mark.parametrize("change, message", [
    ({"learning_rate": 0}, "learning_rate=0"),
    ({"max_steps": 0}, "max_steps=0"),
    ({"per_device_train_batch_size": 1.5}, "per_device_train_batch_size"),
    ({"packing": "yes"}, "packing='yes'"),
    ({"lr_scheduler_type": "cosinus"}, "lr_scheduler_type='cosinus'"),
    ({"warmup_ratio": 1.0}, "warmup_ratio"),
    ({"lora": {"r": 0, "alpha": 16}}, "lora.r=0"),
    ({"lora": {"r": 8, "alpha": 16, "rank": 8}}, "lora: unknown keys"),
    ({"learning_rte": 1e-4}, "unknown keys .'learning_rte'"),
])
def test_bad_settings_are_rejected(change, message):
    with pytest.raises(ValueError, match=message):
        resolve_settings(dict(BASE_SETTINGS, **change), world_size=1)


def test_missing_settings_are_named():
    settings = {k: v for k, v in BASE_SETTINGS.items() if k not in ("max_length", "bf16")}
    with pytest.raises(ValueError, match=r"missing keys \['max_length', 'bf16'\]"):
        resolve_settings(settings, world_size=1)


def test_world_size_env_must_be_an_integer(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        resolve_settings(dict(BASE_SETTINGS))


# --- LoRA --------------------------------------------------------------------------------------

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft is not installed")
def test_lora_is_merged_into_a_plain_model_dir(tiny_model, dataset, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora-student"
    facts = train_sft(str(dataset), str(tiny_model), str(out),
                      dict(BASE_SETTINGS, max_steps=2, lora=LORA), seed=0)
    assert facts["lora"] and facts["steps"] == 2
    assert not (out / "adapter_config.json").exists()
    assert not list(out.glob("adapter_model*"))
    model = AutoModelForCausalLM.from_pretrained(out)
    names = [n for n, _ in model.named_parameters()]
    assert not any("lora" in n for n in names)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert sorted(names) == sorted(n for n, _ in base.named_parameters())
    changed = [n for n, p in model.named_parameters()
               if not torch.equal(p, dict(base.named_parameters())[n])]
    assert changed and all(n.endswith("proj.weight") for n in changed)


def test_lora_without_peft_fails_clearly(tiny_model, dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # as if peft were not installed
    with pytest.raises(ImportError, match="peft"):
        train_sft(str(dataset), str(tiny_model), str(tmp_path / "s"),
                  dict(BASE_SETTINGS, lora=LORA), seed=0)
    assert not list(tmp_path.glob("s.tmp-*"))


def test_empty_dataset_with_copy_base_yields_the_marked_base_model(tiny_model, tmp_path):
    from types import SimpleNamespace

    from distillab import schemas
    from distillab.io import write_table
    from distillab.provenance import Provenance
    from distillab.train import train_from_snakemake

    empty = tmp_path / "empty.parquet"
    write_table(empty, [], schemas.SFT_ROW)
    out = tmp_path / "student"
    settings = {"learning_rate": 1e-4, "num_train_epochs": 1, "max_steps": 1,
                "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1,
                "max_length": 64, "lr_scheduler_type": "constant", "warmup_ratio": 0.0,
                "packing": False, "bf16": False, "gradient_checkpointing": False,
                "logging_steps": 1, "weight_decay": 0.0, "lora": None}
    smk = SimpleNamespace(
        input=SimpleNamespace(dataset=str(empty), model=str(tiny_model)),
        output=SimpleNamespace(checkpoint=str(out)),
        params=SimpleNamespace(training={**settings, "on_empty_dataset": "copy_base"}, seed=0),
        wildcards=SimpleNamespace(student="s", teacher="t"),
    )
    prov = Provenance("train")
    train_from_snakemake(smk, prov)
    assert prov.record["trained"] is False and prov.record["rows_used"] == 0
    assert "untrained" in (out / "README.md").read_text()
    assert (out / "config.json").read_bytes() == (tiny_model / "config.json").read_bytes()
    # the default is a clear failure, naming the dataset
    smk.params.training = dict(settings)
    with pytest.raises(ValueError, match="empty.parquet"):
        train_from_snakemake(smk, Provenance("train"))


# --- launch: resources, argv, accelerate configs ---------------------------------------------

SLURM_ENV = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu[007-010]", "SLURM_JOB_NUM_NODES": "4",
             "SLURM_CPUS_PER_TASK": "32", "SLURM_NODEID": "0"}
PY = "/envs/train/bin/python"
JOB = "/r/train/s__t.launch/job.json"


def test_one_process_trains_in_the_job():
    for settings in ({}, {"gpus": 0}, {"gpus": 1}, {"gpus": 1, "nodes": 1}):
        assert launch_plan(settings)["world_size"] == 1
        assert build_launch_command(settings, SLURM_ENV, JOB, python=PY) == []
    assert job_resources({"gpus": 0}) == {"gpu": 0, "nodes": 1, "mpi": None, "tasks": None,
                                          "tasks_per_gpu": None}
    assert job_resources({"gpus": 1})["gpu"] == 1


def test_launch_eight_gpus_on_one_node():
    settings = {"gpus": 8, "nodes": 1}
    assert build_launch_command(settings, SLURM_ENV, JOB, python=PY) == [
        PY, "-m", "accelerate.commands.launch",
        "--config_file", str(ACCELERATE_DIR / "fsdp.yaml"),
        "--num_machines", "1", "--num_processes", "8",
        "--machine_rank", "0", "--main_process_port", "33742",  # 29500 + job id % 10000
        "-m", "distillab.train", "--job", JOB,
    ]
    # outside SLURM: the torch default port
    assert "29500" in build_launch_command(settings, {}, JOB, python=PY)
    # one node: the plugin's one-task srun step holds the 8 GPUs, accelerate runs inside it
    assert job_resources(settings) == {"gpu": 8, "nodes": 1, "mpi": None, "tasks": None,
                                       "tasks_per_gpu": None}


def test_launch_four_nodes_under_slurm():
    settings = {"gpus": 8, "nodes": 4, "distributed": "fsdp"}
    cmd = build_launch_command(settings, SLURM_ENV, JOB, python=PY)
    assert cmd == [
        "srun", "--nodes=4", "--ntasks=4", "--ntasks-per-node=1", "--gpus-per-node=8",
        "--cpus-per-task=32", "--kill-on-bad-exit=1", "bash", "-c",
        f"exec {PY} -m accelerate.commands.launch --config_file {ACCELERATE_DIR / 'fsdp.yaml'} "
        '--num_machines 4 --num_processes 32 --machine_rank "$SLURM_NODEID" '
        f"--main_process_ip gpu007 --main_process_port 33742 -m distillab.train --job {JOB}",
    ]
    # a multi-node job is an `mpi` job (no jobstep srun around the rule), one task per node
    assert job_resources(settings) == {"gpu": 32, "nodes": 4, "mpi": "srun", "tasks": 4,
                                       "tasks_per_gpu": 0}


def _accelerate_args(argv: list[str], node_id: int):
    """What `accelerate launch` makes of our argv on node ``node_id`` (no process started)."""
    import shlex

    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    if argv[0] == "srun":
        argv = shlex.split(argv[-1].replace('"$SLURM_NODEID"', str(node_id)))[1:]  # drop exec
    assert argv[1:3] == ["-m", "accelerate.commands.launch"]
    args = launch_command_parser().parse_args(argv[3:])
    return _validate_launch_command(args)[0]


@pytest.mark.parametrize("distributed, flag", [("fsdp", "use_fsdp"), ("deepspeed_zero3", "use_deepspeed")])
def test_accelerate_reads_the_launch_as_meant(distributed, flag):
    pytest.importorskip("accelerate")
    one = _accelerate_args(build_launch_command({"gpus": 8, "distributed": distributed}, {}, JOB,
                                                python=PY), 0)
    assert getattr(one, flag) and one.num_processes == 8 and one.num_machines == 1
    settings = {"gpus": 8, "nodes": 4, "distributed": distributed}
    argv = build_launch_command(settings, SLURM_ENV, JOB, python=PY)
    args = _accelerate_args(argv, 2)
    assert getattr(args, flag) and args.mixed_precision == "bf16"
    assert (args.num_processes, args.num_machines, args.machine_rank) == (32, 4, 2)
    assert (args.main_process_ip, args.main_process_port) == ("gpu007", 33742)
    assert args.module and args.training_script == "distillab.train"
    assert args.training_script_args == ["--job", JOB]
    if distributed == "fsdp":
        assert args.fsdp_version == 2 and str(args.fsdp_reshard_after_forward).lower() == "true"  # full shard
        assert args.fsdp_state_dict_type == "SHARDED_STATE_DICT"
    else:
        assert args.zero_stage == 3 and args.deepspeed_multinode_launcher == "standard"


def test_accelerate_config_files_parse():
    from accelerate.commands.config.config_args import load_config_from_file

    files = sorted(p.name for p in ACCELERATE_DIR.glob("*.yaml"))
    assert files == ["deepspeed_zero3.yaml", "fsdp.yaml"]
    fsdp = yaml.safe_load((ACCELERATE_DIR / "fsdp.yaml").read_text())
    assert fsdp["distributed_type"] == "FSDP" and fsdp["mixed_precision"] == "bf16"
    assert fsdp["fsdp_config"]["fsdp_version"] == 2
    assert fsdp["fsdp_config"]["fsdp_reshard_after_forward"] is True
    # transformers refuses FSDP's and the trainer's activation checkpointing together
    assert fsdp["fsdp_config"]["fsdp_activation_checkpointing"] is False
    ds = yaml.safe_load((ACCELERATE_DIR / "deepspeed_zero3.yaml").read_text())
    assert ds["distributed_type"] == "DEEPSPEED" and ds["deepspeed_config"]["zero_stage"] == 3
    # and accelerate's own loader agrees
    assert load_config_from_file(str(ACCELERATE_DIR / "fsdp.yaml")).distributed_type.value == "FSDP"
    assert load_config_from_file(str(ACCELERATE_DIR / "deepspeed_zero3.yaml")).distributed_type.value == "DEEPSPEED"


def test_multi_node_needs_the_slurm_allocation():
    settings = {"gpus": 8, "nodes": 4}
    with pytest.raises(ValueError, match="SLURM_JOB_NODELIST"):
        build_launch_command(settings, {"SLURM_JOB_ID": "1"}, JOB, python=PY)
    with pytest.raises(ValueError, match="training.nodes=4, but this SLURM job has 2 node"):
        build_launch_command(settings, dict(SLURM_ENV, SLURM_JOB_NUM_NODES="2"), JOB, python=PY)


@pytest.mark.parametrize("nodelist, host", [
    ("gpu[007-010]", "gpu007"), ("gpu[007-010,012],gpu020", "gpu007"), ("node1,node2", "node1"),
    ("a-b[1,3]", "a-b1"), ("rack[2-3]-n[01-02]", "rack2-n01"), ("single", "single"),
])
def test_first_host_of_a_slurm_nodelist(nodelist, host):
    assert first_host(nodelist) == host


def test_slurm_plugin_submits_the_train_job_across_nodes():
    """The resources of job_resources, through the SLURM plugin's own sbatch builder."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Res(dict):
        __getattr__ = dict.__getitem__

    params = dict(run_uuid="u", slurm_logfile="l", comment_str="c", account="", partition="",
                  workdir="/w")

    def sbatch(settings):
        res = Res({k: v for k, v in job_resources(settings).items() if v is not None},
                  cpus_per_task=32, mem_mb=512000)
        job = SimpleNamespace(resources=res, threads=2)
        return (get_submit_command(job, params) + set_gres_string(job)).split()

    multi = sbatch({"gpus": 8, "nodes": 4})
    assert {"--nodes=4", "--ntasks=4", "--gpus=32", "--cpus-per-task=32"} <= set(multi)
    assert not [a for a in multi if a.startswith("--ntasks-per-gpu")]
    single = sbatch({"gpus": 8})
    assert {"--nodes=1", "--gpus=8"} <= set(single) and not [a for a in single if "ntasks" in a]


# --- batch arithmetic against the launch ----------------------------------------------------------

def paper_config() -> dict:
    from distillab.config import validate_config

    return validate_config(yaml.safe_load((REPO / "configs" / "paper.yaml").read_text()))


def test_paper_settings_and_their_launch():
    cfg = paper_config()
    check_students(cfg)
    (name, student), = cfg["students"].items()
    t = student["training"]
    assert (t["learning_rate"], t["num_train_epochs"], t["global_batch_size"], t["max_length"]) == (
        8e-5, 2, 64, 32768)
    assert (t["lr_scheduler_type"], t["warmup_ratio"], t["packing"], t["bf16"]) == ("cosine", 0.05, True, True)
    assert t["gradient_checkpointing"] and t["save_steps"] and t["lora"] is None
    plan = launch_plan(t)
    assert (plan["nodes"], plan["gpus_per_node"], plan["world_size"]) == (4, 8, 32)
    settings = {k: v for k, v in t.items() if k != "on_empty_dataset"}
    r = resolve_settings(settings, world_size=32)
    assert r["gradient_accumulation_steps"] == 2 and r["effective_global_batch"] == 64


def test_a_global_batch_the_launch_cannot_reach_fails_at_config_load():
    from distillab.config import ConfigError

    cfg = paper_config()
    t = cfg["students"]["qwen2.5-32b-sft"]["training"]
    t["per_device_train_batch_size"] = 3
    with pytest.raises(ConfigError, match=re.escape(
            "config key students.qwen2.5-32b-sft.training: global_batch_size=64 is not a multiple "
            "of per_device_train_batch_size (3) x world size (32 = gpus 8 x nodes 4) = 96")):
        check_students(cfg)
    t["per_device_train_batch_size"], t["nodes"] = 1, 3  # 64 / 24
    with pytest.raises(ConfigError, match=r"gpus 8 x nodes 3\) = 24"):
        check_students(cfg)
    t["nodes"], t["gpus"] = 2, 0
    with pytest.raises(ConfigError, match="nodes=2 needs gpus >= 1"):
        check_students(cfg)
    t["gpus"], t["lora"] = 8, {"r": 8, "alpha": 16}
    with pytest.raises(ConfigError, match="lora is trained in one process only"):
        check_students(cfg)


def test_world_size_comes_from_the_config_and_must_match_the_launch(monkeypatch):
    settings = dict(BASE_SETTINGS, global_batch_size=64, per_device_train_batch_size=1, gpus=8, nodes=4)
    monkeypatch.setenv("WORLD_SIZE", "32")
    r = resolve_settings(settings)
    assert r["world_size"] == 32 and r["gradient_accumulation_steps"] == 2
    monkeypatch.setenv("WORLD_SIZE", "16")  # e.g. a node short
    with pytest.raises(ValueError, match=r"WORLD_SIZE=16 processes, but gpus \(8\) x nodes \(4\) = 32"):
        resolve_settings(settings)


@pytest.mark.parametrize("change, message", [
    ({"packing_strategy": "greedy"}, "packing_strategy='greedy'"),
    ({"save_steps": 0}, "save_steps=0"),
    ({"distributed": "ddp"}, "distributed='ddp'"),
    ({"gpus": -1}, "gpus=-1"),
    ({"attn_implementation": ""}, "attn_implementation=''"),
])
def test_bad_launch_settings_are_rejected(change, message):
    with pytest.raises(ValueError, match=message):
        resolve_settings(dict(BASE_SETTINGS, **change), world_size=1)


# --- attention and packing -------------------------------------------------------------------------

def test_attn_implementation_default(monkeypatch):
    import distillab.train as train

    real = importlib.util.find_spec
    for have_flash in (True, False):
        monkeypatch.setattr(train.importlib.util, "find_spec",
                            lambda name, _h=have_flash: (object() if _h else None) if name == "flash_attn" else real(name))
        assert resolve_attn_implementation(None, cuda=True) == ("flash_attention_2" if have_flash else "sdpa")
        assert resolve_attn_implementation("auto", cuda=False) == "sdpa"
        assert resolve_attn_implementation("flash_attention_2", cuda=False) == "sdpa"  # CPU fallback
        assert resolve_attn_implementation("eager", cuda=True) == "eager"
    with pytest.raises(ImportError, match="flash-attn"):
        resolve_attn_implementation("flash_attention_2", cuda=True)


def test_packed_rows_do_not_attend_to_each_other_on_sdpa(tiny_model):
    """Padding-free packing on CPU: the rows of a pack are separated by position_ids alone
    (no attention mask), and transformers turns that into a block-diagonal SDPA mask --
    when no KV cache is in play, as in TRL's compute_loss (use_cache=False)."""
    from transformers import AutoModelForCausalLM

    tok = tokenizer_of(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa").eval()
    rows = [tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"]
            for r in sft_rows()[:3]]
    flat = torch.tensor([sum(rows, [])])
    with torch.no_grad():
        alone = torch.cat([model(input_ids=torch.tensor([ids]), use_cache=False).logits[0] for ids in rows])
        packed = model(input_ids=flat, use_cache=False,
                       position_ids=torch.tensor([[i for ids in rows for i in range(len(ids))]])).logits[0]
        naive = model(input_ids=flat, use_cache=False).logits[0]  # one long sequence
    assert torch.allclose(packed, alone, atol=1e-5)
    assert not torch.allclose(naive, alone, atol=1e-3)


def test_packing_is_padding_free_and_trains_on_the_same_loss(tiny_model, dataset, tmp_path):
    packed_trainer, stats, resolved = build_trainer(
        str(dataset), str(tiny_model), dict(BASE_SETTINGS, packing=True), 0, str(tmp_path / "a"))
    assert resolved["packing_strategy"] == "bfd" and stats["attn_implementation"] == "sdpa"
    assert stats["train_sequences"] < stats["rows_used"]  # rows share packs
    packed = packed_trainer.data_collator(list(packed_trainer.train_dataset))
    assert "position_ids" in packed and "attention_mask" not in packed
    assert packed["input_ids"].shape[0] == 1  # flattened, no padding
    assert int((packed["position_ids"][0] == 0).sum()) == stats["rows_used"]

    padded_trainer, _, _ = build_trainer(str(dataset), str(tiny_model), dict(BASE_SETTINGS), 0,
                                         str(tmp_path / "b"))
    padded = padded_trainer.data_collator(list(padded_trainer.train_dataset))
    assert "attention_mask" in padded and padded["input_ids"].shape[0] == stats["rows_used"]
    # the trainer's own loss (completion tokens only) is the same packed or padded
    model = padded_trainer.model.eval()
    with torch.no_grad():
        loss_packed = packed_trainer.compute_loss(model, dict(packed))
        loss_padded = padded_trainer.compute_loss(model, dict(padded))
    assert torch.allclose(loss_packed, loss_padded, atol=1e-5), (loss_packed, loss_padded)


# --- resume ---------------------------------------------------------------------------------------

class _Preempted(Exception):
    pass


def _preempt_after(step: int):
    from transformers import TrainerCallback

    class Preempt(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == step:  # checkpoint-<step> is on disk
                raise _Preempted(f"preempted after step {step}")

    return Preempt()


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tiny_model, dataset, tmp_path, caplog):
    settings = dict(BASE_SETTINGS, max_steps=4, save_steps=1, gradient_accumulation_steps=1)
    ref = train_sft(str(dataset), str(tiny_model), str(tmp_path / "ref"), settings, seed=5)

    out = tmp_path / "students" / "s"
    partial = out.with_name("s.partial")
    with pytest.raises(_Preempted):
        train_sft(str(dataset), str(tiny_model), str(out), settings, seed=5,
                  callbacks=[_preempt_after(2)])
    assert not out.exists()
    names = {p.name for p in partial.iterdir()}  # (+ TRL's model card)
    assert "fingerprint.json" in names and sorted(n for n in names if n.startswith("checkpoint")) == ["checkpoint-2"]
    state = json.loads((partial / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        assert (partial / "checkpoint-2" / name).is_file()

    caplog.set_level("INFO", logger="distillab.train")
    facts = train_sft(str(dataset), str(tiny_model), str(out), settings, seed=5)
    assert "resuming from" in caplog.text and "checkpoint-2 (step 2)" in caplog.text
    assert facts["resumed_from_step"] == 2 and facts["steps"] == 4 == ref["steps"]
    assert not partial.exists()  # removed once the model is written
    history = json.loads((out / "train_log.json").read_text())
    steps = [h["step"] for h in history if "loss" in h]
    assert steps == [1, 2, 3, 4]  # the restored log history continues
    # optimizer, scheduler and data order restored: the same weights as the uninterrupted run
    lr = {h["step"]: h["learning_rate"] for h in history if "learning_rate" in h}
    ref_lr = {h["step"]: h["learning_rate"] for h in json.loads((tmp_path / "ref" / "train_log.json").read_text())
              if "learning_rate" in h}
    assert lr == ref_lr
    got, want = _weights(out), _weights(tmp_path / "ref")
    assert got.keys() == want.keys()
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-6), k
    assert "after resuming at step 2" in (out / "README.md").read_text()


def test_a_checkpoint_of_other_settings_is_not_resumed(tiny_model, dataset, tmp_path, caplog):
    settings = dict(BASE_SETTINGS, max_steps=3, save_steps=1)
    out = tmp_path / "s"
    with pytest.raises(_Preempted):
        train_sft(str(dataset), str(tiny_model), str(out), settings, seed=0, callbacks=[_preempt_after(1)])
    assert (tmp_path / "s.partial" / "checkpoint-1").is_dir()
    caplog.set_level("INFO", logger="distillab.train")
    facts = train_sft(str(dataset), str(tiny_model), str(out), dict(settings, learning_rate=2e-3), seed=0)
    assert "starting fresh: the checkpoints in" in caplog.text and "settings.learning_rate" in caplog.text
    assert facts["resumed_from_step"] is None and facts["steps"] == 3
    assert not (tmp_path / "s.partial").exists()


def test_a_failure_before_any_checkpoint_leaves_nothing_behind(tiny_model, dataset, tmp_path):
    with pytest.raises(_Preempted):
        train_sft(str(dataset), str(tiny_model), str(tmp_path / "s"), dict(BASE_SETTINGS, max_steps=3),
                  seed=0, callbacks=[_preempt_after(1)])  # save_steps: null
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft"]


# --- the launcher process and its workers ------------------------------------------------------

def test_launch_training_runs_the_command_and_returns_rank0_facts(tmp_path, monkeypatch, caplog):
    import distillab.train as train

    worker = ("import json, sys; spec = json.load(open(sys.argv[1])); print('rank0 says hi'); "
              "json.dump({'rows_used': 4, 'seen': spec['settings']['gpus']}, open(spec['facts'], 'w'))")
    seen = {}

    def fake_command(settings, env, job, **kw):
        seen["job"] = json.loads(Path(job).read_text())
        return [sys.executable, "-c", worker, str(job)]

    monkeypatch.setattr(train, "build_launch_command", fake_command)
    caplog.set_level("INFO", logger="distillab.train")
    out = tmp_path / "s"
    facts = train.launch_training("d.parquet", "base", str(out), {"gpus": 2}, 7, {"student": "s"})
    assert facts == {"rows_used": 4, "seen": 2}
    assert seen["job"]["seed"] == 7 and seen["job"]["out_dir"] == str(out)
    assert "rank0 says hi" in caplog.text and "launching 2 processes" in caplog.text
    assert not (tmp_path / "s.launch").exists()

    monkeypatch.setattr(train, "build_launch_command",
                        lambda *a, **k: [sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(RuntimeError, match="exited with status 3"):
        train.launch_training("d.parquet", "base", str(out), {"gpus": 2}, 7)
    assert not (tmp_path / "s.launch").exists()


def test_worker_entry_trains_from_a_job_spec(tiny_model, dataset, tmp_path):
    from distillab.train import main

    job = tmp_path / "job.json"
    job.write_text(json.dumps({"dataset": str(dataset), "base_model": str(tiny_model),
                               "out_dir": str(tmp_path / "s"), "settings": dict(BASE_SETTINGS, max_steps=1),
                               "seed": 0, "card_facts": None, "facts": str(tmp_path / "facts.json")}))
    assert main(["--job", str(job)]) == 0
    facts = json.loads((tmp_path / "facts.json").read_text())
    assert facts["steps"] == 1 and facts["world_size"] == 1
    assert (tmp_path / "s" / "model.safetensors").is_file()


@pytest.mark.slow
def test_paper_dry_run_plans_training_across_nodes():
    """`snakemake -n` on configs/paper.yaml (~1 min: the paper DAG is large)."""
    import subprocess

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile",
                          "configs/paper.yaml"], cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    text = run.stdout + run.stderr
    blocks = [b for b in text.split("rule ") if b.startswith("train:")]
    assert blocks, text[-2000:]
    for block in blocks:
        res = re.search(r"resources: (.*)", block).group(1)
        assert {"gpu=32", "nodes=4", "mpi=srun", "tasks=4", "tasks_per_gpu=0"} <= set(res.split(", ")), res
