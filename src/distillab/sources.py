"""Source readers for the query stage: every row of a query source as a *native row*.

A native row is what :mod:`distillab.queries` validates: ``{"id", "category", "prompt"}``
(or ``"messages": [{"role", "content"}]`` instead of ``prompt``) plus optional
``reference``, ``tests``, ``constraints`` and ``meta``. :func:`iter_source_rows` yields
every row of a source in order, one at a time (jsonl line by line, parquet by record
batch, hub datasets with ``streaming=True``), so memory does not grow with the source.
A row that cannot be read or mapped is yielded as a :class:`BadRow` naming the *source*
field, so the query stage can stop or quarantine it and go on.

Formats (``spec["format"]``):

- ``jsonl`` / ``parquet``: a local file, a directory (its ``*.jsonl`` / ``*.parquet``
  files, recursively, sorted) or a glob. Without ``fields`` the rows are native rows.
- ``hf``: a hub dataset at a pinned ``revision`` (``repo_id``, ``config_name``, ``split``).
- ``am_release``: the AM-Thinking-v1 / AM-Qwen3 distilled releases, read with a plain JSON
  reader (:mod:`distillab.am_format`); ``load_dataset`` fails on their schema drift.

``fields`` maps a target (``id``, ``prompt``, ``messages``, ``category``, ``reference``,
``tests``, ``constraints``, ``meta.<name>``) to a dotted source path with list indices
(``problem``, ``info.ground_truth``, ``conversations.0.value``).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq

from distillab.io import sha256_file

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "parquet", "hf", "am_release")
FIELD_TARGETS = ("id", "prompt", "messages", "category", "reference", "tests", "constraints")
REQUIRED_TARGETS = ("id", "prompt", "messages", "category")  # an absent source field is an error
# ShareGPT speakers -> chat roles (also used for the AM release's ``from``)
ROLE_OF_SPEAKER = {"human": "user", "user": "user", "gpt": "assistant",
                   "assistant": "assistant", "system": "system"}
PARQUET_BATCH_ROWS = 1024

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_GLOB_CHARS = re.compile(r"[*?\[]")

SourceRow = tuple[str, int, "dict | None", "BadRow | None"]


class BadRow(ValueError):
    """One input row is unusable; ``field`` names the offending field."""

    def __init__(self, field: str | None, problem: str):
        super().__init__(problem if field is None else f"field '{field}': {problem}")
        self.field = field  # None: the line as a whole (not UTF-8, not JSON, not an object)
        self.problem = problem


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# --------------------------------------------------------------------------- spec


def check_source_spec(spec: dict) -> None:
    """Raise ValueError naming the source when ``spec`` cannot be read as given."""
    name = spec.get("name")
    if not name or not isinstance(name, str):
        raise ValueError(f"query source without a name: {spec!r}")
    fmt = spec.get("format", "jsonl")
    if fmt not in FORMATS:
        raise ValueError(f"source {name!r}: format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "hf":
        for key in ("repo_id", "revision", "split"):
            if not spec.get(key):
                hint = " (pin a commit: hub datasets change under a branch name)" \
                    if key == "revision" else ""
                raise ValueError(f"source {name!r}: format hf needs {key!r}{hint}")
    elif not spec.get("path"):
        raise ValueError(f"source {name!r}: format {fmt} needs 'path'")
    fields = spec.get("fields")
    if fmt == "am_release":
        for key in ("fields", "category"):
            if spec.get(key):
                raise ValueError(f"source {name!r}: {key!r} does not apply to am_release "
                                 f"(the release names its own fields and categories)")
    if not fields:
        return
    if not isinstance(fields, dict):
        raise ValueError(f"source {name!r}: fields must map target -> source path")
    for target, path in fields.items():
        if target not in FIELD_TARGETS and not (target.startswith("meta.") and len(target) > 5):
            raise ValueError(f"source {name!r}: fields: unknown target {target!r} (one of "
                             f"{', '.join(FIELD_TARGETS)}, meta.<name>)")
        if not isinstance(path, str) or not path or "" in _split_path(path):
            raise ValueError(f"source {name!r}: fields.{target}: bad source path {path!r}")
    if "prompt" in fields and "messages" in fields:
        raise ValueError(f"source {name!r}: fields map both 'prompt' and 'messages'; use one")
    if "prompt" not in fields and "messages" not in fields:
        raise ValueError(f"source {name!r}: fields must map 'prompt' or 'messages'")


def _split_path(path: str) -> list[str]:
    """``a.b[0].c`` and ``a.b.0.c`` -> ``["a", "b", "0", "c"]``."""
    return path.replace("[", ".").replace("]", "").split(".")


def source_files(spec: dict) -> list[Path]:
    """The local files a jsonl / parquet / am_release source reads, sorted."""
    raw = str(spec["path"])
    path = Path(os.path.expandvars(raw))
    suffix = ".parquet" if spec.get("format") == "parquet" else ".jsonl"
    if _GLOB_CHARS.search(str(path)):
        files = [Path(p) for p in sorted(glob.glob(str(path), recursive=True))]
    elif path.is_dir():
        # hidden entries are tool state (e.g. huggingface-cli's .cache/), not data
        files = sorted(p for p in path.rglob(f"*{suffix}")
                       if not any(part.startswith(".") for part in p.relative_to(path).parts))
    elif path.exists():  # a file, or a pipe (process substitution)
        files = [path]
    else:
        hint = " (an environment variable is not set?)" if "$" in str(path) else ""
        raise FileNotFoundError(f"source {spec.get('name')!r}: no such file {path} "
                                f"(path in config: {raw}){hint}")
    files = [f for f in files if not f.is_dir()]
    if not files:
        raise FileNotFoundError(f"source {spec.get('name')!r}: no {suffix} files at {path}")
    return files


def source_paths(spec: dict) -> list[str]:
    """Local files a source reads (Snakemake inputs); [] for hub sources.

    A plain file path that does not exist is returned as is, so that Snakemake reports
    the missing input by name."""
    if spec.get("format", "jsonl") == "hf":
        return []
    path = os.path.expandvars(str(spec["path"]))
    if not _GLOB_CHARS.search(path) and not os.path.exists(path):
        return [path]
    return [str(p) for p in source_files(spec)]


def source_fingerprint(spec: dict) -> dict:
    """What exactly a source read, for provenance: files with sha256, or the hub pin."""
    fmt = spec.get("format", "jsonl")
    if fmt == "hf":
        return {"format": fmt, **{k: spec.get(k) for k in
                                  ("repo_id", "revision", "config_name", "split")}}
    return {"format": fmt, "files": [{"path": str(p), "bytes": p.stat().st_size,
                                      "sha256": sha256_file(p)} for p in source_files(spec)]}


# --------------------------------------------------------------------------- readers


def iter_jsonl_lines(path: str | os.PathLike) -> Iterator[tuple[int, dict | None, BadRow | None]]:
    """Yield (line, object, None) or (line, None, error) for every non-blank line.

    Same checks and messages as :func:`distillab.io.iter_jsonl`, but a bad line is
    reported and reading goes on, which quarantine mode needs (a generator cannot resume
    after it raised, so ``iter_jsonl`` itself stops at the first bad line).
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, None, BadRow(None, f"not valid UTF-8 ({exc.reason})")
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, None, BadRow(None, f"malformed JSON ({exc.msg})")
                continue
            if not isinstance(obj, dict):
                yield lineno, None, BadRow(
                    None, f"expected a JSON object, got {type(obj).__name__}")
                continue
            yield lineno, obj, None


def iter_parquet_rows(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (row index + 1, row) one record batch at a time."""
    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS):
        for row in batch.to_pylist():
            n += 1
            yield n, row


def hf_location(spec: dict) -> str:
    return (f"hf:{spec['repo_id']}@{spec['revision']}/{spec.get('config_name') or 'default'}"
            f"/{spec['split']}")


def iter_hf_rows(spec: dict) -> Iterator[tuple[int, dict]]:
    """Yield (row index + 1, row) of a hub dataset, streamed at the pinned revision."""
    import datasets  # slow to import; only hub sources need it

    revision = str(spec["revision"])
    if not _COMMIT.match(revision):
        log.warning("source %s: revision %r is not a 40-hex commit; the rows may change "
                    "under it (pin a commit for a reproducible study)", spec["name"], revision)
    dataset = datasets.load_dataset(spec["repo_id"], name=spec.get("config_name"),
                                    split=spec["split"], revision=revision, streaming=True)
    n = 0
    try:
        for row in dataset:
            n += 1
            yield n, row
    except Exception as exc:  # a hub/arrow error mid-stream: say where, keep the cause
        raise RuntimeError(f"{hf_location(spec)}: reading failed after row {n}: "
                           f"{type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- mapping


def _lookup(row: dict, path: str) -> tuple[bool, Any, str]:
    """``(found, value, display path)``; a mistyped container on the way is a BadRow."""
    value: Any = row
    shown = ""
    for token in _split_path(path):
        if isinstance(value, list):
            if not token.isdigit():
                raise BadRow(shown, f"expected an object, got list (no key {token!r})")
            shown = f"{shown}[{token}]"
            if int(token) >= len(value):
                return False, None, shown
            value = value[int(token)]
        elif isinstance(value, dict):
            shown = f"{shown}.{token}" if shown else token
            if token not in value:
                return False, None, shown
            value = value[token]
        else:
            raise BadRow(shown, f"expected an object or a list, got {type_name(value)}")
    return True, value, shown


def _map_messages(value: Any, shown: str) -> list[dict]:
    """A source list of {role, content} or ShareGPT {from, value} as chat messages."""
    if not isinstance(value, list):
        raise BadRow(shown, f"expected a list of messages, got {type_name(value)}")
    messages = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise BadRow(f"{shown}[{i}]", f"expected an object, got {type_name(m)}")
        if "role" in m:
            role, content, content_key = m["role"], m.get("content"), "content"
        elif "from" in m:
            role = ROLE_OF_SPEAKER.get(m["from"])
            if role is None:
                raise BadRow(f"{shown}[{i}].from", f"{m['from']!r} is not one of "
                             f"{', '.join(ROLE_OF_SPEAKER)}")
            content, content_key = m.get("value"), "value"
        else:
            raise BadRow(f"{shown}[{i}]", "neither 'role'/'content' nor 'from'/'value'")
        if not isinstance(content, str):
            raise BadRow(f"{shown}[{i}].{content_key}",
                         f"expected a string, got {type_name(content)}")
        messages.append({"role": role, "content": content})
    return messages


def _json_value(value: Any, shown: str, kind: str) -> Any:
    """A JSON value, parsing a JSON-encoded string (hub datasets often store them so)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise BadRow(shown, f"expected {kind} or a JSON string of one ({exc.msg})") from None
    return value


def _ifeval_constraints(value: dict | None) -> dict | None:
    """IFEval constraints as the verifier reads them. Nemotron's RL split names the kwargs
    ``instruction_kwargs`` and fills unused arguments with null (the Arrow schema of the
    dataset is the union of all checkers' arguments); IFEval's own rows omit them."""
    if not value or "instruction_kwargs" not in value or "kwargs" in value:
        return value
    out = {k: v for k, v in value.items() if k != "instruction_kwargs"}
    kwargs = value["instruction_kwargs"]
    if isinstance(kwargs, list):
        kwargs = [{k: v for k, v in kw.items() if v is not None} if isinstance(kw, dict) else kw
                  for kw in kwargs]
    out["kwargs"] = kwargs
    return out


def map_row(row: dict, fields: dict[str, str], row_id: str) -> dict:
    """The native row for a source row under the ``fields`` mapping (raises BadRow)."""
    from distillab.test_cases import parse_test_case

    native: dict[str, Any] = {"id": row_id}
    meta: dict[str, Any] = {}
    for target, path in fields.items():
        found, value, shown = _lookup(row, path)
        if not found:
            if target in REQUIRED_TARGETS:
                raise BadRow(shown, "missing")
            value = None  # an absent optional field is how jsonl writes null
        if target == "id":
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise BadRow(shown, f"expected a string or an integer, got {type_name(value)}")
            native["id"] = str(value)
        elif target in ("prompt", "category"):
            if not isinstance(value, str):
                raise BadRow(shown, f"expected a string, got {type_name(value)}")
            native[target] = value
        elif target == "messages":
            messages = _map_messages(value, shown)
            # SFT datasets end with the answer: the query is everything up to the last
            # user turn (the answer is what the teachers regenerate).
            users = [i for i, m in enumerate(messages) if m["role"] == "user"]
            if not users:
                raise BadRow(shown, "no user turn")
            native["messages"] = messages[:users[-1] + 1]
        elif target == "reference":
            # a bare answer becomes {"answer": ...}, the shape the verifiers read
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                value = {"answer": str(value)}
            native["reference"] = value
        elif target == "tests":
            if value is not None:
                tests, extra = parse_test_case(value)
                if tests is None:
                    raise BadRow(shown, "not a recognized test format (a list of "
                                 "{testtype, input, output}, {inputs, outputs[, fn_name]}, "
                                 "{test_code}, assert code or a JSON string of one)")
                value = tests
                for key, v in extra.items():
                    meta.setdefault(key, v)
            native["tests"] = value
        elif target == "constraints":
            value = _json_value(value, shown, "an object")
            if value is not None and not isinstance(value, dict):
                raise BadRow(shown, f"expected an object, got {type_name(value)}")
            native["constraints"] = _ifeval_constraints(value)
        else:  # meta.<name>
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise BadRow(shown, f"{type_name(value)} is not JSON-serializable") from None
            meta[target[len("meta."):]] = value
    native["meta"] = meta
    return native


# --------------------------------------------------------------------------- sources


def iter_local_rows(spec: dict) -> Iterator[tuple[str, str, int, dict | None, BadRow | None]]:
    """(location, id prefix, row number, object, error) over every file of the source;
    ``id prefix + row number`` is the row's id (``meta.source_id`` of its query)."""
    files = source_files(spec)
    base = os.path.commonpath([str(f.parent) for f in files])
    for path in files:
        # row numbers repeat across files: prefix ids so duplicates stay detectable
        prefix = f"{os.path.relpath(path, base)}:" if len(files) > 1 else ""
        if spec.get("format") == "parquet":
            for n, obj in iter_parquet_rows(path):
                yield str(path), prefix, n, obj, None
        else:
            for n, obj, err in iter_jsonl_lines(path):
                yield str(path), prefix, n, obj, err


def iter_source_rows(spec: dict) -> Iterator[SourceRow]:
    """Yield ``(location, row number, native row, None)`` or ``(location, row number,
    None, BadRow)`` for every row of the source, in order, streaming.

    ``location`` is the file path, or ``hf:<repo_id>@<revision>/<config>/<split>``;
    the row number is the 1-based line (jsonl) or row index + 1 (parquet, hub).
    """
    check_source_spec(spec)
    fmt = spec.get("format", "jsonl")
    fields = spec.get("fields") or None
    category = spec.get("category")
    if fmt == "hf":
        location = hf_location(spec)
        rows: Iterator = ((location, "", n, obj, None) for n, obj in iter_hf_rows(spec))
    else:
        rows = iter_local_rows(spec)
    if fmt == "am_release":
        from distillab.am_format import AM_FILES, am_row_to_native

    for location, prefix, n, obj, err in rows:
        if err is not None:
            yield location, n, None, err
            continue
        try:
            if fmt == "am_release":
                stem = Path(location).name.split(".")[0]
                native = am_row_to_native(obj, stem if stem in AM_FILES else None)
                native["id"] = f"{prefix}{n}"
            elif fields:
                native = map_row(obj, fields, f"{prefix}{n}")
            else:
                native = obj
        except BadRow as exc:
            yield location, n, None, exc
            continue
        if category is not None and native.get("category") is None:
            native = {**native, "category": category}
        yield location, n, native, None


__all__ = [
    "BadRow",
    "FORMATS",
    "check_source_spec",
    "iter_hf_rows",
    "iter_jsonl_lines",
    "iter_local_rows",
    "iter_parquet_rows",
    "iter_source_rows",
    "map_row",
    "source_files",
    "source_fingerprint",
    "source_paths",
]
