"""``distillab archive`` / ``verify-archive`` on a synthetic results tree (no pipeline run).

Every tampering case rewrites the tarball with tarfile and checks that verification names
the member (or referenced file) at fault; nothing is ever extracted to disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from distillab import archive, cli
from distillab.archive import (MANIFEST, SUMS, classify, create_archive, read_manifest,
                               unsafe_name, verify_archive)

REPO_ROOT = Path(__file__).resolve().parents[1]

RESULT_FILES = {
    "report/summary.md": "# demo\npass@1 0.5\n",
    "report/summary.json": '{"pass@1": 0.5}\n',
    "report/summary.json.prov.json": '{"rule": "report"}\n',
    "eval/s__t/math500.json": '{"pass@1": 0.5}\n',
    "eval/s__t/math500.json.prov.json": '{"rule": "evaluate"}\n',
    "eval/s__t/math500.samples.parquet": "PAR1 samples",
    "analysis/stats.json": '{"n": 3}\n',
    "analysis/lengths.png": "\x89PNG fake",
    "accepted/t.parquet": "PAR1 accepted rows",
    "accepted/t.parquet.prov.json": '{"rule": "accepted"}\n',
    "accepted/t.stats.json": '{"accepted": 3}\n',
    "curated/t.stats.json": '{"kept": 2}\n',
    "queries/clean.parquet": "PAR1 queries",
    "generate/t/r0/s0.parquet": "PAR1 responses",
    "verify/t/r0/s0.parquet": "PAR1 verdicts",
    "models/m/weights.gguf": "GGUF" + "w" * 100,
    "models/m/provenance.json": '{"rule": "prepare_model"}\n',
    "train/s__t/model.safetensors": "S" * 300,
    "train/s__t/config.json": '{"hidden": 8}\n',
    "train/s__t/provenance.json": '{"rule": "train"}\n',
    "logs/accepted/t.log": "INFO 3 of 4 accepted\n",
}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com",
         "-c", "commit.gpgsign=false", *args],
        check=True, capture_output=True, text=True).stdout


def _build_study(tmp_path: Path) -> dict:
    """A results tree, a minimal config and a dirty git checkout with envs/*.yaml."""
    results = tmp_path / "results" / "demo"
    for rel, text in RESULT_FILES.items():
        p = results / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    config = tmp_path / "study.yaml"
    config.write_text("study: demo\nresults_dir: results\n")  # not a full study: recorded
    repo = tmp_path / "repo"
    (repo / "envs").mkdir(parents=True)
    (repo / "envs" / "core.yaml").write_text("name: core\ndependencies: [python=3.11]\n")
    (repo / "code.py").write_text("X = 1\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "init")
    (repo / "code.py").write_text("X = 2  # edited after the commit\n")
    (repo / "new_module.py").write_text("Y = 3\n")  # untracked, not ignored
    return {"root": tmp_path, "results": results, "config": config, "repo": repo}


@pytest.fixture
def study(tmp_path):
    return _build_study(tmp_path)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One archive shared by the tests that only read it (tampered copies go elsewhere)."""
    study = _build_study(tmp_path_factory.mktemp("built"))
    out, manifest = _make(study)
    return {**study, "out": out, "manifest": manifest}


def _make(study, out_name="a.tar.gz", **kw) -> tuple[Path, dict]:
    out = study["root"] / out_name
    manifest = create_archive(study["results"], [study["config"]], out, repo=study["repo"],
                              command=["test"], **kw)
    return out, manifest


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:*") as tar:
        return {i.name: tar.extractfile(i).read() for i in tar.getmembers() if i.isreg()}


def _rewrite(src: Path, dst: Path, change: dict[str, bytes] | None = None,
             drop: set[str] = frozenset(), add: list[tarfile.TarInfo | tuple] = ()) -> Path:
    """Copy ``src`` to ``dst`` with members replaced, dropped or added."""
    change = change or {}
    with tarfile.open(src, "r:gz") as tin, tarfile.open(dst, "w:gz") as tout:
        for info in tin.getmembers():
            if info.name in drop:
                continue
            data = change.get(info.name, tin.extractfile(info).read())
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
        for extra in add:
            if isinstance(extra, tarfile.TarInfo):
                tout.addfile(extra)
            else:
                name, data = extra
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tout.addfile(info, io.BytesIO(data))
    return dst


# ----------------------------------------------------------------- create + verify


def test_archive_then_verify_ok(study):
    out, manifest = _make(study)
    members = _members(out)
    names = list(members)
    assert names[0] == MANIFEST and names[1] == SUMS
    assert names[2:] == sorted(names[2:])  # deterministic, sorted order

    listed = {m["path"]: m for m in manifest["members"]}
    assert set(listed) == set(names) - {MANIFEST}
    refs = {r["path"]: r for r in manifest["referenced"]}
    # the report, evaluation, analysis, sidecars, stats and logs are copied in
    for rel in ("report/summary.md", "report/summary.json.prov.json", "eval/s__t/math500.json",
                "eval/s__t/math500.samples.parquet", "analysis/lengths.png",
                "accepted/t.stats.json", "curated/t.stats.json", "accepted/t.parquet.prov.json",
                "train/s__t/provenance.json", "models/m/provenance.json", "logs/accepted/t.log"):
        assert f"results/{rel}" in listed, rel
        assert members[f"results/{rel}"] == RESULT_FILES[rel].encode("utf-8")
    # checkpoints, models and parquet data are referenced by hash, not copied
    for rel in ("train/s__t/model.safetensors", "train/s__t/config.json",
                "models/m/weights.gguf", "queries/clean.parquet", "generate/t/r0/s0.parquet",
                "verify/t/r0/s0.parquet", "accepted/t.parquet"):
        assert f"results/{rel}" not in listed, rel
        data = RESULT_FILES[rel].encode("utf-8")
        assert refs[rel]["sha256"] == hashlib.sha256(data).hexdigest()
        assert refs[rel]["size"] == len(data)
        assert refs[rel]["source"] == str((study["results"] / rel).resolve())
    assert refs["train/s__t/model.safetensors"]["kind"] == "checkpoint"
    # every file of the tree is accounted for exactly once
    accounted = {p.removeprefix("results/") for p in listed if p.startswith("results/")} | set(refs)
    assert accounted == set(RESULT_FILES)

    # every member's size and sha256 are right, and SHA256SUMS is sha256sum -c format
    for path, m in listed.items():
        assert m["size"] == len(members[path])
        assert m["sha256"] == hashlib.sha256(members[path]).hexdigest()
    sums = dict(reversed(line.split("  ", 1)) for line in members[SUMS].decode().splitlines())
    assert set(sums) == set(listed) - {SUMS}
    assert all(sums[p] == listed[p]["sha256"] for p in sums)

    # environment and config
    packages = members["env/packages.txt"].decode().splitlines()
    assert packages == sorted(packages, key=lambda s: s.split("==")[0].lower().replace("_", "-"))
    assert any(p.lower().startswith("pytest==") for p in packages)
    assert json.loads(members["env/python.json"])["python"]
    assert members["env/conda/core.yaml"] == b"name: core\ndependencies: [python=3.11]\n"
    assert members["config/00-study.yaml"] == study["config"].read_bytes()
    assert manifest["config_error"]  # the minimal config is not a full study: recorded
    assert "config/resolved.json" not in listed

    # code state: commit, branch, status, and a patch with the edit and the new file
    git = json.loads(members["code/git.json"])
    assert git["commit"] == _git(study["repo"], "rev-parse", "HEAD").strip()
    assert git["branch"] == "main" and git["dirty"] is True
    assert git["untracked_in_patch"] == ["new_module.py"]
    assert manifest["code"]["commit"] == git["commit"]
    status = members["code/status.txt"].decode()
    assert " M code.py" in status and "?? new_module.py" in status
    patch = members["code/diff.patch"].decode()
    assert "+X = 2  # edited after the commit" in patch and "+Y = 3" in patch
    assert _git(study["repo"], "status", "--porcelain") == status  # real index untouched

    report = verify_archive(out, against=study["results"])
    assert report.ok, report.failures
    assert report.summary().startswith(f"ok: {len(listed)} members, {len(refs)} referenced")
    assert verify_archive(out).ok


def test_dirty_tree_is_rebuilt_from_commit_plus_patch(study):
    out, _ = _make(study)
    members = _members(out)
    clone = study["root"] / "clone"
    subprocess.run(["git", "clone", "-q", str(study["repo"]), str(clone)], check=True)
    patch = study["root"] / "diff.patch"
    patch.write_bytes(members["code/diff.patch"])
    _git(clone, "apply", "--binary", str(patch))
    assert (clone / "code.py").read_text() == (study["repo"] / "code.py").read_text()
    assert (clone / "new_module.py").read_text() == "Y = 3\n"


def test_resolved_config_merges_overlays_in_order(study, tmp_path):
    base = tmp_path / "config.yaml"
    shutil.copy(REPO_ROOT / "config.yaml", base)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("study: overlaid\n")
    out = tmp_path / "c.tar.gz"
    manifest = create_archive(study["results"], [base, overlay], out, repo=study["repo"])
    members = _members(out)
    assert manifest["config_error"] is None
    assert manifest["study"] == "overlaid"
    assert [c["member"] for c in manifest["configs"]] == ["config/00-config.yaml",
                                                          "config/01-overlay.yaml"]
    resolved = json.loads(members["config/resolved.json"])
    assert resolved["study"] == "overlaid" and resolved["teachers"]  # merged, validated


def test_deterministic_member_hashes(study):
    a, ma = _make(study, "a.tar.gz")
    b, mb = _make(study, "b.tar.gz")
    assert ma["members"] == mb["members"] and ma["referenced"] == mb["referenced"]
    ta, tb = _members(a), _members(b)
    assert list(ta) == list(tb)
    assert {k: v for k, v in ta.items() if k != MANIFEST} == \
        {k: v for k, v in tb.items() if k != MANIFEST}
    with tarfile.open(a) as tar:
        assert {(i.mtime, i.uid, i.gid, i.uname, i.mode) for i in tar} == {(0, 0, 0, "", 0o644)}


def test_include_checkpoints_data_and_no_logs(study):
    _, default = _make(study)
    _, m = _make(study, "b.tar.gz", include_checkpoints=True, include_data=True, logs=False)
    listed = {x["path"] for x in m["members"]}
    refs = {x["path"] for x in m["referenced"]}
    assert {"results/train/s__t/model.safetensors", "results/train/s__t/config.json"} <= listed
    assert {"results/queries/clean.parquet", "results/generate/t/r0/s0.parquet",
            "results/accepted/t.parquet"} <= listed
    assert refs == {"models/m/weights.gguf"}  # models stay referenced
    assert "results/logs/accepted/t.log" not in listed and m["excluded"] == {"log": 1}
    assert "results/logs/accepted/t.log" in {x["path"] for x in default["members"]}
    assert verify_archive(study["root"] / "b.tar.gz", against=study["results"]).ok


def test_output_inside_results_dir_and_temp_files_are_not_archived(study):
    (study["results"] / "report" / ".summary.md.x1y2.tmp").write_text("half written")
    out = study["results"] / "archive.tar.gz"
    out.write_bytes(b"an older archive")
    m = create_archive(study["results"], [study["config"]], out, repo=study["repo"])
    paths = {x["path"] for x in m["members"]} | {x["path"] for x in m["referenced"]}
    assert not any("archive.tar.gz" in p or p.endswith(".tmp") for p in paths)
    assert m["skipped"] == [{"path": "report/.summary.md.x1y2.tmp",
                             "reason": "temporary file of an unfinished write"}]
    assert verify_archive(out).ok


def test_not_a_git_checkout_is_recorded(study, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    out = tmp_path / "n.tar.gz"
    m = create_archive(study["results"], [study["config"]], out, repo=plain, find_git=False,
                       envs_dir=plain)
    assert m["code"]["git"] is False
    members = _members(out)
    assert json.loads(members["code/git.json"])["git"] is False
    assert "code/diff.patch" not in members
    assert verify_archive(out).ok


def test_results_default_from_config(study, monkeypatch):
    monkeypatch.chdir(study["root"])  # results_dir: results, study: demo
    m = create_archive(None, [study["config"]], "d.tar.gz", repo=study["repo"])
    assert m["results_dir"] == str(study["results"].resolve())


def test_file_changed_while_archiving_leaves_no_archive(study, monkeypatch):
    hash_all = archive._hash_all

    def hash_then_edit(files):
        hash_all(files)
        (study["results"] / "report" / "summary.md").write_text("# DEMO\npass@1 0.9\n")

    monkeypatch.setattr(archive, "_hash_all", hash_then_edit)
    out = study["root"] / "x.tar.gz"
    with pytest.raises(archive.ArchiveError, match="summary.md: changed while archiving"):
        create_archive(study["results"], [study["config"]], out, repo=study["repo"])
    assert not out.exists() and not list(study["root"].glob(".x.tar.gz.*"))


# ----------------------------------------------------------------- tampering


def test_flipped_byte_is_named(built, tmp_path):
    out = built["out"]
    name = "results/report/summary.md"
    data = bytearray(_members(out)[name])
    data[0] ^= 0x01
    bad = _rewrite(out, tmp_path / "bad.tar.gz", change={name: bytes(data)})
    report = verify_archive(bad)
    assert not report.ok
    assert len(report.failures) == 1
    assert report.failures[0].startswith(f"{name}: sha256 expected ")
    assert " vs actual " in report.failures[0]


def test_extra_member_fails(built, tmp_path):
    out = built["out"]
    bad = _rewrite(out, tmp_path / "bad.tar.gz", add=[("results/sneaky.txt", b"x")])
    report = verify_archive(bad)
    assert report.failures == ["results/sneaky.txt: in archive but not listed in MANIFEST"]


def test_missing_member_fails(built, tmp_path):
    out = built["out"]
    bad = _rewrite(out, tmp_path / "bad.tar.gz", drop={"results/analysis/stats.json"})
    report = verify_archive(bad)
    assert report.failures == [
        "results/analysis/stats.json: listed in MANIFEST but missing from archive"]


def test_missing_manifest_fails(built, tmp_path):
    out = built["out"]
    report = verify_archive(_rewrite(out, tmp_path / "bad.tar.gz", drop={MANIFEST}))
    assert report.failures == [f"{MANIFEST}: missing from archive"]


def test_sha256sums_disagreeing_with_manifest_fails(built, tmp_path):
    out, m = built["out"], built["manifest"]
    members = _members(out)
    sums = members[SUMS].decode().replace(
        next(x["sha256"] for x in m["members"] if x["path"] == "results/report/summary.md"),
        "0" * 64)
    manifest = json.loads(members[MANIFEST])
    for entry in manifest["members"]:  # a consistent SHA256SUMS member, wrong content
        if entry["path"] == SUMS:
            entry["sha256"] = hashlib.sha256(sums.encode()).hexdigest()
    bad = _rewrite(out, tmp_path / "bad.tar.gz",
                   change={SUMS: sums.encode(), MANIFEST: json.dumps(manifest).encode()})
    report = verify_archive(bad)
    assert len(report.failures) == 1
    assert report.failures[0].startswith(f"results/report/summary.md: {SUMS} says {'0' * 64}")


def test_changed_referenced_checkpoint_fails_against(study):
    out, _ = _make(study)
    ckpt = study["results"] / "train" / "s__t" / "model.safetensors"
    ckpt.write_text("T" + "S" * 299)  # same size, one byte different
    assert verify_archive(out).ok  # the archive itself is intact
    report = verify_archive(out, against=study["results"])
    assert len(report.failures) == 1
    assert report.failures[0].startswith("train/s__t/model.safetensors: sha256 expected ")
    ckpt.unlink()
    report = verify_archive(out, against=study["results"])
    assert report.failures == [
        f"train/s__t/model.safetensors: referenced file missing from {study['results']}"]


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "directory"])
def test_unsafe_members_are_refused(built, tmp_path, kind):
    out = built["out"]
    if kind == "dotdot":
        extra, why = ("../evil.txt", b"x"), "unsafe member name ('..' in path)"
    elif kind == "absolute":
        extra, why = ("/tmp/evil.txt", b"x"), "unsafe member name (absolute path)"
    else:
        info = tarfile.TarInfo("results/link")
        info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                     "directory": tarfile.DIRTYPE}[kind]
        info.linkname = "/etc/passwd" if kind != "directory" else ""
        extra = info
        why = ("not a regular file" if kind == "directory"
               else "link member refused (to '/etc/passwd')")
    bad = _rewrite(out, tmp_path / "bad.tar.gz", add=[extra])
    report = verify_archive(bad)
    name = extra[0] if isinstance(extra, tuple) else extra.name
    assert f"{name}: {why}" in report.failures
    assert len(report.failures) == 1  # and every other member still checks out
    assert not (tmp_path.parent / "evil.txt").exists()


def test_garbage_is_reported_not_raised(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"\x1f\x8b\x08 not really gzip")
    report = verify_archive(junk)
    assert not report.ok and "unreadable archive" in report.failures[0]


def test_unsafe_name_and_classify():
    assert unsafe_name("results/a.json") is None
    for bad in ("", "/a", "a/../b", "a//b", "./a", "a\nb", "a\\b", "C:/x"):
        assert unsafe_name(bad), bad
    assert classify("train/s__t/x.bin") == ("checkpoint", "reference")
    assert classify("train/s__t/x.bin", include_checkpoints=True) == ("checkpoint", "include")
    assert classify("train/s__t/provenance.json") == ("provenance", "include")
    assert classify("models/m/w.gguf", include_data=True) == ("model", "reference")
    assert classify("queries/clean.parquet") == ("data", "reference")
    assert classify("queries/clean.parquet", include_data=True) == ("data", "include")
    assert classify("export/am/t/math.jsonl") == ("data", "reference")
    assert classify("ngrams/t.top.json") == ("stats", "include")
    assert classify("release/s__t/README.md") == ("model_card", "include")
    assert classify("release/s__t/model.safetensors") == ("checkpoint", "reference")
    assert classify("eval/s__t/math500/part0.parquet") == ("data", "reference")
    assert classify("eval/s__t/math500/part0.json") == ("eval", "include")
    assert classify("eval/s__t/math500.samples.parquet") == ("eval", "include")
    assert classify("logs/a/b.log", logs=False) == ("log", "exclude")


# ----------------------------------------------------------------- CLI


def test_cli_exit_codes(study, capsys, monkeypatch):
    monkeypatch.chdir(study["root"])
    out = study["root"] / "cli.tar.gz"
    rc = cli.main(["archive", "--config", str(study["config"]), "--results",
                   str(study["results"]), "--out", str(out), "--repo", str(study["repo"])])
    assert rc == 0
    assert read_manifest(out)["command"][:2] == ["distillab", "archive"]
    n_members = len(read_manifest(out)["members"])
    capsys.readouterr()

    assert cli.main(["verify-archive", str(out), "--against", str(study["results"])]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {n_members} members, 7 referenced")

    (study["results"] / "queries" / "clean.parquet").write_text("PAR1 other queries")
    assert cli.main(["verify-archive", str(out)]) == 0  # references not checked
    capsys.readouterr()
    assert cli.main(["verify-archive", str(out), "--against", str(study["results"])]) == 1
    err = capsys.readouterr().err
    assert "queries/clean.parquet: size expected 12 vs actual 18" in err

    rc = cli.main(["archive", "--config", str(study["config"]), "--results",
                   str(study["root"] / "nowhere"), "--out", str(out)])
    assert rc == 1
    assert "does not exist" in capsys.readouterr().err

    with pytest.raises(SystemExit):  # the two checkpoint flags exclude each other
        cli.main(["archive", "--config", "c", "--out", "o", "--include-checkpoints",
                  "--reference-checkpoints"])
