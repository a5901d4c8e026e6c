"""TrainConfig -> TrainingArguments / ScalingConfig / RunConfig, and config validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cogumi_ray.config import load_config
from cogumi_ray.errors import ConfigError, TrainError
from cogumi_ray.train.config import TrainConfig
from cogumi_ray.train.trainer import (
    SFTJob,
    cpu_has_bf16,
    plan_steps,
    resolve_precision,
    run_config,
    scaling_config,
    training_arguments,
)


def test_training_arguments_follow_config(tmp_path):
    cfg = TrainConfig(
        per_device_batch_size=4, grad_accum_steps=3, learning_rate=5e-4, lr_scheduler="linear",
        warmup_ratio=0.1, eval_steps=5, save_steps=10, logging_steps=2, seed=7, weight_decay=0.1,
    )
    args = training_arguments(cfg, output_dir=str(tmp_path), max_steps=40, has_eval=True, on_gpu=False)
    assert args.per_device_train_batch_size == 4 and args.gradient_accumulation_steps == 3
    assert args.learning_rate == 5e-4 and args.weight_decay == 0.1
    assert args.lr_scheduler_type.value == "linear"
    assert args.max_steps == 40 and args.warmup_steps == 4
    assert args.eval_strategy.value == "steps" and args.eval_steps == 5
    assert args.save_strategy.value == "steps" and args.save_steps == 10
    assert args.use_cpu and args.bf16 == cpu_has_bf16() and not args.fp16  # auto on this CPU
    assert args.seed == 7 and args.report_to == []
    assert args.deepspeed is None


def test_no_eval_set_disables_evaluation(tmp_path):
    args = training_arguments(
        TrainConfig(), output_dir=str(tmp_path), max_steps=10, has_eval=False, on_gpu=False
    )
    assert args.eval_strategy.value == "no"


def test_precision_rules():
    assert resolve_precision(TrainConfig(), on_gpu=True) == "bf16"
    # auto: bf16 autocast only where the CPU has native bf16 matmuls
    assert resolve_precision(TrainConfig(), on_gpu=False) == ("bf16" if cpu_has_bf16() else "fp32")
    assert resolve_precision(TrainConfig(precision="fp32"), on_gpu=False) == "fp32"
    assert resolve_precision(TrainConfig(precision="bf16"), on_gpu=False) == "bf16"
    with pytest.raises(TrainError, match="fp16 needs GPU"):
        resolve_precision(TrainConfig(precision="fp16"), on_gpu=False)


def test_plan_steps_epochs_and_override():
    cfg = TrainConfig(per_device_batch_size=8, grad_accum_steps=2, epochs=3)
    # 100 rows / 2 workers = 50 per worker -> 7 batches -> 3 optimizer steps per epoch
    assert plan_steps(cfg, 100, 2) == (9, 3)
    assert plan_steps(cfg.model_copy(update={"max_steps": 5}), 100, 2) == (5, 3)
    with pytest.raises(TrainError, match="cannot feed 4 workers"):
        plan_steps(cfg, 3, 4)


def test_scaling_and_run_config(tmp_path):
    cfg = TrainConfig(num_workers=2, cpus_per_worker=1, max_failures=3, num_to_keep=4)
    sc = scaling_config(cfg)
    assert sc.num_workers == 2 and not sc.use_gpu
    assert sc.resources_per_worker == {"CPU": 1}
    gpu = scaling_config(TrainConfig(use_gpu=True, resources_per_worker={"H100": 1}))
    assert gpu.use_gpu and gpu.resources_per_worker["GPU"] == 1
    assert gpu.resources_per_worker["H100"] == 1
    job = SFTJob(name="x", model_path="m", train_path="t", val_path=None, cfg=cfg,
                 storage_path=str(tmp_path))
    rc = run_config(job, has_eval=True)
    assert rc.name == "x" and rc.storage_path == str(tmp_path)
    assert rc.failure_config.max_failures == 3
    assert rc.checkpoint_config.num_to_keep == 4
    assert rc.checkpoint_config.checkpoint_score_attribute == "eval_loss"
    assert rc.checkpoint_config.checkpoint_score_order == "min"
    assert run_config(job, has_eval=False).checkpoint_config.checkpoint_score_attribute is None


def test_save_steps_must_be_multiple_of_eval_steps():
    with pytest.raises(ValidationError, match="multiple of eval_steps"):
        TrainConfig(eval_steps=30, save_steps=50)


def test_unknown_keys_and_bad_values_fail_with_the_key_named():
    with pytest.raises(ConfigError, match="train.learning_rte"):
        load_config(overrides={"train.learning_rte": 1e-3})
    with pytest.raises(ConfigError, match="train.backend"):
        load_config(overrides={"train.backend": "megatron"})
    # any file-safe name is a domain (its data decides, at stage time); a bad name is not
    assert load_config(overrides={"modifiers.domains": ["cooking"]}).modifiers.domains == ["cooking"]
    with pytest.raises(ConfigError, match="modifiers.domains"):
        load_config(overrides={"modifiers.domains": ["../cooking"]})


def test_cli_words_and_domain_option():
    from cogumi_ray.cli import _load, build_parser

    args = build_parser().parse_args(["modifiers", "train", "--domain", "code", "--domain", "math"])
    assert args.only == ["modifiers"]
    assert _load(args).modifiers.domains == ["code", "math"]
    assert build_parser().parse_args(["train", "base"]).only == ["train_base", "eval_base"]
