"""The weak guard, only on request (`sandbox.isolation: weak`): rlimits in a plain subprocess.

Each call gets a fresh temp dir as cwd and `python -I` (no user site, no PYTHON* env, script dir
not on sys.path). A preamble in the child sets its limits before the code runs: address space
(RLIMIT_AS), CPU seconds, size of files written, number of processes. (Not `preexec_fn`: that may
deadlock when the caller has threads, and the eval scorer verifies from a thread pool.) The
wall-clock timeout kills the whole process group, so children the code spawned die too. Network is
blocked best-effort by the same preamble replacing the socket API. This is a guard against
accidents, not a security boundary: the filesystem, `subprocess` children, raw sockets and (as
root) the process cap are all open. The strict sandbox (`launch.py`) is the default.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile

from cogumi_ray.sandbox.process import Capture, SandboxResult, check_stdin, result, wait_unreaped

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


def run_weak(
    code: str,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    max_output_bytes: int = 65536,
    stdin: bytes = b"",
) -> SandboxResult:
    """Run `code` as a script in a fresh sandbox, `stdin` on its stdin; `passed` means it exited
    with code 0."""
    check_stdin(stdin)
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
            cwd=tmp, env=env, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,  # own process group: the timeout kills everything it spawned
        )
        capture = Capture(proc.stdout, proc.stderr, max_output_bytes)
        if proc.stdin is not None:  # fits the pipe (check_stdin), so this never blocks
            with contextlib.suppress(BrokenPipeError, OSError):
                proc.stdin.write(stdin)
            with contextlib.suppress(BrokenPipeError, OSError):
                proc.stdin.close()
        timed_out = not wait_unreaped(proc.pid, timeout_s)
        # Kill the group even after a normal exit: orphaned grandchildren must not outlive us.
        # The child is not reaped yet, so its pid (= the group id) cannot have been reused.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        stdout, stderr = capture.finish()
    return result(proc.returncode, stdout, stderr, timed_out, timeout_s)
