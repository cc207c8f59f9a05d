"""accepted → curated → parallel: from verified responses to the SFT dataset.

- ``accepted(teacher)``: one verified response per accepted query (earliest round, then
  lowest sample), plus the verification rates per category and round.
- ``curate(teacher)``: structural checks (PAPER.md §5): non-empty think, a complete answer,
  a response that ended by itself, no runaway repetition. Every drop is recorded.
- ``parallel(teacher)``: the queries kept for training — with the paper's ``intersection``
  policy only those every teacher answered acceptably — as SFT rows in ``messages`` form.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from distillab import prompts, schemas
from distillab.io import read_rows, write_json, write_table

log = logging.getLogger(__name__)



def select_accepted(verified: list[dict]) -> list[dict]:
    """The first passing response per query, ordered by round then sample."""
    best: dict[str, dict] = {}
    for row in sorted(verified, key=lambda r: (r["round"], r["sample"])):
        if row["passed"] and row["query_id"] not in best:
            best[row["query_id"]] = row
    return sorted(best.values(), key=lambda r: r["query_id"])


def verification_stats(queries: list[dict], verified: list[dict]) -> dict:
    """Per category: queries, responses, passed responses, accepted queries, rates, verifiers."""
    cat_of = {q["query_id"]: q["category"] for q in queries}
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "queries": 0, "responses": 0, "passed_responses": 0, "accepted_queries": 0,
        "verifiers": Counter(), "accepted_by_round": Counter()})
    for q in queries:
        per[q["category"]]["queries"] += 1
    for row in verified:
        c = per[cat_of[row["query_id"]]]
        c["responses"] += 1
        c["passed_responses"] += bool(row["passed"])
        c["verifiers"][row["verifier"]] += 1
    for row in select_accepted(verified):
        c = per[cat_of[row["query_id"]]]
        c["accepted_queries"] += 1
        c["accepted_by_round"][str(row["round"])] += 1
    out = {}
    for cat, c in sorted(per.items()):
        out[cat] = {
            **{k: v for k, v in c.items() if not isinstance(v, Counter)},
            "verifiers": dict(c["verifiers"]),
            "accepted_by_round": dict(c["accepted_by_round"]),
            "response_pass_rate": c["passed_responses"] / c["responses"] if c["responses"] else None,
            "query_accept_rate": c["accepted_queries"] / c["queries"] if c["queries"] else None,
        }
    return out


def round_stats(n_queries: int, verified: list[dict], rounds: list[int] | None = None
                ) -> list[dict]:
    """Per retry round: queries asked, responses, tokens generated, queries accepted in the
    round and the share accepted so far. How many rounds a teacher needs is itself a
    measure of the teacher (a query is asked again only while no response passed).
    ``rounds`` lists every configured round, so one that had nothing left to ask shows."""
    first_pass = {r["query_id"]: r["round"] for r in select_accepted(verified)}
    rounds = sorted(set(rounds or []) | {r["round"] for r in verified})
    out, cumulative = [], 0
    for rnd in rounds:
        rows = [r for r in verified if r["round"] == rnd]
        accepted = sum(1 for q in first_pass.values() if q == rnd)
        cumulative += accepted
        out.append({
            "round": rnd,
            "queries_asked": len({r["query_id"] for r in rows}),
            "responses": len(rows),
            "tokens_generated": sum(r["n_tokens"] or 0 for r in rows),
            "accepted": accepted,
            "accepted_cumulative": cumulative,
            "accepted_share_cumulative": cumulative / n_queries if n_queries else None,
        })
    return out


@dataclass(frozen=True)
class StructureSpec:
    """The structural checks' settings (``curation.structure``)."""

    repetition_min_unit_chars: int = 8
    repetition_min_repeats: int = 5

    @cached_property
    def repetition(self) -> re.Pattern:
        # a unit of >= min_unit_chars characters, then min_repeats - 1 more copies of it
        return re.compile(rf"(.{{{self.repetition_min_unit_chars},}}?)"
                          rf"\1{{{self.repetition_min_repeats - 1},}}", re.DOTALL)


def turn_problem(conversation: list[dict]) -> str | None:
    """PAPER.md §5: an even number of turns (system aside), alternating user/assistant,
    ending with the assistant's."""
    roles = [m["role"] for m in conversation if m["role"] != "system"]
    if len(roles) % 2:
        return "odd_turns"
    if any(role != ("user" if i % 2 == 0 else "assistant") for i, role in enumerate(roles)):
        return "turns_not_alternating"
    return None


def structure_problem(row: dict, spec: StructureSpec = StructureSpec(),
                      query_messages: list[dict] | None = None) -> str | None:
    """Why a response fails the structural checks, or None when it passes."""
    if not (row.get("think") or "").strip():
        return "empty_think"
    if not (row.get("answer") or "").strip():
        return "missing_answer"
    if row.get("finish_reason") == "length":
        return "truncated"
    if query_messages is not None:
        problem = turn_problem(list(query_messages) + [{"role": "assistant", "content": ""}])
        if problem:
            return problem
    # a repeated unit must carry words: a long "-----" rule or table border is not a loop
    if any(re.search(r"\w", m.group(1)) for m in spec.repetition.finditer(row["text"])):
        return "repetition"
    return None


# Filters in the order they are applied; a row is recorded under the first that drops it.
FILTERS = ("structure", "high_frequency_ngram", "perplexity")


@dataclass
class CurationInputs:
    """What the filters need beyond the accepted rows; ``None`` turns a filter off."""

    query_messages: dict[str, list[dict]] | None = None
    ngram_windows: dict[str, int] | None = None  # query_id -> high-frequency windows
    ngram_spans: dict[str, str | None] | None = None
    ppl: dict[str, float | None] | None = None  # query_id -> perplexity (None: unscored)
    ppl_cut: float | None = None


def _lookup(table: dict | None, key: str, where: str):
    if key not in table:
        raise ValueError(f"{where}: no row for query_id {key!r}: the filter inputs do not "
                         "match the accepted set (rerun the stage that made them)")
    return table[key]


def curate(accepted: list[dict], cat_of: dict[str, str],
           structure: StructureSpec = StructureSpec(),
           inputs: CurationInputs | None = None) -> tuple[list[dict], list[dict], dict]:
    """Apply the structure, n-gram and perplexity filters in :data:`FILTERS` order.

    Returns kept rows, one rejected record per dropped row (first filter that dropped
    it, with a detail), and the funnel: per category, rows in, dropped per filter, kept.
    """
    inputs = inputs or CurationInputs()
    kept, rejected = [], []
    funnel: dict[str, Counter] = defaultdict(Counter)
    for row in accepted:
        qid, cat = row["query_id"], cat_of.get(row["query_id"], "")
        funnel[cat]["accepted"] += 1
        stage = reason = detail = None
        msgs = (_lookup(inputs.query_messages, qid, "curate: queries")
                if inputs.query_messages is not None else None)
        problem = structure_problem(row, structure, msgs)
        if problem:
            stage, reason = "structure", problem
        elif inputs.ngram_windows is not None and _lookup(inputs.ngram_windows, qid,
                                                          "curate: n-gram flags") > 0:
            stage, reason = "high_frequency_ngram", "high_frequency_ngram"
            detail = (inputs.ngram_spans or {}).get(qid)
        elif inputs.ppl is not None:
            ppl = _lookup(inputs.ppl, qid, "curate: perplexity scores")
            if ppl is None:
                funnel[cat]["perplexity_unscored"] += 1  # kept: nothing to cut on
            elif inputs.ppl_cut is not None and ppl > inputs.ppl_cut:
                stage, reason = "perplexity", "perplexity_above_cut"
                detail = f"ppl {ppl:.4g} > cut {inputs.ppl_cut:.4g}"
        if stage is None:
            kept.append(row)
            funnel[cat]["kept"] += 1
            continue
        funnel[cat][stage] += 1
        funnel[cat][f"{stage}:{reason}"] += 1
        rejected.append({"query_id": qid, "teacher": row["teacher"], "category": cat,
                         "stage": "curate", "reason": reason, "detail": detail})
    return kept, rejected, {c: dict(v) for c, v in sorted(funnel.items())}


def sft_rows(curated: dict[str, list[dict]], teacher: str, queries: dict[str, dict],
             policy: str, system_prompt: str, instructions: dict[str, str],
             count_tokens) -> tuple[list[dict], list[dict]]:
    """SFT rows for ``teacher`` under the parallel ``policy``; drops are recorded."""
    own = curated[teacher]
    if policy == "intersection":
        keep_ids = set.intersection(*({r["query_id"] for r in rows} for rows in curated.values()))
    else:
        keep_ids = {r["query_id"] for r in own}
    rows, rejected = [], []
    for r in own:
        q = queries[r["query_id"]]
        if r["query_id"] not in keep_ids:
            missing = sorted(t for t, rs in curated.items()
                             if r["query_id"] not in {x["query_id"] for x in rs})
            rejected.append({"query_id": r["query_id"], "teacher": teacher,
                             "category": q["category"], "stage": "parallel",
                             "reason": "not accepted by " + ",".join(missing),
                             "detail": None})
            continue
        assistant = prompts.format_response(r["think"], r["answer"])
        messages = ([{"role": "system", "content": system_prompt}]
                    + prompts.user_messages(q["messages"], q["category"], instructions)
                    + [{"role": "assistant", "content": assistant}])
        rows.append({"messages": messages, "query_id": r["query_id"], "teacher": teacher,
                     "category": q["category"], "n_tokens": count_tokens(assistant)})
    return rows, rejected


# --- Snakemake adapters -----------------------------------------------------------------

def accepted_from_snakemake(smk: Any, prov: Any) -> None:
    verified = [row for path in smk.input.verified for row in read_rows(path, schemas.VERIFIED)]
    queries = [q for path in smk.input.shards for q in read_rows(path, schemas.QUERY)]
    accepted = select_accepted(verified)
    stats = verification_stats(queries, verified)
    write_table(smk.output.accepted, accepted, schemas.VERIFIED)
    rounds = round_stats(len(queries), verified, list(smk.params.rounds))
    write_json(smk.output.stats, {"teacher": smk.wildcards.teacher, "per_category": stats,
                                  "rounds": rounds})
    log.info("teacher %s: %d of %d queries accepted", smk.wildcards.teacher, len(accepted),
             len(queries))
    prov.add(rows_in=len(verified), rows_out=len(accepted), queries=len(queries), rounds=rounds)


def curation_inputs(smk: Any, accepted: list[dict]) -> tuple[CurationInputs, dict]:
    """Read the filter inputs of rule ``curate``; also returns facts for the stats."""
    import pyarrow.parquet as pq

    from distillab.perplexity import perplexity_threshold

    table = pq.read_table(smk.input.queries, columns=["query_id", "messages"])
    queries = dict(zip(table.column("query_id").to_pylist(), table.column("messages").to_pylist()))
    inputs, facts = CurationInputs(query_messages=queries), {}
    if smk.input.ngrams:
        flags = read_rows(smk.input.ngrams[0], schemas.NGRAM_FLAGS)
        inputs.ngram_windows = {r["query_id"]: r["hf_windows"] for r in flags}
        inputs.ngram_spans = {r["query_id"]: r["example_span"] for r in flags}
        facts["ngram"] = dict(smk.params.ngram)
    if smk.input.perplexity:
        scores = read_rows(smk.input.perplexity[0], schemas.PERPLEXITY)
        inputs.ppl = {r["query_id"]: r["ppl"] for r in scores}
        threshold = dict(smk.params.ppl_threshold)
        values = np.array([v for v in inputs.ppl.values() if v is not None], dtype=float)
        inputs.ppl_cut = perplexity_threshold(values, threshold["max_ppl"],
                                              threshold["max_percentile"])
        facts["perplexity"] = {**threshold, "cut": inputs.ppl_cut,
                               "scored": int(values.size), "unscored": len(scores) - values.size}
    return inputs, facts


def curate_from_snakemake(smk: Any, prov: Any) -> None:
    teacher = smk.wildcards.teacher
    accepted = read_rows(smk.input.accepted, schemas.VERIFIED)
    cat_of = {r["query_id"]: r["category"] for r in accepted}
    inputs, facts = curation_inputs(smk, accepted)
    kept, rejected, funnel = curate(accepted, cat_of, StructureSpec(**smk.params.structure),
                                    inputs)
    write_table(smk.output.curated, kept, schemas.VERIFIED)
    write_table(smk.output.rejected, rejected, schemas.CURATED_REJECTED)
    by_reason = dict(Counter(r["reason"] for r in rejected))
    write_json(smk.output.stats, {"teacher": teacher, "filters": list(FILTERS),
                                  "structure": dict(smk.params.structure), **facts,
                                  "rejected_by_reason": by_reason, "per_category": funnel})
    log.info("teacher %s: curated %d kept, %d rejected %s; %s", teacher, len(kept),
             len(rejected), by_reason, facts)
    prov.add(rows_in=len(accepted), rows_out=len(kept), rows_rejected=len(rejected),
             rejected_by_reason=by_reason, **facts)


def parallel_from_snakemake(smk: Any, prov: Any) -> None:
    from transformers import AutoTokenizer

    from distillab.models import load_location

    teacher = smk.wildcards.teacher
    p = smk.params
    curated = {t: read_rows(path, schemas.VERIFIED) for t, path in zip(p.teachers, smk.input.curated)}
    queries = {q["query_id"]: q for q in read_rows(smk.input.queries, schemas.QUERY)}
    path, revision = load_location(smk.input.tokenizer)
    tok = AutoTokenizer.from_pretrained(path, revision=revision)
    instructions = {**prompts.DEFAULT_INSTRUCTIONS, **p.prompts.get("instructions", {})}
    system_prompt = p.prompts.get("system_prompt", prompts.PAPER_SYSTEM_PROMPT)
    rows, rejected = sft_rows(curated, teacher, queries, p.policy, system_prompt, instructions,
                              lambda text: len(tok(text, add_special_tokens=False).input_ids))
    write_table(smk.output.dataset, rows, schemas.SFT_ROW)
    write_table(smk.output.rejected, rejected, schemas.CURATED_REJECTED)
    per_cat = Counter(r["category"] for r in rows)
    log.info("teacher %s: %d SFT rows (%s), %d dropped by policy %s", teacher, len(rows),
             dict(per_cat), len(rejected), p.policy)
    prov.add(rows_in=len(curated[teacher]), rows_out=len(rows), rows_rejected=len(rejected),
             rows_per_category=dict(per_cat), policy=p.policy)
