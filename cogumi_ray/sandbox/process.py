"""What both isolation modes share: a child whose output is captured with a cap, a wall clock,
and the one-line reason a run failed."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import IO


@dataclass
class SandboxResult:
    passed: bool  # exit code 0
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    error: str | None  # why it failed, one line (None when it passed)


STDIN_LIMIT = 4096  # bytes of stdin a run may get: one page, which every pipe holds unread


def check_stdin(stdin: bytes) -> None:
    """Stdin is for small secrets (a verdict nonce), written whole into a pipe before the code
    starts; more could block the writer on a code that never reads."""
    if len(stdin) > STDIN_LIMIT:
        raise ValueError(f"sandbox stdin is {len(stdin)} bytes; at most {STDIN_LIMIT} are allowed")


def drain(stream: IO[bytes], keep: int, sink: list[bytes], dropped: list[int]) -> None:
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


class Capture:
    """stdout and stderr of a child read on two threads, each capped at `keep` bytes."""

    def __init__(self, stdout: IO[bytes], stderr: IO[bytes], keep: int) -> None:
        self._parts: tuple[list[bytes], list[bytes]] = ([], [])
        self._dropped = ([0], [0])
        self._threads = [
            threading.Thread(target=drain, args=(s, keep, parts, dropped), daemon=True)
            for s, parts, dropped in zip((stdout, stderr), self._parts, self._dropped, strict=True)
        ]
        for t in self._threads:
            t.start()

    def finish(self, timeout_s: float = 5.0) -> tuple[str, str]:
        for t in self._threads:
            t.join(timeout=timeout_s)
        out, err = (decode(p, d[0]) for p, d in zip(self._parts, self._dropped, strict=True))
        return out, err


def wait_unreaped(pid: int, timeout_s: float) -> bool:
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


def decode(parts: list[bytes], dropped: int) -> str:
    text = b"".join(parts).decode("utf-8", errors="replace")
    return text + (f"\n[... {dropped} bytes truncated]" if dropped else "")


def why(rc: int, stderr: str, timed_out: bool, timeout_s: float) -> str | None:
    if timed_out:
        return f"timed out after {timeout_s:g}s"
    if rc == 0:
        return None
    if rc < 0:
        sig = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
        hint = {"SIGXCPU": " (CPU time limit)", "SIGXFSZ": " (file size limit)",
                "SIGSYS": " (forbidden system call)"}.get(sig, "")
        return f"killed by {sig}{hint}"
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip() and not ln.startswith("[...")]
    return lines[-1].strip()[:300] if lines else f"exit code {rc}"


def result(rc: int | None, stdout: str, stderr: str, timed_out: bool, timeout_s: float) -> SandboxResult:
    return SandboxResult(
        passed=rc == 0 and not timed_out,
        returncode=None if timed_out else rc,
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out,
        error=why(rc or 0, stderr, timed_out, timeout_s) if timed_out or rc != 0 else None,
    )
