"""Stage "train_base" (`cogumi train base`): full-precision SFT of the base model on Ray Train.

Inputs: model (HF folder), train / val (Example Parquet). Output: model, the checkpoint that
`train.select_checkpoint` picks (by default the final, annealed one) as a plain HF folder.
Checkpoints live in `train.storage_path` (default: <stage dir>/checkpoints); `--resume`
continues from the latest one.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cogumi_ray import storage

if TYPE_CHECKING:
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.runs import RunContext, StageOutput

STAGE = "train_base"


def checkpoint_root(configured: str | None, stage_dir: str) -> str:
    """Where Ray Train keeps checkpoints: absolute for local paths (Ray requires it)."""
    root = configured or storage.join(stage_dir, "checkpoints")
    return os.path.abspath(storage.local_path(root)) if storage.is_local(root) else root


def run(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str]) -> StageOutput:
    from cogumi_ray.runs import StageOutput
    from cogumi_ray.train.checkpoints import export_checkpoint
    from cogumi_ray.train.trainer import SFTJob, run_sft

    stage_dir = ctx.stage_dir(STAGE)
    job = SFTJob(
        name=STAGE,
        model_path=inputs["model"],
        train_path=inputs["train"],
        val_path=inputs.get("val"),
        cfg=cfg.train,
        storage_path=checkpoint_root(cfg.train.storage_path, stage_dir),
        resume=ctx.resume,
    )
    result = run_sft(job)
    metrics = dict(result.metrics)
    checkpoint = result.checkpoint
    if cfg.train.select_checkpoint == "val_pass_rate" and inputs.get("val"):
        checkpoint = _by_val_pass_rate(cfg, result, inputs["val"], stage_dir, metrics)
    model_dir = export_checkpoint(checkpoint, storage.join(stage_dir, "model"))
    return StageOutput(outputs={"model": model_dir}, metrics=metrics)


def _by_val_pass_rate(cfg: CogumiConfig, result, val_path: str, stage_dir: str,
                      metrics: dict) -> object:
    """The final or the lowest-eval_loss checkpoint, whichever passes more validation rows."""
    from cogumi_ray.eval.stage import read_examples, score_model
    from cogumi_ray.train.checkpoints import export_checkpoint

    if result.best is None or result.best.path == result.final.path:
        metrics["selected"] = "final"
        return result.final
    val = read_examples(val_path)
    rates = {}
    for name, ckpt in (("final", result.final), ("best_eval_loss", result.best)):
        folder = export_checkpoint(ckpt, storage.join(stage_dir, "candidates", name))
        rates[name] = score_model(cfg, folder, val).pass_rate
        metrics[f"val_pass_rate.{name}"] = round(rates[name], 4)
    metrics["selected"] = max(rates, key=lambda k: (rates[k], k == "final"))  # ties: final
    return result.final if metrics["selected"] == "final" else result.best
