"""The query stage: sources -> one Query schema -> clean pool -> hash shards.

Paper §2 / DESIGN.md §1-2. Every step keeps an account of what it dropped (``in ==
kept + rejected``, checked, in provenance) and every dropped row is a ``REJECTED_QUERY``
row with its stage, reason and a JSON detail:

1. **normalize** (per source, in parallel, :func:`write_normalized`): rows come from
   :func:`distillab.sources.iter_source_rows` (jsonl, parquet, HF datasets streamed, AM
   releases, with field mappings), are validated and turned into ``NORMALIZED_QUERY``
   rows (the Query record + the normalized user text). A bad row either stops the run
   (``on_bad_row: fail``: the message names file, line and field) or is quarantined with
   stage ``normalize``. ``max_per_category`` then keeps the first N valid rows per
   category in file order (stage ``select``). Streamed in batches: memory does not grow
   with the source.
2. **clean** (all sources, :func:`plan_clean` + :func:`write_clean`), in the paper's
   order: exact dedup on the lowercased normalized text, near-duplicate dedup (MinHash
   LSH, confirmed by exact Jaccard), filters, n-gram decontamination. The per-row work
   (tokenizing, hashing, MinHash, filter and n-gram checks) runs on parquet row groups in
   ``workers`` processes (:mod:`distillab.query_sketch`); the decisions that need the whole
   corpus (which copy to keep) are taken afterwards on small arrays.
3. **shard** by a hash of ``query_id``.

Text normalization (ids, dedup, length and character-ratio filters, n-grams): Unicode
NFKC, every run of whitespace collapsed to one space, stripped; the user turns joined by
newlines. The stored ``messages`` keep the original text (indentation matters in code).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillab import query_sketch, schemas
from distillab.pool import map_with_timeout
from distillab.io import ParquetBatchWriter, iter_jsonl, read_table, stable_hash, write_table
from distillab.query_sketch import MinHashSettings, NgramIndex, normalize_text, word_ngrams
from distillab.sources import BadRow, iter_source_rows, source_fingerprint, source_paths

log = logging.getLogger(__name__)

ON_BAD_ROW = ("fail", "quarantine")
ROLES = ("system", "user", "assistant")
# A row larger than this is refused at normalize (bad input, e.g. a whole file pasted into
# one field), whatever the filters say; the max_chars filter is the soft, recorded limit.
DEFAULT_MAX_QUERY_CHARS = 1_000_000
ROWS_PER_GROUP = 20_000  # parquet row group of normalized files = one unit of clean work
SKETCH_TIMEOUT_S = 3600.0  # per row group (~1 s of work): only a hung worker reaches it

DEFAULT_FILTERS: dict[str, Any] = {
    "max_chars": 20000,
    "min_chars": 1,
    "max_non_ascii_ratio": 0.3,
    "drop_urls": True,
    "drop_tables": True,
    "drop_images": True,
}
DEFAULT_DECONTAMINATION: dict[str, Any] = {"ngram": 13, "benchmarks": None, "embedding": None}
DEFAULT_NEAR_DEDUP: dict[str, Any] = {
    "enabled": True, "threshold": 0.8, "shingle": 3, "num_perm": 64, "bands": 16,
    "seed": 42, "max_partners": 32, "max_group": 200,
}


# --------------------------------------------------------------------------- text


def user_text(messages: list[dict]) -> str:
    """Normalized text of all user turns, one turn per line (ids, dedup, n-grams)."""
    return "\n".join(normalize_text(m["content"]) for m in messages if m["role"] == "user")


def make_query_id(source: str, normalized_user_text: str) -> str:
    """Stable id: first 16 hex chars of sha256 over source + "\\n" + normalized user text."""
    return stable_hash(f"{source}\n{normalized_user_text}")


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _json_field(value: Any, name: str) -> str | None:
    """A field as JSON text; a value JSON cannot hold (a parquet timestamp, bytes) is a
    bad row naming the field."""
    try:
        return _json_or_none(value)
    except (TypeError, ValueError) as exc:
        raise BadRow(name, f"not representable as JSON ({exc})") from None


# --------------------------------------------------------------------------- normalize


def _check_messages(obj: dict) -> list[dict]:
    """The row's turns as [{role, content}] (original text), or BadRow."""
    prompt = obj.get("prompt")
    messages = obj.get("messages")
    if prompt is not None and messages is not None:
        raise BadRow("prompt", "both 'prompt' and 'messages' given; use one")
    if prompt is None and messages is None:
        raise BadRow("prompt", "missing (need 'prompt' or 'messages')")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise BadRow("prompt", f"expected a string, got {type(prompt).__name__}")
        if not prompt.strip():
            raise BadRow("prompt", "empty")
        return [{"role": "user", "content": prompt}]
    if not isinstance(messages, list):
        raise BadRow("messages", f"expected a list, got {type(messages).__name__}")
    if not messages:
        raise BadRow("messages", "empty list")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise BadRow(f"messages[{i}]", f"expected an object, got {type(m).__name__}")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise BadRow(f"messages[{i}].role", f"{role!r} is not one of {', '.join(ROLES)}")
        if role == "system" and i != 0:
            raise BadRow(f"messages[{i}].role", "a system turn may only come first")
        if not isinstance(content, str):
            raise BadRow(f"messages[{i}].content",
                         f"expected a string, got {type(content).__name__}")
        if role == "user" and not content.strip():  # isspace, as normalize_text
            raise BadRow(f"messages[{i}].content", "empty user turn")
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "user":
        raise BadRow(f"messages[{len(out) - 1}].role",
                     f"the last turn must be 'user', got {out[-1]['role']!r}")
    return out


def _check_row(obj: dict) -> dict:
    """Validate one source row; return its parts (raises BadRow)."""
    sid = obj.get("id")
    if sid is None:
        raise BadRow("id", "missing")
    if not isinstance(sid, str) or not sid.strip():
        raise BadRow("id", f"expected a non-empty string, got {sid!r}")
    category = obj.get("category")
    if category is None:
        raise BadRow("category", "missing")
    if category not in schemas.CATEGORIES:
        raise BadRow("category", f"{category!r} is not one of {', '.join(schemas.CATEGORIES)}")
    messages = _check_messages(obj)
    tests = obj.get("tests")
    if tests is not None and not isinstance(tests, list):
        raise BadRow("tests", f"expected a list or null, got {type(tests).__name__}")
    constraints = obj.get("constraints")
    if constraints is not None and not isinstance(constraints, dict):
        raise BadRow("constraints",
                     f"expected an object or null, got {type(constraints).__name__}")
    meta = obj.get("meta")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise BadRow("meta", f"expected an object, got {type(meta).__name__}")
    return {"id": sid, "category": category, "messages": messages,
            "reference": obj.get("reference"), "tests": tests,
            "constraints": constraints, "meta": meta}


def _rejected(query_id: str | None, source: str, category: str | None, stage: str,
              reason: str, detail: dict) -> dict:
    return {"query_id": query_id, "source": source, "category": category, "stage": stage,
            "reason": reason, "detail": json.dumps(detail, sort_keys=True, ensure_ascii=False)}


def _limit_for(max_per_category: Any, category: str) -> int | None:
    if max_per_category is None:
        return None
    if isinstance(max_per_category, dict):
        return max_per_category.get(category)  # a category not listed is not limited
    return max_per_category


def _check_max_per_category(value: Any, name: str) -> None:
    limits = value.values() if isinstance(value, dict) else [value]
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(schemas.CATEGORIES))
        if unknown:
            raise ValueError(f"source {name!r}: max_per_category: unknown categories {unknown}")
    for n in limits:
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
            raise ValueError(f"source {name!r}: max_per_category: {n!r} is not an int >= 0")


def _check_size(row: dict, max_chars: int) -> None:
    """Refuse a huge row early, naming the field (before NFKC etc. run over megabytes)."""
    if "prompt" in row and isinstance(row["prompt"], str) and len(row["prompt"]) > max_chars:
        raise BadRow("prompt", f"{len(row['prompt'])} characters, more than the limit "
                               f"max_query_chars={max_chars}")
    messages = row.get("messages")
    if isinstance(messages, list):
        for i, m in enumerate(messages):
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, str) and len(content) > max_chars:
                raise BadRow(f"messages[{i}].content",
                             f"{len(content)} characters, more than the limit "
                             f"max_query_chars={max_chars}")


def iter_normalized(spec: dict, on_bad_row: str = "fail",
                    max_query_chars: int = DEFAULT_MAX_QUERY_CHARS,
                    counts: Counter | None = None) -> Iterator[tuple[str, dict]]:
    """Yield ``("query", NORMALIZED_QUERY row)`` or ``("rejected", REJECTED_QUERY row)``
    for every row of one source, in source order.

    ``spec``: a ``queries.sources`` entry (see :mod:`distillab.sources`) plus
    ``max_per_category: null | int | {category: int}`` (a category missing from the dict is
    not limited). With ``on_bad_row="fail"`` the first bad row raises
    ``ValueError("<file>:<line>: field '<name>': <problem>")``; with ``"quarantine"`` it is
    recorded with stage ``normalize`` and reading goes on. ``counts`` (if given) receives
    ``rows`` / ``kept`` / per-stage rejections as they happen.
    """
    if on_bad_row not in ON_BAD_ROW:
        raise ValueError(f"on_bad_row must be one of {ON_BAD_ROW}, got {on_bad_row!r}")
    name = spec.get("name")
    if not name or not isinstance(name, str):
        raise ValueError(f"query source without a name: {spec!r}")
    max_per_category = spec.get("max_per_category")
    _check_max_per_category(max_per_category, name)
    counts = Counter() if counts is None else counts
    seen_ids: dict[str, str] = {}
    per_category: Counter = Counter()
    where = name
    mapped = {target: path for target, path in (spec.get("fields") or {}).items()}
    for where, lineno, obj, err in iter_source_rows(spec):
        counts["rows"] += 1
        category = None
        try:
            if err is not None:
                raise err
            category = obj.get("category") if isinstance(obj.get("category"), str) else None
            _check_size(obj, max_query_chars)
            row = _check_row(obj)
            if row["id"] in seen_ids:
                raise BadRow("id", f"duplicate {row['id']!r} (first at {seen_ids[row['id']]})")
            text = user_text(row["messages"])
            query_id = make_query_id(name, text)
            encoded = {key: _json_field(row[key], key) for key in ("reference", "tests",
                                                                    "constraints")}
            encoded["meta"] = _json_field({**row["meta"], "source_id": row["id"]}, "meta")
        except BadRow as exc:
            if exc.field and exc.field.split("[")[0].split(".")[0] in mapped:
                target = exc.field.split("[")[0].split(".")[0]
                exc = BadRow(f"{mapped[target]}{exc.field[len(target):]} (mapped to {target})",
                             exc.problem)
            if on_bad_row == "fail":
                raise ValueError(f"{where}:{lineno}: {exc}") from None
            source_id = obj.get("id") if isinstance(obj, dict) else None
            counts["normalize"] += 1
            log.warning("%s:%d: quarantined: %s", where, lineno, exc)
            yield "rejected", _rejected(
                None, name, category, "normalize", str(exc),
                {"file": str(where), "line": lineno, "field": exc.field,
                 "source_id": source_id if isinstance(source_id, (str, int)) else None})
            continue
        seen_ids[row["id"]] = f"{where}:{lineno}"
        limit = _limit_for(max_per_category, row["category"])
        if limit is not None and per_category[row["category"]] >= limit:
            counts["select"] += 1
            yield "rejected", _rejected(
                query_id, name, row["category"], "select", "max_per_category",
                {"limit": limit, "line": lineno, "source_id": row["id"]})
            continue
        per_category[row["category"]] += 1
        counts["kept"] += 1
        yield "query", {
            "query_id": query_id,
            "source": name,
            "category": row["category"],
            "messages": row["messages"],
            **encoded,
            "text": text,
        }
    if counts["rows"] == 0:
        where = ", ".join(source_paths(spec)) or where
        if on_bad_row == "fail":
            raise ValueError(f"{where}:0: source {name!r} is empty (no queries)")
        log.warning("%s: source %r is empty (no queries)", where, name)
    if counts["rows"] != counts["kept"] + counts["normalize"] + counts["select"]:
        raise RuntimeError(f"source {name}: {counts['rows']} rows read but {counts['kept']} kept "
                           f"+ {counts['normalize'] + counts['select']} rejected")
    log.info("source %s: %d rows -> %d queries %s, rejected %s", name, counts["rows"],
             counts["kept"], dict(sorted(per_category.items())),
             {k: counts[k] for k in ("normalize", "select") if counts[k]})


def normalize_source(spec: dict, on_bad_row: str = "fail",
                     max_query_chars: int = DEFAULT_MAX_QUERY_CHARS
                     ) -> tuple[list[dict], list[dict]]:
    """(NORMALIZED_QUERY rows, REJECTED_QUERY rows) of one source, in memory (tests,
    small sources); the rule streams with :func:`write_normalized`."""
    queries, rejected = [], []
    for kind, row in iter_normalized(spec, on_bad_row, max_query_chars):
        (queries if kind == "query" else rejected).append(row)
    return queries, rejected


def write_normalized(spec: dict, out_queries: str, out_rejected: str,
                     on_bad_row: str = "fail", max_query_chars: int = DEFAULT_MAX_QUERY_CHARS,
                     batch_rows: int = ROWS_PER_GROUP) -> Counter:
    """Stream one source into ``out_queries`` (NORMALIZED_QUERY, row groups of
    ``batch_rows``) and ``out_rejected`` (REJECTED_QUERY); return the counts."""
    counts: Counter = Counter()
    started = time.monotonic()
    with ParquetBatchWriter(out_queries, schemas.NORMALIZED_QUERY, batch_rows) as queries, \
            ParquetBatchWriter(out_rejected, schemas.REJECTED_QUERY, batch_rows) as rejected:
        batch: list[dict] = []
        bad: list[dict] = []
        for kind, row in iter_normalized(spec, on_bad_row, max_query_chars, counts):
            (batch if kind == "query" else bad).append(row)
            if len(batch) >= batch_rows:
                queries.write(batch, trusted=True)
                batch = []
                rate = counts["rows"] / max(time.monotonic() - started, 1e-9)
                log.info("source %s: %d rows read, %d kept (%.0f rows/s)", spec["name"],
                         counts["rows"], counts["kept"], rate)
            if len(bad) >= batch_rows:
                rejected.write(bad, trusted=True)
                bad = []
        queries.write(batch, trusted=True)
        rejected.write(bad, trusted=True)
        if (queries.rows, rejected.rows) != (counts["kept"],
                                             counts["normalize"] + counts["select"]):
            raise RuntimeError(f"source {spec['name']}: wrote {queries.rows} queries and "
                               f"{rejected.rows} rejects, counted {dict(counts)}")
    return counts


# --------------------------------------------------------------------------- filters


# CJK blocks exempt from the non-ASCII ratio: Hangul Jamo, CJK radicals and Kangxi
# radicals, CJK symbols/punctuation + Hiragana + Katakana, Bopomofo + Hangul compatibility
# Jamo + Katakana extensions, CJK Extension A, CJK Unified Ideographs, Hangul syllables,
# CJK compatibility ideographs, half-/full-width forms, CJK Extensions B and later.
_CJK_RANGES = (
    "\u1100-\u11ff\u2e80-\u2fdf\u3000-\u30ff\u3100-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff"
)
_NON_ASCII_NON_CJK = re.compile(f"[^\\x00-\\x7f{_CJK_RANGES}]+")


def non_ascii_ratio(text: str) -> float:
    """Fraction of the characters of ``text`` that are neither ASCII nor CJK.

    The paper drops queries with a "high Unicode-character ratio" without giving the
    threshold (PAPER.md §2). CJK text is exempt so that Chinese/Japanese/Korean queries
    are not dropped wholesale; what remains counted is e.g. emoji, symbol soup, mojibake
    and other scripts. Computed on the normalized text (NFKC already folds full-width
    Latin to ASCII); an empty text has ratio 0.
    """
    if not text or text.isascii():
        return 0.0
    bad = sum(len(m) for m in _NON_ASCII_NON_CJK.findall(text))
    return bad / len(text)


_URL = re.compile(r"(?i)\bhttps?://\S*|\bwww\.\S*")
_HTML_TABLE = re.compile(r"(?i)<table\b")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_MD_IMAGE = re.compile(r"!\[[^\]\n]*\]\([^)\n]*\)")
_HTML_IMG = re.compile(r"(?i)<img\b")
_IMAGE_FILE = re.compile(r"(?i)[\w\-]+\.(?:png|jpe?g|gif|svg)\b")


def find_table(text: str) -> str | None:
    """A markdown pipe table (a ``|---|`` separator row under a row with pipes) or an
    HTML ``<table``; return the matched line/tag or None."""
    m = _HTML_TABLE.search(text)
    if m:
        return m.group(0)
    lines = text.splitlines()
    for i in range(1, len(lines)):
        line = lines[i]
        if "|" in line and "-" in line and _TABLE_SEP.match(line) and "|" in lines[i - 1]:
            return line.strip()
    return None


_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".gif", ".svg")


def find_url(text: str) -> str | None:
    """An ``http(s)://`` or ``www.`` URL; return it or None."""
    low = text.lower()
    if "http" not in low and "www." not in low:  # cheap pre-check; the regex is slow
        return None
    m = _URL.search(text)
    return m.group(0) if m else None


def find_image(text: str) -> str | None:
    """A markdown image ``![..](..)``, an HTML ``<img``, or an image file name."""
    for pattern in (_MD_IMAGE, _HTML_IMG):
        m = pattern.search(text)
        if m:
            return m.group(0)
    low = text.lower()
    if any(ext in low for ext in _IMAGE_EXTS):  # cheap pre-check; the regex is slow
        m = _IMAGE_FILE.search(text)
        if m:
            return m.group(0)
    return None


def _resolve(given: dict | None, defaults: dict, what: str) -> dict:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{what}: unknown keys {unknown}; known: {sorted(defaults)}")
    return {**defaults, **given}


def check_filters(query: dict, filters: dict,
                  normalized: str | None = None) -> tuple[str, str, dict] | None:
    """The first failing filter as (filter, reason, detail), or None if the query passes.

    ``filters`` is already resolved (every key present); a numeric filter set to null and
    a boolean set to false are off. Lengths and the character ratio are measured on the
    normalized user text (``normalized``, computed when not given); URLs, tables and images
    are searched in the original text of every turn (tables need its line structure).
    """
    raw = "\n".join(m["content"] for m in query["messages"])
    norm = normalized if normalized is not None else user_text(query["messages"])
    n = len(norm)
    if filters["max_chars"] is not None and n > filters["max_chars"]:
        return "max_chars", f"max_chars: {n} > {filters['max_chars']}", {"chars": n}
    if filters["min_chars"] is not None and n < filters["min_chars"]:
        return "min_chars", f"min_chars: {n} < {filters['min_chars']}", {"chars": n}
    if filters["max_non_ascii_ratio"] is not None:
        ratio = non_ascii_ratio(norm)
        if ratio > filters["max_non_ascii_ratio"]:
            return ("max_non_ascii_ratio",
                    f"max_non_ascii_ratio: {ratio:.4f} > {filters['max_non_ascii_ratio']}",
                    {"ratio": ratio})
    for name, find in (("drop_urls", find_url), ("drop_tables", find_table),
                       ("drop_images", find_image)):
        if filters[name]:
            found = find(raw)
            if found:
                return name, f"{name}: {found[:80]!r}", {"match": found}
    return None


# Substrings (case-insensitive) that each of find_url / find_table / find_image needs in
# order to match: rows without any of them are skipped with one vectorized pass.
_FILTER_NEEDLES = {
    "drop_urls": ("http", "www."),
    "drop_tables": ("<table", "|"),
    "drop_images": ("![", "<img", ".png", ".jpg", ".jpeg", ".gif", ".svg"),
}


def failing_filters(table: pa.Table, filters: dict) -> dict[int, tuple[str, str, dict]]:
    """{row: (filter, reason, detail)} for the rows of ``table`` (columns ``text``,
    ``messages``) that fail a filter. A vectorized pass picks the rows that *can* fail;
    :func:`check_filters` decides on those."""
    text = table.column("text").combine_chunks()
    n = len(text)
    maybe = np.zeros(n, dtype=bool)
    if n == 0:
        return {}
    chars = pc.utf8_length(text).to_numpy(zero_copy_only=False)
    if filters["max_chars"] is not None:
        maybe |= chars > filters["max_chars"]
    if filters["min_chars"] is not None:
        maybe |= chars < filters["min_chars"]
    if filters["max_non_ascii_ratio"] is not None:
        maybe |= ~pc.string_is_ascii(text).to_numpy(zero_copy_only=False)
    needles = [s for name, group in _FILTER_NEEDLES.items() if filters[name] for s in group]
    if needles:
        messages = table.column("messages").combine_chunks()
        content = pc.struct_field(pc.list_flatten(messages), "content")
        parent = pc.list_parent_indices(messages).to_numpy()
        # Arrow folds case by ASCII rules only (İ, K-sign ...): a non-ASCII turn always
        # goes to the exact check.
        found = ~pc.string_is_ascii(content).to_numpy(zero_copy_only=False)
        for needle in needles:
            found |= pc.match_substring(content, needle, ignore_case=True).to_numpy(
                zero_copy_only=False)
        maybe[parent[found]] = True
    rows = np.flatnonzero(maybe)
    if not len(rows):
        return {}
    picked = table.select(["text", "messages"]).take(pa.array(rows)).to_pylist()
    out = {}
    for r, q in zip(rows, picked):
        failed = check_filters(q, filters, q["text"])
        if failed is not None:
            out[int(r)] = failed
    return out


# --------------------------------------------------------------------------- clean


@dataclass(frozen=True)
class _SketchSettings:
    filters: dict
    near: MinHashSettings | None


@dataclass
class BatchSketch:
    """What the clean stage needs to know about one batch of normalized queries."""

    exact: np.ndarray  # (n, 2) uint64 exact-duplicate keys
    bands: np.ndarray | None  # (n, bands) MinHash LSH band keys
    failed: dict[int, tuple[str, str, dict]]  # row -> first failing filter
    contaminated: dict[int, dict]  # row -> confirmed n-gram hit


def sketch_batch(table: pa.Table, settings: _SketchSettings, index: NgramIndex) -> BatchSketch:
    """All per-row work of the clean stage for one batch (runs in a worker process)."""
    text = table.column("text")
    tokens = query_sketch.tokenize(text)
    return BatchSketch(
        exact=query_sketch.exact_keys(text),
        bands=query_sketch.band_keys(tokens, settings.near) if settings.near else None,
        failed=failing_filters(table, settings.filters),
        contaminated=index.confirm(tokens, index.candidate_rows(tokens)),
    )


_WORKER: dict[str, Any] = {}


def _init_worker(settings: _SketchSettings, index: NgramIndex) -> None:
    _WORKER.update(settings=settings, index=index)


def _sketch_row_group(task: tuple[str, int]) -> BatchSketch:
    path, group = task
    table = pq.ParquetFile(path).read_row_group(group, columns=["text", "messages"])
    return sketch_batch(table, _WORKER["settings"], _WORKER["index"])


def _sketch_all(paths: list[str], settings: _SketchSettings, index: NgramIndex,
                workers: int) -> list[BatchSketch]:
    """Sketch every row group of ``paths``, in order, on ``workers`` processes (fresh
    interpreters from :mod:`distillab.pool`, which work under Snakemake's ``script:``)."""
    tasks = [(p, g) for p in paths for g in range(pq.ParquetFile(p).num_row_groups)]
    if workers > 1 and len(tasks) > 1:
        outcomes = map_with_timeout(
            _sketch_row_group, [(t,) for t in tasks], workers=min(workers, len(tasks)),
            timeout_s=SKETCH_TIMEOUT_S, log_every=10, verb="clean: sketched row groups:",
            initializer=functools.partial(_init_worker, settings, index))
    else:
        _init_worker(settings, index)
        outcomes = map_with_timeout(_sketch_row_group, [(t,) for t in tasks], workers=0,
                                    timeout_s=SKETCH_TIMEOUT_S, log_every=10,
                                    verb="clean: sketched row groups:")
    for (path, group), outcome in zip(tasks, outcomes):
        if outcome.error is not None:
            raise RuntimeError(f"{path}: row group {group}: {outcome.error}")
    return [o.value for o in outcomes]


@dataclass
class CleanPlan:
    """Which rows of each normalized file survive, and why the others do not."""

    keep: list[np.ndarray]  # per input file: bool per row
    rejected: list[dict] = field(default_factory=list)  # REJECTED_QUERY rows
    counts: dict = field(default_factory=dict)


def _settings(filters: dict | None, decontamination: dict | None, near_dedup: dict | None
              ) -> tuple[dict, dict, MinHashSettings | None]:
    filters = _resolve(filters, DEFAULT_FILTERS, "queries.filters")
    decon = _resolve(decontamination, DEFAULT_DECONTAMINATION, "queries.decontamination")
    near = _resolve(near_dedup, DEFAULT_NEAR_DEDUP, "queries.near_dedup")
    enabled = near.pop("enabled")
    return filters, decon, (MinHashSettings(**near) if enabled else None)


def _step(counts: dict, name: str, n_in: int, alive: np.ndarray, rejected: int,
          **extra: Any) -> None:
    """Record one step; ``kept`` is counted from the survivors, ``rejected`` from the
    records written, so ``in == kept + rejected`` is a real check."""
    counts["steps"][name] = {"in": n_in, "kept": int(alive.sum()), "rejected": rejected,
                             **extra}


def plan_clean(paths: list[str], benchmark_texts: dict[str, list[tuple[str, str]]],
               filters: dict | None = None, decontamination: dict | None = None,
               near_dedup: dict | None = None, workers: int = 1) -> CleanPlan:
    """Filters -> n-gram decontamination -> exact dedup -> near dedup over the
    NORMALIZED_QUERY files ``paths`` (in order: the first passing occurrence of a
    duplicate is the one kept). Raises RuntimeError if any step's ``in != kept +
    rejected``."""
    filters, decon, near = _settings(filters, decontamination, near_dedup)
    index = NgramIndex(benchmark_texts, decon["ngram"])
    paths = [str(p) for p in paths]
    started = time.monotonic()
    sketches = _sketch_all(paths, _SketchSettings(filters, near), index, workers)
    log.info("clean: sketches done in %.1f s", time.monotonic() - started)

    ids = pa.concat_tables([pq.read_table(p, columns=["query_id", "source", "category", "meta"])
                            for p in paths]).combine_chunks()
    sizes = [pq.ParquetFile(p).metadata.num_rows for p in paths]
    n = sum(sizes)
    starts = np.concatenate([[0], np.cumsum([len(s.exact) for s in sketches])])
    alive = np.ones(n, dtype=bool)
    rejected: list[dict] = []
    counts: dict = {"in": n, "steps": {}}

    def reject(rows: np.ndarray | list[int], stage: str, reasons: list[str],
               details: list[dict]) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return
        picked = ids.take(pa.array(rows)).to_pylist()
        for q, reason, detail in zip(picked, reasons, details):
            # the source row, since a duplicate can share its query_id with the kept copy
            source_id = json.loads(q["meta"]).get("source_id") if q["meta"] else None
            rejected.append(_rejected(q["query_id"], q["source"], q["category"], stage,
                                      reason, {**detail, "source_id": source_id}))
        alive[rows] = False

    def kept_as(rows: np.ndarray) -> list[dict]:
        return ids.take(pa.array(np.asarray(rows, dtype=np.int64))).to_pylist()

    # Filters and decontamination first: they judge each row on its own, and a row that
    # fails them must not be the copy a duplicate group keeps (dedup first would drop
    # the whole group with it). A row both duplicated and failing is recorded as failing.
    # 1. filters, in order; the first failing one is recorded
    n_in = int(alive.sum())
    failed = {int(starts[i]) + r: f for i, s in enumerate(sketches) for r, f in s.failed.items()}
    rows = sorted(r for r in failed if alive[r])
    reject(rows, "filter", [failed[r][1] for r in rows],
           [{"filter": failed[r][0], **failed[r][2]} for r in rows])
    by_filter = dict(Counter(failed[r][0] for r in rows))
    _step(counts, "filter", n_in, alive, len(rows), by_filter=by_filter,
          thresholds=dict(filters))
    log.info("filters: %d -> %d %s", n_in, int(alive.sum()), by_filter)

    # 2. decontamination against the benchmarks' word n-grams
    n_in = int(alive.sum())
    hits = {int(starts[i]) + r: h for i, s in enumerate(sketches)
            for r, h in s.contaminated.items()}
    rows = sorted(r for r in hits if alive[r])
    reject(rows, "decontaminate",
           [f"{decon['ngram']}-gram overlap with {hits[r]['benchmark']}/{hits[r]['item_id']}"
            for r in rows], [hits[r] for r in rows])
    by_benchmark = dict(Counter(hits[r]["benchmark"] for r in rows))
    _step(counts, "decontaminate", n_in, alive, len(rows), ngram=decon["ngram"],
          benchmark_items=index.items, by_benchmark=by_benchmark)
    log.info("decontamination (%d-grams, %d benchmark items): %d -> %d %s", index.n,
             index.items, n_in, int(alive.sum()), by_benchmark)

    # 3. exact duplicates of the lowercased normalized text: the first occurrence is kept
    n_in = int(alive.sum())
    live = np.flatnonzero(alive)
    exact = np.concatenate([s.exact for s in sketches]) if n else np.zeros((0, 2), np.uint64)
    key = np.ascontiguousarray(exact[live]).view(np.dtype((np.void, 16))).ravel()
    _, first_index, inverse = np.unique(key, return_index=True, return_inverse=True)
    first = live[first_index[inverse.ravel()]]
    is_dup = first != live
    dups = live[is_dup]
    kept = kept_as(first[is_dup])
    reject(dups, "dedup", ["exact duplicate"] * len(dups),
           [{"kept_query_id": k["query_id"], "kept_source": k["source"]} for k in kept])
    _step(counts, "exact_dedup", n_in, alive, len(dups))
    log.info("exact dedup: %d -> %d", n_in, int(alive.sum()))

    # 4. near duplicates: MinHash LSH candidates, confirmed by exact Jaccard
    n_in = int(alive.sum())
    if near is not None:
        bands = np.concatenate([s.bands for s in sketches]) if n else np.zeros((0, near.bands))

        def shingles_of(rows: list[int]) -> dict[int, np.ndarray]:
            return dict(zip(rows, query_sketch.shingle_sets(
                _texts_at(paths, sizes, rows), near.shingle)))

        dropped = query_sketch.resolve_near_duplicates(bands, alive.copy(), shingles_of, near)
        rows = sorted(dropped)
        kept = kept_as([dropped[r][0] for r in rows])
        partner = kept_as([dropped[r][2] for r in rows])
        reject(rows, "dedup",
               [f"near duplicate (jaccard {dropped[r][1]:.3f} >= {near.threshold})" for r in rows],
               [{"kept_query_id": k["query_id"], "kept_source": k["source"],
                 "matched_query_id": m["query_id"], "jaccard": round(dropped[r][1], 4),
                 "near": True} for r, k, m in zip(rows, kept, partner)])
        _step(counts, "near_dedup", n_in, alive, len(rows), threshold=near.threshold,
              shingle=near.shingle, num_perm=near.num_perm, bands=near.bands,
              candidate_probability_at_threshold=round(
                  near.candidate_probability(near.threshold), 6))
        log.info("near dedup (jaccard >= %s): %d -> %d", near.threshold, n_in, int(alive.sum()))
    else:
        _step(counts, "near_dedup", n_in, alive, 0, enabled=False)

    counts["kept"] = int(alive.sum())
    counts["rejected"] = dict(Counter(r["stage"] for r in rejected))
    for name, step in counts["steps"].items():
        if step["in"] != step["kept"] + step["rejected"]:
            raise RuntimeError(f"query accounting of step {name} does not add up: {step}")
    if counts["in"] != counts["kept"] + sum(counts["rejected"].values()):
        raise RuntimeError(f"query accounting does not add up: {counts}")
    kept_ids = ids.column("query_id").filter(pa.array(alive))
    if pc.count_distinct(kept_ids).as_py() != len(kept_ids):
        raise RuntimeError("query_id not unique after dedup")
    log.info("clean: %s in %.1f s", {k: v for k, v in counts.items() if k != "steps"},
             time.monotonic() - started)
    keep = [alive[a:b] for a, b in zip(np.cumsum([0] + sizes[:-1]), np.cumsum(sizes))]
    return CleanPlan(keep=keep, rejected=rejected, counts=counts)


def _texts_at(paths: list[str], sizes: list[int], rows: list[int]) -> list[str]:
    """The ``text`` of global rows ``rows`` (in that order), reading each file once."""
    bounds = np.cumsum([0] + sizes)
    rows_arr = np.asarray(rows, dtype=np.int64)
    which = np.searchsorted(bounds, rows_arr, side="right") - 1
    out: list[str | None] = [None] * len(rows)
    for f in np.unique(which):
        pos = np.flatnonzero(which == f)
        column = pq.read_table(paths[f], columns=["text"]).column("text")
        picked = column.take(pa.array(rows_arr[pos] - bounds[f])).to_pylist()
        for p, text in zip(pos, picked):
            out[p] = text
    return out  # type: ignore[return-value]


def write_clean(paths: list[str], plan: CleanPlan, out: str) -> int:
    """Stream the kept rows of ``paths`` into ``out`` (QUERY), row group by row group."""
    with ParquetBatchWriter(out, schemas.QUERY) as writer:
        for path, keep in zip(paths, plan.keep):
            f = pq.ParquetFile(path)
            start = 0
            for g in range(f.num_row_groups):
                group = f.read_row_group(g, columns=schemas.QUERY.names)
                mask = keep[start:start + group.num_rows]
                start += group.num_rows
                writer.write(group.filter(pa.array(mask)))
            if start != len(keep):
                raise RuntimeError(f"{path}: {start} rows read, plan has {len(keep)}")
        if writer.rows != plan.counts["kept"]:  # inside: a failed check leaves no file
            raise RuntimeError(f"wrote {writer.rows} clean queries, the plan keeps "
                               f"{plan.counts['kept']}")
    return writer.rows


def clean_queries(
    queries: list[dict],
    benchmark_texts: dict[str, list[tuple[str, str]]],
    filters: dict | None = None,
    decontamination: dict | None = None,
    near_dedup: dict | None = None,
    workdir: str | None = None,
) -> tuple[list[dict], list[dict], dict]:
    """:func:`plan_clean` on in-memory QUERY rows (tests, small studies): returns (kept QUERY
    rows, REJECTED_QUERY rows, counts). ``workdir`` holds the temporary parquet file."""
    import tempfile

    rows = [{**q, "text": q.get("text") or user_text(q["messages"])} for q in queries]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = os.path.join(tmp, "normalized.parquet")
        with ParquetBatchWriter(path, schemas.NORMALIZED_QUERY) as w:
            w.write(rows)
        plan = plan_clean([path], benchmark_texts, filters, decontamination, near_dedup)
    kept = [{k: v for k, v in q.items() if k != "text"} for q, keep in zip(rows, plan.keep[0])
            if keep]
    return kept, plan.rejected, plan.counts


# --------------------------------------------------------------------------- benchmarks


def _benchmark_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # a messages list: the user turns
        parts = [m.get("content", "") for m in value
                 if isinstance(m, dict) and m.get("role") == "user"]
        if parts and all(isinstance(p, str) for p in parts):
            return "\n".join(parts)
    return None



def _benchmark_rows(spec: dict, name: str) -> Iterator[tuple[str, dict]]:
    """(location, row) of a benchmark: a local jsonl file or an HF dataset (pinned)."""
    fmt = spec.get("format", "jsonl")
    if fmt == "hf":
        import datasets  # only hub benchmarks need it

        rows = datasets.load_dataset(spec["repo_id"], name=spec.get("config_name"),
                                     split=spec["split"], revision=spec["revision"],
                                     streaming=True)
        where = f"hf:{spec['repo_id']}@{spec['revision']}"
        for i, obj in enumerate(rows, start=1):
            yield f"{where}:{i}", obj
        return
    if fmt != "jsonl":
        raise ValueError(f"benchmark {name}: format {fmt!r} is not supported (jsonl | hf)")
    raw_path = str(spec["path"])
    path = Path(os.path.expandvars(raw_path))
    if not path.is_file():
        hint = " (an environment variable is not set?)" if "$" in str(path) else ""
        raise FileNotFoundError(f"benchmark {name}: no such file {path} "
                                f"(path in config: {raw_path}){hint}")
    for lineno, obj in iter_jsonl(path):
        yield f"{path}:{lineno}", obj


# The keys of a benchmark spec that decontamination reads (load_benchmark_texts): only
# these are its rules' params, so an evaluation-only change (k, jobs, max_problems, the
# date window) never reruns the query stage and everything after it.
DECONTAMINATION_KEYS = ("format", "path", "repo_id", "revision", "config_name", "split",
                        "id_field", "text_field", "filter")


def decontamination_spec(spec: dict) -> dict:
    """What decontamination reads of a benchmark spec (:data:`DECONTAMINATION_KEYS`)."""
    return {k: spec[k] for k in DECONTAMINATION_KEYS if k in spec}


def load_benchmark_texts(spec: dict, name: str | None = None) -> list[tuple[str, str]]:
    """(item_id, text) of a benchmark spec, for decontamination.

    ``spec``: ``{"format": "jsonl", "path", "id_field": "id", "text_field": "prompt",
    "filter": {field: value} | null}`` or ``{"format": "hf", "repo_id", "revision",
    "split", "config_name", ...}`` (streamed with ``datasets``). Other keys, used by the
    eval stage, are ignored: every item is decontaminated against, whatever its date.
    """
    name = name or spec.get("name") or "<unnamed>"
    id_field = spec.get("id_field") or "id"
    text_field = spec.get("text_field") or "prompt"
    where_filter = spec.get("filter") or {}
    out: list[tuple[str, str]] = []
    for where, obj in _benchmark_rows(spec, name):
        if any(obj.get(k) != v for k, v in where_filter.items()):
            continue
        if obj.get(id_field) is None:
            raise ValueError(f"{where}: field '{id_field}': missing (benchmark {name})")
        text = _benchmark_text(obj.get(text_field))
        if text is None:
            raise ValueError(f"{where}: field '{text_field}': expected a string "
                             f"(benchmark {name})")
        out.append((str(obj[id_field]), text))
    if not out:
        log.warning("benchmark %s: no items (filter %s)", name, where_filter)
    log.info("benchmark %s: %d items", name, len(out))
    return out


def benchmark_fingerprint(spec: dict, items: int) -> dict:
    if spec.get("format", "jsonl") == "hf":
        return {k: spec.get(k) for k in ("repo_id", "revision", "config_name", "split")} | {
            "items": items}
    path = os.path.expandvars(str(spec["path"]))
    from distillab.io import sha256_file

    return {"path": path, "sha256": sha256_file(path), "items": items}


# --------------------------------------------------------------------------- shards


def shard_of(query_id: str, n_shards: int) -> int:
    """Stable shard of a query: int(sha256(query_id)) mod n_shards."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    return int(hashlib.sha256(query_id.encode("utf-8")).hexdigest(), 16) % n_shards



def write_shards(clean_path: str, out_paths: list[str]) -> list[int]:
    """Split clean.parquet into ``len(out_paths)`` QUERY tables; ``out_paths[i]`` holds
    shard ``i``. Every shard is written, an empty one as an empty table with the schema."""
    table = read_table(clean_path, schemas.QUERY)
    n = len(out_paths)
    ids = table.column("query_id").to_pylist()
    shard = np.fromiter((shard_of(q, n) for q in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(shard, kind="stable")  # keeps clean order within a shard
    bounds = np.searchsorted(shard[order], np.arange(n + 1))
    # One take into shard order, then zero-copy slices: a take per shard would cost
    # O(table) each on a many-chunk table (512 shards x 1.7M rows: 100 s, measured).
    by_shard = table.take(pa.array(order))
    sizes = []
    for i, path in enumerate(out_paths):
        sizes.append(write_table(path, by_shard.slice(bounds[i], bounds[i + 1] - bounds[i]),
                                 schemas.QUERY))
    log.info("shards: %d queries -> %d shards (%d..%d per shard)", table.num_rows, n,
             min(sizes), max(sizes))
    return sizes


# --------------------------------------------------------------------------- snakemake


def _param(smk: Any, name: str, default: Any = None) -> Any:
    return getattr(smk.params, name, default)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [str(value)]
    return [str(v) for v in value]


def normalize_from_snakemake(smk: Any, prov: Any) -> None:
    """params: source (spec), on_bad_row, max_query_chars; output: queries, rejected."""
    spec = dict(_param(smk, "source"))
    counts = write_normalized(
        spec, smk.output.queries, smk.output.rejected,
        on_bad_row=_param(smk, "on_bad_row", "fail") or "fail",
        max_query_chars=_param(smk, "max_query_chars") or DEFAULT_MAX_QUERY_CHARS)
    prov.add(source=source_fingerprint(spec),
             counts={"in": counts["rows"], "kept": counts["kept"],
                     "rejected": {k: counts[k] for k in ("normalize", "select") if counts[k]}})


def clean_from_snakemake(smk: Any, prov: Any) -> None:
    """input: normalized (list), rejected (list); params: filters, decontamination,
    near_dedup, benchmarks (name -> spec); threads: worker processes; output: clean,
    rejected (the normalize rejects + the clean rejects)."""
    decontamination = dict(_param(smk, "decontamination") or {})
    benchmarks = dict(_param(smk, "benchmarks") or {})
    names = decontamination.get("benchmarks")
    names = list(benchmarks) if names is None else list(names)
    missing = [b for b in names if b not in benchmarks]
    if missing:
        raise ValueError(f"decontamination benchmarks {missing} have no spec "
                         f"(known: {sorted(benchmarks)})")
    texts = {b: load_benchmark_texts(benchmarks[b], name=b) for b in names}
    paths = _as_list(smk.input.normalized)
    plan = plan_clean(paths, texts, _param(smk, "filters") or {}, decontamination,
                      _param(smk, "near_dedup") or {}, workers=int(getattr(smk, "threads", 1)))
    write_clean(paths, plan, smk.output.clean)
    upstream = 0
    upstream_counts: Counter = Counter()
    with ParquetBatchWriter(smk.output.rejected, schemas.REJECTED_QUERY) as out:
        for path in _as_list(smk.input.rejected):
            table = read_table(path, schemas.REJECTED_QUERY)
            upstream += table.num_rows
            upstream_counts.update(table.column("stage").to_pylist())
            out.write(table)
        out.write(plan.rejected)
    log.info("query stage: %d normalized (+%d rejected upstream %s) -> %d clean; %d rejected "
             "rows written", plan.counts["in"], upstream, dict(upstream_counts),
             plan.counts["kept"], out.rows)
    prov.add(counts=plan.counts, upstream_rejected=dict(upstream_counts),
             benchmarks={b: benchmark_fingerprint(benchmarks[b], len(texts[b])) for b in names})


def shard_from_snakemake(smk: Any, prov: Any) -> None:
    """input: clean; output: shards (or all outputs), the shard paths in shard order.

    When the file names are numbers (``000.parquet``, ...) they must be 0..n-1 in order,
    so that file ``007`` holds exactly the queries with ``shard_of(id, n) == 7``."""
    clean = smk.input.clean if hasattr(smk.input, "clean") else smk.input[0]
    outputs = _as_list(getattr(smk.output, "shards", None) or list(smk.output))
    stems = [Path(p).name.split(".")[0] for p in outputs]
    if all(st.isdigit() for st in stems) and [int(st) for st in stems] != list(range(len(stems))):
        raise ValueError(f"shard outputs are not shards 0..{len(stems) - 1} in order: {stems}")
    sizes = write_shards(str(clean), outputs)
    n_in = pq.read_metadata(str(clean)).num_rows
    if n_in != sum(sizes):
        raise RuntimeError(f"shards hold {sum(sizes)} queries, clean has {n_in}")
    prov.add(counts={"in": n_in, "per_shard": sizes})


__all__ = [
    "DEFAULT_FILTERS",
    "NgramIndex",
    "check_filters",
    "clean_from_snakemake",
    "clean_queries",
    "failing_filters",
    "find_image",
    "find_url",
    "find_table",
    "iter_normalized",
    "load_benchmark_texts",
    "make_query_id",
    "non_ascii_ratio",
    "normalize_from_snakemake",
    "normalize_source",
    "normalize_text",
    "plan_clean",
    "shard_from_snakemake",
    "shard_of",
    "user_text",
    "word_ngrams",
    "write_clean",
    "write_normalized",
    "write_shards",
]
