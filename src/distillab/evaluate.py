"""evaluate(model, benchmark): k samples per problem, graded by the verifiers.

pass@1 is the mean over problems of each problem's pass rate over its k samples (the
paper's "mean over k"); its standard error is that of the mean over problems. Every
setting that moves a score is stored beside it (DESIGN.md §3 "Benchmark result").
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
from dataclasses import asdict
from typing import Any

from distillab import prompts, schemas
from distillab.generate import (PromptSpec, SamplingSpec, build_request, generate_all,
                                make_generator, response_rows)
from distillab.io import iter_jsonl, write_json, write_table
from distillab.verify import VerifySettings, verify_responses

log = logging.getLogger(__name__)


def load_benchmark(name: str, spec: dict) -> list[dict]:
    """Problems of a benchmark as pseudo-queries: query_id, category, messages, reference."""
    if spec["format"] != "jsonl":
        raise NotImplementedError(
            f"benchmark {name}: format {spec['format']!r} needs the hub; only local jsonl "
            "benchmarks are loaded in this build"
        )
    path = os.path.expandvars(spec["path"])
    if not os.path.exists(path):
        raise FileNotFoundError(f"benchmark {name}: file {path} does not exist")
    id_field, text_field = spec.get("id_field", "id"), spec.get("text_field", "prompt")
    answer_field = spec.get("answer_field")
    wanted = spec.get("filter") or {}
    problems = []
    for lineno, row in iter_jsonl(path):
        if any(row.get(k) != v for k, v in wanted.items()):
            continue
        for f in [id_field, text_field] + ([answer_field] if answer_field else []):
            if f not in row:
                raise ValueError(f"{path}:{lineno}: field {f!r} missing (benchmark {name})")
        reference = {"answer": str(row[answer_field])} if answer_field else row.get("reference")
        problems.append({
            "query_id": str(row[id_field]),
            "source": name,
            "category": spec["category"],
            "messages": [{"role": "user", "content": row[text_field]}],
            "reference": json.dumps(reference, sort_keys=True),
            "tests": json.dumps(row["tests"]) if row.get("tests") is not None else None,
            "constraints": (json.dumps(row["constraints"])
                            if row.get("constraints") is not None else None),
            "meta": json.dumps(row.get("meta") or {}),
        })
    if not problems:
        raise ValueError(f"benchmark {name}: no problems in {path} (filter {wanted})")
    seen: set[str] = set()
    for p in problems:
        if p["query_id"] in seen:
            raise ValueError(f"benchmark {name}: {path}: duplicate {id_field} {p['query_id']!r}")
        seen.add(p["query_id"])
    return problems[: spec.get("max_problems") or len(problems)]


def summarize(name: str, model: str, samples: list[dict], k: int) -> dict:
    """Metrics of graded samples: pass@1 ± s.e., per-problem rates, lengths, no-answer rate."""
    per_problem: dict[str, list[float]] = {}
    for s in samples:
        per_problem.setdefault(s["problem_id"], []).append(1.0 if s["passed"] else 0.0)
    rates = {pid: sum(v) / len(v) for pid, v in per_problem.items()}
    values = list(rates.values())
    n = len(values)
    mean = sum(values) / n if n else 0.0
    stderr = statistics.stdev(values) / math.sqrt(n) if n > 1 else 0.0
    tokens = [s["n_tokens"] for s in samples]
    no_answer = sum(1 for s in samples if not s["answer"]) / len(samples) if samples else 0.0
    return {
        "benchmark": name,
        "model": model,
        "n_problems": n,
        "k": k,
        "pass_at_1": mean,
        "pass_at_1_stderr": stderr,
        "per_problem_pass_rate": rates,
        "mean_response_tokens": statistics.fmean(tokens) if tokens else None,
        "median_response_tokens": statistics.median(tokens) if tokens else None,
        "no_answer_rate": no_answer,
        "truncated_rate": (sum(1 for s in samples if s["finish_reason"] == "length") / len(samples)
                           if samples else 0.0),
    }


def evaluate(model_path: str, revision: str | None, model_name: str, bench_name: str,
             bench: dict, sampling_cfg: dict, prompt: PromptSpec, options: dict,
             settings: VerifySettings) -> tuple[dict, list[dict]]:
    problems = load_benchmark(bench_name, bench)
    k = bench["k"]
    sampling = SamplingSpec(**{**sampling_cfg, "n": k})
    generator = make_generator("transformers", model_path, revision, options)
    requests = [build_request(p["query_id"], p["messages"], p["category"], prompt)
                for p in problems]
    outputs = generate_all(generator, requests, sampling, prompt.stop_strings())
    responses = [row for p, outs in zip(problems, outputs)
                 for row in response_rows(p, outs, model_name, 0, "")]
    verdicts = verify_responses(responses, {p["query_id"]: p for p in problems},
                                settings)
    samples = []
    for r, v in zip(responses, verdicts):
        details = json.loads(v["details"]) if v["details"] else {}
        samples.append({"problem_id": r["query_id"], "sample": r["sample"], "text": r["text"],
                        "answer": details.get("extracted"), "n_tokens": r["n_tokens"],
                        "finish_reason": r["finish_reason"], "score": v["score"],
                        "passed": v["passed"], "details": v["details"]})
    result = summarize(bench_name, model_name, samples, k)
    result.update(
        sampling=asdict(sampling),
        prompt_style=prompt.style,
        demonstrations=prompt.demonstrations,
        prompt_template_hash=prompts.template_hash(asdict(prompt)),
        grader=sorted({v["verifier"] for v in verdicts}),
        grader_version=sorted({v["verifier_version"] for v in verdicts}),
        threshold=settings.threshold,
        date_window=bench.get("date_window"),
        engine={"backend": "transformers", **options},
    )
    return result, samples


def evaluate_from_snakemake(smk: Any, prov: Any) -> None:
    from distillab.models import load_location

    p = smk.params
    path, revision = load_location(smk.input.model)
    prompt = PromptSpec.from_config(p.prompts, p.prompt_style, p.demonstrations)
    result, samples = evaluate(path, revision, smk.wildcards.model, smk.wildcards.benchmark,
                               p.benchmark, p.sampling, prompt,
                               {"batch_size": p.batch_size, "quantization": p.quantization},
                               VerifySettings.from_config(p.verification))
    result["model_info"] = p.model_info
    write_table(smk.output.samples, samples, schemas.EVAL_SAMPLE)
    write_json(smk.output.result, result)
    log.info("%s on %s: pass@1 %.3f ± %.3f over %d problems × k=%d, mean %.1f tokens",
             smk.wildcards.model, smk.wildcards.benchmark, result["pass_at_1"],
             result["pass_at_1_stderr"], result["n_problems"], result["k"],
             result["mean_response_tokens"] or 0)
    prov.add(rows_in=result["n_problems"], rows_out=len(samples))
