"""Write a HF Llama folder as one GGUF file (f32 or f16) with the `gguf` package's GGUFWriter.

Tensors are streamed: the header and tensor table are written from the safetensors headers,
then each tensor is loaded, converted and written alone, so an 8B model never sits in memory twice.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from cogumi_ray import storage
from cogumi_ray.errors import ModelError

log = logging.getLogger(__name__)

OUTTYPES = ("f32", "f16")


@dataclass
class GGUFExport:
    path: str
    outtype: str
    n_tensors: int
    n_params: int
    bytes: int
    seconds: float
    pre_tokenizer: str


@dataclass
class _Entry:
    file: str  # safetensors file ("" for computed tensors)
    key: str
    name: str
    shape: tuple[int, ...]
    heads: int | None  # un-permute the rows for RoPE by this many heads
    dtype: Any  # numpy dtype written


def _plan(local: str, hp: Any, outtype: str, tied: bool) -> list[_Entry]:
    import numpy as np
    from safetensors import safe_open

    from cogumi_ray.export.gguf_llama import gguf_name

    files = sorted(f for f in os.listdir(local) if f.endswith(".safetensors"))
    if not files:
        raise ModelError(
            f"{local!r} has no *.safetensors weights (pickled .bin weights are not read); "
            "re-save the model with save_pretrained(..., safe_serialization=True)"
        )
    entries: list[_Entry] = []
    for fname in files:
        with safe_open(os.path.join(local, fname), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                target = gguf_name(key, hp)
                if target is None:
                    continue
                shape = tuple(f.get_slice(key).get_shape())
                # norms (1-D) stay f32 in an f16 file, as llama.cpp computes them in f32 anyway
                dtype = np.float16 if outtype == "f16" and len(shape) == 2 else np.float32
                entries.append(_Entry(fname, key, target[0], shape, target[1], dtype))
    have = {e.name for e in entries}
    needed = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{b}.{t}.weight" for b in range(hp.block_count)
        for t in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                  "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")
    }
    if not tied:
        needed.add("output.weight")
    missing = sorted(needed - have)
    if missing:
        raise ModelError(f"model weights lack tensors llama.cpp needs: {missing[:8]}"
                         f"{' ...' if len(missing) > 8 else ''}")
    return entries


def _load(entry: _Entry, handles: dict[str, Any]) -> Any:
    from cogumi_ray.export.gguf_llama import permute_rotary

    f = handles[entry.file]
    w = f.get_tensor(entry.key).float().numpy()  # via torch: bf16 has no numpy dtype
    if entry.heads is not None:
        w = permute_rotary(w, entry.heads)
    return w.astype(entry.dtype, copy=False)


def _write(local: str, out_file: str, outtype: str) -> tuple[int, int, str]:
    import contextlib

    import gguf
    import numpy as np
    from safetensors import safe_open
    from tqdm import tqdm

    from cogumi_ray.export.gguf_llama import llama3_rope_factors, llama_hparams, write_hparams
    from cogumi_ray.export.gguf_vocab import vocab_meta, write_vocab
    from cogumi_ray.models.load import load_tokenizer

    config_path = os.path.join(local, "config.json")
    if not os.path.isfile(config_path):
        raise ModelError(f"{local!r} is not a HF model folder: config.json is missing")
    with open(config_path) as fh:
        config = json.load(fh)
    hp = llama_hparams(config)
    vocab = vocab_meta(load_tokenizer(local), hp.vocab_size)
    entries = _plan(local, hp, outtype, bool(config.get("tie_word_embeddings")))

    writer = gguf.GGUFWriter(out_file, "llama")
    writer.add_name(os.path.basename(os.path.normpath(local)))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if outtype == "f32"
                         else gguf.LlamaFileType.MOSTLY_F16)
    write_hparams(writer, hp)
    write_vocab(writer, vocab)
    extra: dict[str, np.ndarray] = {}
    if hp.rope_type == "llama3":
        extra[gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"] = llama3_rope_factors(hp)
    for name, arr in extra.items():
        writer.add_tensor_info(name, arr.shape, arr.dtype, arr.nbytes)
    for e in entries:
        nbytes = int(np.prod(e.shape)) * np.dtype(e.dtype).itemsize
        writer.add_tensor_info(e.name, e.shape, np.dtype(e.dtype), nbytes)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for arr in extra.values():
        writer.write_tensor_data(arr)
    n_params = 0
    with contextlib.ExitStack() as stack:
        handles = {fn: stack.enter_context(safe_open(os.path.join(local, fn), framework="pt"))
                   for fn in sorted({e.file for e in entries})}
        for e in tqdm(entries, desc=f"GGUF {outtype}", unit="tensor", leave=False, disable=None):
            w = _load(e, handles)
            writer.write_tensor_data(w)
            n_params += w.size
    writer.close()
    return len(entries) + len(extra), n_params, vocab.pre


def export_gguf(model_dir: str, out_path: str, *, outtype: str = "f16") -> GGUFExport:
    """Export the HF Llama folder `model_dir` (path or URI) to the GGUF file `out_path`."""
    from cogumi_ray.models.load import resolve_local

    if outtype not in OUTTYPES:
        raise ModelError(f"unknown GGUF outtype {outtype!r}; valid: {list(OUTTYPES)}")
    t0 = time.perf_counter()
    local = resolve_local(model_dir)
    (n_tensors, n_params, pre), size = storage.write_through(
        out_path, lambda tmp: _write(local, tmp, outtype), "model.gguf")
    seconds = time.perf_counter() - t0
    log.info("GGUF %s: %d tensors, %d params, %.1f MiB in %.1fs -> %s",
             outtype, n_tensors, n_params, size / 2**20, seconds, out_path)
    return GGUFExport(out_path, outtype, n_tensors, n_params, size, seconds, pre)
