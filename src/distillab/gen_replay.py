"""The ``replay`` backend: responses taken from a released dataset instead of a model.

The AM releases (AM-Thinking-v1-Distilled, AM-Qwen3-Distilled) carry each query with
one teacher response. A teacher with ``backend: replay`` names the ``am_release`` query
source the study imported those files through; its "generation" looks each pending
query up in the same files by the query id the query stage gave it (source name +
normalized user text), so released data is verified, curated, analysed and trained on
like generated data, without regenerating it.

One response per query exists, so a replay teacher has ``sampling.n == 1`` and one round
(checked in :mod:`distillab.config`). A pending query that the release does not hold
(it came from another source) gets an empty response with finish reason
``not_in_release``: visible in the counts, failed by verification, never silently gone.
Each generate job reads the release files once, keeping only its shard's queries.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from distillab.am_format import AM_FILES, am_row_response, am_row_to_native
from distillab.generate import GenOutput, GenRequest, SamplingSpec
from distillab.queries import make_query_id, user_text
from distillab.sources import BadRow, iter_local_rows, source_files

log = logging.getLogger(__name__)

NOT_IN_RELEASE = "not_in_release"


def released_responses(spec: dict, wanted: set[str], model_name: str | None = None,
                       source_ids: dict[str, str | None] | None = None) -> dict[str, dict]:
    """``query_id -> am_row_response`` for the wanted queries of an ``am_release`` source.

    ``source_ids`` (query id -> the release row the query stage kept, ``meta.source_id``)
    pins each query to its own row: a release can hold the same question twice, and the
    response must come from the row the query (and its reference) came from. Rows the
    query stage rejected as malformed are skipped here (the query stage records them);
    ``model_name`` keeps only responses whose ``info.model_name`` matches.
    """
    found: dict[str, dict] = {}
    rows = other_model = 0
    for location, prefix, n, obj, err in iter_local_rows(spec):
        rows += 1
        if err is not None:
            continue
        stem = Path(location).name.split(".")[0]
        try:
            native = am_row_to_native(obj, stem if stem in AM_FILES else None)
        except BadRow:
            continue
        query_id = make_query_id(spec["name"], user_text(native["messages"]))
        if query_id not in wanted or query_id in found:
            continue
        if source_ids is not None and source_ids.get(query_id) not in (None, f"{prefix}{n}"):
            continue  # the same question in another row: not the one the query came from
        response = am_row_response(obj)
        if response is None:
            continue
        if model_name is not None and response["model_name"] != model_name:
            other_model += 1
            continue
        found[query_id] = response
    log.info("release %s: %d rows read, %d of %d wanted queries found%s", spec["name"], rows,
             len(found), len(wanted),
             f", {other_model} by other models skipped" if other_model else "")
    return found


class ReplayGenerator:
    """Answers requests with the released response of the same query (``request.key``)."""

    def __init__(self, source_spec: dict, model_name: str | None = None,
                 tokenizer_path: str | None = None, revision: str | None = None,
                 source_ids: dict[str, str | None] | None = None):
        if source_spec.get("format") != "am_release":
            raise ValueError(f"replay source {source_spec.get('name')!r} must have format "
                             f"am_release, not {source_spec.get('format')!r}")
        self.spec, self.model_name, self.source_ids = source_spec, model_name, source_ids
        self.tokenizer = None
        if tokenizer_path is not None:
            from transformers import AutoTokenizer

            # Releases carry no token counts; the teacher's tokenizer gives them.
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path, revision=revision)
        self.stats = {"found": 0, NOT_IN_RELEASE: 0}

    @classmethod
    def from_options(cls, options: dict, queries_config: dict, tokenizer_path: str | None = None,
                     revision: str | None = None,
                     source_ids: dict[str, str | None] | None = None) -> "ReplayGenerator":
        specs = {s["name"]: s for s in queries_config["sources"]}
        if options["source"] not in specs:
            raise ValueError(f"replay source {options['source']!r} is not a query source "
                             f"(have {sorted(specs)})")
        return cls(specs[options["source"]], options.get("model_name"), tokenizer_path, revision,
                   source_ids)

    def _n_tokens(self, text: str) -> int:
        if self.tokenizer is None:
            return 0
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def generate(self, requests: Sequence[GenRequest], sampling: SamplingSpec,
                 stop: list[str]) -> Iterator[tuple[int, list[GenOutput]]]:
        if sampling.n != 1:
            raise ValueError(f"replay has one response per query; sampling.n is {sampling.n}")
        t0 = time.monotonic()
        found = released_responses(self.spec, {r.key for r in requests}, self.model_name,
                                   self.source_ids)
        for i, request in enumerate(requests):
            response = found.get(request.key)
            if response is None:
                self.stats[NOT_IN_RELEASE] += 1
                yield i, [GenOutput(text="", n_tokens=0, finish_reason=NOT_IN_RELEASE)]
                continue
            self.stats["found"] += 1
            yield i, [GenOutput(text=response["text"], n_tokens=self._n_tokens(response["text"]),
                                finish_reason="stop")]
        log.info("replayed %d responses (%d not in the release) in %.1f s", self.stats["found"],
                 self.stats[NOT_IN_RELEASE], time.monotonic() - t0)

    def describe(self) -> dict[str, Any]:
        return {"backend": "replay", "source": self.spec["name"],
                "files": [str(p) for p in source_files(self.spec)],
                "model_name": self.model_name, **self.stats}
