"""Attack suite and behaviour tests for :mod:`distillab.sandbox`.

Every attack asserts two things: the host is untouched (no connection, no file, no
surviving process, the test process alive), and the result records what happened
(returncode / signal, ``timed_out``, ``truncated``, ``describe()``).

The attacks run under bwrap (skipped where bubblewrap or user namespaces are missing) and
under the ``rlimits+netns`` fallback (skipped unless the tests run as root). Sandboxes use
``base_uid`` 29000 so they never collide with a verifier using the default 20000 range on
the same machine.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from distillab import sandbox as sbx
from distillab.sandbox import (
    COMPILE_LIMITS,
    SYSTEM_PYTHON,
    Sandbox,
    SandboxLimits,
    SandboxResult,
    SandboxUnavailable,
    probe_isolation,
)

BASE_UID = 29000
ROOT = os.geteuid() == 0
PY = SYSTEM_PYTHON


def _unavailable(mode: str) -> str:
    try:
        probe_isolation(mode, base_uid=BASE_UID)
    except SandboxUnavailable as exc:
        return str(exc)
    return ""


BWRAP_SKIP = _unavailable("bwrap")
FALLBACK_SKIP = _unavailable("rlimits+netns") if ROOT else "the rlimits+netns fallback needs root"
ISOLATING = [
    pytest.param("bwrap", marks=pytest.mark.skipif(bool(BWRAP_SKIP), reason=BWRAP_SKIP or "-")),
    pytest.param("rlimits+netns",
                 marks=pytest.mark.skipif(bool(FALLBACK_SKIP), reason=FALLBACK_SKIP or "-")),
]
ANY_SKIP = "no isolating sandbox on this host" if BWRAP_SKIP and FALLBACK_SKIP else ""

# Small limits keep the suite fast on 2 cores.
FAST = SandboxLimits(cpu_s=2, wall_s=6, memory_mb=512, nproc=32, fsize_mb=4, nofile=64,
                     output_bytes=1 << 20)

_slots = itertools.count(1)


@pytest.fixture
def make_sandbox():
    """A fresh slot (its own uid) per sandbox; checks after the test that the slot's uid
    has no process left."""
    made: list[Sandbox] = []

    def make(mode: str, **kw) -> Sandbox:
        sb = Sandbox(mode=mode, slot=next(_slots), base_uid=BASE_UID, limits=FAST, **kw)
        made.append(sb)
        return sb

    yield make
    for sb in made:
        if sb.uid != os.geteuid():
            assert live_processes(sb.uid) == [], f"slot uid {sb.uid} has processes left"
        assert run_dirs(sb) == [], f"run dirs left in {sb.work_root}"


def run_dirs(sb: Sandbox) -> list[str]:
    if not os.path.isdir(sb.work_root):
        return []  # a test's own work_root, removed by the test
    return [name for name in os.listdir(sb.work_root)
            if name.startswith(f"distillab-sbx{sb.slot}-u{sb.uid}-")]


@pytest.fixture(scope="module", autouse=True)
def _remove_test_cgroups():
    """The sandbox keeps one memory cgroup per slot uid; drop the test uids' ones."""
    yield
    base = os.path.join(sbx._CGROUP_V1_MEMORY, "distillab")
    for uid in range(BASE_UID, BASE_UID + 1000):
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(base, f"uid-{uid}"))
    sbx._cgroup_state.clear()


# ------------------------------------------------------------------ host-side probes


def _status(pid: str) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def live_processes(uid: int) -> list[int]:
    """Pids (not zombies) whose real uid is ``uid``."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            st = _status(pid)
            if st and int(st["Uid"].split()[0]) == uid and st["State"][:1] not in "ZX":
                out.append(int(pid))
    return out


def processes_with(token: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if token.encode() in cmdline and _status(pid).get("State", "Z")[:1] not in "ZX":
                out.append(int(pid))
    return out


class ProcessSampler:
    """Counts the live processes of a uid every few ms while a run is going on."""

    def __init__(self, uid: int) -> None:
        self.uid, self.peak = uid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, len(live_processes(self.uid)))
            time.sleep(0.005)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def host_still_fine() -> None:
    assert subprocess.run(["/bin/true"]).returncode == 0  # the host can still fork


def py(code: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code)]


# ------------------------------------------------------------------ positive behaviour


@pytest.mark.parametrize("mode", ISOLATING)
def test_stdin_to_stdout_exact(make_sandbox, mode):
    sb = make_sandbox(mode)
    r = sb.run(py("""
        import sys
        nums = sys.stdin.read().split()
        print(sum(map(int, nums)))
        print(open("data.txt").read(), end="")
        sys.stderr.write("note\\n")
    """), files={"data.txt": "payload\n"}, stdin=b"1 2 3\n40\n")
    assert r.stdout == b"46\npayload\n"
    assert r.stderr == b"note\n"
    assert (r.returncode, r.timed_out, r.truncated) == (0, False, False)
    assert r.ok and r.describe() == "exit 0"
    assert r.isolation == mode == sb.isolation
    assert 0 < r.wall_s < FAST.wall_s


@pytest.mark.parametrize("mode", ISOLATING)
def test_runs_as_slot_uid_with_clean_env_and_fresh_dir(make_sandbox, mode, monkeypatch):
    monkeypatch.setenv("DISTILLAB_SANDBOX_TEST", "visible-only-on-host")
    sb = make_sandbox(mode)
    code = """
        import os, json
        print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                          "env": sorted(os.environ), "cwd": os.getcwd(),
                          "files": sorted(os.listdir("."))}))
        open("left_behind.txt", "w").write("x")
    """
    import json

    first = json.loads(sb.run(py(code), files={"a.py": "pass"}).stdout)
    second = json.loads(sb.run(py(code)).stdout)
    expected_uid = BASE_UID + sb.slot if ROOT else os.geteuid()
    assert first["uid"] == second["uid"] == expected_uid == sb.uid
    if ROOT:
        assert first["gid"] == expected_uid and first["groups"] in ([], [expected_uid])
    assert set(first["env"]) <= {"PATH", "HOME", "LANG", "PWD", "TMPDIR"}
    assert first["files"] == ["a.py"] and second["files"] == []  # fresh work dir each run
    assert first["cwd"] == sbx.SANDBOX_DIR  # both modes: the work dir at /sandbox


def test_concurrent_slots_from_threads():
    if ANY_SKIP:
        pytest.skip(ANY_SKIP)
    mode = "bwrap" if not BWRAP_SKIP else "rlimits+netns"
    boxes = [Sandbox(mode=mode, slot=next(_slots), base_uid=BASE_UID, limits=FAST)
             for _ in range(2)]
    code = py("""
        import os, sys, time
        began = time.time()
        n = 0
        for _ in range(20):            # each slot gets its own RLIMIT_NPROC budget
            if os.fork() == 0:
                time.sleep(0.5); os._exit(0)
            n += 1
        time.sleep(0.6)
        print(os.getuid(), n, sys.stdin.read(), began, time.time())
    """)
    results: dict[int, SandboxResult] = {}

    def work(i: int) -> None:
        results[i] = boxes[i].run(code, stdin=f"slot{i}".encode())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = []
    for i, sb in enumerate(boxes):
        assert results[i].returncode == 0, results[i].stderr
        fields = results[i].stdout.split()
        assert fields[:3] == [str(sb.uid).encode(), b"20", f"slot{i}".encode()]
        spans.append((float(fields[3]), float(fields[4])))
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1  # the two programs ran side by side (their spans overlap)
    for sb in boxes:
        assert live_processes(sb.uid) == [] or not ROOT


def test_none_mode_records_no_isolation(make_sandbox):
    sb = make_sandbox("none")
    r = sb.run(py("import os; print(os.getuid())"))
    assert r.isolation == sb.isolation == "none"
    assert any("WITHOUT isolation" in w for w in r.warnings)
    assert r.stdout == f"{os.geteuid()}\n".encode() and r.returncode == 0


def test_auto_prefers_bwrap_and_is_cached(monkeypatch):
    if BWRAP_SKIP:
        pytest.skip(BWRAP_SKIP)
    probes = []
    real_probe = sbx._probe
    monkeypatch.setattr(sbx, "_probe_cache", {})
    monkeypatch.setattr(sbx, "_probe", lambda *a: probes.append(a) or real_probe(*a))
    assert probe_isolation("auto", base_uid=BASE_UID) == ("bwrap", [])
    assert probe_isolation("auto", base_uid=BASE_UID) == ("bwrap", [])
    assert Sandbox(base_uid=BASE_UID).isolation == "bwrap"
    assert len(probes) == 1  # probed once, then cached


def test_auto_falls_back_with_warning_when_bwrap_missing(monkeypatch):
    if FALLBACK_SKIP:
        pytest.skip(FALLBACK_SKIP)
    real_tool = sbx._tool
    monkeypatch.setattr(sbx, "_tool", lambda name: None if name == "bwrap" else real_tool(name))
    monkeypatch.setattr(sbx, "_probe_cache", {})
    isolation, warnings = probe_isolation("auto", base_uid=BASE_UID)
    assert isolation == "rlimits+netns"
    assert warnings and "bwrap" in warnings[0] and "falling back" in warnings[0]
    sb = Sandbox(slot=next(_slots), base_uid=BASE_UID, limits=FAST)
    r = sb.run(py("print('ok')"))
    assert (r.isolation, r.stdout, r.returncode) == ("rlimits+netns", b"ok\n", 0)
    assert any("falling back" in w for w in r.warnings)
    with pytest.raises(SandboxUnavailable):
        probe_isolation("bwrap", base_uid=BASE_UID)


def test_fallback_refused_without_root_and_auto_never_degrades_to_none(monkeypatch):
    monkeypatch.setattr(sbx, "_tool", lambda name: None)  # nothing works
    monkeypatch.setattr(sbx, "_probe_cache", {})
    for mode in ("auto", "bwrap", "rlimits+netns"):
        with pytest.raises(SandboxUnavailable):
            probe_isolation(mode, base_uid=BASE_UID)
    assert probe_isolation("none", base_uid=BASE_UID)[0] == "none"


@pytest.mark.skipif(not ROOT or bool(BWRAP_SKIP), reason="needs root (to become a user) and bwrap")
def test_non_root_parent_uses_own_uid_with_warning(tmp_path):
    """A parent that is not root cannot switch uids: bwrap runs as that user, and the
    result says that RLIMIT_NPROC is shared with the user's processes."""
    uid = BASE_UID + 900
    src = Path(sbx.__file__).resolve().parents[1]
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(src)!r})
        from distillab.sandbox import Sandbox, SandboxLimits
        sb = Sandbox(base_uid={BASE_UID})
        r = sb.run(["{PY}", "-c", "import os; print(os.getuid())"])
        print(sb.isolation, r.returncode, r.stdout.decode().strip(), r.warnings, sep="|")
    """)
    probe = subprocess.run([PY, "-c", f"import os; os.stat({str(src)!r})"], user=uid, group=uid,
                           extra_groups=[], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"{src} is not readable by an unprivileged uid")
    out = subprocess.run([PY, "-c", script], user=uid, group=uid, extra_groups=[], cwd="/",
                         env={"PATH": "/usr/bin:/bin", "TMPDIR": "/tmp"}, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    isolation, rc, child_uid, warnings = out.stdout.strip().split("|")
    assert (isolation, rc, child_uid) == ("bwrap", "0", str(uid))
    assert "RLIMIT_NPROC is shared" in warnings
    assert live_processes(uid) == []


@pytest.mark.parametrize("mode", ISOLATING)
def test_extra_ro_binds_are_visible_read_only(make_sandbox, mode):
    """Under /tmp (a fresh tmpfs in the sandbox) and elsewhere (/var/tmp); the fallback
    binds them into its minimal root like bwrap."""
    shared = [tempfile.mkdtemp(prefix="distillab-ro-"),
              tempfile.mkdtemp(prefix="distillab-ro-", dir="/var/tmp")]
    try:
        for path in shared:
            os.chmod(path, 0o755)
            Path(path, "lib.txt").write_text(f"from the host {path}")
        code = py(f"""
            import os
            for shared in {shared!r}:
                path = shared + "/lib.txt"
                print(open(path).read() if os.path.exists(path) else "absent")
                try:
                    open(shared + "/new.txt", "w")
                    print("WROTE")
                except OSError as exc:
                    print("read-only", exc.errno)
        """)
        plain = make_sandbox(mode).run(code)
        bound = make_sandbox(mode, extra_ro_binds=shared).run(code)
        assert plain.returncode == 0 and bound.returncode == 0, (plain.stderr, bound.stderr)
        assert plain.stdout.split(b"\n")[0::2] == [b"absent", b"absent", b""]
        lines = bound.stdout.decode().splitlines()
        assert lines[0::2] == [f"from the host {path}" for path in shared]
        assert all(line.startswith("read-only") for line in lines[1::2])
        for path in shared:
            assert os.listdir(path) == ["lib.txt"]
    finally:
        for path in shared:
            shutil.rmtree(path)


def test_limits_and_names_are_validated(make_sandbox):
    with pytest.raises(ValueError):
        SandboxLimits(cpu_s=0)
    with pytest.raises(ValueError):
        Sandbox(mode="chroot")
    sb = make_sandbox("none")
    for bad in ("../x.py", "/etc/x", "", "a/../../x"):
        with pytest.raises(ValueError):
            sb.run(["true"], files={bad: "x"})
    with pytest.raises(ValueError):
        sb.run("python3 -c pass")  # a string, not an argv
    with pytest.raises(ValueError):
        Sandbox(mode="none", extra_ro_binds=["relative/dir"])


def test_describe_strings():
    def res(**kw) -> SandboxResult:
        base = dict(returncode=0, stdout=b"", stderr=b"", timed_out=False, truncated=False,
                    wall_s=0.1, isolation="bwrap", warnings=[])
        return SandboxResult(**{**base, **kw})

    assert res().describe() == "exit 0"
    assert res(returncode=3).describe() == "exit 3"
    assert res(returncode=-24).describe() == "killed by SIGXCPU (CPU limit)"
    assert res(returncode=-25).describe() == "killed by SIGXFSZ (file size limit)"
    assert res(returncode=-9, cpu_s=11.0).describe() == "killed by SIGKILL (CPU hard limit)"
    assert res(returncode=-9, timed_out=True).describe() == "wall timeout after 20.0 s"
    assert res(truncated=True).describe() == "output over 1 MiB"
    assert res(returncode=-11).signal == signal.SIGSEGV


@pytest.mark.parametrize("mode", ISOLATING)
def test_output_exactly_at_cap_is_not_truncated_and_large_stdin_does_not_block(make_sandbox, mode):
    sb = make_sandbox(mode)
    cap = 64 * 1024
    limits = SandboxLimits(**{**FAST.__dict__, "output_bytes": cap})
    stdin = os.urandom(3 << 20)  # bigger than any pipe buffer
    r = sb.run(py(f"""
        import sys
        data = sys.stdin.buffer.read()
        sys.stdout.buffer.write(b"y" * {cap})
        sys.stderr.write(str(len(data)))
    """), stdin=stdin, limits=limits)
    assert (r.returncode, r.truncated, len(r.stdout)) == (0, False, cap)
    assert r.stderr == str(len(stdin)).encode()


# ------------------------------------------------------------------ attacks


@pytest.mark.parametrize("mode", ISOLATING)
def test_attack_connect_to_host_loopback(make_sandbox, mode):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen(16)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    hosts = ["127.0.0.1", "localhost", "127.0.0.2"]
    try:
        hosts.append(socket.gethostbyname(socket.gethostname()))
    except OSError:
        pass
    try:
        sb = make_sandbox(mode)
        r = sb.run(py(f"""
            import socket
            for host in {hosts!r}:
                try:
                    socket.create_connection((host, {port}), timeout=1).close()
                    print("CONNECTED", host)
                except OSError as exc:
                    print("blocked", host, exc.errno)
        """))
        assert r.returncode == 0, r.stderr
        assert b"CONNECTED" not in r.stdout
        assert r.stdout.count(b"blocked") == len(hosts)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever reached the test's listener
    finally:
        listener.close()


@pytest.mark.parametrize("mode", ISOLATING)
def test_attack_write_outside_work_dir(make_sandbox, mode, tmp_path):
    sb = make_sandbox(mode)
    tag = uuid.uuid4().hex
    targets = [str(tmp_path / "escape.txt"), f"/tmp/distillab-escape-{tag}",
               f"/var/tmp/distillab-escape-{tag}", f"/dev/shm/distillab-escape-{tag}",
               f"/tmp/distillab-escape-dir-{tag}/nested.txt", f"../distillab-escape-up-{tag}",
               f"/root/distillab-escape-{tag}", f"/etc/distillab-escape-{tag}"]
    open_dir = tempfile.mkdtemp(prefix="distillab-open-")  # a world-writable host dir
    os.chmod(open_dir, 0o777)
    targets.append(os.path.join(open_dir, "escape.txt"))
    try:
        r = sb.run(py(f"""
            import os
            for target in {targets!r}:
                try:
                    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
                    with open(target, "w") as fh:
                        fh.write("escaped")
                    print("WROTE", target)
                except OSError as exc:
                    print("denied", target, exc.errno)
        """))
        assert r.returncode == 0, r.stderr
        host_paths = [os.path.join(sb.work_root, t) if not os.path.isabs(t) else t
                      for t in targets]
        host_paths.append(f"/tmp/distillab-escape-dir-{tag}")
        for path in host_paths:
            assert not os.path.exists(path), f"{path} exists on the host after the run"
        assert os.listdir(open_dir) == []
    finally:
        shutil.rmtree(open_dir)


@pytest.mark.parametrize("mode", ISOLATING)
def test_attack_read_shadow_and_parent_environment(make_sandbox, mode, monkeypatch):
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv("DISTILLAB_SECRET_TOKEN", secret)
    sb = make_sandbox(mode)
    r = sb.run(py(f"""
        import os
        try:
            print("SHADOW", open("/etc/shadow").read())
        except OSError as exc:
            print("shadow denied", exc.errno)
        print(dict(os.environ))
        for pid in (1, os.getppid(), {os.getpid()}, "self"):
            try:
                print(pid, open(f"/proc/{{pid}}/environ", "rb").read())
            except OSError as exc:
                print(pid, "environ denied", exc.errno)
    """))
    assert os.path.exists("/etc/shadow")
    assert r.returncode == 0, r.stderr
    assert b"shadow denied" in r.stdout and b"SHADOW" not in r.stdout
    assert secret.encode() not in r.stdout + r.stderr


FORK_BOMBS = {
    "python": py("""
        import os, time
        t0 = time.time()
        while time.time() - t0 < 1.0:       # every process forks for ~1 s
            try:
                os.fork()
            except OSError:
                pass
    """),
    # `exec sleep`: the main shell must not need a fork to end (bash retries EAGAIN forks)
    "sh": ["/bin/sh", "-c", "b(){ b|b& }; b; exec sleep 1"],
    "bash": ["/bin/bash", "-c", ":(){ :|:& };:; exec sleep 1"],
}


@pytest.mark.parametrize("mode", ISOLATING)
@pytest.mark.parametrize("bomb", sorted(FORK_BOMBS))
def test_attack_fork_bomb(make_sandbox, mode, bomb):
    sb = make_sandbox(mode)
    limits = SandboxLimits(**{**FAST.__dict__, "wall_s": 4})
    with ProcessSampler(sb.uid) as sampler:
        r = sb.run(FORK_BOMBS[bomb], limits=limits)
    assert r.wall_s < limits.wall_s + 3.0  # slack for a loaded machine
    if ROOT:
        assert sampler.peak <= limits.nproc  # RLIMIT_NPROC held
        if bomb == "python":  # its processes live ~1 s, so the sampler sees the crowd
            assert sampler.peak >= limits.nproc // 2
    assert live_processes(sb.uid) == []  # nothing of the slot survived the run
    assert r.returncode is not None and r.describe()
    host_still_fine()


@pytest.mark.parametrize("mode", ISOLATING)
def test_attack_memory_bomb(make_sandbox, mode):
    sb = make_sandbox(mode)
    limits = SandboxLimits(**{**FAST.__dict__, "memory_mb": 256})
    r = sb.run(py("""
        import sys
        chunks = []
        try:
            while True:
                chunks.append(bytearray(16 << 20))
        except MemoryError:
            print("allocated MiB", 16 * len(chunks), flush=True)
            raise
    """), limits=limits)
    assert r.returncode == 1 and r.describe() == "exit 1"
    assert b"MemoryError" in r.stderr
    assert int(r.stdout.split()[-1]) < 256


@pytest.mark.parametrize("mode", ISOLATING)
def test_attack_infinite_loop_hits_cpu_limit(make_sandbox, mode):
    sb = make_sandbox(mode)
    limits = SandboxLimits(**{**FAST.__dict__, "cpu_s": 1, "wall_s": 5})
    r = sb.run(py("while True: pass"), limits=limits)
    assert r.returncode == -signal.SIGXCPU
    assert r.describe() == "killed by SIGXCPU (CPU limit)"
    assert not r.timed_out and 0.9 < r.cpu_s < 2.5 and r.wall_s < 4


@pytest.mark.parametrize("mode", ISOLATING)
def test_attack_sleep_forever_hits_wall_clock(make_sandbox, mode):
    sb = make_sandbox(mode)
    limits = SandboxLimits(**{**FAST.__dict__, "wall_s": 1.5})
    r = sb.run(py("""
        import time
        print("started", flush=True)
        time.sleep(10**6)
    """), limits=limits)
    assert r.timed_out and r.describe() == "wall timeout after 1.5 s"
    assert r.returncode is not None and r.returncode < 0
    assert 1.5 <= r.wall_s < 1.5 + 3.0  # slack for a loaded machine
    assert r.stdout == b"started\n"  # output before the kill is kept
    assert any("wall clock" in w for w in r.warnings)


@pytest.mark.parametrize("mode", ISOLATING)
@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_attack_gigabyte_of_output(make_sandbox, mode, stream):
    sb = make_sandbox(mode)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = sb.run(py(f"""
        import sys
        chunk = b"x" * (1 << 20)
        for _ in range(1024):
            sys.{stream}.buffer.write(chunk)
    """), limits=SandboxLimits(**{**FAST.__dict__, "wall_s": 20}))
    out = getattr(r, stream)
    assert r.truncated and len(out) == FAST.output_bytes
    assert r.describe() == "output over 1 MiB"
    assert not r.timed_out and r.wall_s < 5  # killed at the cap, not at the wall clock
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mib < 64


@pytest.mark.parametrize("mode", ISOLATING)
def test_attack_kill_parent_and_everyone(make_sandbox, mode):
    sb = make_sandbox(mode)
    bystanders = [subprocess.Popen(["sleep", "30"])]  # a root process
    if ROOT:  # a process of another slot's uid
        other = BASE_UID + 950
        bystanders.append(subprocess.Popen(["sleep", "30"], user=other, group=other,
                                           extra_groups=[]))
    try:
        r = sb.run(py(f"""
            import os
            for target in (os.getppid(), 1, -1, {os.getpid()}, {bystanders[0].pid}):
                try:
                    os.kill(target, 9)
                    print("sent", target)
                except OSError as exc:
                    print("refused", target, exc.errno)
            print("alive")
        """))
        assert r.returncode == 0 and r.stdout.endswith(b"alive\n"), (r.stdout, r.stderr)
        time.sleep(0.1)
        for p in bystanders:
            assert p.poll() is None, "a bystander process was killed"
        host_still_fine()
    finally:
        for p in bystanders:
            p.kill()
            p.wait()


@pytest.mark.parametrize("mode", ISOLATING)
def test_attack_daemon_outliving_the_run(make_sandbox, mode):
    sb = make_sandbox(mode)
    token = f"daemon-{uuid.uuid4().hex}"
    drop = tempfile.mkdtemp(prefix="distillab-drop-")  # world-writable, host-visible
    os.chmod(drop, 0o777)
    marker = os.path.join(drop, "marker")
    try:
        r = sb.run(py(f"""
            import os, sys, time
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:            # the daemon
                    for _ in range(2000):
                        for path in ("daemon-marker", {marker!r}):
                            try:
                                with open(path, "w") as fh:
                                    fh.write(str(time.time()))
                            except OSError:
                                pass
                        time.sleep(0.02)
                    os._exit(0)
                os._exit(0)
            time.sleep(0.3)
            print("parent done")
        """) + [token])
        assert r.returncode == 0 and r.stdout == b"parent done\n", r.stderr
        assert processes_with(token) == []
        assert live_processes(sb.uid) == [] or not ROOT
        before = os.stat(marker).st_mtime_ns if os.path.exists(marker) else None
        time.sleep(0.3)
        after = os.stat(marker).st_mtime_ns if os.path.exists(marker) else None
        assert before == after, "something still writes the marker after the run"
        assert before is None  # the host dir was never visible (both modes)
    finally:
        shutil.rmtree(drop)


@pytest.mark.parametrize("mode", ISOLATING)
def test_attack_write_past_file_size_limit(make_sandbox, mode):
    sb = make_sandbox(mode)
    r = sb.run(py(f"""
        import os, sys
        try:
            with open("big.bin", "wb") as fh:
                for _ in range(4 * {FAST.fsize_mb}):
                    fh.write(b"z" * (1 << 20))
                    fh.flush()
        except OSError as exc:
            print("errno", exc.errno, os.path.getsize("big.bin"))
            sys.exit(3)
    """), collect=["big.bin"])
    # Python ignores SIGXFSZ, so the write fails with EFBIG (27) instead.
    assert r.returncode == 3 and r.describe() == "exit 3"
    errno_, size = r.stdout.split()[1:]
    assert int(errno_) == 27 and int(size) <= FAST.fsize_mb << 20
    assert len(r.files["big.bin"]) <= FAST.fsize_mb << 20


@pytest.mark.parametrize("mode", ISOLATING)
def test_leftovers_never_affect_the_next_run_in_the_slot(make_sandbox, mode, monkeypatch):
    """A previous (crashed) verifier left processes of this slot's uid running: the next
    run kills them first and gets its full RLIMIT_NPROC."""
    if not ROOT:
        pytest.skip("slot uids need root")
    sb = make_sandbox(mode)
    leftovers = [subprocess.Popen(["sleep", "30"], user=sb.uid, group=sb.uid, extra_groups=[])
                 for _ in range(FAST.nproc)]  # as many as the limit allows
    reapers = [threading.Thread(target=p.wait, daemon=True) for p in leftovers]
    for t in reapers:
        t.start()
    stale = tempfile.mkdtemp(prefix=f"distillab-sbx{sb.slot}-", dir=sb.work_root)
    os.chown(stale, sb.uid, sb.uid)  # a work dir of the old layout, of a killed verifier
    stale_run = tempfile.mkdtemp(prefix=f"distillab-sbx{sb.slot}-u{sb.uid}-", dir=sb.work_root)
    os.mkdir(os.path.join(stale_run, "w"))  # a run dir of a killed verifier, tmpfs mounted
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "stale", f"{stale_run}/w"],
                   check=True)
    Path(stale_run, "w", "x").write_text("x")
    monkeypatch.setattr(sbx, "_clean_uids", set())  # as in a fresh verifier process
    forks = FAST.nproc - 8
    r = sb.run(py(f"""
        import os, time
        for i in range({forks}):
            if os.fork() == 0:
                time.sleep(0.3); os._exit(0)
        print("forked", {forks})
    """))
    assert r.returncode == 0 and r.stdout == f"forked {forks}\n".encode(), r.stderr
    assert any("leftover" in w for w in r.warnings)
    assert not os.path.exists(stale) and not os.path.exists(stale_run)
    assert f"{stale_run}/w " not in Path("/proc/self/mounts").read_text()
    for t in reapers:
        t.join(5)
    assert all(p.returncode == -signal.SIGKILL for p in leftovers)


# ------------------------------------------------------------------ C++


CPP_SOURCES = {
    "hello.cpp": r"""
        #include <iostream>
        #include <string>
        int main() { std::string name; std::getline(std::cin, name);
                     std::cout << "hello " << name << std::endl; }
    """,
    "forkbomb.cpp": r"""
        #include <unistd.h>
        #include <time.h>
        int main() { time_t t0 = time(nullptr);
                     while (time(nullptr) - t0 < 2) fork(); }
    """,
    "membomb.cpp": r"""
        #include <cstdio>
        #include <cstring>
        #include <vector>
        int main() { std::vector<char*> keep; size_t mib = 0;
                     for (;;) { char* p = new char[16 << 20]; std::memset(p, 1, 16 << 20);
                                keep.push_back(p); mib += 16;
                                std::fprintf(stdout, "%zu\n", mib); std::fflush(stdout); } }
    """,
    "loop.cpp": r"""
        int main() { volatile unsigned long x = 0; for (;;) ++x; }
    """,
    "connect.cpp": r"""
        #include <arpa/inet.h>
        #include <cstdio>
        #include <cstdlib>
        #include <sys/socket.h>
        #include <unistd.h>
        int main(int argc, char** argv) {
            int s = socket(AF_INET, SOCK_STREAM, 0);
            sockaddr_in a{}; a.sin_family = AF_INET; a.sin_port = htons(atoi(argv[1]));
            inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
            if (connect(s, (sockaddr*)&a, sizeof a) == 0) { puts("CONNECTED"); return 0; }
            perror("connect"); return 2; }
    """,
    "write.cpp": r"""
        #include <cstdio>
        int main(int argc, char** argv) {
            for (int i = 1; i < argc; ++i) {
                FILE* f = std::fopen(argv[i], "w");
                if (!f) { std::printf("denied %s\n", argv[i]); continue; }
                std::fputs("escaped", f); std::fclose(f); std::printf("WROTE %s\n", argv[i]); } }
    """,
    "fsize.cpp": r"""
        #include <cstdio>
        #include <vector>
        int main() { std::vector<char> mib(1 << 20, 'z'); FILE* f = std::fopen("big.bin", "wb");
                     for (int i = 0; i < 64; ++i) { std::fwrite(mib.data(), 1, mib.size(), f);
                                                   std::fflush(f); }
                     std::puts("wrote everything"); }
    """,
}


@pytest.fixture(scope="module")
def cpp_binaries() -> dict[str, bytes]:
    """Compile every source once, inside the sandbox, with the compile limits."""
    if ANY_SKIP:
        pytest.skip(ANY_SKIP)
    if not shutil.which("g++"):
        pytest.skip("g++ not installed")
    mode = "bwrap" if not BWRAP_SKIP else "rlimits+netns"
    sb = Sandbox(mode=mode, slot=next(_slots), base_uid=BASE_UID, limits=COMPILE_LIMITS)
    script = " ".join(f"g++ -O1 -o {name[:-4]} {name} &" for name in CPP_SOURCES) + " wait"
    r = sb.run(["/bin/sh", "-c", script],
               files={k: textwrap.dedent(v) for k, v in CPP_SOURCES.items()},
               collect=[name[:-4] for name in CPP_SOURCES])
    assert r.returncode == 0 and not r.stderr, r.stderr.decode()
    assert sorted(r.files) == sorted(name[:-4] for name in CPP_SOURCES)
    return r.files


def run_binary(sb: Sandbox, binaries: dict[str, bytes], name: str, *args: str,
               **kw) -> SandboxResult:
    return sb.run([f"./{name}", *args], files={name: binaries[name]}, **kw)


@pytest.mark.parametrize("mode", ISOLATING)
def test_cpp_hello_world(make_sandbox, mode, cpp_binaries):
    r = run_binary(make_sandbox(mode), cpp_binaries, "hello", stdin=b"sandbox\n")
    assert (r.returncode, r.stdout) == (0, b"hello sandbox\n"), r.stderr


def test_cpp_compile_error_is_reported(make_sandbox, cpp_binaries):
    sb = make_sandbox("bwrap" if not BWRAP_SKIP else "rlimits+netns")
    r = sb.run(["g++", "-o", "bad", "bad.cpp"], files={"bad.cpp": "int main() { return x; }"},
               limits=COMPILE_LIMITS, collect=["bad"])
    assert r.returncode == 1 and b"was not declared" in r.stderr and r.files == {}


@pytest.mark.parametrize("mode", ISOLATING)
def test_cpp_fork_bomb(make_sandbox, mode, cpp_binaries):
    sb = make_sandbox(mode)
    with ProcessSampler(sb.uid) as sampler:
        r = run_binary(sb, cpp_binaries, "forkbomb", limits=SandboxLimits(
            **{**FAST.__dict__, "wall_s": 4}))
    assert r.wall_s < 5.5 and r.returncode is not None
    assert sampler.peak <= FAST.nproc or not ROOT
    assert live_processes(sb.uid) == [] or not ROOT
    host_still_fine()


@pytest.mark.parametrize("mode", ISOLATING)
def test_cpp_memory_bomb(make_sandbox, mode, cpp_binaries):
    limits = SandboxLimits(**{**FAST.__dict__, "memory_mb": 256})
    r = run_binary(make_sandbox(mode), cpp_binaries, "membomb", limits=limits)
    assert r.returncode == -signal.SIGABRT and b"bad_alloc" in r.stderr
    assert "SIGABRT" in r.describe()
    assert int(r.stdout.split()[-1]) < 256


@pytest.mark.parametrize("mode", ISOLATING)
def test_cpp_infinite_loop(make_sandbox, mode, cpp_binaries):
    limits = SandboxLimits(**{**FAST.__dict__, "cpu_s": 1, "wall_s": 5})
    r = run_binary(make_sandbox(mode), cpp_binaries, "loop", limits=limits)
    assert r.returncode == -signal.SIGXCPU and r.describe() == "killed by SIGXCPU (CPU limit)"
    assert not r.timed_out


@pytest.mark.parametrize("mode", ISOLATING)
def test_cpp_connect_loopback(make_sandbox, mode, cpp_binaries):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.setblocking(False)
        r = run_binary(make_sandbox(mode), cpp_binaries, "connect",
                       str(listener.getsockname()[1]))
        assert r.returncode == 2 and b"CONNECTED" not in r.stdout and b"connect:" in r.stderr
        with pytest.raises(BlockingIOError):
            listener.accept()


@pytest.mark.parametrize("mode", ISOLATING)
def test_cpp_write_outside_work_dir(make_sandbox, mode, cpp_binaries, tmp_path):
    tag = uuid.uuid4().hex
    targets = [str(tmp_path / "cpp-escape"), f"/tmp/distillab-cpp-escape-{tag}",
               f"/var/tmp/distillab-cpp-escape-{tag}"]
    r = run_binary(make_sandbox(mode), cpp_binaries, "write", *targets)
    assert r.returncode == 0
    for path in targets:
        assert not os.path.exists(path)


@pytest.mark.parametrize("mode", ISOLATING)
def test_cpp_write_past_file_size_limit(make_sandbox, mode, cpp_binaries):
    r = run_binary(make_sandbox(mode), cpp_binaries, "fsize", collect=["big.bin"])
    assert r.returncode == -signal.SIGXFSZ
    assert r.describe() == "killed by SIGXFSZ (file size limit)"
    assert b"wrote everything" not in r.stdout
    assert len(r.files["big.bin"]) <= FAST.fsize_mb << 20


def test_collect_ignores_symlinks_and_foreign_files(make_sandbox):
    if ANY_SKIP:
        pytest.skip(ANY_SKIP)
    sb = make_sandbox("bwrap" if not BWRAP_SKIP else "rlimits+netns")
    r = sb.run(["/bin/sh", "-c", "ln -s /etc/shadow link; mkdir d; echo ok > out.txt"],
               collect=["link", "d", "out.txt", "missing"])
    assert r.returncode == 0 and r.files == {"out.txt": b"ok\n"}
    assert stat.S_ISREG(os.stat("/etc/shadow").st_mode)


# ------------------------------------------------------------------ red-team regressions


@pytest.mark.parametrize("mode", ISOLATING)
def test_attack_swap_work_dir_for_symlink(make_sandbox, mode):
    """The program renames its work dir and leaves a symlink to a host dir in its place:
    cleanup must neither chmod work_root (a sticky /tmp-like dir) nor follow the link."""
    work_root = tempfile.mkdtemp(prefix="distillab-wr-")
    victim = tempfile.mkdtemp(prefix="distillab-victim-")
    try:
        os.chmod(work_root, 0o1777)
        os.chmod(victim, 0o755)
        Path(victim, "keep.txt").write_text("keep")
        os.chmod(os.path.join(victim, "keep.txt"), 0o644)
        sb = make_sandbox(mode, work_root=work_root)
        r = sb.run(py(f"""
            import os
            w = os.getcwd()
            for step in (lambda: os.rename(w, w + "-moved"), lambda: os.symlink({victim!r}, w),
                         lambda: os.chmod(w, 0o777), lambda: os.rename(w + "/..", w + "-up")):
                try:
                    step()
                    print("done")
                except OSError as exc:
                    print("refused", exc.errno)
        """), collect=["keep.txt"])
        assert r.returncode == 0, r.stderr
        assert stat.S_IMODE(os.stat(work_root).st_mode) == 0o1777
        assert stat.S_IMODE(os.stat(victim).st_mode) == 0o755
        assert stat.S_IMODE(os.stat(os.path.join(victim, "keep.txt")).st_mode) == 0o644
        assert os.listdir(victim) == ["keep.txt"] and r.files == {}
        assert os.listdir(work_root) == []  # nothing of the run left, nothing moved aside
        assert not any("could not remove" in w for w in r.warnings)
    finally:
        shutil.rmtree(work_root)
        shutil.rmtree(victim)


@pytest.mark.skipif(not ROOT, reason="makes slot uids (root)")
def test_cleanup_never_follows_symlinks_or_recurses(tmp_path):
    """The deletion itself: iterative (a 3000-deep tree), no symlink followed, no mode
    changed outside the tree, nothing of another file system touched."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o755)
    (victim / "keep.txt").write_text("keep")
    top = tmp_path / "tree"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    for _ in range(3000):  # deeper than PATH_MAX allows to name
        os.mkdir("d", dir_fd=fd)
        new = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = new
    os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    os.close(fd)
    (top / "link-dir").symlink_to(victim)
    (top / "d" / "link-file").symlink_to(victim / "keep.txt")
    (top / "locked").mkdir()
    (top / "locked" / "f").write_text("x")
    os.chmod(top / "locked", 0)
    # (no wall-clock bound: a recursive walk would fail on the 3000-deep tree by itself)
    assert sbx._remove_tree(str(tmp_path), "tree") == []
    assert not top.exists()
    assert sorted(os.listdir(victim)) == ["keep.txt"]
    assert stat.S_IMODE(victim.stat().st_mode) == 0o755
    assert stat.S_IMODE(tmp_path.stat().st_mode) == stat.S_IMODE(os.stat(tmp_path).st_mode)
    # a symlink as the top: removed, its target untouched
    (tmp_path / "top-link").symlink_to(victim)
    assert sbx._remove_tree(str(tmp_path), "top-link") == []
    assert os.listdir(victim) == ["keep.txt"]
    # a mount inside the tree is left alone and reported
    (tmp_path / "m" / "mnt").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "t", str(tmp_path / "m" / "mnt")],
                   check=True)
    try:
        (tmp_path / "m" / "mnt" / "kept").write_text("x")
        errors = sbx._remove_tree(str(tmp_path), "m")
        assert errors and (tmp_path / "m" / "mnt" / "kept").exists()
    finally:
        subprocess.run(["umount", "-l", str(tmp_path / "m" / "mnt")], check=True)


@pytest.mark.parametrize("mode", [*ISOLATING, "none"])
@pytest.mark.parametrize("tmpfs", [True, False], ids=["tmpfs", "host-disk"])
def test_attack_deep_directory_tree(make_sandbox, mode, tmpfs, monkeypatch):
    """1200 nested dirs (shutil.rmtree's recursion limit): run() returns its result, the
    run dir is gone, and the slot keeps working. ``host-disk``: no tmpfs for the work dir
    (mount refused), so the tree lands on the host disk and is deleted from there."""
    if not tmpfs:
        def refuse(*args):
            raise OSError(errno.EPERM, "mount refused (test)")
        monkeypatch.setattr(sbx, "_mount_tmpfs", refuse)
        monkeypatch.setattr(sbx, "_no_tmpfs", None)
    sb = make_sandbox(mode)
    r = sb.run(py("""
        import os
        for _ in range(1200):
            os.mkdir("d"); os.chdir("d")
        open("leaf", "w").write("x")
        print("deep")
    """))
    assert (r.returncode, r.stdout) == (0, b"deep\n"), r.stderr
    assert not any("could not remove" in w for w in r.warnings), r.warnings
    if ROOT and not tmpfs:
        assert any("no tmpfs for work dirs" in w for w in r.warnings)
    assert run_dirs(sb) == []
    assert sb.run(py("print('again')")).stdout == b"again\n"


@pytest.mark.skipif(not ROOT, reason="the work dir is a tmpfs only when the parent is root")
@pytest.mark.parametrize("mode", ISOLATING)
def test_attack_fill_work_dir_files_and_inodes(make_sandbox, mode):
    """Work dir on a size- and inode-capped tmpfs: many small files hit the inode cap,
    many big files the size cap (fsize is per file), nothing lands on the host disk, and
    run() returns right after the program (freeing is an unmount, not 100k unlinks)."""
    limits = SandboxLimits(**{**FAST.__dict__, "disk_mb": 8, "disk_inodes": 3000})
    sb = make_sandbox(mode)
    start = time.monotonic()
    r = sb.run(py("""
        import os
        st = os.statvfs(".")
        print(st.f_blocks * st.f_frsize >> 20, st.f_files)
        n = 0
        try:
            while True:
                os.close(os.open(f"f{n}", os.O_CREAT | os.O_WRONLY, 0o644)); n += 1
        except OSError as exc:
            print("files", n, exc.errno)
        for name in os.listdir("."):
            os.unlink(name)
        blk = b"z" * (1 << 20)
        written = 0
        try:
            for i in range(8):
                with open(f"big{i}", "wb") as fh:
                    for _ in range(3):
                        fh.write(blk); fh.flush(); written += 1
        except OSError as exc:
            print("bytes", written, exc.errno)
    """), limits=limits)
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    size, files, bytes_ = r.stdout.decode().splitlines()
    assert size.split() == ["8", "3000"]
    assert files.split()[0] == "files" and int(files.split()[1]) < 3000
    assert int(files.split()[2]) == errno.ENOSPC
    assert bytes_.split()[0] == "bytes" and int(bytes_.split()[1]) <= 8
    assert int(bytes_.split()[2]) == errno.ENOSPC
    assert elapsed - r.wall_s < 2.0  # cleanup is an unmount, not a 3000-file walk


@pytest.mark.skipif(not ROOT, reason="needs a pty session")
@pytest.mark.parametrize("mode", ISOLATING)
def test_attack_controlling_terminal(mode):
    """TIOCSTI: a verifier started from an operator's terminal must not hand that
    terminal to the program; /dev/tty cannot be opened (ENXIO: no controlling tty)."""
    src = Path(sbx.__file__).resolve().parents[1]
    slot = next(_slots)
    master, slave = os.openpty()
    attack = textwrap.dedent("""
        import errno, fcntl, os, termios
        try:
            fd = os.open("/dev/tty", os.O_RDWR)
        except OSError as exc:
            print("refused", errno.errorcode[exc.errno])
        else:
            print("OPENED")
            for c in b"echo PWNED\\n":
                try:
                    fcntl.ioctl(fd, termios.TIOCSTI, bytes([c]))
                except OSError:
                    pass
    """)
    script = textwrap.dedent(f"""
        import fcntl, os, sys, termios
        sys.path.insert(0, {str(src)!r})
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the pty is now our controlling terminal
        os.close(os.open("/dev/tty", os.O_RDWR))  # (so the host side can open it)
        from distillab.sandbox import Sandbox
        sb = Sandbox(mode={mode!r}, slot={slot}, base_uid={BASE_UID})
        r = sb.run([{PY!r}, "-c", {attack!r}])
        print(r.returncode, r.stdout.decode().strip(), r.stderr.decode().strip())
    """)
    try:
        out = subprocess.run([PY, "-c", script], stdin=slave, capture_output=True, text=True,
                             start_new_session=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["0", "refused", "ENXIO"], out.stdout
        os.set_blocking(slave, False)
        with pytest.raises(BlockingIOError):
            os.read(slave, 100)  # nothing was injected into the terminal's input
    finally:
        os.close(master)
        os.close(slave)
    assert live_processes(BASE_UID + slot) == []


@pytest.mark.parametrize("mode", ISOLATING)
def test_attack_read_host_files_and_processes(make_sandbox, mode):
    """A world-readable file in a world-traversable host dir outside the work dir (think:
    a dataset with expected outputs) is invisible; so are the host's processes."""
    secret = f"expected-output-{uuid.uuid4().hex}"
    planted = [tempfile.mkdtemp(prefix="distillab-plant-"),
               tempfile.mkdtemp(prefix="distillab-plant-", dir="/var/tmp")]
    try:
        for d in planted:
            os.chmod(d, 0o755)
            Path(d, "answers.jsonl").write_text(secret)
            os.chmod(os.path.join(d, "answers.jsonl"), 0o644)
        r = make_sandbox(mode).run(py(f"""
            import os
            for d in {planted!r}:
                try:
                    print(open(d + "/answers.jsonl").read())
                except OSError as exc:
                    print("hidden", exc.errno)
            pids = [p for p in os.listdir("/proc") if p.isdigit()]
            print("pids", len(pids), os.path.exists("/proc/{os.getpid()}/environ"))
            print("root", sorted(os.listdir("/")))
        """))
        assert r.returncode == 0, r.stderr
        assert secret.encode() not in r.stdout
        assert r.stdout.count(b"hidden 2") == len(planted)
        pids_line = next(line for line in r.stdout.split(b"\n") if line.startswith(b"pids"))
        count, visible = pids_line.split()[1:]
        assert int(count) < 10 and visible == b"False"
        for host_only in (b"'root'", b"'home'", b"'var'", b"'work'"):
            assert host_only not in r.stdout
    finally:
        for d in planted:
            shutil.rmtree(d)


@pytest.mark.skipif(not ROOT or not os.path.isdir(sbx._CGROUP_V1_MEMORY),
                    reason="needs root and a cgroup v1 memory controller")
@pytest.mark.parametrize("mode", ISOLATING)
def test_attack_memfd_beyond_rlimit_as(make_sandbox, mode):
    """memfd pages are not address space: RLIMIT_AS 256 MiB does not stop 1 GiB of them.
    The run's memory cgroup does."""
    limits = SandboxLimits(**{**FAST.__dict__, "memory_mb": 256, "run_memory_mb": 320,
                              "fsize_mb": 64, "wall_s": 10})  # fsize caps each memfd too
    r = make_sandbox(mode).run(py("""
        import os
        chunk = b"x" * (16 << 20)
        fds = []
        for i in range(16):                   # 1 GiB in 64 MiB memfds
            fd = os.memfd_create(f"m{i}")
            for _ in range(4):
                assert os.write(fd, chunk) == len(chunk)
            fds.append(fd)
            print(64 * len(fds), flush=True)
        print("HELD 1 GiB")
    """), limits=limits)
    assert b"HELD" not in r.stdout and not r.timed_out
    assert int(r.stdout.split()[-1]) <= 320
    # a write that cannot be charged fails (ENOMEM); a page fault gets the OOM killer
    assert (r.returncode == 1 and b"Errno 12" in r.stderr) or (
        r.returncode == -signal.SIGKILL
        and any("total memory limit" in w for w in r.warnings)), (r.returncode, r.stderr)


@pytest.mark.skipif(not ROOT, reason="the check applies when the parent is root")
def test_work_root_others_could_rearrange_is_refused():
    base = tempfile.mkdtemp(prefix="distillab-wr-")
    try:
        os.chmod(base, 0o755)
        open_dir = os.path.join(base, "open")
        os.mkdir(open_dir)
        os.chmod(open_dir, 0o777)  # world-writable, not sticky
        theirs = os.path.join(base, "theirs")
        os.mkdir(theirs)
        os.chown(theirs, BASE_UID + 960, BASE_UID + 960)
        os.mkdir(os.path.join(theirs, "inner"))  # root-owned, under a dir someone else owns
        for bad in (open_dir, theirs, os.path.join(theirs, "inner")):
            with pytest.raises(ValueError, match="work_root"):
                Sandbox(mode="none", base_uid=BASE_UID, work_root=bad)
        os.chmod(open_dir, 0o1777)
        assert Sandbox(mode="none", base_uid=BASE_UID, work_root=open_dir).work_root == open_dir
    finally:
        shutil.rmtree(base)
