"""GGUF quantization (K-quants and the rest) with llama.cpp's own quantizer, checked by reading back.

llama.cpp picks a type per tensor: the mix named by the file type (Q4_K_M gives most matrices Q4_K
and some attn_v / ffn_down and the output Q6_K), and it silently falls back to a 32-element-block
type (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0 or IQ4_NL, IQ* -> IQ4_NL) or to
F16 when a matrix's row length (its input dimension) is not a multiple of 256. The output is read
back with `gguf.GGUFReader` and every matrix checked against the types its mix may contain, so a
fallback is reported, never hidden.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cogumi_ray.errors import ModelError

log = logging.getLogger(__name__)

# Types each mix may give a 2-D weight of a dense model whose rows are multiples of 256 (from
# llama.cpp's llama_tensor_get_type: output.weight -> Q6_K, more bits for some attn_v / ffn_down,
# fused attn_qkv one step up). A mix not listed must give every matrix a 256-block type.
MIX_TYPES: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in {
    "Q2_K": ("Q2_K", "Q3_K", "Q4_K", "Q6_K"), "Q2_K_S": ("Q2_K", "Q4_K", "Q6_K"),
    "Q3_K_S": ("Q3_K", "Q6_K"), "Q3_K_M": ("Q3_K", "Q4_K", "Q5_K", "Q6_K"),
    "Q3_K_L": ("Q3_K", "Q4_K", "Q5_K", "Q6_K"), "Q4_K_S": ("Q4_K", "Q5_K", "Q6_K"),
    "Q4_K_M": ("Q4_K", "Q5_K", "Q6_K"), "Q5_K_S": ("Q5_K", "Q6_K"), "Q5_K_M": ("Q5_K", "Q6_K"),
    "Q6_K": ("Q6_K",), "Q8_0": ("Q8_0",), "F16": ("F16",), "BF16": ("BF16",), "F32": ("F32",),
    "Q4_0": ("Q4_0", "Q4_1", "Q6_K"), "Q4_1": ("Q4_1", "Q6_K"), "Q5_0": ("Q5_0", "Q5_1", "Q6_K"),
    "Q5_1": ("Q5_1", "Q6_K"), "IQ4_NL": ("IQ4_NL", "Q5_K", "Q6_K"), "IQ4_XS": ("IQ4_XS", "Q5_K", "Q6_K"),
    "MXFP4_MOE": ("MXFP4", "Q8_0"),
}.items()}
# 2-D tensors llama.cpp never quantizes (norms are 1-D and stay F32 anyway)
_KEPT = ("_norm.weight", "ffn_gate_inp", "pos_embd", "token_types", "ssm_conv1d", "time_mix_",
         "attn_rel_b", "altup", "laurel", "per_layer_model_proj", "position_embd", "patch_embd")


@dataclass(frozen=True)
class Fallback:
    name: str
    type: str  # what llama.cpp wrote
    row_length: int  # the matrix's input dimension (ne[0])
    expected: tuple[str, ...]  # what the mix gives matrices whose rows fit


@dataclass
class QuantReport:
    src: str
    dst: str
    qtype: str
    in_bytes: int
    out_bytes: int
    seconds: float
    n_weights: int  # elements over all tensors
    bits_per_weight: float  # tensor data bits / n_weights
    type_counts: dict[str, int]
    tensor_types: dict[str, str]
    fallbacks: list[Fallback] = field(default_factory=list)
    imatrix_entries: int = 0  # 0: quantized without an importance matrix

    @property
    def ratio(self) -> float:
        return self.in_bytes / self.out_bytes


def ftype_names() -> dict[str, int]:
    """llama.cpp's file types by name ("Q5_K_M": 17, "F16": 1, ...) as llama-cpp-python defines them."""
    import llama_cpp

    out = {}
    for attr in dir(llama_cpp):
        for prefix in ("LLAMA_FTYPE_MOSTLY_", "LLAMA_FTYPE_ALL_"):
            if attr.startswith(prefix):
                out[attr[len(prefix):]] = int(getattr(llama_cpp, attr))
    return out


def resolve_qtype(qtype: str) -> tuple[str, int]:
    """("Q4_K_M", 15) for "q4_k_m"; ModelError listing the valid names otherwise."""
    names = ftype_names()
    key = qtype.strip().upper()
    if key not in names:
        raise ModelError(f"unknown GGUF quantization type {qtype!r}; valid (any case): "
                         f"{', '.join(sorted(names, key=names.__getitem__))}")
    return key, names[key]


def quantize_gguf(src_gguf: str, dst_gguf: str, qtype: str = "Q5_K_M", *,
                  imatrix: str | Mapping[str, Any] | None = None, threads: int = 0,
                  strict: bool = False) -> QuantReport:
    """Quantize the GGUF `src_gguf` (f32/f16/bf16) to `qtype` and write `dst_gguf` (whole or not at all).

    imatrix: an importance matrix (a llama-imatrix .gguf/.dat file, or {GGUF tensor name: mean x²
    per input column}, e.g. from `compute_imatrix`); threads: 0 = one per CPU; strict: raise instead
    of writing when a matrix fell back to another type.
    """
    name, ftype = resolve_qtype(qtype)
    if not os.path.isfile(src_gguf):
        raise ModelError(f"GGUF file {src_gguf!r} does not exist; export one with `cogumi export gguf`")
    t0 = time.perf_counter()
    entries = _checked_imatrix(imatrix, src_gguf) if imatrix is not None else {}
    os.makedirs(os.path.dirname(os.path.abspath(dst_gguf)), exist_ok=True)
    tmp = f"{dst_gguf}.tmp-{os.getpid()}"
    try:
        _run_llama_quantize(src_gguf, tmp, name, ftype, entries, threads)
        report = inspect_quantized(tmp, name)
        if strict and report.fallbacks:
            raise ModelError(_fallback_message(src_gguf, name, report.fallbacks))
        os.replace(tmp, dst_gguf)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    report.src, report.dst, report.imatrix_entries = src_gguf, dst_gguf, len(entries)
    report.in_bytes, report.seconds = os.path.getsize(src_gguf), time.perf_counter() - t0
    if report.fallbacks:
        log.warning(_fallback_message(src_gguf, name, report.fallbacks))
    log.info("GGUF %s: %.1f MiB -> %.1f MiB (%.2f bits/weight, %s) in %.1fs -> %s", name,
             report.in_bytes / 2**20, report.out_bytes / 2**20, report.bits_per_weight,
             dict(report.type_counts), report.seconds, dst_gguf)
    return report


def _fallback_message(src: str, qtype: str, fallbacks: list[Fallback]) -> str:
    shown = "; ".join(f"{f.name} -> {f.type} (row length {f.row_length})" for f in fallbacks[:6])
    more = f" and {len(fallbacks) - 6} more" if len(fallbacks) > 6 else ""
    return (f"{len(fallbacks)} matrices of {src!r} did not get {qtype}'s types: {shown}{more}. "
            "llama.cpp falls back when a row length is not a multiple of 256; use a model whose "
            "hidden and intermediate sizes are multiples of 256, or accept the fallback (strict=False)")


def _run_llama_quantize(src: str, dst: str, name: str, ftype: int, entries: dict[str, Any],
                        threads: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    keep = _imatrix_param(params, entries) if entries else []
    with _llama_log() as lines:
        rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    del keep  # the importance matrix buffers had to outlive the call
    text = "".join(lines)
    log.debug("llama.cpp quantize log:\n%s", text)
    if rc != 0:
        errors = [ln for ln in text.splitlines() if "error" in ln.lower() or "failed" in ln.lower()]
        raise ModelError(f"llama.cpp could not quantize {src!r} to {name} (status {rc}): "
                         f"{' | '.join(errors[-3:]) or text[-500:]}. Quantize from the f16/f32 GGUF "
                         "that `cogumi export gguf` writes (requantizing is disabled)")


@contextlib.contextmanager
def _llama_log() -> Iterator[list[str]]:
    """Collect llama.cpp's log lines (its only channel for errors and warnings) while active."""
    import llama_cpp
    from llama_cpp import _logger

    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    try:
        yield lines
    finally:  # restore llama-cpp-python's own callback: ours is freed when this frame ends
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def _checked_imatrix(imatrix: str | Mapping[str, Any], src: str) -> dict[str, Any]:
    """The importance matrix, with each entry's length checked against the model's matrices."""
    import numpy as np
    from gguf import GGUFReader

    from cogumi_ray.compress.imatrix import load_imatrix

    entries = load_imatrix(imatrix)
    shapes = {t.name: [int(d) for d in t.shape] for t in GGUFReader(src).tensors if len(t.shape) >= 2}
    used = {}
    for key, values in entries.items():
        if key not in shapes:
            continue  # llama.cpp ignores entries for other tensors too
        dims = shapes[key]
        expected = dims[0] * (dims[2] if len(dims) > 2 else 1)  # per input column, per expert
        if values.size != expected:
            raise ModelError(f"importance matrix entry {key!r} has {values.size} values, the tensor "
                             f"needs {expected} (one per input column); was it computed for this model?")
        if not np.isfinite(values).all():
            raise ModelError(f"importance matrix entry {key!r} has non-finite values")
        used[key] = values
    if not used:
        raise ModelError(f"the importance matrix names none of {src!r}'s matrices (e.g. "
                         f"{next(iter(shapes), '?')!r}); was it computed for this model?")
    return used


def _imatrix_param(params: Any, entries: dict[str, Any]) -> list[Any]:
    """Point params.imatrix at a NULL-name-terminated {name, data, size} array; return what must
    stay alive while llama.cpp reads it."""
    import llama_cpp

    array = (llama_cpp.llama_model_imatrix_data * (len(entries) + 1))()
    keep: list[Any] = [array]
    for i, (name, values) in enumerate(entries.items()):
        encoded = name.encode()
        keep += [encoded, values]
        array[i].name = encoded
        array[i].data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        array[i].size = values.size
    array[len(entries)].name = None
    params.imatrix = ctypes.cast(array, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    return keep


def inspect_quantized(path: str, qtype: str) -> QuantReport:
    """Read `path` back: per-type counts, bits per weight, and the matrices not in `qtype`'s mix."""
    from gguf import GGML_QUANT_SIZES, GGUFReader

    name, _ = resolve_qtype(qtype)
    allowed = MIX_TYPES.get(name)
    types: dict[str, str] = {}
    fallbacks: list[Fallback] = []
    n_weights = n_bytes = 0
    for t in GGUFReader(path).tensors:
        kind = t.tensor_type.name
        types[t.name] = kind
        n_weights += int(t.n_elements)
        n_bytes += int(t.n_bytes)
        if len(t.shape) < 2 or any(k in t.name for k in _KEPT):
            continue
        fits = kind in allowed if allowed else GGML_QUANT_SIZES[t.tensor_type][0] == 256
        if not fits:
            expected = tuple(sorted(allowed)) if allowed else ("a 256-block type",)
            fallbacks.append(Fallback(t.name, kind, int(t.shape[0]), expected))
    return QuantReport(path, path, name, 0, os.path.getsize(path), 0.0, n_weights,
                       8 * n_bytes / max(n_weights, 1), dict(Counter(types.values())), types, fallbacks)
