"""Turn a Ray Train checkpoint (holding an HF Trainer checkpoint) into a clean model folder.

What stays: config, weights (full model or PEFT adapter), tokenizer and chat template.
What goes: optimizer/scheduler/RNG state, trainer state, ZeRO shards: what only resuming needs.
The destination (local or URI) is replaced atomically: written beside it, then renamed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from typing import Any

from cogumi_ray import storage
from cogumi_ray.errors import TrainError

HF_CHECKPOINT = "checkpoint"
# A model folder is config, weights, tokenizer and template; everything else in an HF checkpoint
# (optimizer.pt, rng_state*.pth, training_args.bin, ZeRO shards and scripts) only serves resuming.
_MODEL_SUFFIXES = (".json", ".safetensors", ".jinja", ".model", ".txt", ".tiktoken")
_MODEL_BINARIES = ("pytorch_model", "adapter_model")  # older .bin weight files
_NOT_MODEL = ("trainer_state.json",)


def _is_model_file(name: str) -> bool:
    if name in _NOT_MODEL:
        return False
    return name.endswith(_MODEL_SUFFIXES) or (name.endswith(".bin") and name.startswith(_MODEL_BINARIES))


def _copy_model_files(src: str, dst_local: str) -> list[str]:
    os.makedirs(dst_local, exist_ok=True)
    kept = []
    for name in sorted(os.listdir(src)):
        if not _is_model_file(name) or os.path.isdir(os.path.join(src, name)):
            continue
        shutil.copy2(os.path.join(src, name), os.path.join(dst_local, name))
        kept.append(name)
    if not any(n.endswith((".safetensors", ".bin")) for n in kept):
        shutil.rmtree(dst_local, ignore_errors=True)
        raise TrainError(f"checkpoint folder {src} holds no weights (model files: {kept})")
    return kept


def export_checkpoint(checkpoint: Any, dst: str) -> str:
    """Copy the model files of a Ray Train checkpoint to `dst` (replacing it). Returns `dst`."""
    with checkpoint.as_directory() as ckpt_dir:
        src = os.path.join(ckpt_dir, HF_CHECKPOINT)
        if not os.path.isdir(src):
            raise TrainError(f"checkpoint {checkpoint.path} has no '{HF_CHECKPOINT}/' HF folder")
        if storage.is_local(dst):
            final = storage.local_path(dst)
            tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
            _copy_model_files(src, tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        else:
            with tempfile.TemporaryDirectory() as staging:
                _copy_model_files(src, staging)
                fs, path = storage.fs_and_path(dst)
                if fs.exists(path):
                    fs.rm(path, recursive=True)
                fs.put(staging.rstrip("/") + "/", path.rstrip("/") + "/", recursive=True)
    return dst
