"""Exporting a checkpoint keeps the model folder and drops what only resuming needs."""

from __future__ import annotations

import os

import pytest

from cogumi_ray.errors import TrainError
from cogumi_ray.train.checkpoints import export_checkpoint


def _checkpoint(root, files):
    from ray.train import Checkpoint

    hf = root / "checkpoint"
    hf.mkdir(parents=True)
    for name in files:
        (hf / name).write_text(name)
    (hf / "global_step4").mkdir()  # ZeRO shard folder
    return Checkpoint.from_directory(str(root))


def test_export_keeps_model_files_only(tmp_path):
    ckpt = _checkpoint(tmp_path / "ckpt", [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json", "chat_template.jinja", "optimizer.pt", "scheduler.pt",
        "rng_state_0.pth", "trainer_state.json", "training_args.bin", "zero_to_fp32.py", "latest",
    ])
    out = tmp_path / "model"
    out.mkdir()
    (out / "stale.safetensors").write_text("old")  # the previous export is replaced, not merged
    export_checkpoint(ckpt, str(out))
    assert sorted(os.listdir(out)) == [
        "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
        "tokenizer.json", "tokenizer_config.json",
    ]


def test_export_refuses_a_checkpoint_without_weights(tmp_path):
    ckpt = _checkpoint(tmp_path / "ckpt", ["config.json", "optimizer.pt"])
    out = tmp_path / "model"
    out.mkdir()
    (out / "model.safetensors").write_text("previous export")
    with pytest.raises(TrainError, match="holds no weights"):
        export_checkpoint(ckpt, str(out))
    assert (out / "model.safetensors").read_text() == "previous export"  # left untouched
