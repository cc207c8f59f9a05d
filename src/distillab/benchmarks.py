"""Evaluation benchmarks (PAPER.md §8) as pseudo-queries in the QUERY schema.

One loader per benchmark kind; :func:`load_benchmark_problems` dispatches on
``spec["kind"]``:

- ``math500``, ``aime2024``, ``aime2025``: a local JSON-lines copy (``path``; the copies
  in ``../shared/benchmarks``, see their SOURCE.md) or a hub dataset at a pinned
  ``revision`` (``repo_id``, ``config_name``, ``split``). Both go through the same
  row -> query mapping (:func:`math_problem`), which knows the field names of every
  known copy.
- ``livecodebench``: ``livecodebench/code_generation_lite`` rows of a release
  (``release_v5`` = ``test.jsonl`` … ``test5.jsonl``), filtered to a contest-date
  window with LiveCodeBench's own semantics, prompted with LiveCodeBench's own template,
  public + private tests decoded without ever unpickling anything but plain data
  (:func:`decode_private_tests`).
- ``livecodebench_public``: the public-tests-only slice in
  ``../shared/benchmarks/livecodebench_public_only`` (smoke tests, never for scoring).
- ``jsonl``: any local JSON-lines file of native rows (``id_field``, ``text_field``,
  ``answer_field``, ``category``), as :func:`distillab.evaluate.load_benchmark` reads.

Spec keys: ``kind``; ``path`` (local) or ``repo_id`` + ``revision`` (+ ``config_name``,
``split``); ``release`` and ``date_window: [start, end]`` (livecodebench);
``max_problems`` (the first N after filtering, in file order). Every problem gets
``source`` = the benchmark name and a ``meta`` JSON object with what is known of it
(MATH500 ``level``/``subject``, AIME ``contest``/``number``, LiveCodeBench
``platform``/``difficulty``/``contest_date``…), which the length-vs-difficulty
analysis groups by. Errors name the file (or hub location), the row (line number for
JSON lines, 1-based index otherwise) and the field.

Prompts: math problems carry the bare problem text; the evaluation prompt layer
(:mod:`distillab.prompts`) appends the paper's "Let's think step by step…" instruction.
LiveCodeBench problems carry LiveCodeBench's user prompt *as is* (PAPER.md §8: "the
benchmark's original prompt, unmodified"); its system message is
:data:`LCB_SYSTEM_MESSAGE`, not put into ``messages`` because the study uses the AM
system prompt for every task.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import pickle
import re
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from distillab.io import iter_jsonl

log = logging.getLogger(__name__)

KINDS = ("math500", "aime2024", "aime2025", "livecodebench", "livecodebench_public", "jsonl")

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class BenchmarkError(ValueError):
    """A benchmark row or spec cannot be used; the message names where and which field."""


def _row_error(where: str, field: str | None, problem: str) -> BenchmarkError:
    return BenchmarkError(f"{where}: {problem}" if field is None
                          else f"{where}: field {field!r}: {problem}")


def _query(query_id: str, source: str, category: str, prompt: str, *,
           reference: Any = None, tests: list[dict] | None = None,
           meta: dict | None = None) -> dict:
    """A QUERY-schema row (:data:`distillab.schemas.QUERY`)."""
    return {
        "query_id": query_id,
        "source": source,
        "category": category,
        "messages": [{"role": "user", "content": prompt}],
        "reference": json.dumps(reference, sort_keys=True) if reference is not None else None,
        "tests": json.dumps(tests) if tests is not None else None,
        "constraints": None,
        "meta": json.dumps(meta or {}, sort_keys=True),
    }


# ------------------------------------------------------------------------ row sources

Row = tuple[str, dict]  # (where: "file:line" or "hf:...@rev/config/split row N", row)


def _local_path(spec: dict, name: str) -> Path:
    raw = str(spec["path"])
    path = Path(os.path.expandvars(raw))
    if not path.exists():
        hint = " (an environment variable is not set?)" if "$" in str(path) else ""
        raise FileNotFoundError(f"benchmark {name}: no such file {path} "
                                f"(path in config: {raw}){hint}")
    return path


def _jsonl_rows(path: Path) -> Iterator[Row]:
    for lineno, row in iter_jsonl(path):
        yield f"{path}:{lineno}", row


def _hub_location(spec: dict, config: str | None, split: str) -> str:
    return f"hf:{spec['repo_id']}@{spec['revision']}/{config or 'default'}/{split}"


def _check_revision(spec: dict, name: str) -> str:
    revision = spec.get("revision")
    if not revision:
        raise BenchmarkError(f"benchmark {name}: hub dataset {spec.get('repo_id')!r} needs a "
                             "'revision' (pin a commit: hub datasets change under a branch name)")
    if not _COMMIT.match(str(revision)):
        log.warning("benchmark %s: revision %r is not a 40-hex commit; the problems may change "
                    "under it", name, revision)
    return str(revision)


def _hub_rows(spec: dict, name: str, default_split: str
              ) -> Iterator[tuple[str, dict, str | None, int]]:
    """(where, row, config name, 0-based index within that config) of a hub dataset at
    its pinned revision; ``config_name`` may list several configs (opencompass/AIME2025
    ships AIME I and II as two)."""
    import datasets  # heavy import, only where the hub is used

    revision = _check_revision(spec, name)
    split = spec.get("split") or default_split
    configs = spec.get("config_name")
    for config in configs if isinstance(configs, list) else [configs]:
        dataset = datasets.load_dataset(spec["repo_id"], name=config, split=split,
                                        revision=revision)
        location = _hub_location(spec, config, split)
        for index, row in enumerate(dataset):
            yield f"{location} row {index + 1}", dict(row), config, index


# ----------------------------------------------------------------------- math benchmarks

# Field names of every known copy, tried in order (first present wins):
# - local copies: ../shared/benchmarks/*/SOURCE.md — math500 unique_id/problem/answer/
#   subject/level; aime2024 id (int)/problem/answer (str)/url; aime2025 id ("0".."29")/
#   problem/answer (int).
# - HuggingFaceH4/MATH-500 (split test): the same fields as the local math500 copy (it is
#   the PRM800K test split); HuggingFaceH4/aime_2024 (split train): id/problem/solution/
#   answer (str)/url/year, per its dataset card; Maxwell-Jia/AIME_2024 (split train):
#   ID ("2024-I-1")/Problem/Solution/Answer; yentinglin/aime_2025 (split train):
#   id/problem/answer(/solution/url/year); opencompass/AIME2025 (configs AIME2025-I and
#   AIME2025-II, split test): question/answer, no id. Hub field names were read from
#   loaders and dataset cards in public code found with the project's code search;
#   they cannot be checked offline, so a spec may override them with
#   ``fields: {id: ..., problem: ..., answer: ...}``.
MATH_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "math500": {"id": ("unique_id",), "problem": ("problem",), "answer": ("answer",)},
    "aime2024": {"id": ("id", "ID"), "problem": ("problem", "Problem"),
                 "answer": ("answer", "Answer")},
    "aime2025": {"id": ("id", "ID"), "problem": ("problem", "question", "Problem"),
                 "answer": ("answer", "Answer")},
}
_YEAR = {"aime2024": 2024, "aime2025": 2025}
# The split a hub copy keeps its problems in when the spec names none (MATH-500: test;
# HuggingFaceH4/aime_2024, Maxwell-Jia/AIME_2024, yentinglin/aime_2025: train;
# opencompass/AIME2025 needs ``split: test``).
DEFAULT_SPLIT = {"math500": "test", "aime2024": "train", "aime2025": "train"}
_AIME_URL = re.compile(r"(\d{4})_AIME_(I{1,2})_Problems/Problem_(\d+)")
_AIME_ID = re.compile(r"^(\d{4})-(I{1,2})-(\d+)$")  # Maxwell-Jia/AIME_2024 "2024-I-1"


def _pick(row: dict, names: Sequence[str], where: str, label: str) -> tuple[str, Any]:
    """(field name, value) of the first of ``names`` present in ``row``."""
    for field in names:
        if field in row:
            return field, row[field]
    shown = names[0] if len(names) == 1 else " / ".join(names)
    raise _row_error(where, shown, f"missing ({label}); the row has {sorted(row)}")


def _answer_text(value: Any, field: str, where: str) -> str:
    if isinstance(value, bool) or value is None:
        raise _row_error(where, field, f"answer is {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, (str, int, float)):
        raise _row_error(where, field, f"answer is a {type(value).__name__}, not text")
    text = str(value).strip()
    if not text:
        raise _row_error(where, field, "answer is empty")
    return text


def _aime_contest(row: dict, query_id: str, kind: str, config: str | None,
                  index: int | None, local: bool) -> dict:
    """``contest`` ("AIME I" / "AIME II") and problem ``number`` where the row tells."""
    url = row.get("url")
    if isinstance(url, str) and (m := _AIME_URL.search(url)):
        return {"contest": f"AIME {m.group(2)}", "number": int(m.group(3))}
    if m := _AIME_ID.match(query_id):
        return {"contest": f"AIME {m.group(2)}", "number": int(m.group(3))}
    if config and (m := re.search(r"-(I{1,2})$", config)) and index is not None:
        return {"contest": f"AIME {m.group(1)}", "number": index + 1}
    # The AReaL copy (../shared/benchmarks/aime2025/SOURCE.md): ids 0-14 are AIME I
    # #1-15, 15-29 AIME II #1-15. Only trusted for that local file.
    if kind == "aime2025" and local and query_id.isdigit() and int(query_id) < 30:
        number = int(query_id)
        return {"contest": "AIME I" if number < 15 else "AIME II", "number": number % 15 + 1}
    return {}


def math_problem(kind: str, row: dict, where: str, source: str, *,
                 fields: dict[str, Any] | None = None, config: str | None = None,
                 index: int | None = None, local: bool = True) -> dict:
    """One MATH500 / AIME row (local copy or hub) as a math pseudo-query.

    ``reference`` is ``{"answer": <text>}`` (integers as their decimal text), the prompt
    the bare problem text. Without an id field (opencompass/AIME2025) the id is
    ``<config>-<index>``.
    """
    names = dict(MATH_FIELDS[kind])
    for key, value in (fields or {}).items():
        names[key] = (value,) if isinstance(value, str) else tuple(value)
    try:
        id_field, raw_id = _pick(row, names["id"], where, "problem id")
    except BenchmarkError:
        if local or index is None:
            raise
        id_field, raw_id = "", f"{config or 'row'}-{index}"
    if raw_id is None or isinstance(raw_id, bool) or str(raw_id).strip() == "":
        raise _row_error(where, id_field, f"empty problem id {raw_id!r}")
    query_id = str(raw_id).strip()
    problem_field, problem = _pick(row, names["problem"], where, "problem text")
    if not isinstance(problem, str) or not problem.strip():
        raise _row_error(where, problem_field, "problem text is empty or not a string")
    answer_field, answer = _pick(row, names["answer"], where, "reference answer")
    meta: dict[str, Any] = {}
    if kind == "math500":
        level = row.get("level")
        if isinstance(level, str) and (m := re.fullmatch(r"(?:Level )?([1-5])", level.strip())):
            level = int(m.group(1))  # the original MATH files say "Level 3"
        if not (isinstance(level, int) and not isinstance(level, bool) and 1 <= level <= 5):
            raise _row_error(where, "level", f"expected an integer 1-5, got {level!r}")
        if not isinstance(row.get("subject"), str):
            raise _row_error(where, "subject", f"expected a string, got {row.get('subject')!r}")
        meta.update(level=level, subject=row["subject"])
    else:
        meta.update(year=_YEAR[kind],
                    **_aime_contest(row, query_id, kind, config, index, local))
        if isinstance(row.get("url"), str):
            meta["url"] = row["url"]
    return _query(query_id, source, "math", problem,
                  reference={"answer": _answer_text(answer, answer_field, where)}, meta=meta)


def load_math(kind: str, name: str, spec: dict) -> list[dict]:
    """MATH500 / AIME problems from ``spec['path']`` or the hub (see module docstring)."""
    if kind not in MATH_FIELDS:
        raise ValueError(f"not a math benchmark kind: {kind!r}")
    fields = spec.get("fields")
    if spec.get("path"):
        path = _local_path(spec, name)
        return [math_problem(kind, row, where, name, fields=fields, local=True)
                for where, row in _jsonl_rows(path)]
    return [math_problem(kind, row, where, name, fields=fields, config=config, index=index,
                         local=False)
            for where, row, config, index in _hub_rows(spec, name, DEFAULT_SPLIT[kind])]


# -------------------------------------------------------------------- LiveCodeBench

# LiveCodeBench's code-generation prompt for chat models (LMStyle.OpenAIChat):
# lcb_runner/prompts/code_generation.py, PromptConstants and
# get_generic_question_template_answer, at LiveCodeBench/LiveCodeBench@28fef95ea8c9
# (the commit whose grader verify_code follows; ../shared/notes/bench_verify.md §5).
# At that commit the system message no longer ends with "You will NOT return anything
# except for the program." and the stdin instruction ends with "Ensure that when the
# python program runs, …" (older commits differ in exactly these two sentences).
LCB_SYSTEM_MESSAGE = (
    "You are an expert Python programmer. You will be given a question (problem "
    "specification) and will generate a correct Python program that matches the "
    "specification and passes all tests."
)
LCB_FORMATTING_WITH_STARTER_CODE = (
    "You will use the following starter code to write the solution to the problem and "
    "enclose your code within delimiters."
)
LCB_FORMATTING_WITHOUT_STARTER_CODE = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not "
    "directly test on the sample inputs). Enclose your code within delimiters as follows. "
    "Ensure that when the python program runs, it reads the inputs, runs the algorithm and "
    "writes output to STDOUT."
)


def lcb_user_prompt(question_content: str, starter_code: str) -> str:
    """LiveCodeBench's user prompt (``get_generic_question_template_answer``), verbatim."""
    prompt = f"### Question:\n{question_content}\n\n"
    if starter_code:
        prompt += f"### Format: {LCB_FORMATTING_WITH_STARTER_CODE}\n"
        prompt += f"```python\n{starter_code}\n```\n\n"
    else:
        prompt += f"### Format: {LCB_FORMATTING_WITHOUT_STARTER_CODE}\n"
        prompt += "```python\n# YOUR CODE HERE\n```\n\n"
    prompt += "### Answer: (use the provided format with backticks)\n\n"
    return prompt


# Files of each release of livecodebench/code_generation_lite, as its loading script and
# LiveCodeBench's loader resolve ``version_tag`` (release_vN = test.jsonl … testN.jsonl;
# vN = only the problems added in N; vA_vB = those added in A … B). release_v5 has 880
# problems. "release_latest" is left out on purpose: it moves.
LCB_FILES = ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl",
             "test6.jsonl")
LCB_DEFAULT_REPO = "livecodebench/code_generation_lite"


def lcb_release_files(release: str) -> list[str]:
    """The jsonl files of a code_generation_lite release (``release_v5``, ``v5``, ``v4_v5``)."""
    def version(token: str) -> int:
        if token.startswith("v") and token[1:].isdigit() and 1 <= int(token[1:]) <= len(LCB_FILES):
            return int(token[1:])
        raise BenchmarkError(f"unknown LiveCodeBench release {release!r} (release_v1 … "
                             f"release_v{len(LCB_FILES)}, v1 … v{len(LCB_FILES)}, vA_vB)")

    if release.startswith("release_"):
        return list(LCB_FILES[: version(release[len("release_"):])])
    if "_" in release:
        first, last = (version(t) for t in release.split("_", 1))
        return list(LCB_FILES[min(first, last) - 1: max(first, last)])
    n = version(release)
    return [LCB_FILES[n - 1]]


def _window_bound(value: Any, key: str, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.strptime(str(value), "%Y-%m-%d")
    except ValueError as exc:
        raise BenchmarkError(f"benchmark {name}: {key} {value!r} is not a YYYY-MM-DD date") from exc


def parse_date_window(window: Sequence[Any] | None, name: str = "livecodebench"
                      ) -> tuple[datetime | None, datetime | None]:
    """``[start, end]`` (``YYYY-MM-DD`` or null) as LiveCodeBench parses ``--start_date`` /
    ``--end_date``: ``datetime.strptime(d, "%Y-%m-%d")``, i.e. midnight of that day."""
    if window is None:
        return None, None
    if not isinstance(window, (list, tuple)) or len(window) != 2:
        raise BenchmarkError(f"benchmark {name}: date_window must be [start, end], "
                             f"got {window!r}")
    return (_window_bound(window[0], "date_window start", name),
            _window_bound(window[1], "date_window end", name))


def in_date_window(contest_date: datetime, start: datetime | None, end: datetime | None
                   ) -> bool:
    """LiveCodeBench's filter (``load_code_generation_dataset`` and ``compute_scores``):
    ``start <= contest_date`` and ``contest_date <= end``, both inclusive, on full
    datetimes; so ``end = "2025-02-01"`` keeps a contest at 2025-02-01T00:00:00 but not
    one later that day."""
    return (start is None or start <= contest_date) and (end is None or contest_date <= end)


def _contest_date(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise _row_error(where, "contest_date", f"expected an ISO date string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _row_error(where, "contest_date", f"not an ISO date: {value!r}") from exc
    if parsed.tzinfo is not None:  # compare like LCB's naive datetimes, in UTC
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


# --- private tests: base64(zlib(pickle(json string))), decoded without running code

DEFAULT_MAX_DECODED_BYTES = 1 << 30  # 1 GiB of decompressed pickle per problem


class PrivateTestsError(ValueError):
    """The private tests blob is malformed, too large, or not plain data."""


class _Refused(pickle.UnpicklingError):
    """The pickle asked for a global or a persistent id."""


class _DataOnlyUnpickler(pickle.Unpickler):
    """An unpickler that builds plain data (str, bytes, numbers, lists, tuples, dicts,
    sets) and nothing else.

    Every way a pickle reaches code goes through ``find_class`` (GLOBAL, STACK_GLOBAL,
    INST, and EXT1/2/4 through the copyreg extension registry) or through
    ``persistent_load`` (PERSID, BINPERSID); both refuse. REDUCE, NEWOBJ, OBJ and BUILD
    then only ever see plain data on the stack and fail without calling anything.
    LiveCodeBench pickles a plain ``str`` of JSON, so no global is ever needed.
    """

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401
        raise _Refused(
            f"refused: the pickle references {module}.{name}; only plain data is accepted")

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("refused: the pickle uses a persistent id")


def _check_tests(value: Any, what: str) -> list[dict]:
    if not isinstance(value, list):
        raise PrivateTestsError(f"{what}: expected a list of tests, got {type(value).__name__}")
    for i, test in enumerate(value):
        if not (isinstance(test, dict) and isinstance(test.get("input"), str)
                and isinstance(test.get("output"), str)):
            raise PrivateTestsError(f"{what}: test {i} is not {{input: str, output: str, …}}")
    return value


def decode_private_tests(blob: str, max_bytes: int = DEFAULT_MAX_DECODED_BYTES
                         ) -> list[dict]:
    """LiveCodeBench's ``private_test_cases`` as a list of ``{input, output, testtype}``.

    LiveCodeBench tries ``json.loads`` first and otherwise runs
    ``json.loads(pickle.loads(zlib.decompress(base64.b64decode(blob))))``. The same here,
    except that the pickle is read by :class:`_DataOnlyUnpickler` (no globals, so nothing
    in a downloaded blob can run), the decompressed size is capped at ``max_bytes``
    before unpickling (a zlib bomb stops there), and the result must be a JSON string or
    a list of tests. Raises :class:`PrivateTestsError` otherwise.
    """
    if not isinstance(blob, str):
        raise PrivateTestsError(f"expected a string, got {type(blob).__name__}")
    if blob.lstrip()[:1] == "[":
        try:
            return _check_tests(json.loads(blob), "JSON tests")
        except json.JSONDecodeError:
            pass  # LCB falls through to the compressed form as well
    try:
        compressed = base64.b64decode(blob.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise PrivateTestsError(f"not base64: {exc}") from exc
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(compressed, max_bytes + 1)
    except zlib.error as exc:
        raise PrivateTestsError(f"not a zlib stream: {exc}") from exc
    if len(data) > max_bytes or inflater.unconsumed_tail:
        raise PrivateTestsError(f"decompresses to more than {max_bytes} bytes; refused "
                                "(raise the cap if the benchmark really is this large)")
    if not inflater.eof:
        raise PrivateTestsError("truncated zlib stream")
    try:
        value = _DataOnlyUnpickler(io.BytesIO(data)).load()
    except _Refused as exc:
        raise PrivateTestsError(str(exc)) from exc
    except Exception as exc:  # malformed opcodes: UnpicklingError, EOFError, TypeError, …
        raise PrivateTestsError(f"not a valid pickle: {type(exc).__name__}: {exc}") from exc
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise PrivateTestsError(f"the pickled string is not JSON: {exc.msg}") from exc
    return _check_tests(value, "pickled tests")


def _lcb_tests(raw: list[dict], fn_name: str | None) -> list[dict]:
    """LiveCodeBench tests in :mod:`distillab.verify_code`'s shape. LCB grades a problem
    call-based exactly when ``metadata.func_name`` is set (``get_evaluation_sample``),
    whatever each test's ``testtype`` says, so the same rule decides here."""
    if fn_name:
        return [{"testtype": "functional", "fn_name": fn_name, "input": t["input"],
                 "output": t["output"]} for t in raw]
    return [{"testtype": "stdin", "input": t["input"], "output": t["output"]} for t in raw]


_LCB_REQUIRED = ("question_id", "question_content", "platform", "contest_date",
                 "starter_code", "difficulty", "public_test_cases", "private_test_cases",
                 "metadata")


def lcb_problem(row: dict, where: str, source: str, *, release: str | None = None,
                window: tuple[datetime | None, datetime | None] = (None, None),
                max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> dict | None:
    """One code_generation_lite row as a code pseudo-query; None when its contest date
    is outside ``window`` (checked before the private tests are decoded)."""
    if "contest_date" not in row:
        raise _row_error(where, "contest_date", f"missing; the row has {sorted(row)}")
    contest_date = _contest_date(row["contest_date"], where)
    if not in_date_window(contest_date, *window):
        return None  # not validated further, and its private tests are never decoded
    for field in _LCB_REQUIRED:
        if field not in row:
            raise _row_error(where, field, f"missing; the row has {sorted(row)}")
    for field in ("question_id", "question_content", "platform", "difficulty"):
        if not isinstance(row[field], str) or not row[field].strip():
            raise _row_error(where, field, f"expected a non-empty string, got {row[field]!r}")
    starter_code = row["starter_code"] or ""
    if not isinstance(starter_code, str):
        raise _row_error(where, "starter_code", f"expected a string, got {starter_code!r}")
    try:
        metadata = json.loads(row["metadata"]) if isinstance(row["metadata"], str) \
            else row["metadata"]
    except json.JSONDecodeError as exc:
        raise _row_error(where, "metadata", f"not JSON ({exc.msg})") from exc
    if not isinstance(metadata, dict):
        raise _row_error(where, "metadata", f"expected a JSON object, got {metadata!r}")
    fn_name = metadata.get("func_name") or None
    if fn_name is not None and not isinstance(fn_name, str):
        raise _row_error(where, "metadata", f"func_name is {fn_name!r}")
    try:
        public = _check_tests(json.loads(row["public_test_cases"]), "public tests")
    except (json.JSONDecodeError, TypeError, PrivateTestsError) as exc:
        raise _row_error(where, "public_test_cases", str(exc)) from exc
    try:
        private = decode_private_tests(row["private_test_cases"], max_decoded_bytes)
    except PrivateTestsError as exc:
        raise _row_error(where, "private_test_cases", str(exc)) from exc
    tests = _lcb_tests(public + private, fn_name)
    if not tests:
        raise _row_error(where, "public_test_cases", "the problem has no tests at all")
    meta = {
        "platform": row["platform"],
        "difficulty": row["difficulty"],
        "contest_date": contest_date.isoformat(),
        "contest_id": row.get("contest_id"),
        "question_title": row.get("question_title"),
        "release": release,
        "language": "python",
        "n_public_tests": len(public),
        "n_private_tests": len(private),
    }
    if fn_name:
        meta["fn_name"] = fn_name
    return _query(row["question_id"].strip(), source, "code",
                  lcb_user_prompt(row["question_content"], starter_code), tests=tests,
                  meta=meta)


def _lcb_local_files(spec: dict, name: str, release: str | None) -> list[Path]:
    path = _local_path(spec, name)
    if not path.is_dir():
        return [path]
    if release is None:
        raise BenchmarkError(f"benchmark {name}: {path} is a directory; set 'release' "
                             "(e.g. release_v5) to choose its files")
    files = [path / f for f in lcb_release_files(release)]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"benchmark {name}: release {release} needs {missing}")
    return files


def _lcb_hub_files(spec: dict, name: str, release: str | None) -> list[Path]:
    # datasets>=4 no longer runs the dataset's loading script (``version_tag``), so the
    # release's jsonl files are fetched directly, at the pinned revision.
    from huggingface_hub import hf_hub_download

    revision = _check_revision(spec, name)
    if release is None:
        raise BenchmarkError(f"benchmark {name}: set 'release' (e.g. release_v5)")
    return [Path(hf_hub_download(spec.get("repo_id") or LCB_DEFAULT_REPO, filename,
                                 repo_type="dataset", revision=revision))
            for filename in lcb_release_files(release)]


def load_livecodebench(name: str, spec: dict) -> list[dict]:
    """code_generation_lite problems of ``spec['release']`` inside ``spec['date_window']``
    (see :func:`in_date_window`), from ``path`` (a file, or a directory holding the
    release's ``test*.jsonl``) or the hub (``repo_id``, ``revision``)."""
    release = spec.get("release")
    window = parse_date_window(spec.get("date_window"), name)
    files = (_lcb_local_files(spec, name, release) if spec.get("path")
             else _lcb_hub_files(spec, name, release))
    cap = int(spec.get("max_decoded_bytes") or DEFAULT_MAX_DECODED_BYTES)
    limit = spec.get("max_problems")
    problems: list[dict] = []
    for file in files:
        for where, row in _jsonl_rows(file):
            problem = lcb_problem(row, where, name, release=release, window=window,
                                  max_decoded_bytes=cap)
            if problem is not None:
                problems.append(problem)
                if limit and len(problems) >= limit:
                    return problems
    return problems


def lcb_public_problem(row: dict, where: str, source: str) -> dict:
    """One row of the public-tests-only slice (``problem``, ``starter_code``, ``tests``)
    as a code pseudo-query flagged ``public_only`` in meta. The slice has no question
    ids, so the id is a hash of the statement and starter code."""
    for field in ("problem", "starter_code", "tests"):
        if field not in row:
            raise _row_error(where, field, f"missing; the row has {sorted(row)}")
    if not isinstance(row["problem"], str) or not row["problem"].strip():
        raise _row_error(where, "problem", "empty or not a string")
    starter_code = row["starter_code"] or ""
    if not isinstance(starter_code, str):
        raise _row_error(where, "starter_code", f"expected a string, got {starter_code!r}")
    try:
        raw = _check_tests(row["tests"], "tests")
    except PrivateTestsError as exc:
        raise _row_error(where, "tests", str(exc)) from exc
    if not raw:
        raise _row_error(where, "tests", "no tests")
    types = {t.get("testtype") for t in raw}
    if not types <= {"stdin", "functional"} or len(types) != 1:
        raise _row_error(where, "tests", f"expected all stdin or all functional tests, got "
                         f"{sorted(map(str, types))}")
    fn_name = None
    if types == {"functional"}:
        from distillab.verify_code import starter_fn_name

        fn_name = starter_fn_name(starter_code)
        if fn_name is None:
            raise _row_error(where, "starter_code", "functional tests but no "
                             "`def name(self, …)` method to call in the starter code")
    digest = hashlib.sha256(f"{row['problem']}\0{starter_code}".encode()).hexdigest()
    meta: dict[str, Any] = {"public_only": True, "language": "python",
                            "n_public_tests": len(raw), "n_private_tests": 0}
    if fn_name:
        meta["fn_name"] = fn_name
    return _query(f"lcb-public-{digest[:16]}", source, "code",
                  lcb_user_prompt(row["problem"], starter_code),
                  tests=_lcb_tests(raw, fn_name), meta=meta)


def load_livecodebench_public(name: str, spec: dict) -> list[dict]:
    """The local public-tests-only slice (a JSON array); smoke tests only."""
    if not spec.get("path"):
        raise BenchmarkError(f"benchmark {name}: kind livecodebench_public needs 'path' "
                             "(a local JSON array; there is no hub copy)")
    path = _local_path(spec, name)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"{path}: not a JSON file ({exc})") from exc
    if not isinstance(rows, list):
        raise BenchmarkError(f"{path}: expected a JSON array of problems")
    problems = []
    for index, row in enumerate(rows, start=1):
        where = f"{path} row {index}"
        if not isinstance(row, dict):
            raise _row_error(where, None, f"expected an object, got {type(row).__name__}")
        problems.append(lcb_public_problem(row, where, name))
    return problems


# ------------------------------------------------------------------- generic jsonl


def load_jsonl(name: str, spec: dict) -> list[dict]:
    """Native rows of a local JSON-lines file: ``id_field`` (default ``id``),
    ``text_field`` (default ``prompt``), optional ``answer_field`` (-> reference answer)
    or a ``reference`` object, optional ``tests`` / ``constraints`` / ``meta``;
    ``category`` from the spec; ``filter`` keeps rows whose fields equal its values."""
    if not spec.get("path"):
        raise BenchmarkError(f"benchmark {name}: kind jsonl needs 'path'")
    category = spec.get("category")
    if not category:
        raise BenchmarkError(f"benchmark {name}: kind jsonl needs 'category'")
    path = _local_path(spec, name)
    id_field, text_field = spec.get("id_field", "id"), spec.get("text_field", "prompt")
    answer_field = spec.get("answer_field")
    wanted = spec.get("filter") or {}
    problems = []
    for where, row in _jsonl_rows(path):
        if any(row.get(k) != v for k, v in wanted.items()):
            continue
        for field in [id_field, text_field] + ([answer_field] if answer_field else []):
            if field not in row:
                raise _row_error(where, field, "missing")
        if not isinstance(row[text_field], str):
            raise _row_error(where, text_field, "not a string")
        reference = ({"answer": _answer_text(row[answer_field], answer_field, where)}
                     if answer_field else row.get("reference"))
        query = _query(str(row[id_field]), name, category, row[text_field],
                       reference=reference, tests=row.get("tests"),
                       meta=row.get("meta") or {})
        if row.get("constraints") is not None:
            query["constraints"] = json.dumps(row["constraints"])
        problems.append(query)
    return problems


# ------------------------------------------------------------------------ dispatch

LOADERS: dict[str, Callable[[str, dict], list[dict]]] = {
    "math500": lambda name, spec: load_math("math500", name, spec),
    "aime2024": lambda name, spec: load_math("aime2024", name, spec),
    "aime2025": lambda name, spec: load_math("aime2025", name, spec),
    "livecodebench": load_livecodebench,
    "livecodebench_public": load_livecodebench_public,
    "jsonl": load_jsonl,
}


def _check_unique(name: str, problems: Iterable[dict]) -> None:
    seen: set[str] = set()
    for p in problems:
        if p["query_id"] in seen:
            raise BenchmarkError(f"benchmark {name}: duplicate problem id {p['query_id']!r}")
        seen.add(p["query_id"])


def load_benchmark_problems(name: str, spec: dict) -> list[dict]:
    """The problems of benchmark ``name`` as QUERY-schema dicts (see module docstring).

    Raises ValueError for an unknown ``kind`` (listing the kinds), BenchmarkError (a
    ValueError) naming file, row and field for unusable rows, FileNotFoundError for a
    missing local file.
    """
    kind = spec.get("kind")
    if kind not in LOADERS:
        raise ValueError(f"benchmark {name}: unknown kind {kind!r}; expected one of "
                         f"{', '.join(KINDS)}")
    if kind in MATH_FIELDS and not spec.get("path") and not spec.get("repo_id"):
        raise BenchmarkError(f"benchmark {name}: set 'path' (a local copy) or 'repo_id' + "
                             "'revision' (the hub)")
    if kind == "livecodebench" and not spec.get("path") and not spec.get("revision"):
        raise BenchmarkError(f"benchmark {name}: set 'path' (local release files) or "
                             f"'revision' (+ 'repo_id', default {LCB_DEFAULT_REPO})")
    problems = LOADERS[kind](name, spec)
    if not problems:
        raise BenchmarkError(f"benchmark {name}: no problems (kind {kind}, "
                             f"date_window {spec.get('date_window')}, filter {spec.get('filter')})")
    _check_unique(name, problems)
    limit = spec.get("max_problems")
    return problems[:limit] if limit else problems
