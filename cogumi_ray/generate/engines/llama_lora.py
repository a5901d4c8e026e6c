"""LoRA GGUF adapters on a loaded llama.cpp base, shared by the batch engine (one fixed adapter,
`generate.engine.llama_cpp.lora`) and the serve backend (adapters switched per request).

An adapter is loaded once with `llama_adapter_lora_init` against the base's weights (no second
copy of the base) and made active with `llama_set_adapters_lora`, which replaces the context's
whole adapter set. The base may be quantized (Q4_K_M, ...): the adapter's own f16/f32 matrices
are added on top of each quantized matmul, as llama.cpp's `--lora` does.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

from cogumi_ray.generate.engines.base import EngineError


def check_lora_file(path: str, setting: str) -> None:
    """Fail before the base loads when the adapter file is missing; `setting` names the config
    key that points at it."""
    if not os.path.isfile(path):
        raise EngineError(
            f"LoRA adapter file {path!r} does not exist; set {setting} to a LoRA .gguf exported "
            "for this base (the modifiers stage writes modifiers/adapters/<domain>.gguf)"
        )


def load_lora(llm: Any, path: str, setting: str) -> Any:
    """The adapter's llama_adapter_lora pointer, loaded against `llm`'s model (free it with
    `free_lora` before the model closes)."""
    import llama_cpp

    check_lora_file(path, setting)
    ptr = llama_cpp.llama_adapter_lora_init(llm.model, path.encode("utf-8"))
    if not ptr:
        raise EngineError(f"llama.cpp cannot load {path!r} as a LoRA adapter of {llm.model_path!r} "
                          "(a LoRA GGUF exported for this base is needed: cogumi_ray.export."
                          "lora_gguf)")
    return ptr


def set_lora(llm: Any, ptr: Any | None, scale: float = 1.0) -> None:
    """Make `ptr` the context's only adapter (None: the plain base), and drop the KV cache."""
    import llama_cpp

    if ptr is None:
        rc = llama_cpp.llama_set_adapters_lora(llm.ctx, None, 0, None)
    else:
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(ptr)
        rc = llama_cpp.llama_set_adapters_lora(llm.ctx, adapters, 1, (ctypes.c_float * 1)(scale))
    if rc != 0:
        raise EngineError(f"llama.cpp could not set the LoRA adapter set of {llm.model_path!r} "
                          f"(code {rc})")
    # Llama.generate reuses the KV cache of a matching prompt prefix; that cache was computed
    # with the previous adapter set, so it must go.
    llm.reset()


def free_lora(ptr: Any) -> None:
    import llama_cpp

    llama_cpp.llama_adapter_lora_free(ptr)
