"""One tarball per study: results, provenance, configs, environment and code state.

A benchmark number is only worth what it can be traced back to. ``create_archive``
bundles everything needed to audit or rerun a study (DESIGN.md §1, the ``archive`` node):
the report, evaluation results and samples, analysis outputs, every provenance sidecar,
the curation stats, the logs, the config files as given plus the merged and validated
config, the Python environment and conda env files, and the code state (commit, branch,
``git status`` and a patch from HEAD to the working tree, so a dirty checkout can be
rebuilt). Large artifacts (model dirs, checkpoints, parquet datasets) are *referenced*:
listed with their size and sha256 but not copied, so the archive stays small and
``verify_archive(..., against=results_dir)`` can still prove that the files on disk are
the ones the report was made from.

Layout of the tarball (no top-level folder; ``MANIFEST.json`` is the first member)::

    MANIFEST.json            what is in the archive and what it references (see below)
    SHA256SUMS               ``sha256sum -c`` compatible, every member but MANIFEST.json
    code/git.json            repo, commit, branch, dirty flag, untracked files
    code/status.txt          ``git status --porcelain``
    code/diff.patch          ``git diff HEAD --binary``, untracked files included as new
    config/00-<name>         the config files as given, in merge order
    config/resolved.json     the merged, validated config (defaults filled)
    env/conda/<name>.yaml    the repo's envs/*.yaml
    env/packages.txt         ``name==version`` of every installed distribution, sorted
    env/python.json          Python version, implementation, platform
    results/<path>           files of the results dir, by their path in it

Archives of the same tree have the same members with the same bytes: members are
sorted, owners and mtimes normalised (``SOURCE_DATE_EPOCH`` or 0) and the gzip header
carries no name or time. Only ``MANIFEST.json`` differs (``created_at``, ``command``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gzip
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import platform
import re
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import yaml

from distillab import __version__
from distillab.io import atomic_path, sha256_file

log = logging.getLogger(__name__)

FORMAT = "distillab-archive"
FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
SUMS = "SHA256SUMS"
CHUNK = 1 << 20
MAX_MANIFEST_BYTES = 256 << 20  # read into memory when verifying; a bigger one is refused
UNTRACKED_PATCH_MAX_BYTES = 16 << 20  # bigger untracked files are listed, not embedded

INCLUDE, REFERENCE, EXCLUDE = "include", "reference", "exclude"


class ArchiveError(RuntimeError):
    """The archive cannot be written (missing results dir, unreadable config, ...)."""


# --------------------------------------------------------------------------- classify

def classify(rel: str, *, include_checkpoints: bool = False, include_data: bool = False,
             logs: bool = True) -> tuple[str, str]:
    """(kind, action) of a file at ``rel`` (posix path relative to the results dir).

    Small files that explain a result are included; large artifacts are referenced by
    hash unless asked for. Every file of the results dir gets exactly one action, so the
    manifest accounts for the whole tree.
    """
    parts = rel.split("/")
    name, top = parts[-1], parts[0]
    if name.endswith(".prov.json") or name == "provenance.json":
        return "provenance", INCLUDE
    if top == "train" and len(parts) > 1:
        return "checkpoint", INCLUDE if include_checkpoints else REFERENCE
    if top == "release" and len(parts) > 1:  # the checkpoint's files (linked) and a card
        if name == "README.md":
            return "model_card", INCLUDE
        return "checkpoint", INCLUDE if include_checkpoints else REFERENCE
    if top == "eval" and len(parts) > 3 and name.endswith(".parquet"):
        # eval/<model>/<benchmark>/partN.parquet: raw samples, graded in <benchmark>.samples
        return "data", INCLUDE if include_data else REFERENCE
    if top == "models" and len(parts) > 1:
        return "model", REFERENCE
    if top in ("report", "eval", "analysis") and len(parts) > 1:
        return top, INCLUDE
    if top == "logs" and len(parts) > 1:
        return "log", INCLUDE if logs else EXCLUDE
    if name.endswith(".json"):  # accepted/curated stats, n-gram tops: small and telling
        return "stats", INCLUDE
    return "data", INCLUDE if include_data else REFERENCE


def unsafe_name(name: str) -> str | None:
    """Why ``name`` may not be a member path (or a referenced path), or None if it may.

    Absolute paths and ``..`` would escape an extraction dir; newlines and backslashes
    cannot be written in SHA256SUMS without escapes that ``sha256sum -c`` reads back
    differently.
    """
    if not name:
        return "empty name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if any(c in name for c in "\n\r\\\0"):
        return "newline, backslash or NUL in name"
    parts = name.split("/")
    if ".." in parts:
        return "'..' in path"
    if any(p in ("", ".") for p in parts):
        return "empty or '.' path component"
    return None


# --------------------------------------------------------------------------- members

@dataclasses.dataclass
class _File:
    """A file that becomes a member (``arcname``) or a reference (``rel``)."""

    source: Path
    kind: str
    arcname: str | None = None  # set for members
    rel: str | None = None  # set for files of the results dir
    size: int = 0
    sha256: str = ""


def _walk_results(root: Path, skip: set[Path]) -> tuple[list[tuple[str, Path]], list[dict]]:
    """Every regular file under ``root`` as (posix rel path, path), sorted; and the files
    skipped with why. Symlinked dirs are followed once (cycles are cut)."""
    files, skipped = [], []
    seen_dirs: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = Path(dirpath).resolve()
        if real in seen_dirs:
            dirnames[:] = []
            skipped.append({"path": Path(dirpath).relative_to(root).as_posix(),
                            "reason": "directory link cycle"})
            continue
        seen_dirs.add(real)
        dirnames.sort()
        for fname in sorted(filenames):
            path = Path(dirpath) / fname
            rel = path.relative_to(root).as_posix()
            if path.resolve() in skip:
                continue
            if fname.startswith(".") and fname.endswith(".tmp"):
                skipped.append({"path": rel, "reason": "temporary file of an unfinished write"})
            elif not path.exists():
                skipped.append({"path": rel, "reason": "broken link"})
            elif not path.is_file():
                skipped.append({"path": rel, "reason": "not a regular file"})
            elif unsafe_name(rel):
                skipped.append({"path": rel, "reason": unsafe_name(rel)})
            else:
                files.append((rel, path))
    files.sort()
    return files, skipped


def _hash_all(files: list[_File]) -> None:
    """Fill size and sha256 of every file, streaming, a few files at a time (hashlib
    releases the GIL, so threads overlap reading and hashing)."""
    big = [f for f in files if f.source.stat().st_size >= 1 << 30]
    if big:
        log.info("hashing %d files, %d of them over 1 GiB (%.1f GiB together)", len(files),
                 len(big), sum(f.source.stat().st_size for f in big) / (1 << 30))

    # hard links (release/ shares the checkpoints' files) are read once
    by_inode: dict[tuple[int, int], list[_File]] = {}
    for f in files:
        st = f.source.stat()
        by_inode.setdefault((st.st_dev, st.st_ino), []).append(f)

    def one(group: list[_File]) -> None:
        size = group[0].source.stat().st_size
        sha = sha256_file(group[0].source, chunk=CHUNK)
        for f in group:
            f.size, f.sha256 = size, sha

    workers = max(1, min(8, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, by_inode.values()))


# --------------------------------------------------------------------------- configs

def _merge(base: dict, overlay: dict) -> dict:
    """Deep merge as Snakemake merges several ``--configfile``s: dicts key by key, any
    other value replaced."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_merged_config(paths: list[str | os.PathLike]) -> tuple[dict, str | None]:
    """The merged config and, when it does not validate, the error (the archive is still
    written: the results may come from an older schema)."""
    from distillab.config import ConfigError, validate_config

    merged: dict = {}
    for p in paths:
        try:
            with open(p, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as exc:
            raise ArchiveError(f"config {p}: {exc}") from exc
        if not isinstance(data, dict):
            raise ArchiveError(f"config {p}: not a mapping")
        merged = _merge(merged, data)
    try:
        return validate_config(json.loads(json.dumps(merged, default=str))), None
    except ConfigError as exc:
        return merged, str(exc)


# --------------------------------------------------------------------------- environment

def package_list() -> list[str]:
    """``name==version`` of every installed distribution, sorted by normalised name (what
    ``pip freeze`` shows, without pip)."""
    seen: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        key = re.sub(r"[-_.]+", "-", name).lower()
        seen.setdefault(key, f"{name}=={dist.version}")
    return [seen[k] for k in sorted(seen)]


def python_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "host": socket.gethostname(),
        "distillab_version": __version__,
    }


# --------------------------------------------------------------------------- code state

def _git(repo: Path, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                          timeout=300, check=True, env=env, **kw)


def find_repo(start: str | os.PathLike | None = None) -> Path | None:
    """The git checkout the code runs from: the one holding this package when it is a
    tracked file of it (an editable install), else the one around the cwd. ``start``
    names a dir to look from instead."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    candidates: list[tuple[Path, Path | None]] = []
    if start is not None:
        candidates.append((Path(start), None))
    else:
        pkg = Path(__file__).resolve().with_name("__init__.py")
        candidates += [(pkg.parent, pkg), (Path.cwd(), None)]
    for where, must_track in candidates:
        try:
            top = Path(_git(where, "rev-parse", "--show-toplevel", env=env,
                            text=True).stdout.strip())
            if must_track is not None:
                _git(top, "ls-files", "--error-unmatch", str(must_track), env=env)
            return top
        except (OSError, subprocess.SubprocessError):
            continue
    return None


def write_code_state(repo: Path | None, stage: Path) -> dict[str, Any]:
    """Write code/git.json, code/status.txt and code/diff.patch under ``stage``; return
    the summary kept in the manifest.

    The patch goes from HEAD to the working tree *including* untracked, non-ignored files
    (added as new files through a throwaway index, so the real index is untouched):
    ``git checkout <commit> && git apply code/diff.patch`` rebuilds the tree the study
    ran with. Untracked files over 16 MiB are listed instead of embedded.
    """
    code = stage / "code"
    code.mkdir(parents=True, exist_ok=True)
    if repo is None:
        state = {"git": False, "reason": "not run from a git checkout"}
        (code / "git.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        return state
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    state: dict[str, Any] = {"git": True, "repo": str(repo)}
    try:
        state["commit"] = _git(repo, "rev-parse", "HEAD", env=env, text=True).stdout.strip()
    except subprocess.CalledProcessError:
        state["commit"] = None  # a repo without commits: status only
    except (OSError, subprocess.SubprocessError) as exc:
        state = {"git": False, "reason": f"git failed: {exc}"}
        (code / "git.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        return state
    try:
        state["branch"] = _git(repo, "symbolic-ref", "--short", "-q", "HEAD", env=env,
                               text=True).stdout.strip() or None
    except subprocess.CalledProcessError:
        state["branch"] = None  # detached HEAD
    status = _git(repo, "status", "--porcelain=v1", "--untracked-files=all", env=env,
                  text=True).stdout
    (code / "status.txt").write_text(status, encoding="utf-8")
    state["dirty"] = bool(status.strip())
    state["status_lines"] = len(status.splitlines())
    if state["commit"] is not None:
        with tempfile.TemporaryDirectory(prefix="distillab-index-") as tmp:
            ienv = {**env, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
            _git(repo, "read-tree", "HEAD", env=ienv)
            others = _git(repo, "ls-files", "--others", "--exclude-standard", "-z",
                          env=ienv).stdout.decode("utf-8", "surrogateescape").split("\0")
            others = sorted(o for o in others if o)
            small = [o for o in others if (repo / o).is_file()
                     and (repo / o).stat().st_size <= UNTRACKED_PATCH_MAX_BYTES]
            if small:
                _git(repo, "add", "--intent-to-add", "--pathspec-from-file=-",
                     "--pathspec-file-nul", env=ienv,
                     input="\0".join(small).encode("utf-8", "surrogateescape"))
            with open(code / "diff.patch", "wb") as out:
                subprocess.run(["git", "-C", str(repo), "diff", "HEAD", "--binary",
                                "--no-color", "--no-ext-diff"], stdout=out,
                               stderr=subprocess.PIPE, env=ienv, check=True, timeout=600)
        state["untracked_in_patch"] = small
        state["untracked_not_in_patch"] = [o for o in others if o not in set(small)]
        state["patch"] = "code/diff.patch"
        state["rebuild"] = (f"git checkout {state['commit']} && "
                            "git apply --binary code/diff.patch")
    (code / "git.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    log.info("code state: %s at %s%s, %d status lines, %d untracked files in the patch",
             repo, (state["commit"] or "no commit")[:12], " (dirty)" if state["dirty"] else "",
             state["status_lines"], len(state.get("untracked_in_patch", [])))
    return {k: state[k] for k in ("git", "repo", "commit", "branch", "dirty")}


# --------------------------------------------------------------------------- tar writing

def _mtime() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = _mtime()
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


class _HashingReader:
    """Hash what tarfile copies, to catch a file changed between hashing and copying."""

    def __init__(self, f: BinaryIO):
        self.f, self.h = f, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        block = self.f.read(size)
        self.h.update(block)
        return block


def _write_tar(out: Path, manifest_bytes: bytes, members: list[_File]) -> None:
    compress = not out.name.endswith(".tar")
    with atomic_path(out) as tmp, open(tmp, "wb") as raw:
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if compress else None
        try:
            with tarfile.open(fileobj=gz or raw, mode="w", format=tarfile.PAX_FORMAT,
                              copybufsize=CHUNK) as tar:
                tar.addfile(_tarinfo(MANIFEST, len(manifest_bytes)), io.BytesIO(manifest_bytes))
                for m in members:
                    with open(m.source, "rb") as f:
                        reader = _HashingReader(f)
                        try:
                            tar.addfile(_tarinfo(m.arcname, m.size), reader)
                        except (OSError, tarfile.TarError) as exc:
                            raise ArchiveError(
                                f"{m.source}: {exc} (changed while archiving?)") from exc
                    if reader.h.hexdigest() != m.sha256:
                        raise ArchiveError(f"{m.source}: changed while archiving (sha256 was "
                                           f"{m.sha256}, copied {reader.h.hexdigest()})")
        finally:
            if gz is not None:
                gz.close()


# --------------------------------------------------------------------------- create

def create_archive(results: str | os.PathLike | None, configs: list[str | os.PathLike],
                   out: str | os.PathLike, *, include_checkpoints: bool = False,
                   include_data: bool = False, logs: bool = True,
                   repo: str | os.PathLike | None = None, find_git: bool = True,
                   envs_dir: str | os.PathLike | None = None,
                   command: list[str] | None = None) -> dict[str, Any]:
    """Write the archive of a study to ``out`` (atomically) and return its manifest.

    ``results`` defaults to ``<results_dir>/<study>`` of the merged config. ``repo`` is
    where to look for the git checkout (default: the package's, else the cwd's);
    ``find_git=False`` records "not a git checkout". ``envs_dir`` defaults to the repo's
    ``envs/``.
    """
    out = Path(out)
    if not configs:
        raise ArchiveError("no config file given")
    config, config_error = load_merged_config(list(configs))
    if config_error:
        log.warning("the merged config does not validate (%s); archived as merged", config_error)
    if results is None:
        try:
            results = Path(str(config["results_dir"])) / str(config["study"])
        except KeyError as exc:
            raise ArchiveError(f"no --results given and the config has no {exc}") from None
    root = Path(results)
    if not root.is_dir():
        raise ArchiveError(f"results dir {root} does not exist")
    root = root.resolve()
    study = str(config.get("study") or root.name)

    # files of the results dir
    skip = {out.resolve()}
    found, skipped = _walk_results(root, skip)
    members: list[_File] = []
    referenced: list[_File] = []
    excluded: dict[str, int] = {}
    for rel, path in found:
        kind, action = classify(rel, include_checkpoints=include_checkpoints,
                                include_data=include_data, logs=logs)
        if action == INCLUDE:
            members.append(_File(path, kind, arcname=f"results/{rel}", rel=rel))
        elif action == REFERENCE:
            referenced.append(_File(path, kind, rel=rel))
        else:
            excluded[kind] = excluded.get(kind, 0) + 1
    for s in skipped:
        log.warning("not archived: %s (%s)", s["path"], s["reason"])

    with tempfile.TemporaryDirectory(prefix="distillab-archive-") as tmp:
        stage = Path(tmp)
        # configs as given, in merge order, and the merged one
        given = []
        for i, p in enumerate(configs):
            arc = f"config/{i:02d}-{Path(p).name}"
            if unsafe_name(arc):
                raise ArchiveError(f"config {p}: {unsafe_name(arc)}")
            members.append(_File(Path(p), "config", arcname=arc))
            given.append({"given": str(p), "path": str(Path(p).resolve()), "member": arc})
        if not config_error:
            resolved = stage / "config" / "resolved.json"
            resolved.parent.mkdir(parents=True, exist_ok=True)
            resolved.write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
            members.append(_File(resolved, "config", arcname="config/resolved.json"))

        # environment
        env = stage / "env"
        env.mkdir()
        packages = package_list()
        (env / "packages.txt").write_text("".join(p + "\n" for p in packages))
        (env / "python.json").write_text(json.dumps(python_info(), indent=2, sort_keys=True) + "\n")
        members += [_File(env / "packages.txt", "environment", arcname="env/packages.txt"),
                    _File(env / "python.json", "environment", arcname="env/python.json")]

        # code state
        git_repo = find_repo(repo) if find_git else None
        code = write_code_state(git_repo, stage)
        for name in sorted(os.listdir(stage / "code")):
            members.append(_File(stage / "code" / name, "code", arcname=f"code/{name}"))
        if envs_dir is None:
            base = git_repo or Path(__file__).resolve().parents[2]
            envs_dir = base / "envs"
        conda_envs = sorted(Path(envs_dir).glob("*.yaml")) if Path(envs_dir).is_dir() else []
        for p in conda_envs:
            members.append(_File(p, "environment", arcname=f"env/conda/{p.name}"))

        _hash_all(members + referenced)
        members.sort(key=lambda m: m.arcname)
        names = [m.arcname for m in members]
        if len(set(names)) != len(names):
            raise ArchiveError("two members with one name: "
                               + ", ".join(sorted({n for n in names if names.count(n) > 1})))

        sums = stage / SUMS
        sums.write_text("".join(f"{m.sha256}  {m.arcname}\n" for m in members))
        sums_file = _File(sums, "checksums", arcname=SUMS)
        _hash_all([sums_file])
        members.insert(0, sums_file)

        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "study": study,
            "results_dir": str(root),
            "command": list(command if command is not None else sys.argv),
            "cwd": os.getcwd(),
            "distillab_version": __version__,
            "options": {"include_checkpoints": include_checkpoints,
                        "include_data": include_data, "logs": logs},
            "configs": given,
            "config_error": config_error,
            "code": code,
            "members": [{"path": m.arcname, "size": m.size, "sha256": m.sha256, "kind": m.kind}
                        for m in members],
            "referenced": [{"path": r.rel, "source": str(r.source), "size": r.size,
                            "sha256": r.sha256, "kind": r.kind} for r in referenced],
            "excluded": excluded,
            "skipped": skipped,
        }
        manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        _write_tar(out, manifest_bytes, members)

    by_kind: dict[str, int] = {}
    for m in members:
        by_kind[m.kind] = by_kind.get(m.kind, 0) + 1
    log.info("wrote %s: %d members (%.1f MiB; %s), %d files referenced (%.1f MiB), "
             "%d excluded, %d skipped", out, len(members), sum(m.size for m in members) / (1 << 20),
             ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items())), len(referenced),
             sum(r.size for r in referenced) / (1 << 20), sum(excluded.values()), len(skipped))
    return manifest


# --------------------------------------------------------------------------- verify

@dataclasses.dataclass
class VerifyReport:
    failures: list[str]
    members: int = 0
    referenced: int = 0
    against: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        if not self.ok:
            return f"FAILED: {len(self.failures)} problems"
        tail = (f"; referenced files re-hashed in {self.against}" if self.against
                else "; referenced files not checked (no --against)")
        return f"ok: {self.members} members, {self.referenced} referenced{tail}"


def _member_problem(info: tarfile.TarInfo) -> str | None:
    why = unsafe_name(info.name)
    if why:
        return f"unsafe member name ({why})"
    if info.issym() or info.islnk():
        return f"link member refused (to {info.linkname!r})"
    if not info.isreg():
        return "not a regular file"
    return None


def _read_members(archive: Path, failures: list[str]) -> tuple[dict[str, tuple[int, str]],
                                                                bytes | None, bytes | None]:
    """Hash every member from a single sequential stream; nothing touches the disk."""
    actual: dict[str, tuple[int, str]] = {}
    manifest = sums = None
    seen: set[str] = set()
    with tarfile.open(archive, "r|*") as tar:
        for info in tar:
            problem = _member_problem(info)
            if problem:
                failures.append(f"{info.name}: {problem}")
                continue
            if info.name in seen:
                failures.append(f"{info.name}: duplicate member")
                continue
            seen.add(info.name)
            f = tar.extractfile(info)
            if info.name == MANIFEST:
                if info.size > MAX_MANIFEST_BYTES:
                    failures.append(f"{MANIFEST}: {info.size} bytes, too large to read")
                    continue
                manifest = f.read()
                continue
            h, n = hashlib.sha256(), 0
            keep = info.name == SUMS and info.size <= MAX_MANIFEST_BYTES
            buf = bytearray()
            while block := f.read(CHUNK):
                h.update(block)
                n += len(block)
                if keep:
                    buf += block
            actual[info.name] = (n, h.hexdigest())
            if keep:
                sums = bytes(buf)
    return actual, manifest, sums


def _compare(path: str, want: dict, size: int, sha: str) -> str | None:
    diffs = []
    if want.get("size") != size:
        diffs.append(f"size expected {want.get('size')} vs actual {size}")
    if want.get("sha256") != sha:
        diffs.append(f"sha256 expected {want.get('sha256')} vs actual {sha}")
    return f"{path}: " + ", ".join(diffs) if diffs else None


def verify_archive(archive: str | os.PathLike,
                   against: str | os.PathLike | None = None) -> VerifyReport:
    """Check an archive against its own MANIFEST (and SHA256SUMS), and with ``against``
    the referenced files on disk. Members are read as tar streams, never extracted."""
    archive = Path(archive)
    report = VerifyReport(failures=[], against=str(against) if against is not None else None)
    failures = report.failures
    try:
        actual, manifest_bytes, sums_bytes = _read_members(archive, failures)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        failures.append(f"{archive}: unreadable archive ({exc})")
        return report
    if manifest_bytes is None:
        failures.append(f"{MANIFEST}: missing from archive")
        return report
    try:
        manifest = json.loads(manifest_bytes)
        listed = {m["path"]: m for m in manifest["members"]}
        refs = list(manifest.get("referenced", []))
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            failures.append(f"{MANIFEST}: format {manifest.get('format')!r} version "
                            f"{manifest.get('format_version')!r}, expected {FORMAT!r} "
                            f"version {FORMAT_VERSION}")
            return report
    except (ValueError, KeyError, TypeError) as exc:
        failures.append(f"{MANIFEST}: malformed ({exc!r})")
        return report
    report.members, report.referenced = len(listed), len(refs)

    for path, want in sorted(listed.items()):
        if unsafe_name(path):
            failures.append(f"{path}: unsafe path in MANIFEST ({unsafe_name(path)})")
        elif path == MANIFEST:
            failures.append(f"{path}: MANIFEST lists itself")
        elif path not in actual:
            failures.append(f"{path}: listed in MANIFEST but missing from archive")
        elif problem := _compare(path, want, *actual[path]):
            failures.append(problem)
    for path in sorted(set(actual) - set(listed)):
        failures.append(f"{path}: in archive but not listed in MANIFEST")

    # SHA256SUMS must say what MANIFEST says, member for member
    if sums_bytes is None:
        if SUMS in actual:
            failures.append(f"{SUMS}: too large to read")
        elif SUMS not in listed:
            failures.append(f"{SUMS}: missing from archive")
    else:
        in_sums: dict[str, str] = {}
        for lineno, line in enumerate(sums_bytes.decode("utf-8", "replace").splitlines(), 1):
            m = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)
            if not m:
                failures.append(f"{SUMS}:{lineno}: malformed line {line[:80]!r}")
                continue
            in_sums[m.group(2)] = m.group(1)
        for path, sha in sorted(in_sums.items()):
            if path not in listed:
                failures.append(f"{path}: in {SUMS} but not listed in MANIFEST")
            elif listed[path].get("sha256") != sha:
                failures.append(f"{path}: {SUMS} says {sha} vs MANIFEST "
                                f"{listed[path].get('sha256')}")
        for path in sorted(set(listed) - set(in_sums) - {SUMS}):
            failures.append(f"{path}: listed in MANIFEST but not in {SUMS}")

    if against is not None:
        base = Path(against)
        for ref in refs:
            path = ref.get("path", "")
            if unsafe_name(path):
                failures.append(f"{path}: unsafe referenced path ({unsafe_name(path)})")
                continue
            on_disk = base / path
            if not on_disk.is_file():
                failures.append(f"{path}: referenced file missing from {base}")
                continue
            size = on_disk.stat().st_size
            sha = sha256_file(on_disk, chunk=CHUNK)
            if problem := _compare(path, ref, size, sha):
                failures.append(problem)
    log.info("verified %s: %d members, %d referenced (%s), %d problems", archive,
             report.members, report.referenced,
             "re-hashed" if against is not None else "not checked", len(failures))
    return report


def read_manifest(archive: str | os.PathLike) -> dict:
    """The manifest of an archive (the first member: read without hashing the rest)."""
    with tarfile.open(archive, "r|*") as tar:
        for info in tar:
            if info.name == MANIFEST and info.isreg():
                return json.loads(tar.extractfile(info).read())
    raise ArchiveError(f"{archive}: no {MANIFEST}")
