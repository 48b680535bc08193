"""Run untrusted Python (model-written code) in a separate, limited process.

    from picochat.tools.sandbox import run_python
    result = run_python("print(1 + 1)", timeout=5)
    result.passed, result.status, result.stdout     # True, "passed", "2\\n"

The child process gets:
- a wall-clock timeout; on expiry its whole process group is killed (SIGKILL), and where the
  machine allows it, the code runs in its own PID namespace, so nothing it forked outlives it;
- RLIMIT_CPU (CPU seconds), RLIMIT_AS (address space: a 10 GB allocation fails at once),
  RLIMIT_NPROC (processes: a fork bomb runs out), RLIMIT_FSIZE (largest file it may write),
  no core dumps;
- no network: its own empty network namespace where available (`unshare --net`), and in any
  case `socket.socket` and friends replaced, before the code runs, by stubs that raise;
- a fresh temporary working directory (removed afterwards), an empty environment, isolated
  Python (-I: no user site-packages, no PYTHON* variables).

Root is exempt from RLIMIT_NPROC, so when run as root the process cap is a pids cgroup
(`pids.max`) instead, where the cgroup filesystem is writable; every process left in it is
killed afterwards. The in-process guards (the socket stubs) stop accidents and naive code, not a
determined attacker with ctypes; the namespaces, the cgroup and the limits are what hold then. Statuses:
passed (exit 0), failed (an AssertionError: a test did not pass), error (any other failure),
timeout (wall clock or CPU limit), memory (MemoryError or the address-space limit), network
(the code tried to open a socket).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

# Exit codes the bootstrap uses to say how the code ended (user code calling sys.exit with one of
# these only misreports its own result).
ASSERTION, MEMORY, NETWORK, EXCEPTION = 101, 102, 103, 104
TAIL = 2000

BOOTSTRAP = Template(r'''
import json, os, resource, runpy, sys
limits, cgroup, path = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
if cgroup:
    with open(cgroup, "w") as f:
        f.write(str(os.getpid()))
for name, value in limits.items():
    resource.setrlimit(getattr(resource, name), (value, value))
import socket, _socket
class NetworkDisabled(PermissionError):
    pass
def _blocked(*args, **kwargs):
    raise NetworkDisabled("network access is disabled in the sandbox")
class _NoSocket:
    def __init__(self, *args, **kwargs):
        _blocked()
for mod in (socket, _socket):
    mod.socket = _NoSocket
    for fn in ("create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo", "gethostbyname"):
        if hasattr(mod, fn):
            setattr(mod, fn, _blocked)
sys.argv = [path]
try:
    runpy.run_path(path, run_name="__main__")
except SystemExit:
    raise
except AssertionError:
    import traceback; traceback.print_exc(); sys.stderr.flush(); os._exit($ASSERTION)
except MemoryError:
    sys.stderr.write("MemoryError\n"); sys.stderr.flush(); os._exit($MEMORY)
except NetworkDisabled:
    import traceback; traceback.print_exc(); sys.stderr.flush(); os._exit($NETWORK)
except BaseException:
    import traceback; traceback.print_exc(); sys.stderr.flush(); os._exit($EXCEPTION)
''').substitute(ASSERTION=ASSERTION, MEMORY=MEMORY, NETWORK=NETWORK, EXCEPTION=EXCEPTION)


@dataclass
class SandboxResult:
    status: str               # passed | failed | error | timeout | memory | network
    returncode: int | None
    stdout: str               # the last TAIL characters
    stderr: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@functools.lru_cache(maxsize=1)
def namespace_prefix() -> tuple[str, ...]:
    """`unshare` arguments that give the child an empty network namespace and its own PID
    namespace, if this machine allows them (root, or unprivileged user namespaces); else ()."""
    exe = shutil.which("unshare")
    if exe is None:
        return ()
    base = (exe, "--net", "--pid", "--fork", "--kill-child")
    for prefix in ((base,) if os.geteuid() == 0 else ()) + ((exe, "--user", "--map-root-user") + base[1:],):
        try:
            if subprocess.run([*prefix, "true"], check=False, capture_output=True, timeout=10).returncode == 0:
                return prefix
        except (OSError, subprocess.SubprocessError):
            continue
    return ()


def _count_processes(uid: int) -> int:
    """Processes this user owns now (RLIMIT_NPROC counts them all, not just the child's)."""
    n = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                n += entry.stat().st_uid == uid
            except OSError:
                continue
    return n


@functools.lru_cache(maxsize=1)
def pids_cgroup_root() -> Path | None:
    """A writable pids-controller hierarchy (cgroup v1 or v2), or None."""
    v1 = Path("/sys/fs/cgroup/pids")
    v2 = Path("/sys/fs/cgroup")
    if (v1 / "cgroup.procs").exists() and os.access(v1, os.W_OK):
        return v1
    try:
        if "pids" in (v2 / "cgroup.controllers").read_text().split() and os.access(v2, os.W_OK):
            return v2
    except OSError:
        pass
    return None


def _make_cgroup(max_processes: int) -> Path | None:
    """A fresh pids cgroup capped at max_processes (root only; None where not possible)."""
    root = pids_cgroup_root() if os.geteuid() == 0 else None
    if root is None:
        return None
    group = root / f"picochat-sandbox-{os.getpid()}-{time.monotonic_ns()}"
    try:
        group.mkdir()
        (group / "pids.max").write_text(str(max_processes))
        return group
    except OSError:
        _remove_cgroup(group)
        return None


def _remove_cgroup(group: Path | None) -> None:
    """Kill whatever is left in the cgroup, then remove it."""
    if group is None or not group.exists():
        return
    for _ in range(50):
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except OSError:
            pids = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            group.rmdir()
            return
        except OSError:
            time.sleep(0.02)


def run_python(code: str, timeout: float = 10.0, memory_mb: int = 1024, max_processes: int = 16,
               max_file_mb: int = 16, stdin: str = "", network: bool = False) -> SandboxResult:
    """Run `code` as a script in a limited child process (see the module docstring)."""
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="picochat-sandbox-"))
    group = _make_cgroup(max_processes)
    try:
        script = workdir / "main.py"
        script.write_text(code, encoding="utf-8")
        out_path, err_path = workdir.parent / f"{workdir.name}.out", workdir.parent / f"{workdir.name}.err"
        limits = {"RLIMIT_AS": memory_mb << 20, "RLIMIT_CPU": max(1, int(timeout) + 1),
                  "RLIMIT_FSIZE": max_file_mb << 20, "RLIMIT_CORE": 0}
        if os.geteuid() != 0:   # counts every process of the user, so: those running now + the cap
            limits["RLIMIT_NPROC"] = _count_processes(os.geteuid()) + max_processes
        prefix = () if network else namespace_prefix()
        cmd = [*prefix, sys.executable, "-I", "-c", BOOTSTRAP, json.dumps(limits),
               str(group / "cgroup.procs") if group else "", str(script)]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"}
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.PIPE, stdout=out, stderr=err,
                                    start_new_session=True)
            timed_out = False
            try:
                proc.communicate(stdin.encode(), timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc)
        stdout = _tail(out_path)
        stderr = _tail(err_path)
        out_path.unlink(missing_ok=True)
        err_path.unlink(missing_ok=True)
        status = _status(proc.returncode, timed_out, stderr)
        return SandboxResult(status, proc.returncode, stdout, stderr, round(time.perf_counter() - started, 3))
    finally:
        _remove_cgroup(group)
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's process group (it leads its own session), then reap the child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - TAIL))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _status(returncode: int | None, timed_out: bool, stderr: str) -> str:
    if timed_out or returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return "timeout"
    if returncode == 0:
        return "passed"
    if returncode == ASSERTION:
        return "failed"
    if returncode == MEMORY or "MemoryError" in stderr[-300:]:
        return "memory"
    if returncode == NETWORK or "network access is disabled in the sandbox" in stderr:
        return "network"
    return "error"
