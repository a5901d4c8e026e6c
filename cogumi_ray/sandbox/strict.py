"""Host side of the strict sandbox: start `launch.py` with the code (and the code's own stdin) on
its stdin, enforce the wall clock, read the jail's report from a private pipe.

What the jail gives (see launch.py): namespaces for users, mounts, network, pids, IPC, hostname
and cgroups; a read-only view of the interpreter and system libraries only; a size-capped /tmp as
the one writable place; rlimits (memory, CPU, file size, processes+threads, open files); a seccomp
filter; and a kernel kill of every descendant when the run ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
from functools import cache
from pathlib import Path

from cogumi_ray.errors import SandboxUnavailable
from cogumi_ray.sandbox.process import Capture, SandboxResult, check_stdin, result, wait_unreaped

LAUNCHER = str(Path(__file__).with_name("launch.py"))
FILE_LIMIT = 16 * 1024 * 1024  # bytes any one written file may reach
SCRATCH_LIMIT = 64 * 1024 * 1024  # bytes the whole writable /tmp may hold
MAX_PROCS = 32  # processes + threads the code may run at once (its own tasks only)
_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin")

WEAK_HINT = (
    "To accept the weaker guard (rlimits in a plain subprocess: no network, filesystem or "
    "process isolation), set `sandbox.isolation: weak` in the config or "
    "COGUMI_SANDBOX_ISOLATION=weak in the environment."
)


@cache
def interpreter() -> tuple[str, tuple[str, ...]]:
    """The real interpreter binary (not a venv's symlink) and the read-only paths it needs."""
    python = os.path.realpath(sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    binds = [d for d in _SYSTEM_DIRS if os.path.lexists(d)]
    if not any(prefix == d or prefix.startswith(d + "/") for d in binds if not os.path.islink(d)):
        binds.append(prefix)
    return python, tuple(binds)


def _throwaway_uid() -> int:
    """A uid no account uses, so the kernel counts (and caps) only this run's processes."""
    return random.randrange(0x40000000, 0x7FFFFFF0)


def _read_all(fd: int, sink: list[bytes]) -> None:
    with os.fdopen(fd, "rb") as f:
        sink.append(f.read(1 << 16))


def _feed(stdin: object, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, OSError):
        stdin.write(data)  # type: ignore[attr-defined]
    with contextlib.suppress(BrokenPipeError, OSError):
        stdin.close()  # type: ignore[attr-defined]


def unavailable_message(setup_error: str) -> str:
    return (
        f"the sandbox cannot isolate untrusted code on this machine: {setup_error}. It needs "
        "unprivileged user namespaces (sysctl user.max_user_namespaces > 0; on Ubuntu also "
        "kernel.apparmor_restrict_unprivileged_userns=0; inside Docker run with "
        "--security-opt seccomp=unconfined or a profile that allows unshare/mount), and permission "
        f"to mount /proc in a new PID namespace. {WEAK_HINT}"
    )


def run_strict(
    code: str,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    max_output_bytes: int = 65536,
    stdin: bytes = b"",
) -> SandboxResult:
    """Run `code` as /tmp/main.py inside the jail, `stdin` on its stdin; `passed` means it exited
    with code 0."""
    check_stdin(stdin)
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(f"the strict sandbox needs Linux (this is {sys.platform}). {WEAK_HINT}")
    python, binds = interpreter()
    code_bytes = code.encode("utf-8")
    spec = {
        "python": python, "ro_binds": list(binds), "uid": _throwaway_uid(),
        "memory_bytes": memory_mb * 1024 * 1024, "cpu_s": max(1, int(timeout_s) + 1),
        "file_bytes": FILE_LIMIT, "scratch_bytes": SCRATCH_LIMIT, "max_procs": MAX_PROCS,
        "code_bytes": len(code_bytes),
    }
    status_r, status_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", LAUNCHER, json.dumps(spec), str(status_w)],
            cwd="/", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, pass_fds=(status_w,),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
    finally:
        os.close(status_w)
    status: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(status_r, status), daemon=True)
    reader.start()
    capture = Capture(proc.stdout, proc.stderr, max_output_bytes)  # type: ignore[arg-type]
    _feed(proc.stdin, code_bytes + stdin)
    timed_out = not wait_unreaped(proc.pid, timeout_s)
    if timed_out:  # pid 1 dies with the launcher (PDEATHSIG), and the kernel kills the rest
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(timeout=5)
    stdout, stderr = capture.finish()
    report = _parse(b"".join(status))
    if "setup_error" in report:
        raise SandboxUnavailable(unavailable_message(report["setup_error"]))
    if "status" not in report and not timed_out:
        raise SandboxUnavailable(unavailable_message(
            f"the launcher exited ({proc.returncode}) without a report: {stderr.strip()[-300:]}"))
    rc = os.waitstatus_to_exitcode(report["status"]) if "status" in report else None
    return result(rc, stdout, stderr, timed_out, timeout_s)


def _parse(raw: bytes) -> dict:
    """The jail's report lines; a setup error wins over a status (both may arrive)."""
    out: dict = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            msg = json.loads(line)
            if isinstance(msg, dict):
                out = {**msg, **out} if "setup_error" in out else {**out, **msg}
    return out
