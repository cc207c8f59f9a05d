"""release(student, teacher): the trained student as an HF model dir whose card carries
its evaluation results.

The checkpoint (rule ``train``) is written before any evaluation, so its card holds the
training facts only; rewriting it after evaluation would change the checkpoint and make
Snakemake evaluate it again. ``release/<student>__<teacher>/`` is the model dir to load,
serve or push: every file of the checkpoint, hard-linked (the weights are not copied;
a copy where the filesystem cannot link), and a ``README.md`` that is the training card
plus

- an **Evaluation results** section: per benchmark pass@1 ± its standard error, k,
  problems, mean response tokens and the no-answer rate, with the sampling and engine
  they were measured with and the result file each row comes from;
- ``model-index`` metadata in the card's YAML front matter (the Hugging Face hub shows
  it as the model's evaluation results), the dataset named by its hub id and revision
  when the benchmark came from the hub.

Hard links share bytes with the checkpoint: replace a file (as every distillab writer
does, temp file + rename), never edit one in place.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from distillab.io import read_json

log = logging.getLogger(__name__)

CARD = "README.md"
# The checkpoint's own sidecar (the release writes its own), and Snakemake's timestamp of
# a directory output: linked, Snakemake's touch of the release's would date the checkpoint
# anew and make everything downstream of it rerun.
SKIP = ("provenance.json", ".snakemake_timestamp")


def split_card(text: str) -> tuple[dict, str]:
    """A model card's YAML front matter (``{}`` without one) and its body."""
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end != -1:
            return yaml.safe_load(text[4:end]) or {}, text[end + 5:]
    return {}, text


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


def _dataset(result: dict) -> dict:
    source = result.get("benchmark_source") or {}
    dataset = {"name": result["benchmark"], "type": source.get("repo_id") or result["benchmark"]}
    if source.get("revision"):
        dataset["revision"] = source["revision"]
    if source.get("split"):
        dataset["split"] = source["split"]
    return dataset


def model_index(name: str, results: list[dict]) -> list[dict]:
    """The hub's ``model-index`` entry: pass@1 (percent) per benchmark."""
    entries = []
    for r in results:
        entries.append({
            "task": {"type": "text-generation", "name": "Text Generation"},
            "dataset": _dataset(r),
            "metrics": [{"type": "pass@1", "value": _pct(r["pass_at_1"]),
                         "name": f"pass@1 (%, mean over k={r['k']} samples)"}],
        })
    return [{"name": name, "results": entries}]


def _cell(value: Any, fmt: str = "{}") -> str:
    return "–" if value is None else fmt.format(value)


def results_section(results: list[dict], result_files: list[str]) -> str:
    """The card's Evaluation results section (markdown)."""
    lines = ["## Evaluation results", "",
             "pass@1 is the mean over problems of each problem's pass rate over its k samples, "
             "± its standard error over problems (distillab.evaluate).", "",
             "| benchmark | pass@1 (%) | ± s.e. | k | problems | mean tokens | no answer (%) |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['benchmark']} | {_cell(_pct(r['pass_at_1']), '{:.2f}')} | "
            f"{_cell(_pct(r['pass_at_1_stderr']), '{:.2f}')} | {r['k']} | {r['n_problems']} | "
            f"{_cell(r.get('mean_response_tokens'), '{:.1f}')} | "
            f"{_cell(_pct(r.get('no_answer_rate')), '{:.1f}')} |")
    lines += ["", "| benchmark | sampling | engine | result file |", "|---|---|---|---|"]
    for r, path in zip(results, result_files):
        s = r.get("sampling") or {}
        sampling = ", ".join(f"{k}={s[k]}" for k in ("temperature", "top_p", "max_new_tokens")
                             if k in s)
        engine = r.get("engine") or {}
        backend = engine.get("backend")
        # generators describe their version as "version" or under the library's name
        version = engine.get("version") or (engine.get(backend) if backend else None)
        engine_text = " ".join(str(v) for v in (backend, version) if v and isinstance(v, str))
        if engine.get("tensor_parallel_size"):
            engine_text += f", TP {engine['tensor_parallel_size']}"
        lines.append(f"| {r['benchmark']} | {sampling} | {engine_text} | `{path}` |")
    return "\n".join(lines) + "\n"


def release_card(card_text: str, name: str, results: list[dict], result_files: list[str]) -> str:
    """The training card with the evaluation results added (front matter and section)."""
    meta, body = split_card(card_text)
    meta["model-index"] = model_index(name, results)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{front}---\n{body.rstrip()}\n\n{results_section(results, result_files)}"


def _link_or_copy(src: Path, dst: Path) -> str:
    try:
        os.link(src, dst)
        return "linked"
    except OSError:  # another filesystem, or links not allowed: copy
        shutil.copy2(src, dst)
        return "copied"


def release_student(checkpoint: str | os.PathLike, result_files: list[str],
                    out_dir: str | os.PathLike, name: str) -> dict:
    """Write ``out_dir`` atomically (see the module docstring); returns counts."""
    src, out = Path(checkpoint), Path(out_dir)
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{src}: not an HF model dir (no config.json)")
    results = [read_json(p) for p in result_files]
    for path, r in zip(result_files, results):
        for key in ("benchmark", "k", "pass_at_1", "pass_at_1_stderr", "n_problems"):
            if key not in r:
                raise ValueError(f"{path}: field '{key}': missing (not an evaluate result)")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    counts = {"linked": 0, "copied": 0}
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_dir() or rel.as_posix() in SKIP or rel.as_posix() == CARD:
            continue
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        counts[_link_or_copy(path, tmp / rel)] += 1
    card = (src / CARD).read_text(encoding="utf-8") if (src / CARD).exists() else ""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / CARD).write_text(release_card(card, name, results, result_files), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    if counts["copied"]:
        log.warning("%s: %d files copied (hard links not possible here)", out, counts["copied"])
    log.info("%s: %d files linked, %d copied, card with %d evaluation results", out,
             counts["linked"], counts["copied"], len(results))
    return {**counts, "benchmarks": [r["benchmark"] for r in results]}


def release_from_snakemake(smk: Any, prov: Any) -> None:
    facts = release_student(smk.input.checkpoint, list(smk.input.results), smk.output.release,
                            f"{smk.wildcards.student}__{smk.wildcards.teacher}")
    prov.add(**facts)


__all__ = ["model_index", "release_card", "release_student", "results_section", "split_card"]
