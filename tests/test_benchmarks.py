"""distillab.benchmarks: the evaluation benchmarks as QUERY-schema pseudo-queries.

Three parts: the local copies in ../shared/benchmarks (counts, fields, known answers,
MATH500 graded against itself with the real math verifier), synthetic rows for what
cannot be fetched here (LiveCodeBench releases, date windows, hub rows), and the
restricted decoder of LiveCodeBench's private tests, which must refuse any pickle that
references code, without running it.
"""

from __future__ import annotations

import base64
import collections
import copyreg
import json
import os
import pickle
import re
import zlib
from datetime import datetime
from pathlib import Path

import pytest

from distillab import schemas
from distillab.benchmarks import (KINDS, LCB_SYSTEM_MESSAGE, BenchmarkError,
                                  PrivateTestsError, decode_private_tests, in_date_window,
                                  lcb_problem, lcb_release_files, lcb_user_prompt,
                                  load_benchmark_problems, math_problem, parse_date_window)
from distillab.io import iter_jsonl, table_from_rows

QUERY_FIELDS = {f.name for f in schemas.QUERY}


def spec_for(shared: Path, kind: str) -> dict:
    path = {"math500": "math500/test.jsonl", "aime2024": "aime2024/test.jsonl",
            "aime2025": "aime2025/test.jsonl",
            "livecodebench_public":
                "livecodebench_public_only/livecodebench_public_tests.json"}[kind]
    return {"kind": kind, "path": str(shared / path)}


def meta(problem: dict) -> dict:
    return json.loads(problem["meta"])


def answer(problem: dict) -> str:
    return json.loads(problem["reference"])["answer"]


# ======================================================= the local copies (shared folder)

@pytest.mark.benchmarks
@pytest.mark.parametrize("kind, count", [("aime2024", 30), ("aime2025", 30),
                                         ("math500", 500), ("livecodebench_public", 879)])
def test_local_copies_load_as_valid_queries(shared_benchmarks: Path, kind: str, count: int
                                            ) -> None:
    problems = load_benchmark_problems(kind, spec_for(shared_benchmarks, kind))
    assert len(problems) == count
    assert len({p["query_id"] for p in problems}) == count
    for p in problems:
        assert set(p) == QUERY_FIELDS
        assert p["source"] == kind
        assert len(p["messages"]) == 1 and p["messages"][0]["role"] == "user"
        assert p["messages"][0]["content"].strip()
        assert p["constraints"] is None
    table_from_rows(problems, schemas.QUERY, kind)  # the parquet schema accepts them


@pytest.mark.benchmarks
def test_max_problems_keeps_file_order(shared_benchmarks: Path) -> None:
    spec = spec_for(shared_benchmarks, "math500")
    full = load_benchmark_problems("math500", spec)
    assert load_benchmark_problems("math500", {**spec, "max_problems": 7}) == full[:7]


@pytest.mark.benchmarks
def test_aime2025_known_answers_and_contests(shared_benchmarks: Path) -> None:
    problems = {p["query_id"]: p for p in
                load_benchmark_problems("aime2025", spec_for(shared_benchmarks, "aime2025"))}
    assert sorted(problems, key=int) == [str(i) for i in range(30)]
    first = problems["0"]
    assert answer(first) == "70"  # the file stores the int 70
    assert first["category"] == "math" and first["tests"] is None
    assert first["messages"][0]["content"].startswith("Find the sum of all integer bases $b>9$")
    assert meta(first) == {"year": 2025, "contest": "AIME I", "number": 1}
    assert meta(problems["29"]) == {"year": 2025, "contest": "AIME II", "number": 15}
    assert collections.Counter(meta(p)["contest"] for p in problems.values()) == {
        "AIME I": 15, "AIME II": 15}
    assert all(re.fullmatch(r"\d{1,3}", answer(p)) for p in problems.values())


@pytest.mark.benchmarks
def test_aime2024_answers_are_integer_strings(shared_benchmarks: Path) -> None:
    path = shared_benchmarks / "aime2024" / "test.jsonl"
    raw = [row for _, row in iter_jsonl(path)]
    assert all(isinstance(r["answer"], str) and re.fullmatch(r"\d{1,3}", r["answer"])
               for r in raw)
    problems = load_benchmark_problems("aime2024", spec_for(shared_benchmarks, "aime2024"))
    assert [answer(p) for p in problems] == [r["answer"] for r in raw]
    assert [p["query_id"] for p in problems] == [str(r["id"]) for r in raw]
    assert [p["messages"][0]["content"] for p in problems] == [r["problem"] for r in raw]
    by_id = {p["query_id"]: p for p in problems}
    # id 60 is 2024 AIME I problem 1 (Aya's walk), answer 204
    assert answer(by_id["60"]) == "204"
    assert meta(by_id["60"])["contest"] == "AIME I" and meta(by_id["60"])["number"] == 1
    assert collections.Counter(meta(p)["contest"] for p in problems) == {
        "AIME I": 15, "AIME II": 15}
    assert sorted((meta(p)["contest"], meta(p)["number"]) for p in problems) == sorted(
        (c, n) for c in ("AIME I", "AIME II") for n in range(1, 16))


@pytest.mark.benchmarks
def test_math500_fields_levels_and_a_known_answer(shared_benchmarks: Path) -> None:
    problems = load_benchmark_problems("math500", spec_for(shared_benchmarks, "math500"))
    assert len({p["query_id"] for p in problems}) == 500
    levels = collections.Counter(meta(p)["level"] for p in problems)
    assert dict(sorted(levels.items())) == {1: 43, 2: 90, 3: 105, 4: 128, 5: 134}
    subjects = collections.Counter(meta(p)["subject"] for p in problems)
    assert subjects["Algebra"] == 124 and subjects["Counting & Probability"] == 38
    by_id = {p["query_id"]: p for p in problems}
    first = by_id["test/precalculus/807.json"]
    assert answer(first) == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert meta(first) == {"level": 2, "subject": "Precalculus"}
    assert first["messages"][0]["content"].startswith(
        "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.")


@pytest.mark.benchmarks
def test_livecodebench_public_slice(shared_benchmarks: Path) -> None:
    problems = load_benchmark_problems("lcb_public",
                                       spec_for(shared_benchmarks, "livecodebench_public"))
    assert len(problems) == 879
    tests = {p["query_id"]: json.loads(p["tests"]) for p in problems}
    kinds = collections.Counter(t["testtype"] for ts in tests.values() for t in ts)
    assert kinds == {"stdin": 1365, "functional": 934}
    functional = [p for p in problems if "fn_name" in meta(p)]
    assert len(functional) == 381
    for p in problems:
        m, prompt = meta(p), p["messages"][0]["content"]
        assert m["public_only"] is True and m["n_private_tests"] == 0
        assert p["category"] == "code" and p["reference"] is None
        assert prompt.startswith("### Question:\n")
        assert prompt.endswith("### Answer: (use the provided format with backticks)\n\n")
        if "fn_name" in m:
            assert all(t["testtype"] == "functional" and t["fn_name"] == m["fn_name"]
                       for t in tests[p["query_id"]])
            assert f"def {m['fn_name']}(self" in prompt
            assert "### Format: You will use the following starter code" in prompt
            assert "# YOUR CODE HERE" not in prompt
        else:
            assert all(t["testtype"] == "stdin" and "fn_name" not in t
                       for t in tests[p["query_id"]])
            assert "```python\n# YOUR CODE HERE\n```" in prompt
    # the starter code is in the prompt verbatim, fenced
    raw = json.loads((shared_benchmarks / "livecodebench_public_only" /
                      "livecodebench_public_tests.json").read_text())
    for row, p in zip(raw, problems):
        if row["starter_code"]:
            assert f"```python\n{row['starter_code']}\n```" in p["messages"][0]["content"]
        assert p["messages"][0]["content"] == lcb_user_prompt(row["problem"],
                                                              row["starter_code"])


@pytest.mark.benchmarks
def test_livecodebench_public_tests_run_in_the_code_verifier(shared_benchmarks: Path) -> None:
    """The ``tests`` and ``meta`` the loader writes are what verify_responses reads: a
    program answering each public test from a table passes, one printing nothing fails."""
    from distillab.verify import VerifySettings, verify_responses

    problems = load_benchmark_problems("lcb_public",
                                       spec_for(shared_benchmarks, "livecodebench_public"))
    stdin = [p for p in problems if "fn_name" not in meta(p)][:2]
    functional = [p for p in problems if "fn_name" in meta(p)][:2]
    responses = []
    for p in stdin:
        table = {t["input"]: t["output"] for t in json.loads(p["tests"])}
        program = (f"import sys\nTABLE = {table!r}\n"
                   "sys.stdout.write(TABLE.get(sys.stdin.read(), ''))")
        responses.append((p, program, True))
        responses.append((p, "print()", False))
    for p in functional:
        table = {json.dumps([json.loads(x) for x in t["input"].split("\n")]):
                 json.loads(t["output"]) for t in json.loads(p["tests"])}
        program = (f"import json\nTABLE = {table!r}\nclass Solution:\n"
                   f"    def {meta(p)['fn_name']}(self, *args):\n"
                   "        return TABLE[json.dumps(list(args))]\n")
        responses.append((p, program, True))
        responses.append((p, f"class Solution:\n    def {meta(p)['fn_name']}(self, *a):\n"
                             "        return None", False))
    rows = [{"query_id": p["query_id"], "teacher": "t", "round": 0, "sample": i,
             "text": f"<think>x</think><answer>```python\n{code}\n```</answer>",
             "think": "x", "answer": f"```python\n{code}\n```", "n_tokens": 1,
             "finish_reason": "stop", "gen_params_hash": ""}
            for i, (p, code, _) in enumerate(responses)]
    verdicts = verify_responses(rows, {p["query_id"]: p for p, _, _ in responses},
                                VerifySettings(workers=2))
    assert [v["verifier"] for v in verdicts] == ["code"] * len(rows)
    assert [v["score"] == 1.0 for v in verdicts] == [ok for _, _, ok in responses], [
        json.loads(v["details"]).get("first_failure") for v in verdicts]


@pytest.mark.benchmarks
def test_math500_references_graded_against_themselves(shared_benchmarks: Path) -> None:
    """All 500 MATH500 reference answers, boxed in the study's response format, pass the
    real math verifier (through verify_responses: split, worker pool, math-verify)."""
    from distillab.parse import split_think_answer
    from distillab.verify import VerifySettings, verify_responses

    problems = load_benchmark_problems("math500", spec_for(shared_benchmarks, "math500"))
    rows = []
    for p in problems:
        text = f"<think>x</think><answer>\\boxed{{{answer(p)}}}</answer>"
        think, graded = split_think_answer(text)
        assert graded == f"\\boxed{{{answer(p)}}}", p["query_id"]
        rows.append({"query_id": p["query_id"], "teacher": "self", "round": 0, "sample": 0,
                     "text": text, "think": think, "answer": graded, "n_tokens": 1,
                     "finish_reason": "stop", "gen_params_hash": ""})
    # negative controls: a wrong box must fail, so the check can fail at all
    wrong = [{**rows[i], "sample": 1, "answer": "\\boxed{123456789}",
              "text": "<think>x</think><answer>\\boxed{123456789}</answer>"}
             for i in (0, 250, 499)]
    verdicts = verify_responses(rows + wrong, {p["query_id"]: p for p in problems},
                                VerifySettings(workers=2, timeout_s=30.0))
    failed = [(v["query_id"], json.loads(v["details"])) for v in verdicts[:500]
              if not v["passed"]]
    assert not failed, failed
    assert sum(v["passed"] for v in verdicts[:500]) == 500
    assert [v["passed"] for v in verdicts[500:]] == [False] * 3


# ====================================================== restricted private-test decoder

def encode(obj: object, protocol: int = pickle.DEFAULT_PROTOCOL) -> str:
    """LiveCodeBench's storage: base64(zlib(pickle(obj)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(obj, protocol=protocol))).decode()


def encode_raw(payload: bytes) -> str:
    return base64.b64encode(zlib.compress(payload)).decode()


TESTS = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"},
         {"input": "[1, 2]\n3", "output": "[4]", "testtype": "functional"}]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_decoder_round_trips_a_pickled_json_string(protocol: int) -> None:
    assert decode_private_tests(encode(json.dumps(TESTS), protocol)) == TESTS


def test_decoder_accepts_a_pickled_list_and_plain_json() -> None:
    assert decode_private_tests(encode(TESTS)) == TESTS
    assert decode_private_tests(json.dumps(TESTS)) == TESTS  # LCB tries plain JSON first
    assert decode_private_tests(encode("[]")) == []


class _Reduce:
    """Pickles as ``func(*args)``: the classic malicious pickle."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _malicious_payloads(marker: Path) -> dict[str, bytes]:
    command = f"touch {marker}"
    return {
        **{f"os.system protocol {p}": pickle.dumps(_Reduce(os.system, command), protocol=p)
           for p in (0, 2, 4, 5)},  # GLOBAL (0, 2) / STACK_GLOBAL (4, 5) + REDUCE
        "builtins.open": pickle.dumps(_Reduce(open, str(marker), "w"), protocol=4),
        "exec inside a list": pickle.dumps(
            [json.dumps(TESTS), _Reduce(exec, f"open({str(marker)!r}, 'w').close()")]),
        # hand-written opcodes: INST (old-style instantiation through find_class)
        "INST": f"(S'{command}'\nios\nsystem\n.".encode(),
        # GLOBAL + TUPLE1 + REDUCE, protocol 0 text
        "GLOBAL": f"cos\nsystem\n(S'{command}'\ntR.".encode(),
        # persistent id: refused without calling anything
        "BINPERSID": b"\x80\x02X\x03\x00\x00\x00abcQ.",
        "PERSID": b"Pabc\n.",
    }


def test_decoder_refuses_code_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    for label, payload in _malicious_payloads(marker).items():
        with pytest.raises(PrivateTestsError, match="refused"):
            decode_private_tests(encode_raw(payload))
        assert not marker.exists(), f"{label} ran code"
    # sanity: the same pickles do run code when loaded without the restriction
    pickle.loads(pickle.dumps(_Reduce(open, str(marker), "w")))
    assert marker.exists()


def test_decoder_refuses_extension_registry_globals(tmp_path: Path) -> None:
    """EXT1 names a global through copyreg's extension registry, not by name."""
    marker = tmp_path / "marker"
    code = 0xF0
    copyreg.add_extension("os", "system", code)
    try:
        command = f"touch {marker}".encode()
        payload = (b"\x80\x02\x82" + bytes([code]) + b"X" + len(command).to_bytes(4, "little")
                   + command + b"\x85R.")
        with pytest.raises(PrivateTestsError, match="refused: the pickle references os.system"):
            decode_private_tests(encode_raw(payload))
    finally:
        copyreg.remove_extension("os", "system", code)
    assert not marker.exists()


def test_decoder_caps_the_decompressed_size() -> None:
    text = json.dumps([{"input": "x" * 5000, "output": "y", "testtype": "stdin"}])
    blob = encode(text)
    size = len(pickle.dumps(text))
    assert decode_private_tests(blob, max_bytes=size) == json.loads(text)
    with pytest.raises(PrivateTestsError, match=f"more than {size - 1} bytes"):
        decode_private_tests(blob, max_bytes=size - 1)
    bomb = base64.b64encode(zlib.compress(b"\0" * (8 << 20))).decode()  # 8 MiB of zeros
    assert len(bomb) < 20_000
    with pytest.raises(PrivateTestsError, match="more than"):
        decode_private_tests(bomb, max_bytes=1 << 20)


@pytest.mark.parametrize("blob, message", [
    ("not base64 at all!!", "not a zlib stream|not base64"),
    (base64.b64encode(b"plain bytes, not zlib").decode(), "not a zlib stream"),
    (base64.b64encode(zlib.compress(pickle.dumps("x"))[:-6]).decode(), "truncated"),
    (encode_raw(b"\x80\x04garbage"), "not a valid pickle"),
    (encode("this is not json"), "not JSON"),
    (encode({"input": "1", "output": "2"}), "expected a list"),
    (encode([{"input": 1, "output": "2"}]), "test 0 is not"),
])
def test_decoder_rejects_malformed_blobs(blob: str, message: str) -> None:
    with pytest.raises(PrivateTestsError, match=message):
        decode_private_tests(blob)


# =========================================================== LiveCodeBench (synthetic rows)

def lcb_row(question_id: str, contest_date: str, *, starter_code: str = "",
            func_name: str | None = None, private: str | None = None, **over) -> dict:
    """A code_generation_lite row with LiveCodeBench's field names and encodings."""
    testtype = "functional" if func_name else "stdin"
    public = [{"input": f"{question_id} in", "output": "public out", "testtype": testtype}]
    hidden = [{"input": f"{question_id} private {i}", "output": f"out {i}",
               "testtype": testtype} for i in range(2)]
    row = {
        "question_title": f"title {question_id}",
        "question_content": f"Statement of {question_id}.",
        "platform": "leetcode" if func_name else "atcoder",
        "question_id": question_id,
        "contest_id": f"contest-{question_id}",
        "contest_date": contest_date,
        "starter_code": starter_code,
        "difficulty": "medium",
        "public_test_cases": json.dumps(public),
        "private_test_cases": private if private is not None else encode(json.dumps(hidden)),
        "metadata": json.dumps({"func_name": func_name} if func_name else {}),
    }
    row.update(over)
    return row


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_lcb_prompt_is_livecodebench_generic_template_verbatim() -> None:
    assert lcb_user_prompt("Add two numbers.", "") == (
        "### Question:\nAdd two numbers.\n\n"
        "### Format: Read the inputs from stdin solve the problem and write the answer to "
        "stdout (do not directly test on the sample inputs). Enclose your code within "
        "delimiters as follows. Ensure that when the python program runs, it reads the "
        "inputs, runs the algorithm and writes output to STDOUT.\n"
        "```python\n# YOUR CODE HERE\n```\n\n"
        "### Answer: (use the provided format with backticks)\n\n")
    starter = "class Solution:\n    def add(self, a: int, b: int) -> int:\n        "
    assert lcb_user_prompt("Add.", starter) == (
        "### Question:\nAdd.\n\n"
        "### Format: You will use the following starter code to write the solution to the "
        "problem and enclose your code within delimiters.\n"
        f"```python\n{starter}\n```\n\n"
        "### Answer: (use the provided format with backticks)\n\n")
    assert LCB_SYSTEM_MESSAGE.startswith("You are an expert Python programmer.")


def test_lcb_row_mapping_stdin_and_functional() -> None:
    stdin = lcb_problem(lcb_row("abc387_a", "2025-01-04T00:00:00"), "f:1", "lcb",
                        release="release_v5")
    assert stdin is not None and set(stdin) == QUERY_FIELDS
    assert stdin["query_id"] == "abc387_a" and stdin["category"] == "code"
    assert stdin["messages"] == [{"role": "user",
                                  "content": lcb_user_prompt("Statement of abc387_a.", "")}]
    assert json.loads(stdin["tests"]) == [  # public first, then private, as LCB grades
        {"testtype": "stdin", "input": "abc387_a in", "output": "public out"},
        {"testtype": "stdin", "input": "abc387_a private 0", "output": "out 0"},
        {"testtype": "stdin", "input": "abc387_a private 1", "output": "out 1"}]
    assert meta(stdin) == {"platform": "atcoder", "difficulty": "medium",
                           "contest_date": "2025-01-04T00:00:00", "contest_id": "contest-abc387_a",
                           "question_title": "title abc387_a", "release": "release_v5",
                           "language": "python", "n_public_tests": 1, "n_private_tests": 2}
    starter = "class Solution:\n    def minOps(self, nums: List[int]) -> int:\n        "
    functional = lcb_problem(lcb_row("3600", "2024-11-09T19:30:00", starter_code=starter,
                                     func_name="minOps"), "f:2", "lcb")
    assert functional is not None
    assert all(t["testtype"] == "functional" and t["fn_name"] == "minOps"
               for t in json.loads(functional["tests"]))
    assert meta(functional)["fn_name"] == "minOps"
    assert meta(functional)["platform"] == "leetcode"
    assert f"```python\n{starter}\n```" in functional["messages"][0]["content"]
    table_from_rows([stdin, functional], schemas.QUERY, "lcb")


def test_date_window_semantics_are_livecodebench_s() -> None:
    start, end = parse_date_window(["2024-10-01", "2025-02-01"])
    assert (start, end) == (datetime(2024, 10, 1), datetime(2025, 2, 1))
    inside = ["2024-10-01T00:00:00", "2024-12-15T19:30:00", "2025-02-01T00:00:00"]
    outside = ["2024-09-30T23:59:59", "2025-02-01T12:00:00", "2025-03-01T00:00:00"]
    assert all(in_date_window(datetime.fromisoformat(d), start, end) for d in inside)
    assert not any(in_date_window(datetime.fromisoformat(d), start, end) for d in outside)
    assert parse_date_window(None) == (None, None)
    assert parse_date_window([None, "2025-02-01"]) == (None, datetime(2025, 2, 1))
    for bad in (["2024/10/01", "2025-02-01"], ["2024-10-01"], "2024-10-01"):
        with pytest.raises(BenchmarkError):
            parse_date_window(bad)


def test_release_files() -> None:
    assert lcb_release_files("release_v5") == ["test.jsonl", "test2.jsonl", "test3.jsonl",
                                               "test4.jsonl", "test5.jsonl"]
    assert lcb_release_files("release_v1") == ["test.jsonl"]
    assert lcb_release_files("v5") == ["test5.jsonl"]
    assert lcb_release_files("v4_v5") == ["test4.jsonl", "test5.jsonl"]
    for bad in ("release_latest", "release_v9", "v0", "latest"):
        with pytest.raises(BenchmarkError):
            lcb_release_files(bad)


def _release_dir(tmp_path: Path) -> Path:
    """test.jsonl … test5.jsonl with rows around the paper's window; rows outside it
    carry a hostile private-tests blob, which must never be decoded."""
    hostile = encode_raw(pickle.dumps(_Reduce(open, str(tmp_path / "marker"), "w")))
    files = {
        "test.jsonl": [lcb_row("old", "2023-05-01T00:00:00", private=hostile)],
        "test2.jsonl": [lcb_row("before", "2024-09-30T23:59:59", private=hostile)],
        "test3.jsonl": [lcb_row("start", "2024-10-01T00:00:00")],
        "test4.jsonl": [lcb_row("mid", "2024-12-15T19:30:00", func_name="f",
                                starter_code="class Solution:\n    def f(self, x):\n        ")],
        "test5.jsonl": [lcb_row("end", "2025-02-01T00:00:00"),
                        lcb_row("after", "2025-02-01T12:00:00", private=hostile),
                        lcb_row("later", "2025-03-01T00:00:00", private=hostile)],
    }
    folder = tmp_path / "code_generation_lite"
    folder.mkdir()
    for name, rows in files.items():
        write_jsonl(folder / name, rows)
    return folder


def test_livecodebench_release_and_window_filtering(tmp_path: Path) -> None:
    folder = _release_dir(tmp_path)
    spec = {"kind": "livecodebench", "path": str(folder), "release": "release_v5",
            "date_window": ["2024-10-01", "2025-02-01"]}
    problems = load_benchmark_problems("lcb_v5", spec)
    assert [p["query_id"] for p in problems] == ["start", "mid", "end"]
    assert not (tmp_path / "marker").exists()  # out-of-window blobs were never unpickled
    assert all(meta(p)["release"] == "release_v5" for p in problems)
    v4 = load_benchmark_problems("lcb_v4", {**spec, "release": "release_v4"})
    assert [p["query_id"] for p in v4] == ["start", "mid"]
    head = load_benchmark_problems("lcb", {**spec, "max_problems": 2})
    assert [p["query_id"] for p in head] == ["start", "mid"]
    # no window: everything, so the hostile blobs are decoded -- and refused
    with pytest.raises(BenchmarkError, match=r"test\.jsonl:1: field 'private_test_cases': "
                                             r"refused"):
        load_benchmark_problems("lcb", {**spec, "date_window": None})
    assert not (tmp_path / "marker").exists()
    # a single file works without a release
    one = load_benchmark_problems("lcb", {"kind": "livecodebench",
                                          "path": str(folder / "test5.jsonl"),
                                          "date_window": ["2025-02-01", "2025-02-01"]})
    assert [p["query_id"] for p in one] == ["end"]


def test_livecodebench_errors_name_file_line_and_field(tmp_path: Path) -> None:
    good = lcb_row("a", "2024-11-01T00:00:00")
    broken = {k: v for k, v in lcb_row("b", "2024-11-02T00:00:00").items() if k != "difficulty"}
    path = write_jsonl(tmp_path / "test.jsonl", [good, broken])
    with pytest.raises(BenchmarkError, match=rf"{re.escape(str(path))}:2: field 'difficulty'"):
        load_benchmark_problems("lcb", {"kind": "livecodebench", "path": str(path)})
    bad_date = write_jsonl(tmp_path / "d.jsonl", [lcb_row("c", "Nov 2024")])
    with pytest.raises(BenchmarkError, match=r"d\.jsonl:1: field 'contest_date'"):
        load_benchmark_problems("lcb", {"kind": "livecodebench", "path": str(bad_date)})
    bad_public = write_jsonl(tmp_path / "p.jsonl", [lcb_row("e", "2024-11-01T00:00:00",
                                                            public_test_cases="{oops")])
    with pytest.raises(BenchmarkError, match=r"p\.jsonl:1: field 'public_test_cases'"):
        load_benchmark_problems("lcb", {"kind": "livecodebench", "path": str(bad_public)})
    duplicate = write_jsonl(tmp_path / "dup.jsonl", [good, good])
    with pytest.raises(BenchmarkError, match="duplicate problem id 'a'"):
        load_benchmark_problems("lcb", {"kind": "livecodebench", "path": str(duplicate)})
    with pytest.raises(BenchmarkError, match="set 'release'"):
        load_benchmark_problems("lcb", {"kind": "livecodebench", "path": str(tmp_path)})
    with pytest.raises(BenchmarkError, match="no problems"):
        load_benchmark_problems("lcb", {"kind": "livecodebench", "path": str(path),
                                        "date_window": ["2030-01-01", None]})


def test_livecodebench_hub_path_downloads_the_release_at_the_revision(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")
    folder = _release_dir(tmp_path)
    calls = []

    def fake_download(repo_id, filename, *, repo_type, revision):
        calls.append((repo_id, filename, repo_type, revision))
        return str(folder / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    revision = "0fe84c3912ea0c4d4a78037083943e8f0c4dd505"
    problems = load_benchmark_problems("lcb", {
        "kind": "livecodebench", "revision": revision, "release": "release_v5",
        "date_window": ["2024-10-01", "2025-02-01"]})
    assert [p["query_id"] for p in problems] == ["start", "mid", "end"]
    assert calls == [("livecodebench/code_generation_lite", f, "dataset", revision)
                     for f in lcb_release_files("release_v5")]
    with pytest.raises(BenchmarkError, match="revision"):
        load_benchmark_problems("lcb", {"kind": "livecodebench", "release": "release_v5"})


# ============================================================= hub rows of the math sets

def test_hub_row_mapping_math500() -> None:
    # HuggingFaceH4/MATH-500, split test
    row = {"problem": "What is $1+1$?", "solution": "It is $\\boxed{2}$.", "answer": "2",
           "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/1.json"}
    p = math_problem("math500", row, "hf row 1", "math500", local=False, index=0)
    assert p["query_id"] == "test/prealgebra/1.json" and answer(p) == "2"
    assert p["messages"][0]["content"] == "What is $1+1$?"
    assert meta(p) == {"level": 1, "subject": "Prealgebra"}
    p = math_problem("math500", {**row, "level": "Level 4"}, "w", "m", local=False, index=0)
    assert meta(p)["level"] == 4  # the original MATH spelling


def test_hub_row_mapping_aime2024_h4_and_maxwell_jia() -> None:
    # HuggingFaceH4/aime_2024 (split train): id, problem, solution, answer (str), url, year
    h4 = {"id": 60, "problem": "Every morning Aya…", "solution": "…", "answer": "204",
          "url": "https://artofproblemsolving.com/wiki/index.php/2024_AIME_I_Problems/Problem_1",
          "year": "2024"}
    p = math_problem("aime2024", h4, "hf row 1", "aime2024", local=False, index=0)
    assert (p["query_id"], answer(p)) == ("60", "204")
    assert meta(p) == {"year": 2024, "contest": "AIME I", "number": 1, "url": h4["url"]}
    # Maxwell-Jia/AIME_2024 (split train): ID "2024-II-4", Problem, Solution, Answer (int)
    mj = {"ID": "2024-II-4", "Problem": "Let $x,y$ and $z$…", "Solution": "…", "Answer": 33}
    p = math_problem("aime2024", mj, "hf row 20", "aime2024", local=False, index=19)
    assert (p["query_id"], answer(p)) == ("2024-II-4", "33")
    assert p["messages"][0]["content"] == "Let $x,y$ and $z$…"
    assert meta(p) == {"year": 2024, "contest": "AIME II", "number": 4}


def test_hub_row_mapping_aime2025_yentinglin_and_opencompass() -> None:
    # yentinglin/aime_2025 (split train): id, problem, answer, url, year
    yl = {"id": 15, "problem": "Six points…", "answer": "104", "year": "2025",
          "url": "https://artofproblemsolving.com/wiki/index.php/2025_AIME_II_Problems/Problem_1"}
    p = math_problem("aime2025", yl, "hf row 16", "aime2025", local=False, index=15)
    assert (p["query_id"], answer(p)) == ("15", "104")
    assert meta(p)["contest"] == "AIME II" and meta(p)["number"] == 1
    # opencompass/AIME2025 (configs AIME2025-I / AIME2025-II, split test): question, answer
    oc = {"question": "Find the sum of all integer bases $b>9$…", "answer": "70"}
    p = math_problem("aime2025", oc, "hf row 1", "aime2025", config="AIME2025-I", index=0,
                     local=False)
    assert (p["query_id"], answer(p)) == ("AIME2025-I-0", "70")
    assert p["messages"][0]["content"] == oc["question"]
    assert meta(p) == {"year": 2025, "contest": "AIME I", "number": 1}


def test_hub_loading_passes_the_pin_and_reads_every_config(
        monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    calls = []
    rows = {"AIME2025-I": [{"question": "q1", "answer": "1"}, {"question": "q2", "answer": 2}],
            "AIME2025-II": [{"question": "q3", "answer": "3"}]}

    def fake_load_dataset(repo_id, name=None, *, split, revision):
        calls.append((repo_id, name, split, revision))
        return rows[name]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    revision = "a" * 40
    problems = load_benchmark_problems("aime2025", {
        "kind": "aime2025", "repo_id": "opencompass/AIME2025", "revision": revision,
        "config_name": ["AIME2025-I", "AIME2025-II"], "split": "test"})
    assert [(p["query_id"], answer(p)) for p in problems] == [
        ("AIME2025-I-0", "1"), ("AIME2025-I-1", "2"), ("AIME2025-II-0", "3")]
    assert [meta(p)["contest"] for p in problems] == ["AIME I", "AIME I", "AIME II"]
    assert calls == [("opencompass/AIME2025", c, "test", revision)
                     for c in ("AIME2025-I", "AIME2025-II")]
    with pytest.raises(BenchmarkError, match="needs a 'revision'"):
        load_benchmark_problems("aime2025", {"kind": "aime2025",
                                             "repo_id": "opencompass/AIME2025"})


def test_hub_rows_missing_a_field_name_the_location(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda repo_id, name=None, *, split, revision: [{"id": 1, "problem": "p"}])
    with pytest.raises(BenchmarkError, match=r"hf:yentinglin/aime_2025@r/default/train row 1: "
                                             r"field 'answer / Answer': missing"):
        load_benchmark_problems("aime2025", {"kind": "aime2025", "repo_id": "yentinglin/aime_2025",
                                             "revision": "r", "split": "train"})


# ============================================================== errors and dispatch

def test_unknown_kind_lists_the_kinds() -> None:
    with pytest.raises(ValueError, match="unknown kind 'gsm8k'") as info:
        load_benchmark_problems("x", {"kind": "gsm8k", "path": "x"})
    for kind in KINDS:
        assert kind in str(info.value)


def test_math_rows_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "aime.jsonl", [
        {"id": "0", "problem": "p", "answer": 70},
        {"id": "1", "problem": "q"}])
    where = re.escape(str(path))
    with pytest.raises(BenchmarkError, match=rf"{where}:2: field 'answer / Answer': missing"):
        load_benchmark_problems("aime2025", {"kind": "aime2025", "path": str(path)})
    levels = write_jsonl(tmp_path / "m.jsonl", [
        {"unique_id": "a", "problem": "p", "answer": "1", "subject": "Algebra", "level": 9}])
    with pytest.raises(BenchmarkError, match=r"m\.jsonl:1: field 'level'"):
        load_benchmark_problems("math500", {"kind": "math500", "path": str(levels)})
    dup = write_jsonl(tmp_path / "dup.jsonl", [{"id": 1, "problem": "p", "answer": "1"}] * 2)
    with pytest.raises(BenchmarkError, match="duplicate problem id '1'"):
        load_benchmark_problems("aime2024", {"kind": "aime2024", "path": str(dup)})
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_benchmark_problems("aime2024", {"kind": "aime2024", "path": str(tmp_path / "no")})
    with pytest.raises(BenchmarkError, match="set 'path'"):
        load_benchmark_problems("aime2024", {"kind": "aime2024"})


def test_field_override_for_an_unknown_copy(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"qid": "x1", "text": "p", "final": "12"}])
    problems = load_benchmark_problems("aime2024", {
        "kind": "aime2024", "path": str(path),
        "fields": {"id": "qid", "problem": "text", "answer": "final"}})
    assert [(p["query_id"], answer(p)) for p in problems] == [("x1", "12")]


def test_generic_jsonl_kind(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "b.jsonl", [
        {"id": "m1", "prompt": "2+2?", "answer": 4, "category": "math"},
        {"id": "s1", "prompt": "Pick", "reference": {"choices": ["a", "b"], "answer": "B"},
         "category": "science", "meta": {"domain": "bio"}},
    ])
    math = load_benchmark_problems("b", {"kind": "jsonl", "path": str(path), "category": "math",
                                         "answer_field": "answer",
                                         "filter": {"category": "math"}})
    assert [(p["query_id"], answer(p), p["category"]) for p in math] == [("m1", "4", "math")]
    science = load_benchmark_problems("b", {"kind": "jsonl", "path": str(path),
                                            "category": "science",
                                            "filter": {"category": "science"}})
    assert json.loads(science[0]["reference"]) == {"choices": ["a", "b"], "answer": "B"}
    assert meta(science[0]) == {"domain": "bio"}
    table_from_rows(math + science, schemas.QUERY, "b")


def test_public_slice_row_errors(tmp_path: Path) -> None:
    path = tmp_path / "lcb.json"
    path.write_text(json.dumps([
        {"problem": "p", "starter_code": "", "tests": [
            {"input": "1", "output": "1", "testtype": "stdin"}]},
        {"problem": "q", "starter_code": "def f(x):\n    pass", "tests": [
            {"input": "1", "output": "1", "testtype": "functional"}]},
    ]))
    with pytest.raises(BenchmarkError, match=r"lcb\.json row 2: field 'starter_code'"):
        load_benchmark_problems("p", {"kind": "livecodebench_public", "path": str(path)})
