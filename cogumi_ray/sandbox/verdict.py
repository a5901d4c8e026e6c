"""Run an answer's code against tests in the sandbox and get a verdict the answer cannot forge by
exiting early or by printing.

Why the exit code is not enough: `os._exit(0)`, `sys.exit(0)` or `raise SystemExit` in the answer
end the script with status 0 before a single test ran. And a verdict line the script prints is
not enough either when the nonce that marks it is written into the script, or sits anywhere in
the memory of the process running the answer: the answer can read /tmp/main.py, walk the frames
(sys._getframe, inspect) or scan gc.get_objects() and print a forged line.

The design (the script `_RUNNER`, which holds no secret):
- The host draws a nonce per run and passes it on the script's stdin, a pipe (run_python's
  `stdin`); no file holds it.
- The script first makes itself non-dumpable (prctl), so no other process of the jail can open
  its /proc/<pid>/fd or /proc/<pid>/mem (under the weak guard run as root, CAP_SYS_PTRACE still
  can), then forks *before* reading stdin.
- The child, which never had the nonce in memory, points its stdin at /dev/null and its stdout at
  stderr, then runs answer + tests and sends [passed, reason] up a private pipe.
- The parent reads the nonce, waits for the child, and alone writes the verdict, behind the
  nonce, on the run's stdout. A child that died without a report (any exit, any signal) fails.
So nothing the answer prints can be a verdict, and no exit makes one. What remains possible is
deceiving the tests from inside their own interpreter (an object equal to anything, or code that
writes the report pipe itself): tests that call the answer's functions share its process.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

_RUNNER = r'''
import json, os, sys, traceback
CODE, TESTS = json.loads(%r)


def _describe(e):
    for fr in reversed(traceback.extract_tb(e.__traceback__)):
        if fr.filename == "tests.py" and isinstance(e, AssertionError):
            return "failed: " + TESTS.splitlines()[fr.lineno - 1].strip()
    return (type(e).__name__ + ": " + str(e)).strip().rstrip(":")[:300]


def _child(report):
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    import types
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    try:
        exec(compile(CODE, "answer.py", "exec"), main.__dict__)
        exec(compile(TESTS, "tests.py", "exec"), main.__dict__)
        verdict = [True, "passed"]
    except BaseException as e:
        verdict = [False, _describe(e)]
    os.write(report, json.dumps(verdict).encode())
    os._exit(0)


def _parent(pid, report):
    mark = sys.stdin.read()
    with os.fdopen(report, "rb") as f:
        raw = f.read(65536)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    try:
        verdict = json.loads(raw) if code == 0 else None
        verdict = [verdict[0] is True, str(verdict[1])]
    except (ValueError, TypeError, IndexError, KeyError):
        how = "exit code %%d" %% code if code >= 0 else "signal %%d" %% -code
        verdict = [False, "exited before the tests finished (%%s)" %% how]
    sys.stdout.write("\n" + mark + json.dumps(verdict) + "\n")


if sys.platform.startswith("linux"):
    import ctypes
    if ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
        raise SystemExit("cannot make the verdict process non-dumpable")
_r, _w = os.pipe()
_pid = os.fork()
if _pid == 0:
    os.close(_r)
    _child(_w)
os.close(_w)
_parent(_pid, _r)
'''


@dataclass(frozen=True)
class CodeVerdict:
    passed: bool
    reason: str  # "passed", the failing test line, the answer's exception, or the sandbox's error


def run_tests(code: str, tests: str, *, timeout_s: float = 5.0,
              memory_mb: int = 512) -> CodeVerdict:
    """Run `code` then `tests` (sharing one module namespace, named __main__) in a fresh sandbox;
    passed only when the tests ran to the end without an exception."""
    from cogumi_ray.sandbox import run_python

    mark = f"@@cogumi-verdict-{secrets.token_hex(16)}@@"
    r = run_python(_RUNNER % json.dumps([code, tests]), timeout_s=timeout_s,
                   memory_mb=memory_mb, stdin=mark.encode())
    at = r.stdout.find(mark)
    if r.passed and at >= 0:
        try:
            ok, reason = json.loads(r.stdout[at + len(mark):].splitlines()[0])
            return CodeVerdict(ok is True, str(reason))
        except (ValueError, TypeError, IndexError):
            pass
    return CodeVerdict(False, f"sandbox: {r.error or 'no verdict'}")
