"""The DeepSpeed JSON config, generated from the typed `DeepSpeedConfig`.

"auto" values are filled in by HF Trainer from TrainingArguments (batch sizes, accumulation,
clipping, precision, learning rate), so the two can never disagree.
"""

from __future__ import annotations

from typing import Any

from cogumi_ray.train.config import DeepSpeedConfig


def deepspeed_config(ds: DeepSpeedConfig) -> dict[str, Any]:
    zero: dict[str, Any] = {
        "stage": ds.zero_stage,
        "overlap_comm": ds.overlap_comm,
        "contiguous_gradients": True,
        "reduce_bucket_size": ds.reduce_bucket_size,
    }
    if ds.zero_stage == 3:
        zero.update({
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_max_live_parameters": 1_000_000_000,
            "stage3_max_reuse_distance": 1_000_000_000,
            # Rank 0 writes a normal full safetensors folder on save, not only ZeRO shards.
            "stage3_gather_16bit_weights_on_model_save": True,
        })
    else:
        zero["allgather_partitions"] = True
        zero["reduce_scatter"] = True
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if ds.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
        "steps_per_print": 1_000_000,  # HF Trainer does the logging
        "wall_clock_breakdown": False,
    }
    if ds.offload_optimizer:
        # Offloaded optimizer state needs DeepSpeed's own CPU Adam; HF's AdamW is used otherwise.
        config["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
        }
    return config
