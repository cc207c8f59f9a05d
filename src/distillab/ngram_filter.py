"""High-frequency n-gram filter at corpus scale (PAPER.md §5).

The paper: "any 20-token string that appears > 20 times in the whole dataset is
identified and removed". We count every n-token window (student tokenizer,
``add_special_tokens=False``) of every accepted response of one teacher, including
repeats inside one response, and flag each row holding a window that occurs more than
``max_count`` times; ``curate`` drops the flagged rows (policy ``drop_row``).

One teacher has ~1.9M responses and ~6.2B response tokens, so a Python dict or set of
n-grams is out of the question (billions of tuples). The filter instead works on 64-bit
hashes in numpy and spills them to disk:

1. **Pass 1** streams the parquet in record batches, tokenizes each batch with the Rust
   tokenizer's batch call (its own threads), hashes every n-token window that lies inside
   one row with vectorised uint64 arithmetic, and appends ``(hash uint64, row uint32)``
   records (12 bytes per window) to K partition files chosen by the hash's high bits.
2. **Counting** loads one partition at a time, sorts its hashes, keeps those occurring
   more than ``max_count`` times ("frequent") and adds, per row, the number of its windows
   whose hash is frequent. Every occurrence of a given hash lands in the same partition,
   so each count is global.
3. **Pass 2** re-tokenizes only the flagged rows to decode, for the report, one offending
   span per row and the text of the top frequent n-grams, and to check that the counts
   agree with pass 1.

Tokenization is the floor (measured: the rest of pass 1 runs while the tokenizer's
threads work on the next batch, see ``_prefetched``).

Resources: peak memory is about one partition (``12 * windows / K`` bytes, sorted copies
included a few times that) plus up to three record batches in flight with their tokens
(~100 bytes per token of numpy temporaries for the batch being hashed), plus 12 bytes per
row (n_tokens, offending-window counts); disk is 12 bytes per window (~74 GB for the
paper's 6.2B tokens, so point ``tmp_dir`` at scratch space), removed at the end even on
error. Measured figures: bench/ngram_filter_scale.py.

Hash collisions. A window's hash is a polynomial over splitmix64-mixed token ids modulo
2^64 (odd base), finished with the splitmix64 mixer, so distinct windows behave like
independent random 64-bit values. By the birthday bound, D distinct windows hold about
D²/2^65 colliding pairs: ~0.003 for 1e8 distinct windows, ~3 for 1e10 (the paper's
scale, where most windows are distinct). A collision merges the counts of two different
n-grams, so it can only *over*-count: a truly frequent n-gram is never missed, and a row
is flagged wrongly only if two colliding n-grams that each occur <= max_count times
together pass max_count. Almost every window occurs once or a few times, so for the
handful of expected colliding pairs that is a ~1e-4 event per teacher. Pass 2 also
compares every occurrence of every frequent hash with the first one seen and reports
mismatches as ``stats["hash_collisions"]`` (expected 0).
"""

from __future__ import annotations

import dataclasses

import itertools
import logging
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

POLICIES = ("drop_row",)
MAX_PARTITIONS = 4096

# Spill record: hash then row index, packed (12 bytes, no padding).
_RECORD = np.dtype([("h", "<u8"), ("r", "<u4")])
# Fixed constants: the hashes (and so the results and the top list's order) are identical
# across processes, runs and machines.
_BASE = np.uint64(0x9E3779B97F4A7C15 | 1)  # odd, so every power of it is invertible mod 2^64
_TOKEN_SEED = 0x5EED_0F_D15_711_1AB
_LOG_EVERY_S = 10.0
# Pass 2 keeps one token window per frequent n-gram to detect collisions; skip the check
# beyond this many bytes (only a pathological dataset has ~10M distinct frequent n-grams).
_REPRESENTATIVE_BUDGET = 512 << 20
_CHECK_CHUNK = 1 << 18


@dataclass(frozen=True)
class NgramFilterSpec:
    """What counts as high-frequency: a span of ``n`` tokens occurring more than
    ``max_count`` times in one teacher's accepted data. ``policy`` names what ``curate``
    does with a row holding one; ``drop_row`` is the paper's (and the only one so far) —
    the field exists so the config can name it and a later policy is not a schema change."""

    n: int = 20
    max_count: int = 20
    policy: str = "drop_row"

    def __post_init__(self) -> None:
        for name in ("n", "max_count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"NgramFilterSpec.{name} must be an integer >= 1, got {value!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"NgramFilterSpec.policy must be one of {list(POLICIES)}, "
                             f"got {self.policy!r}")


@dataclass
class NgramResult:
    """What the filter found.

    ``rows``: one row per input row, in input order — ``query_id`` (string), ``n_tokens``
    (int32, the response's token count under the tokenizer; later stages want it),
    ``hf_windows`` (int32, the row's n-token windows that are high-frequency; > 0 means
    flagged) and ``example_span`` (string, the decoded first offending window; null when
    the row is not flagged).
    ``top``: the most frequent high-frequency n-grams, ``{count, text, rows}`` (occurrences,
    decoded text, rows holding it), most frequent first.
    ``stats``: counts, sizes and per-phase timings (see :func:`find_high_frequency_ngrams`).
    """

    rows: pa.Table
    top: list[dict]
    stats: dict = field(default_factory=dict)

    @property
    def flagged_ids(self) -> list[str]:
        """query_ids of the rows the ``drop_row`` policy removes."""
        mask = np.asarray(self.rows.column("hf_windows").to_numpy()) > 0
        ids = self.rows.column("query_id").to_pylist()
        return [q for q, m in zip(ids, mask) if m]


# --- hashing ------------------------------------------------------------------------------

def _splitmix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place on a uint64 array (wraps mod 2^64): makes every
    output bit depend on every input bit, so the high bits that pick a partition are
    uniform."""
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


class _WindowHasher:
    """Hashes of all n-token windows inside rows of a flat token array."""

    def __init__(self, n: int):
        self.n = n
        self._table = np.empty(0, dtype=np.uint64)

    def _mixed(self, ids: np.ndarray) -> np.ndarray:
        """Token ids -> pseudo-random 64-bit values (a table grown on demand: one gather)."""
        top = int(ids.max()) + 1 if ids.size else 0
        if top > self._table.size:
            size = max(top, 2 * self._table.size, 1 << 16)
            self._table = _splitmix64(np.arange(size, dtype=np.uint64) + np.uint64(_TOKEN_SEED))
        return self._table[ids]

    def window_starts(self, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(start in the flat array, row in the batch) of every window inside one row."""
        n = self.n
        counts = np.maximum(lengths - n + 1, 0)
        total = int(counts.sum())
        row = np.repeat(np.arange(lengths.size, dtype=np.int64), counts)
        offsets = np.zeros(lengths.size, dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        first = np.zeros(lengths.size, dtype=np.int64)
        np.cumsum(counts[:-1], out=first[1:])
        start = np.arange(total, dtype=np.int64) + (offsets - first)[row]
        return start, row

    def hashes(self, ids: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hash uint64, start int64, row-in-batch int64) of every within-row window.

        hash = mix(sum_i t[j+i] * B^(n-1-i) mod 2^64) with t = the mixed token values:
        n in-place multiply-adds over the flat array (Horner), then the windows that cross
        a row boundary are dropped."""
        start, row = self.window_starts(lengths)
        if start.size == 0:
            return np.empty(0, np.uint64), start, row
        n = self.n
        t = self._mixed(ids)
        span = t.size - n + 1
        h = t[:span].copy()
        for i in range(1, n):
            np.multiply(h, _BASE, out=h)
            np.add(h, t[i:i + span], out=h)
        return _splitmix64(h[start]), start, row


# --- tokenization -------------------------------------------------------------------------

class _Encoder:
    """The tokenizer's batch call, returning flat numpy ids.

    For a fast (Rust-backed) HF tokenizer this calls its backend ``encode_batch_fast`` on a
    private copy of the backend with truncation and padding off and the tokenizer's
    ``split_special_tokens`` setting — exactly what ``tokenizer(texts,
    add_special_tokens=False)`` does, minus building Python dicts of every output (tested
    to give the same ids). Other tokenizers go through their ``__call__``."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None and type(tokenizer).__module__.startswith("tokenizers"):
            backend = tokenizer  # a bare tokenizers.Tokenizer
        self.backend = None
        if backend is not None:
            from tokenizers import Tokenizer

            copy = Tokenizer.from_str(backend.to_str())
            copy.no_truncation()
            copy.no_padding()
            split = getattr(tokenizer, "split_special_tokens", None)
            copy.encode_special_tokens = bool(split if split is not None
                                               else backend.encode_special_tokens)
            self.backend = copy
        self._encode = (getattr(self.backend, "encode_batch_fast", None)
                        or getattr(self.backend, "encode_batch", None))

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(flat ids uint32, per-text lengths int64)."""
        if not texts:
            return np.empty(0, np.uint32), np.empty(0, np.int64)
        if self.backend is not None:
            lists = [e.ids for e in self._encode(texts, add_special_tokens=False)]
        else:
            lists = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        ids = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.uint32,
                          count=int(lengths.sum()))
        return ids, lengths

    def decode(self, windows: Sequence[Sequence[int]]) -> list[str]:
        if not windows:
            return []
        windows = [w.tolist() if isinstance(w, np.ndarray) else [int(t) for t in w]
                   for w in windows]
        if self.backend is not None:
            return self.backend.decode_batch(windows, skip_special_tokens=False)
        return [self.tokenizer.decode(w, skip_special_tokens=False) for w in windows]


# --- the filter ---------------------------------------------------------------------------

class _Progress:
    """Logs counts and rates every ~10 s (the rule's log file shows the job is alive)."""

    def __init__(self, phase: str, total_rows: int, enabled: bool):
        self.phase, self.total, self.enabled = phase, total_rows, enabled
        self.t0 = self.last = time.monotonic()

    def tick(self, rows: int, tokens: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < _LOG_EVERY_S:
            return
        self.last = now
        dt = max(now - self.t0, 1e-9)
        eta = (self.total - rows) / (rows / dt) if rows else float("nan")
        log.info("ngram %s: %d/%d rows (%.1f%%), %d tokens, %.0f rows/s, %.2fM tokens/s, "
                 "ETA %.0f s", self.phase, rows, self.total, 100 * rows / max(self.total, 1),
                 tokens, rows / dt, tokens / dt / 1e6, eta)


def default_partitions(n_rows: int) -> int:
    """K for ``n_rows``: a power of two, one per ~8k rows, between 1 and 256 (256 at the
    paper's 1.9M rows: ~24M windows, ~290 MB of records per partition at 3.3k tokens per
    response)."""
    want = max(1, math.ceil(n_rows / 8192))
    return int(min(256, 1 << (want - 1).bit_length()))


def _partition_of(h: np.ndarray, k: int) -> np.ndarray:
    """Partition index from the hash's high 32 bits: monotone in the hash, so partitions
    concatenated in order hold sorted hashes."""
    return (((h >> np.uint64(32)) * np.uint64(k)) >> np.uint64(32)).astype(np.uint16)


def _open_parquet(path: str | os.PathLike, columns: list[str]) -> pq.ParquetFile:
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    for column in columns:
        if column not in names:
            raise ValueError(f"{path}: no column {column!r} (columns: {names})")
    return pf


def _prefetched(items: Iterator[Any], work: Callable[[Any], Any]) -> Iterator[Any]:
    """Yield ``work(item)`` for each item, computing the next one in a worker thread while
    the caller handles the current one. The Rust tokenizer releases the GIL, so the numpy
    hashing and spill writes of batch k overlap the tokenization of batch k+1 instead of
    leaving the tokenizer's threads idle (at most 3 batches are alive at once)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ngram-tokenize") as pool:
        pending = None
        try:
            for item in items:
                nxt = pool.submit(work, item)
                if pending is not None:
                    yield pending.result()
                pending = nxt
            if pending is not None:
                yield pending.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _texts(batch: pa.RecordBatch, column: str) -> list[str]:
    values = batch.column(column).to_pylist()
    if None in values:
        values = ["" if v is None else v for v in values]
    return values


def find_high_frequency_ngrams(
    parquet_path: str | os.PathLike,
    tokenizer: Any,
    spec: NgramFilterSpec = NgramFilterSpec(),
    text_column: str = "text",
    id_column: str = "query_id",
    tmp_dir: str | os.PathLike | None = None,
    batch_rows: int = 4096,
    partitions: int | None = None,
    top_k: int = 20,
    progress: bool = True,
) -> NgramResult:
    """Find the rows of ``parquet_path`` holding an n-token span that occurs more than
    ``spec.max_count`` times over all rows (all windows, repeats inside a row included).

    ``tokenizer``: an HF tokenizer (the student's; a fast one is used through its Rust
    batch call) or a ``tokenizers.Tokenizer``; tokens are counted without special tokens.
    ``tmp_dir``: where the hash partitions are spilled (12 bytes per window; default: the
    system temp dir); the spill directory is removed on return and on error.
    ``partitions``: K (default :func:`default_partitions` of the row count, at most
    4096); memory is about one partition plus a few batches of ``batch_rows`` rows.
    Neither changes the result.

    ``stats`` holds: rows, tokens, windows, distinct_windows, frequent_ngrams,
    frequent_windows, flagged_rows, null_texts, hash_collisions (None if not checked),
    partitions, bytes_spilled, spec and elapsed_s per phase (pass1, count, pass2, total).
    """
    if not isinstance(spec, NgramFilterSpec):
        raise TypeError(f"spec must be an NgramFilterSpec, got {type(spec).__name__}")
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    t_start = time.monotonic()
    pf = _open_parquet(parquet_path, [id_column, text_column])
    n_rows = pf.metadata.num_rows
    if n_rows >= 1 << 32:
        raise ValueError(f"{parquet_path}: {n_rows} rows; row indices are stored as uint32")
    k = default_partitions(n_rows) if partitions is None else int(partitions)
    if not 1 <= k <= MAX_PARTITIONS:  # one open file each during pass 1
        raise ValueError(f"partitions must be between 1 and {MAX_PARTITIONS}, got {partitions}")
    encoder = _Encoder(tokenizer)
    hasher = _WindowHasher(spec.n)
    log.info("ngram filter on %s: %d rows, n=%d, max_count=%d, %d partitions, batches of %d "
             "(TOKENIZERS_PARALLELISM=%s)", parquet_path, n_rows, spec.n, spec.max_count, k,
             batch_rows, os.environ.get("TOKENIZERS_PARALLELISM", "unset"))

    spill = Path(tempfile.mkdtemp(prefix="ngram-filter-", dir=tmp_dir))
    files: list = []
    try:
        # ---- pass 1: tokenize, hash, spill ----
        paths = [spill / f"part-{i:05d}.bin" for i in range(k)]
        files = [open(p, "wb") for p in paths]
        n_tokens = np.zeros(n_rows, dtype=np.int32)
        id_chunks: list[pa.Array] = []
        row0 = windows = tokens = null_texts = 0
        prog = _Progress("pass 1", n_rows, progress)
        batches = pf.iter_batches(batch_size=batch_rows, columns=[id_column, text_column])
        for batch, (ids, lengths) in _prefetched(
                batches, lambda b: (b, encoder.encode(_texts(b, text_column)))):
            id_chunks.append(batch.column(id_column))
            null_texts += batch.column(text_column).null_count
            b = lengths.size
            n_tokens[row0:row0 + b] = lengths
            h, _, row = hasher.hashes(ids, lengths)
            if h.size:
                part = _partition_of(h, k)
                order = np.argsort(part, kind="stable")  # radix sort on 16-bit keys
                rec = np.empty(h.size, dtype=_RECORD)
                rec["h"] = h[order]
                rec["r"] = (row + row0)[order]
                bounds = np.zeros(k + 1, dtype=np.int64)
                np.cumsum(np.bincount(part, minlength=k), out=bounds[1:])
                for i in np.flatnonzero(bounds[1:] > bounds[:-1]):
                    files[i].write(rec[bounds[i]:bounds[i + 1]].data)
            row0 += b
            windows += int(h.size)
            tokens += int(lengths.sum())
            prog.tick(row0, tokens)
        for f in files:
            f.close()
        t_pass1 = time.monotonic()
        log.info("ngram pass 1: %d rows, %d tokens, %d windows spilled (%.2f GB) in %.1f s "
                 "(%.2fM tokens/s)", row0, tokens, windows, windows * _RECORD.itemsize / 1e9,
                 t_pass1 - t_start, tokens / max(t_pass1 - t_start, 1e-9) / 1e6)

        # ---- counting: one partition at a time ----
        hf = np.zeros(n_rows, dtype=np.int64)
        frequent: list[np.ndarray] = []
        top: list[tuple[int, int, int]] = []  # (count, hash, rows)
        distinct = frequent_windows = 0
        last = time.monotonic()
        for i, p in enumerate(paths):
            rec = np.fromfile(p, dtype=_RECORD)
            p.unlink()
            if rec.size == 0:
                continue
            hs = np.sort(rec["h"])
            new = np.empty(hs.size, dtype=bool)
            new[0] = True
            np.not_equal(hs[1:], hs[:-1], out=new[1:])
            first = np.flatnonzero(new)
            counts = np.diff(np.append(first, hs.size))
            distinct += first.size
            keep = counts > spec.max_count
            del new
            if keep.any():
                f_hash, f_count = hs[first[keep]], counts[keep]
                frequent.append(f_hash)
                h = rec["h"]
                pos = np.searchsorted(f_hash, h)
                pos[pos == f_hash.size] = 0
                hit = f_hash[pos] == h
                hit_rows = rec["r"][hit]
                frequent_windows += hit_rows.size
                hf += np.bincount(hit_rows, minlength=n_rows)
                if top_k:
                    sel = np.argsort(-f_count, kind="stable")[:top_k]
                    # rows holding each candidate: distinct (hash, row) pairs
                    hit_pos = pos[hit]
                    cand = np.isin(hit_pos, sel)
                    pairs = np.unique((hit_pos[cand].astype(np.uint64) << np.uint64(32))
                                      | hit_rows[cand].astype(np.uint64))
                    n_rows_of = np.bincount((pairs >> np.uint64(32)).astype(np.int64),
                                            minlength=f_hash.size)
                    top.extend((int(f_count[j]), int(f_hash[j]), int(n_rows_of[j])) for j in sel)
                    top = sorted(top, key=lambda t: (-t[0], t[1]))[:top_k]
            del rec, hs
            if progress and time.monotonic() - last >= _LOG_EVERY_S:
                last = time.monotonic()
                log.info("ngram count: %d/%d partitions, %d distinct windows, %d frequent",
                         i + 1, k, distinct, sum(f.size for f in frequent))
        frequent_hashes = np.concatenate(frequent) if frequent else np.empty(0, np.uint64)
        assert np.all(frequent_hashes[1:] > frequent_hashes[:-1]), "partitions out of order"
        flagged = np.flatnonzero(hf)
        t_count = time.monotonic()
        log.info("ngram count: %d distinct windows, %d frequent n-grams (%d occurrences), "
                 "%d of %d rows flagged, in %.1f s", distinct, frequent_hashes.size,
                 frequent_windows, flagged.size, n_rows, t_count - t_pass1)

        # ---- pass 2: only the flagged rows ----
        spans, top_text, collisions = _second_pass(
            pf, text_column, batch_rows, encoder, hasher, hf, flagged, frequent_hashes,
            [t[1] for t in top], progress)
        t_pass2 = time.monotonic()
        log.info("ngram pass 2: %d flagged rows re-read in %.1f s", flagged.size,
                 t_pass2 - t_count)
    finally:
        for f in files:
            f.close()
        shutil.rmtree(spill, ignore_errors=True)

    example = [None] * n_rows
    for r, s in zip(flagged.tolist(), spans):
        example[r] = s
    query_ids = pa.concat_arrays([c.cast(pa.string()) for c in id_chunks]) if id_chunks \
        else pa.array([], pa.string())
    rows = pa.table({
        "query_id": query_ids,
        "n_tokens": pa.array(n_tokens, pa.int32()),
        "hf_windows": pa.array(np.minimum(hf, np.iinfo(np.int32).max).astype(np.int32)),
        "example_span": pa.array(example, pa.string()),
    })
    top_list = [{"count": c, "text": top_text.get(h), "rows": nr} for c, h, nr in top]
    stats = {
        "rows": n_rows, "tokens": tokens, "windows": windows, "distinct_windows": distinct,
        "frequent_ngrams": int(frequent_hashes.size), "frequent_windows": int(frequent_windows),
        "flagged_rows": int(flagged.size), "null_texts": int(null_texts),
        "hash_collisions": collisions, "partitions": k,
        "bytes_spilled": windows * _RECORD.itemsize,
        "spec": {"n": spec.n, "max_count": spec.max_count, "policy": spec.policy},
        "elapsed_s": {"pass1": round(t_pass1 - t_start, 3), "count": round(t_count - t_pass1, 3),
                      "pass2": round(t_pass2 - t_count, 3),
                      "total": round(time.monotonic() - t_start, 3)},
    }
    return NgramResult(rows=rows, top=top_list, stats=stats)


def _second_pass(pf: pq.ParquetFile, text_column: str, batch_rows: int, encoder: _Encoder,
                 hasher: _WindowHasher, hf: np.ndarray, flagged: np.ndarray,
                 frequent: np.ndarray, top_hashes: list[int], progress: bool
                 ) -> tuple[list[str], dict[int, str], int | None]:
    """Re-tokenize the flagged rows: (first offending span of each flagged row, in order;
    text of each top hash; collisions seen, or None when the check was skipped)."""
    n = hasher.n
    spans: list[str] = []
    top_text: dict[int, str] = {}
    if flagged.size == 0:
        return spans, top_text, 0
    want_top = np.array(sorted(set(top_hashes)), dtype=np.uint64)
    check = frequent.size * n * 4 <= _REPRESENTATIVE_BUDGET
    if not check:
        log.warning("ngram pass 2: %d frequent n-grams; collision check skipped", frequent.size)
    rep = np.zeros((frequent.size if check else 0, n), dtype=np.uint32)
    has_rep = np.zeros(frequent.size if check else 0, dtype=bool)
    collisions = 0
    is_flagged = np.zeros(hf.size, dtype=bool)
    is_flagged[flagged] = True
    done = done_tokens = 0
    prog = _Progress("pass 2", int(flagged.size), progress)

    def select(item: tuple[int, pa.RecordBatch]):
        lo, batch = item
        local = np.flatnonzero(is_flagged[lo:lo + batch.num_rows])
        if not local.size:
            return lo, local, None, None
        return lo, local, *encoder.encode(_texts(batch.take(pa.array(local)), text_column))

    def starts() -> Iterator[tuple[int, pa.RecordBatch]]:
        lo = 0
        for batch in pf.iter_batches(batch_size=batch_rows, columns=[text_column]):
            yield lo, batch
            lo += batch.num_rows

    for row0, local, ids, lengths in _prefetched(starts(), select):
        if local.size:
            h, start, row = hasher.hashes(ids, lengths)
            pos = np.searchsorted(frequent, h)
            pos[pos == frequent.size] = 0
            hit = frequent[pos] == h
            got = np.bincount(row[hit], minlength=local.size)
            if not np.array_equal(got, hf[row0 + local]):
                raise RuntimeError("ngram pass 2: offending-window counts differ from pass 1 "
                                   "(is the tokenizer deterministic?)")
            hit_idx = np.flatnonzero(hit)
            # the first offending window of each row (windows come in row order)
            _, first = np.unique(row[hit_idx], return_index=True)
            spans.extend(encoder.decode([ids[s:s + n] for s in start[hit_idx[first]]]))
            if len(top_text) < want_top.size:
                hh = h[hit_idx]
                tpos = np.searchsorted(want_top, hh)
                tpos[tpos == want_top.size] = 0
                in_top = np.flatnonzero(want_top[tpos] == hh)
                uniq, at = np.unique(hh[in_top], return_index=True)
                for key, j in zip(uniq.tolist(), in_top[at].tolist()):
                    if key not in top_text:
                        s = start[hit_idx[j]]
                        top_text[key] = encoder.decode([ids[s:s + n]])[0]
            if check:
                # compare each occurrence with the first one seen, a chunk of windows at a
                # time (a batch of long repetition loops can hold many millions of hits)
                for c in range(0, hit_idx.size, _CHECK_CHUNK):
                    chunk = hit_idx[c:c + _CHECK_CHUNK]
                    win = ids[start[chunk][:, None] + np.arange(n)]  # (hits, n) windows
                    fidx = pos[chunk]
                    uniq, at = np.unique(fidx, return_index=True)
                    fresh = ~has_rep[uniq]
                    rep[uniq[fresh]] = win[at[fresh]]
                    has_rep[uniq[fresh]] = True
                    collisions += int(np.any(rep[fidx] != win, axis=1).sum())
            done += local.size
            done_tokens += ids.size
            prog.tick(done, done_tokens)
    if collisions:
        log.warning("ngram pass 2: %d windows share a frequent hash with a different n-gram "
                    "(64-bit hash collision; counts of those n-grams are over-estimates)",
                    collisions)
    return spans, top_text, (collisions if check else None)


# --- Snakemake adapter --------------------------------------------------------------------

def ngrams_from_snakemake(smk: Any, prov: Any) -> None:
    """Rule ``ngrams``: per-row flags (schemas.NGRAM_FLAGS) and the top list with stats."""
    from transformers import AutoTokenizer

    from distillab import schemas
    from distillab.io import write_json, write_table
    from distillab.models import load_location

    if not smk.params.spec:
        raise ValueError("rule ngrams: curation.ngram is null (the filter is off)")
    spec = NgramFilterSpec(**dict(smk.params.spec))
    path, revision = load_location(smk.input.tokenizer)
    tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
    tmp_dir = getattr(smk.resources, "tmpdir", None) or None
    result = find_high_frequency_ngrams(smk.input.accepted, tokenizer, spec, tmp_dir=tmp_dir)
    write_table(smk.output.flags, result.rows, schemas.NGRAM_FLAGS)
    write_json(smk.output.top, {"teacher": smk.wildcards.teacher,
                                "spec": dataclasses.asdict(spec), "stats": result.stats,
                                "top": result.top})
    log.info("teacher %s: %d of %d rows hold a high-frequency %d-gram", smk.wildcards.teacher,
             result.stats["flagged_rows"], result.stats["rows"], spec.n)
    prov.add(rows_in=result.stats["rows"], rows_flagged=result.stats["flagged_rows"],
             **{k: v for k, v in result.stats.items()
                if k in ("tokens", "frequent_ngrams", "hash_collisions", "bytes_spilled")})


__all__ = [
    "NgramFilterSpec",
    "NgramResult",
    "default_partitions",
    "find_high_frequency_ngrams",
    "ngrams_from_snakemake",
]
