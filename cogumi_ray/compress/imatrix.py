"""Importance matrices for llama.cpp quantization: load llama-imatrix files, or compute one in torch.

An importance matrix holds, per weight matrix (by GGUF tensor name), the mean of x² for each input
column over calibration text; the quantizer then spends its precision where activations are large.
llama-cpp-python ships no llama-imatrix tool, so `compute_imatrix` collects the same statistic with
forward hooks on the HF model that the GGUF was exported from.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from cogumi_ray.errors import ModelError


def load_imatrix(source: str | Mapping[str, Any]) -> dict[str, Any]:
    """{GGUF tensor name: float32 per-column importance}, from a mapping or a llama-imatrix file
    (the GGUF format with `<name>.in_sum2` / `<name>.counts` tensors, or the legacy .dat format)."""
    import numpy as np

    if isinstance(source, Mapping):
        return {str(k): np.ascontiguousarray(v, dtype=np.float32).reshape(-1) for k, v in source.items()}
    if not os.path.isfile(source):
        raise ModelError(f"importance matrix {source!r} does not exist")
    with open(source, "rb") as fh:
        is_gguf = fh.read(4) == b"GGUF"
    entries = _from_gguf(source) if is_gguf else _from_legacy(source)
    if not entries:
        raise ModelError(f"importance matrix {source!r} holds no entries")
    return entries


def _from_gguf(path: str) -> dict[str, Any]:
    import numpy as np
    from gguf import GGUFReader

    tensors = {t.name: t for t in GGUFReader(path).tensors}
    out = {}
    for name in (n[: -len(".in_sum2")] for n in tensors if n.endswith(".in_sum2")):
        counts = tensors.get(f"{name}.counts")
        if counts is None:
            raise ModelError(f"importance matrix {path!r}: {name!r} has sums but no counts")
        sums = np.asarray(tensors[f"{name}.in_sum2"].data, np.float32).reshape(-1, int(
            tensors[f"{name}.in_sum2"].shape[0]))  # (n_matrices, n_columns)
        n = np.asarray(counts.data, np.float32).reshape(-1, 1)
        # a matrix that saw no calibration input gets neutral importance, as llama.cpp does
        out[name] = np.where(n > 0, sums / np.maximum(n, 1e-30), 1.0).astype(np.float32).reshape(-1)
    return out


def _from_legacy(path: str) -> dict[str, Any]:
    import numpy as np

    # int32 n_entries, then per entry: int32 name length, name, int32 ncall, int32 nval,
    # float32[nval] (sums over ncall calls); a trailing chunk count + dataset name may follow
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        (n_entries,), pos, out = struct.unpack_from("<i", data), 4, {}
        for _ in range(n_entries):
            (length,) = struct.unpack_from("<i", data, pos)
            name = data[pos + 4: pos + 4 + length].decode()
            ncall, nval = struct.unpack_from("<ii", data, pos + 4 + length)
            pos += 12 + length
            values = np.frombuffer(data, np.float32, nval, pos).copy()
            pos += 4 * nval
            out[name] = values / ncall if ncall > 0 else values
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{path!r} is not a llama.cpp importance matrix (.dat or .gguf): {e}") from e
    return out


def compute_imatrix(model_dir: str, texts: Iterable[str], *, max_tokens: int = 512) -> dict[str, Any]:
    """Mean x² per input column of every linear layer of the HF Llama in `model_dir` over `texts`,
    keyed by the GGUF names `export_gguf` gives those weights (rows permuted for RoPE keep their
    input columns, so no reordering is needed)."""
    import json

    import numpy as np
    import torch

    from cogumi_ray.export.gguf_llama import gguf_name, llama_hparams
    from cogumi_ray.models.load import load_model_and_tokenizer, resolve_local

    local = resolve_local(model_dir)
    with open(os.path.join(local, "config.json")) as fh:
        hp = llama_hparams(json.load(fh))
    model, tok = load_model_and_tokenizer(local, dtype="float32")
    sums: dict[str, Any] = {}
    counts: dict[str, int] = {}

    def hook(name: str):
        def collect(_module: Any, inputs: tuple[Any, ...], _output: Any) -> None:
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double()  # (tokens, n_in)
            sums[name] = sums.get(name, 0) + (x * x).sum(0)
            counts[name] = counts.get(name, 0) + x.shape[0]
        return collect

    handles = []
    for mod_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            target = gguf_name(f"{mod_name}.weight", hp)
            if target is not None:
                handles.append(module.register_forward_hook(hook(target[0])))
    try:
        with torch.no_grad():
            for text in texts:
                ids = tok(text, return_tensors="pt", truncation=True, max_length=max_tokens)["input_ids"]
                if ids.numel():
                    model(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    if not counts:
        raise ModelError("compute_imatrix saw no tokens; pass some calibration texts")
    return {k: (sums[k] / counts[k]).numpy().astype(np.float32) for k in sums}
