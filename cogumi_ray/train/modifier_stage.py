"""Stage "modifiers" (`cogumi modifiers train --domain D`): one PEFT LoRA adapter per domain.

Each adapter trains on its domain's rows of the training set with the same Ray Train machinery
as the base (checkpoints, keep-best, fault tolerance, early stopping) and is saved as a PEFT
folder `adapters/<domain>/`; with `modifiers.merge`, base+adapter is also saved as a plain HF
folder `merged/<domain>/`. The training set is filtered by domain: by default the distill
stage's set (the base's judged failures with their self-critique/teacher corrections), or any
Example Parquet named by `modifiers.data`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage

if TYPE_CHECKING:
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.runs import RunContext, StageOutput

log = logging.getLogger(__name__)

STAGE = "modifiers"
_HEADLINE = ("train_loss", "eval_loss", "steps", "train_rows", "tokens_per_s", "wall_s")


def _merge(base: str, checkpoint: Any, out: str) -> None:
    """Merge the adapter in a Ray Train checkpoint into the base; save to `out` (local or URI)."""
    from cogumi_ray.train.export import HF_CHECKPOINT
    from cogumi_ray.train.lora import merge_adapter

    with checkpoint.as_directory() as ckpt_dir:
        adapter = os.path.join(ckpt_dir, HF_CHECKPOINT)
        if storage.is_local(out):
            merge_adapter(base, adapter, storage.local_path(out))
            return
        with tempfile.TemporaryDirectory() as local_out:
            merge_adapter(base, adapter, local_out)
            fs, path = storage.fs_and_path(out)
            fs.put(local_out.rstrip("/") + "/", path.rstrip("/") + "/", recursive=True)


def run(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str]) -> StageOutput:
    from cogumi_ray.runs import StageOutput
    from cogumi_ray.train.base_stage import checkpoint_root
    from cogumi_ray.train.export import export_checkpoint
    from cogumi_ray.train.trainer import SFTJob, run_sft

    mods = cfg.modifiers
    stage_dir = ctx.stage_dir(STAGE)
    ckpts = checkpoint_root(mods.training.storage_path, stage_dir)
    adapters = storage.join(stage_dir, "adapters")
    storage.makedirs(adapters)
    metrics: dict[str, Any] = {"domains": list(mods.domains)}
    outputs = {"adapters": adapters}
    for domain in mods.domains:
        spec = mods.spec(domain)
        job = SFTJob(
            name=f"modifier_{domain}",
            model_path=inputs["model"],
            train_path=inputs["train"],
            val_path=inputs.get("val"),
            cfg=mods.training,
            storage_path=ckpts,
            lora=spec,
            domain=domain,
            resume=ctx.resume,
            min_rows=mods.min_examples,
        )
        result = run_sft(job)
        adapter_dir = export_checkpoint(result.checkpoint, storage.join(adapters, domain))
        if mods.merge:
            outputs["merged"] = storage.join(stage_dir, "merged")
            _merge(inputs["model"], result.checkpoint, storage.join(outputs["merged"], domain))
        for key in _HEADLINE:
            metrics[f"{domain}_{key}"] = result.metrics.get(key)
        metrics[f"{domain}_rank"] = spec.rank
        log.info("modifier %s: %s", domain, os.path.basename(adapter_dir))
    return StageOutput(outputs=outputs, metrics=metrics)
