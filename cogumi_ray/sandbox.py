"""Run untrusted Python (model-written code, suite tests) in a limited subprocess.

Each call gets a fresh temp dir as cwd and `python -I` (no user site, no PYTHON* env, script dir
not on sys.path). A preamble in the child sets its limits before the code runs: address space
(RLIMIT_AS), CPU seconds, size of files written, number of processes. (Not `preexec_fn`: that may
deadlock when the caller has threads, and the eval scorer verifies from a thread pool.) The
wall-clock timeout kills the whole process group, so children the code spawned die too. Network is
blocked best-effort by the same preamble replacing the socket API; this is a guard against
accidents, not a security boundary against an adversary.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import IO

# Runs before the user's code (a str.format template: literal braces are doubled). Tracebacks
# show the user's own line numbers because the code is compiled under its own file name.
_PREAMBLE = """\
import resource as _r
_r.setrlimit(_r.RLIMIT_AS, ({mem}, {mem}))
_r.setrlimit(_r.RLIMIT_CPU, ({cpu}, {cpu} + 1))
_r.setrlimit(_r.RLIMIT_FSIZE, ({fsize}, {fsize}))
_r.setrlimit(_r.RLIMIT_CORE, (0, 0))
if {nproc} > 0:
    _r.setrlimit(_r.RLIMIT_NPROC, ({nproc}, {nproc}))
del _r
import socket as _s, sys as _sys
def _no_net(*a, **k):
    raise PermissionError("network access is disabled in the cogumi sandbox")
class _NoSocket:
    def __init__(self, *a, **k):
        _no_net()
for _n in ("socket", "create_connection", "create_server", "socketpair", "fromfd"):
    setattr(_s, _n, _NoSocket if _n == "socket" else _no_net)
for _n in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
    setattr(_s, _n, _no_net)
_sys.modules["_socket"] = None  # `import _socket` now fails instead of giving a raw socket
del _s, _n
_src = open("main.py", encoding="utf-8").read()
_g = {{"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}}
exec(compile(_src, "main.py", "exec"), _g)
"""

_FILE_LIMIT = 16 * 1024 * 1024  # bytes any one written file may reach
_EXTRA_PROCS = 32  # processes the code may add on top of what this user already runs


@dataclass
class SandboxResult:
    passed: bool  # exit code 0
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    error: str | None  # why it failed, one line (None when it passed)


def _user_procs() -> int:
    """Processes this uid runs now (RLIMIT_NPROC counts them all, not just the child's)."""
    uid, n = os.getuid(), 0
    try:
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if os.stat(f"/proc/{pid}").st_uid == uid:
                        n += 1
                except OSError:
                    pass
    except OSError:
        return 0
    return n


def _drain(stream: IO[bytes], keep: int, sink: list[bytes], dropped: list[int]) -> None:
    """Read a pipe to EOF, keeping the first `keep` bytes; the rest is counted and dropped so a
    chatty child never blocks on a full pipe nor fills our memory."""
    kept = 0
    while chunk := stream.read(65536):
        room = keep - kept
        if room > 0:
            sink.append(chunk[:room])
            kept += min(room, len(chunk))
        dropped[0] += max(0, len(chunk) - max(room, 0))
    stream.close()


def _wait_unreaped(pid: int, timeout_s: float) -> bool:
    """Wait until `pid` exits (True) or the timeout passes (False), without reaping it."""
    deadline = time.monotonic() + timeout_s
    pause = 0.002
    while True:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.05)


def _decode(parts: list[bytes], dropped: int) -> str:
    text = b"".join(parts).decode("utf-8", errors="replace")
    return text + (f"\n[... {dropped} bytes truncated]" if dropped else "")


def _why(rc: int, stderr: str, timed_out: bool, timeout_s: float) -> str | None:
    if timed_out:
        return f"timed out after {timeout_s:g}s"
    if rc == 0:
        return None
    if rc < 0:
        sig = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
        hint = {"SIGXCPU": " (CPU time limit)", "SIGXFSZ": " (file size limit)"}.get(sig, "")
        return f"killed by {sig}{hint}"
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip() and not ln.startswith("[...")]
    return lines[-1].strip()[:300] if lines else f"exit code {rc}"


def run_python(
    code: str,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    max_output_bytes: int = 65536,
) -> SandboxResult:
    """Run `code` as a script in a fresh sandbox; `passed` means it exited with code 0."""
    nproc = _user_procs() + _EXTRA_PROCS if sys.platform.startswith("linux") else 0
    cpu_s = max(1, int(timeout_s) + 1)
    with tempfile.TemporaryDirectory(prefix="cogumi-sandbox-") as tmp:
        with open(os.path.join(tmp, "main.py"), "w", encoding="utf-8") as f:
            f.write(code)
        with open(os.path.join(tmp, "_run.py"), "w", encoding="utf-8") as f:
            f.write(_PREAMBLE.format(mem=memory_mb * 1024 * 1024, cpu=cpu_s, fsize=_FILE_LIMIT,
                                     nproc=nproc))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
               "PYTHONIOENCODING": "utf-8", "HOME": tmp, "TMPDIR": tmp}
        proc = subprocess.Popen(
            [sys.executable, "-I", "-B", "_run.py"],
            cwd=tmp, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,  # own process group: the timeout kills everything it spawned
        )
        out: list[bytes] = []
        err: list[bytes] = []
        out_drop, err_drop = [0], [0]
        readers = [
            threading.Thread(target=_drain, args=(proc.stdout, max_output_bytes, out, out_drop)),
            threading.Thread(target=_drain, args=(proc.stderr, max_output_bytes, err, err_drop)),
        ]
        for t in readers:
            t.start()
        timed_out = not _wait_unreaped(proc.pid, timeout_s)
        # Kill the group even after a normal exit: orphaned grandchildren must not outlive us.
        # The child is not reaped yet, so its pid (= the group id) cannot have been reused.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for t in readers:
            t.join(timeout=5)
    stdout, stderr = _decode(out, out_drop[0]), _decode(err, err_drop[0])
    rc = proc.returncode
    return SandboxResult(
        passed=rc == 0 and not timed_out,
        returncode=None if timed_out else rc,
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out,
        error=_why(rc, stderr, timed_out, timeout_s),
    )
