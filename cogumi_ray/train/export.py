"""Turn a Ray Train checkpoint (holding an HF Trainer checkpoint) into a clean model folder.

What stays: config, weights (full model or PEFT adapter), tokenizer and chat template.
What goes: optimizer/scheduler/RNG state, trainer state, ZeRO shards, i.e. what only resuming
needs. The destination (local or URI) is replaced atomically: written beside it, then renamed.
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
_TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json",
                   "training_args.bin", "latest", "zero_to_fp32.py")


def _is_training_state(name: str) -> bool:
    return (name in _TRAINING_STATE or name.startswith(("rng_state", "global_step"))
            or name.endswith(".tmp"))


def _copy_model_files(src: str, dst_local: str) -> list[str]:
    os.makedirs(dst_local, exist_ok=True)
    kept = []
    for name in sorted(os.listdir(src)):
        if _is_training_state(name) or os.path.isdir(os.path.join(src, name)):
            continue
        shutil.copy2(os.path.join(src, name), os.path.join(dst_local, name))
        kept.append(name)
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
            kept = _copy_model_files(src, tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        else:
            with tempfile.TemporaryDirectory() as staging:
                kept = _copy_model_files(src, staging)
                fs, path = storage.fs_and_path(dst)
                if fs.exists(path):
                    fs.rm(path, recursive=True)
                fs.put(staging.rstrip("/") + "/", path.rstrip("/") + "/", recursive=True)
    if not any(n.endswith(".safetensors") or n.endswith(".bin") for n in kept):
        raise TrainError(f"checkpoint {checkpoint.path} holds no weights (files: {kept})")
    return dst
