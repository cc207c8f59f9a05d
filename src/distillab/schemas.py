"""The records of DESIGN.md §3, defined once as pyarrow schemas.

Every stage reads and writes parquet through :mod:`distillab.io`, which checks the
table against the schema named here, so a malformed artifact fails at the stage
boundary that produced it, not three rules later.
Nested or free-form values (references, tests, constraints, details) are stored as
JSON strings: they differ per category and per source, and a JSON column keeps the
parquet schema fixed while still round-tripping exactly.
"""

from __future__ import annotations

import pyarrow as pa

CATEGORIES = ("math", "code", "science", "if", "chat")

_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])

QUERY = pa.schema(
    [
        ("query_id", pa.string()),  # stable hash of source + normalized text
        ("source", pa.string()),
        ("category", pa.string()),
        ("messages", pa.list_(_MESSAGE)),  # user (and earlier) turns
        ("reference", pa.string()),  # JSON: answer / choices+answer / null
        ("tests", pa.string()),  # JSON list of tests (code) or null
        ("constraints", pa.string()),  # JSON {instruction_ids, kwargs} (if) or null
        ("meta", pa.string()),  # JSON object
    ]
)

# A source after normalization: the Query record plus the normalized text of its user
# turns (NFKC, whitespace collapsed, one line per turn), which dedup, filters and
# decontamination all read, so it is computed once, per source, in parallel.
NORMALIZED_QUERY = pa.schema(list(QUERY) + [pa.field("text", pa.string())])

REJECTED_QUERY = pa.schema(
    [
        ("query_id", pa.string()),
        ("source", pa.string()),
        ("category", pa.string()),
        ("stage", pa.string()),  # normalize | select | dedup | filter | decontaminate[_embedding]
        ("reason", pa.string()),
        ("detail", pa.string()),  # JSON: e.g. the benchmark item matched
    ]
)

RESPONSE = pa.schema(
    [
        ("query_id", pa.string()),
        ("teacher", pa.string()),
        ("round", pa.int32()),
        ("sample", pa.int32()),
        ("text", pa.string()),  # raw generated text
        ("think", pa.string()),  # null when the format could not be split
        ("answer", pa.string()),
        ("n_tokens", pa.int32()),  # generated tokens (teacher tokenizer)
        ("finish_reason", pa.string()),  # stop | length
        ("gen_params_hash", pa.string()),
    ]
)

VERDICT = pa.schema(
    [
        ("query_id", pa.string()),
        ("teacher", pa.string()),
        ("round", pa.int32()),
        ("sample", pa.int32()),
        ("verifier", pa.string()),  # math | science_choice | unverified ...
        ("score", pa.float64()),  # null when unverified
        ("passed", pa.bool_()),
        ("details", pa.string()),  # JSON
        ("verifier_version", pa.string()),
        ("elapsed_s", pa.float64()),
    ]
)

# A verify shard carries the response next to its verdict, so accepted/ needs one
# input kind only.
VERIFIED = pa.schema(
    list(RESPONSE)
    + [f for f in VERDICT if f.name not in {"query_id", "teacher", "round", "sample"}]
    + [pa.field("category", pa.string())]
)

CURATED_REJECTED = pa.schema(
    [
        ("query_id", pa.string()),
        ("teacher", pa.string()),
        ("category", pa.string()),
        ("stage", pa.string()),  # curate | parallel
        ("reason", pa.string()),
        ("detail", pa.string()),  # e.g. the offending span, the perplexity and its cut
    ]
)

# perplexity/<teacher>.parquet: one row per accepted response (PAPER.md §5). ``ppl`` is
# null when the response could not be scored (``reason``, e.g. too_long for the model).
PERPLEXITY = pa.schema(
    [
        ("query_id", pa.string()),
        ("teacher", pa.string()),
        ("category", pa.string()),
        ("ppl", pa.float64()),
        ("mean_nll", pa.float64()),
        ("n_scored_tokens", pa.int32()),
        ("reason", pa.string()),
    ]
)

# ngrams/<teacher>.parquet: one row per accepted response; ``hf_windows`` counts its
# n-token windows that occur more than max_count times in the teacher's data.
NGRAM_FLAGS = pa.schema(
    [
        ("query_id", pa.string()),
        ("n_tokens", pa.int32()),
        ("hf_windows", pa.int32()),
        ("example_span", pa.string()),
    ]
)

SFT_ROW = pa.schema(
    [
        ("messages", pa.list_(_MESSAGE)),  # system + conversation + final assistant turn
        ("query_id", pa.string()),
        ("teacher", pa.string()),
        ("category", pa.string()),
        ("n_tokens", pa.int32()),
    ]
)

EVAL_SAMPLE = pa.schema(
    [
        ("problem_id", pa.string()),
        ("sample", pa.int32()),
        ("text", pa.string()),
        ("answer", pa.string()),
        ("n_tokens", pa.int32()),
        ("finish_reason", pa.string()),
        ("score", pa.float64()),
        ("passed", pa.bool_()),
        ("details", pa.string()),
    ]
)

SCHEMAS = {
    "query": QUERY,
    "normalized_query": NORMALIZED_QUERY,
    "rejected_query": REJECTED_QUERY,
    "response": RESPONSE,
    "verdict": VERDICT,
    "verified": VERIFIED,
    "curated_rejected": CURATED_REJECTED,
    "perplexity": PERPLEXITY,
    "ngram_flags": NGRAM_FLAGS,
    "sft_row": SFT_ROW,
    "eval_sample": EVAL_SAMPLE,
}
