"""Open a GGUF with llama-cpp-python, without the weight repacking that crashes on AMX CPUs.

llama.cpp repacks weights into "extra buffer types" at load for faster CPU matmuls. On CPUs with
Intel AMX (Sapphire Rapids and later, common on cloud machines) a build with AMX support routes
K-quant matmuls through `ggml_backend_amx_mul_mat`, which segfaults the whole process on our
Q4_K_M models (reproduced on this project's 2-core CI-class machine; llama.cpp issue #20824).
llama.cpp's own switch is `--no-repack` (`llama_model_params.use_extra_bufts`), which
llama-cpp-python does not expose, so it is set here for the models this process opens.

`COGUMI_LLAMA_REPACK=1` keeps repacking on an AMX machine (a build without the bug), `=0` turns
it off everywhere; unset, it is off exactly where the CPU reports AMX.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from cogumi_ray.errors import MissingDependencyError

log = logging.getLogger(__name__)

ENV = "COGUMI_LLAMA_REPACK"
_lock = threading.Lock()


def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return any(flag.startswith("amx_") for flag in line.split())
    except OSError:
        return False
    return False


def repack_enabled() -> bool:
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    if value:
        raise ValueError(f"{ENV} must be 1 or 0, got {value!r}")
    return not cpu_has_amx()


@contextlib.contextmanager
def _no_extra_buffers(lcpp: Any) -> Iterator[None]:
    """While held, the default model params `Llama()` starts from have repacking off."""
    original = lcpp.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = False
        return p

    lcpp.llama_model_default_params = params
    try:
        yield
    finally:
        lcpp.llama_model_default_params = original


def open_llama(model_path: str, **kwargs: Any) -> Any:
    """`llama_cpp.Llama(model_path, **kwargs)`, with repacking off where it is unsafe."""
    try:
        import llama_cpp
        import llama_cpp.llama_cpp as lcpp
    except ImportError as e:
        raise MissingDependencyError(
            "llama-cpp-python", "pip install 'llama-cpp-python>=0.3.16,<0.4'", str(e)
        ) from e
    if repack_enabled() or not hasattr(lcpp.llama_model_default_params(), "use_extra_bufts"):
        return llama_cpp.Llama(model_path=model_path, **kwargs)
    with _lock, _no_extra_buffers(lcpp):
        return llama_cpp.Llama(model_path=model_path, **kwargs)
