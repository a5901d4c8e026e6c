"""Write a PEFT LoRA folder as a llama.cpp LoRA GGUF, checked against the base it will run on.

The layout llama.cpp's adapter loader (`llama_adapter_lora_init`) reads: `general.architecture`
equal to the base's, `general.type = "adapter"`, `adapter.type = "lora"`, `adapter.lora.alpha`
(f32), and for each adapted base tensor `<name>.lora_a` (numpy (r, n_in), PEFT's lora_A) and
`<name>.lora_b` ((n_out, r)). There is no rank key: llama.cpp reads r from lora_b's shape and
scales by alpha / r. The loader refuses a pair whose n_in / n_out differ from the base tensor's,
so we check the same here, before writing, with a message that names the module.

lora_b's rows are the base weight's output rows, and the base's q/k rows were reordered for
llama.cpp's rotary layout (`permute_rotary`): lora_b of q/k gets the same reorder, lora_a (input
columns) none.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import dataclass

import numpy as np

from cogumi_ray import storage
from cogumi_ray.errors import ModelError
from cogumi_ray.export.peft_lora import LoraPair, PeftLora

log = logging.getLogger(__name__)

OUTTYPES = ("f32", "f16")
# PEFT module (inside model.layers.N) -> (gguf MODEL_TENSOR name, heads of the rotary reorder)
TARGETS = {
    "self_attn.q_proj": ("ATTN_Q", "q"),
    "self_attn.k_proj": ("ATTN_K", "kv"),
    "self_attn.v_proj": ("ATTN_V", None),
    "self_attn.o_proj": ("ATTN_OUT", None),
    "mlp.gate_proj": ("FFN_GATE", None),
    "mlp.up_proj": ("FFN_UP", None),
    "mlp.down_proj": ("FFN_DOWN", None),
}
_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)")


@dataclass
class LoraGGUFExport:
    path: str
    outtype: str
    tensors: int  # lora_a + lora_b tensors written
    bytes: int
    rank: int  # the largest rank (per-module ranks are read from the shapes)
    alpha: float  # adapter.lora.alpha
    seconds: float


@dataclass
class BaseShapes:
    """What an adapter must fit: rotary head counts and each block tensor's (n_out, n_in)."""

    source: str
    head_count: int
    head_count_kv: int
    shapes: dict[str, tuple[int, int]]


def _hf_base(local: str, shown: str) -> BaseShapes:
    import json

    from cogumi_ray.export.gguf_llama import llama_hparams

    with open(os.path.join(local, "config.json")) as fh:
        hp = llama_hparams(json.load(fh))
    q, kv = hp.head_count * hp.head_dim, hp.head_count_kv * hp.head_dim
    e, f = hp.embedding_length, hp.feed_forward_length
    per_block = {"attn_q": (q, e), "attn_k": (kv, e), "attn_v": (kv, e), "attn_output": (e, q),
                 "ffn_gate": (f, e), "ffn_up": (f, e), "ffn_down": (e, f)}
    shapes = {f"blk.{b}.{t}.weight": s for b in range(hp.block_count) for t, s in per_block.items()}
    return BaseShapes(shown, hp.head_count, hp.head_count_kv, shapes)


def _gguf_base(path: str) -> BaseShapes:
    import gguf

    reader = gguf.GGUFReader(path)

    def value(key: str) -> object:
        field = reader.fields.get(key)
        return None if field is None else field.contents()

    arch, kind = value(gguf.Keys.General.ARCHITECTURE), value(gguf.Keys.General.TYPE)
    if kind == "adapter":
        raise ModelError(f"base {path!r} is itself an adapter GGUF; pass the base model's GGUF "
                         "(or its HF folder)")
    if arch != "llama":
        raise ModelError(f"base {path!r} has architecture {arch!r}; LoRA GGUFs are written for "
                         "llama.cpp's 'llama' architecture only")
    heads = value(gguf.Keys.Attention.HEAD_COUNT.format(arch=arch))
    heads_kv = value(gguf.Keys.Attention.HEAD_COUNT_KV.format(arch=arch)) or heads
    if not isinstance(heads, int) or not isinstance(heads_kv, int):
        raise ModelError(f"base {path!r} lacks scalar attention head counts (got {heads!r}, "
                         f"{heads_kv!r})")
    # a GGUF shape is ggml's (ne0 = n_in, ne1 = n_out); quantized tensors report it the same way
    shapes = {t.name: (int(t.shape[1]), int(t.shape[0])) for t in reader.tensors if len(t.shape) == 2}
    return BaseShapes(path, heads, heads_kv, shapes)


def base_shapes(base: str) -> BaseShapes:
    """The base an adapter runs on: a local .gguf file, or a HF Llama folder (path or URI)."""
    from cogumi_ray.models.load import resolve_local

    if storage.is_local(base) and os.path.isfile(storage.local_path(base)):
        return _gguf_base(storage.local_path(base))
    local = resolve_local(base)
    if not os.path.isfile(os.path.join(local, "config.json")):
        raise ModelError(f"base {base!r} is neither a .gguf file nor a HF model folder "
                         "(config.json is missing)")
    return _hf_base(local, base)


def _target(pair: LoraPair, base: BaseShapes) -> tuple[str, int | None] | None:
    """(GGUF tensor name, heads to reorder lora_b by), None for an unsupported module."""
    import gguf

    m = _LAYER.fullmatch(pair.module)
    if m is None or m[2] not in TARGETS:
        return None
    kind, rotary = TARGETS[m[2]]
    name = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR[kind]].format(bid=int(m[1])) + ".weight"
    return name, {"q": base.head_count, "kv": base.head_count_kv, None: None}[rotary]


def _plan(lora: PeftLora, base: BaseShapes) -> list[tuple[str, int | None, LoraPair]]:
    targets = [(_target(p, base), p) for p in lora.pairs]
    unsupported = sorted({p.module for t, p in targets if t is None})
    if unsupported:
        raise ModelError(
            f"{lora.path!r} adapts modules a llama.cpp LoRA GGUF cannot hold: {unsupported[:6]}"
            f"{' ...' if len(unsupported) > 6 else ''}; supported target_modules: "
            f"{sorted(k.split('.')[-1] for k in TARGETS)}"
        )
    plan = []
    for t, p in targets:
        assert t is not None
        name, heads = t
        want = base.shapes.get(name)
        got = (int(p.b.shape[0]), int(p.a.shape[1]))
        if want is None:
            raise ModelError(f"{lora.path!r}: module {p.module!r} has no tensor {name!r} in base "
                             f"{base.source!r} (fewer layers?); was the adapter trained on it?")
        if want != got:
            raise ModelError(
                f"{lora.path!r}: module {p.module!r} maps (n_in {got[1]}) -> (n_out {got[0]}), but "
                f"the base {base.source!r} has {name} with n_in {want[1]}, n_out {want[0]}; the "
                "adapter was trained on another base model"
            )
        plan.append((name, heads, p))
    return plan


def _arrays(pair: LoraPair, heads: int | None, alpha: float, dtype: type) -> tuple[np.ndarray, ...]:
    from cogumi_ray.export.gguf_llama import permute_rotary

    a, b = pair.a, pair.b
    # llama.cpp scales every pair by alpha / r; where PEFT's scale differs (rsLoRA, alpha
    # patterns) the ratio goes into lora_b so that B @ A * scale is unchanged.
    fold = pair.scale * pair.rank / alpha
    if not math.isclose(fold, 1.0, rel_tol=1e-9):
        b = b * np.float32(fold)
    if heads is not None:
        b = permute_rotary(b, heads)
    out = a.astype(dtype), b.astype(dtype)
    if not all(np.isfinite(x).all() for x in out):
        raise ModelError(f"module {pair.module!r} overflows {np.dtype(dtype).name}; export "
                         "with outtype='f32'")
    return out


def _write(out_file: str, lora: PeftLora, base: BaseShapes, outtype: str) -> int:
    import gguf

    plan = _plan(lora, base)
    dtype = np.float16 if outtype == "f16" else np.float32
    writer = gguf.GGUFWriter(out_file, "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_name(os.path.basename(os.path.normpath(lora.path)))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16"
                         else gguf.LlamaFileType.ALL_F32)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, lora.alpha)
    for name, heads, pair in plan:
        a, b = _arrays(pair, heads, lora.alpha, dtype)
        writer.add_tensor(f"{name}.lora_a", a)
        writer.add_tensor(f"{name}.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return 2 * len(plan)


def export_lora_gguf(adapter_dir: str, base_gguf_or_hf: str, out_path: str, *,
                     outtype: str = "f16") -> LoraGGUFExport:
    """Write the PEFT LoRA `adapter_dir` as a llama.cpp LoRA GGUF for the base `base_gguf_or_hf`
    (its .gguf file, or the HF folder it was exported from) at `out_path` (path or URI)."""
    from cogumi_ray.export.peft_lora import read_peft_lora

    if outtype not in OUTTYPES:
        raise ModelError(f"unknown LoRA GGUF outtype {outtype!r}; valid: {list(OUTTYPES)}")
    t0 = time.perf_counter()
    lora = read_peft_lora(adapter_dir)
    base = base_shapes(base_gguf_or_hf)
    # a reader (a Serve replica) never sees half a file
    n, size = storage.write_through(out_path, lambda tmp: _write(tmp, lora, base, outtype),
                                    "adapter.gguf")
    seconds = time.perf_counter() - t0
    rank = max(p.rank for p in lora.pairs)
    log.info("LoRA GGUF %s: %d tensors, rank %d, %.2f MiB in %.2fs -> %s",
             outtype, n, rank, size / 2**20, seconds, out_path)
    return LoraGGUFExport(out_path, outtype, n, size, rank, lora.alpha, seconds)
