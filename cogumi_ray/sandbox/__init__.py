"""Run untrusted Python (model-written code, suite tests) in a sandbox: one fresh jail per call.

Every path that executes model output goes through `run_python`. The default ("strict") jail is
kernel-enforced (strict.py, launch.py); on a machine that cannot build it, `run_python` raises
SandboxUnavailable naming what is missing, and only an explicit `sandbox.isolation: weak` (config)
or COGUMI_SANDBOX_ISOLATION=weak (environment) selects the rlimit-only guard of weak.py.
"""

from __future__ import annotations

import os

from cogumi_ray.errors import SandboxUnavailable
from cogumi_ray.sandbox.process import SandboxResult

ISOLATION_ENV = "COGUMI_SANDBOX_ISOLATION"
ISOLATIONS = ("strict", "weak")

__all__ = ["ISOLATIONS", "ISOLATION_ENV", "SandboxResult", "SandboxUnavailable", "isolation",
           "run_python"]


def isolation() -> str:
    """The isolation mode in force: COGUMI_SANDBOX_ISOLATION, else strict."""
    mode = os.environ.get(ISOLATION_ENV, "strict").strip().lower() or "strict"
    if mode not in ISOLATIONS:
        raise SandboxUnavailable(f"{ISOLATION_ENV}={mode!r} is not one of {', '.join(ISOLATIONS)}")
    return mode


def run_python(
    code: str,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    max_output_bytes: int = 65536,
    stdin: bytes = b"",
) -> SandboxResult:
    """Run `code` as a script in a fresh sandbox; `passed` means it exited with code 0. `stdin`
    (at most 4 KiB) is what the script reads from its stdin, through a pipe: no file holds it."""
    if isolation() == "weak":
        from cogumi_ray.sandbox.weak import run_weak

        return run_weak(code, timeout_s=timeout_s, memory_mb=memory_mb,
                        max_output_bytes=max_output_bytes, stdin=stdin)
    from cogumi_ray.sandbox.strict import run_strict

    return run_strict(code, timeout_s=timeout_s, memory_mb=memory_mb,
                      max_output_bytes=max_output_bytes, stdin=stdin)
