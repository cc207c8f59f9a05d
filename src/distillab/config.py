"""The study config: one JSON Schema, checked when the Snakefile loads.

``validate_config`` fails before any job runs, naming the key path of the first bad
key or value (``teachers.smollm2.sampling.temperature: -1 is less than the minimum of 0``),
then checks the cross-references a schema cannot express (a teacher's model exists, a
decontamination benchmark is defined, ...).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import best_match, relevance


class ConfigError(ValueError):
    """The config does not describe a runnable study."""


def load_schema() -> dict:
    text = resources.files("distillab").joinpath("resources/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def _prefer_unknown_keys(error: jsonschema.ValidationError) -> tuple:
    """Rank an unknown (e.g. misspelt) key above the 'required' error it also causes, so
    the message names the key the user actually wrote."""
    r = relevance(error)
    return (r[0], r[1], error.validator == "additionalProperties", *r[2:])


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        # The offending key is in the message, not the path; name it explicitly.
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        if extra:
            return ".".join(filter(None, [path, extra[0]]))
    return path or "<top level>"


def _fill_defaults(instance: Any, schema: dict, root: dict) -> None:
    """Fill ``default`` values of declared properties (jsonschema does not)."""
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        schema = root["$defs"][ref]
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and isinstance(sub, dict) and "default" in sub:
            instance[key] = sub["default"]
        if key in instance:
            _fill_defaults(instance[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(value, extra, root)


def validate_config(config: dict) -> dict:
    """Validate ``config`` in place (filling defaults) and return it."""
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    err = best_match(validator.iter_errors(config), key=_prefer_unknown_keys)
    if err is not None:
        raise ConfigError(f"config key {_key_path(err)}: {err.message}")
    _fill_defaults(config, schema, schema)
    _check_references(config)
    return config


def _check_references(config: dict) -> None:
    models = config["models"]
    for kind in ("teachers", "students"):
        for name, spec in config[kind].items():
            if spec["model"] not in models:
                raise ConfigError(
                    f"config key {kind}.{name}.model: {spec['model']!r} is not defined under models"
                )
    sources = {s["name"]: s for s in config["queries"]["sources"]}
    for name, spec in config["teachers"].items():
        replay = spec.get("replay")
        if spec.get("backend") == "replay":
            where = f"config key teachers.{name}"
            source = sources.get(replay["source"])
            if source is None or source.get("format") != "am_release":
                raise ConfigError(f"{where}.replay.source: {replay['source']!r} is not an "
                                  "am_release query source")
            if spec["sampling"]["n"] != 1:
                raise ConfigError(f"{where}.sampling.n: a replay teacher has one response per "
                                  "query, so n must be 1")
            if spec.get("max_rounds", config["generation"]["max_rounds"]) != 1:
                raise ConfigError(f"{where}.max_rounds: a replay teacher has one response per "
                                  "query, so it has one round (set max_rounds: 1)")
        backend = spec.get("backend")
        if backend == "vllm":
            gpus = spec.get("tensor_parallel_size", 1) * spec.get("pipeline_parallel_size", 1)
            if gpus % spec.get("nodes", 1):
                raise ConfigError(f"config key teachers.{name}.nodes: {gpus} GPUs (tensor x "
                                  f"pipeline parallel) do not split over {spec['nodes']} nodes")
        # The vllm block and parallel sizes may stay on an openai teacher: they describe
        # the server it calls (configs/overlays/ turn a vllm teacher into an endpoint, and
        # a merged config file cannot remove keys).
        only = {"nodes": ("vllm", "openai"), "tensor_parallel_size": ("vllm", "openai"),
                "pipeline_parallel_size": ("vllm", "openai"), "vllm": ("vllm", "openai"),
                "gpus": ("transformers",), "openai": ("openai",), "replay": ("replay",)}
        for key, owners in only.items():
            if key in spec and backend not in owners:
                raise ConfigError(f"config key teachers.{name}.{key}: only for the "
                                  f"{' / '.join(owners)} backend (this teacher's backend is "
                                  f"{backend!r})")
    tok = config["curation"]["tokenizer_model"]
    if tok not in models:
        raise ConfigError(f"config key curation.tokenizer_model: {tok!r} is not defined under models")
    ppl = config["curation"].get("perplexity")
    if ppl is not None:
        if ppl["model"] not in models:
            raise ConfigError(f"config key curation.perplexity.model: {ppl['model']!r} is not "
                              "defined under models")
        if ppl["backend"] == "vllm":
            engine = ppl["vllm"]
            need = engine.get("tensor_parallel_size", 1) * engine.get("pipeline_parallel_size", 1)
            if ppl["gpus"] != need:
                raise ConfigError(f"config key curation.perplexity.gpus: {ppl['gpus']} GPUs, but "
                                  f"the vllm engine uses tensor x pipeline parallel = {need}")
        for name in ppl["per_teacher"]:
            if name not in config["teachers"]:
                raise ConfigError(f"config key curation.perplexity.per_teacher.{name}: no "
                                  "teacher of that name")
    benchmarks = config["evaluation"]["benchmarks"]
    for name in config["queries"].get("decontamination", {}).get("benchmarks", []):
        if name not in benchmarks:
            raise ConfigError(
                f"config key queries.decontamination.benchmarks: {name!r} is not defined "
                "under evaluation.benchmarks"
            )
    embedding = config["queries"].get("decontamination", {}).get("embedding") or {}
    for name in embedding.get("benchmarks") or []:
        if name not in benchmarks:
            raise ConfigError(
                f"config key queries.decontamination.embedding.benchmarks: {name!r} is not "
                "defined under evaluation.benchmarks"
            )
    if embedding:
        from distillab.decontam_embed import EmbeddingModelSpec

        try:
            EmbeddingModelSpec.from_dict(embedding["model"])
        except ValueError as exc:
            raise ConfigError(f"config key queries.decontamination.embedding.model: {exc}") from None
    overlap = set(config["teachers"]) & set(config["students"])
    if overlap:
        raise ConfigError(f"config keys teachers/students: names used twice: {sorted(overlap)}")
    names = [s["name"] for s in config["queries"]["sources"]]
    if len(names) != len(set(names)):
        raise ConfigError("config key queries.sources: source names must be unique")
    judge = config["verification"].get("judge")
    if judge and judge["model"] not in models:
        raise ConfigError(f"config key verification.judge.model: {judge['model']!r} is not "
                          "defined under models")
    reward_model = (config["verification"].get("chat") or {}).get("reward_model")
    if reward_model:
        from distillab.verify_chat import RewardModelSpec  # stdlib-only at import

        try:
            RewardModelSpec.from_dict(reward_model)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config key verification.chat.reward_model: {exc}") from exc


def load_config(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return validate_config(yaml.safe_load(f))
