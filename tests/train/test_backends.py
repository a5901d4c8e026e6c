"""Backend switch: DeepSpeed config generation (ZeRO-2/3, offload), Unsloth's GPU-only path."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cogumi_ray.errors import MissingDependencyError, TrainError
from cogumi_ray.train.backends import (
    BACKENDS,
    get_backend,
    unsloth_load_kwargs,
    unsloth_lora_kwargs,
)
from cogumi_ray.train.config import DeepSpeedConfig, LoraSpec, TrainConfig
from cogumi_ray.train.deepspeed_config import deepspeed_config


@pytest.mark.parametrize("stage", [2, 3])
@pytest.mark.parametrize("offload", [False, True])
def test_deepspeed_config_zero_stages_and_optimizer_offload(stage, offload):
    ds = deepspeed_config(DeepSpeedConfig(zero_stage=stage, offload_optimizer=offload))
    zero = ds["zero_optimization"]
    assert zero["stage"] == stage
    # batch sizes, accumulation, clipping and precision come from TrainingArguments ("auto")
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert ds[key] == "auto"
    assert ds["bf16"] == {"enabled": "auto"}
    assert ("offload_optimizer" in zero) is offload
    assert ("optimizer" in ds) is offload  # CPU Adam only when the optimizer state is offloaded
    assert "offload_param" not in zero
    assert ("stage3_gather_16bit_weights_on_model_save" in zero) is (stage == 3)


def test_deepspeed_param_offload_needs_zero3():
    zero = deepspeed_config(DeepSpeedConfig(zero_stage=3, offload_params=True))["zero_optimization"]
    assert zero["offload_param"] == {"device": "cpu", "pin_memory": True}
    with pytest.raises(ValidationError, match="offload_params needs zero_stage 3"):
        DeepSpeedConfig(zero_stage=2, offload_params=True)


def test_deepspeed_config_reaches_training_arguments(tmp_path):
    pytest.importorskip("deepspeed")
    from cogumi_ray.train.trainer import training_arguments

    cfg = TrainConfig(backend="deepspeed", deepspeed={"zero_stage": 2})
    args = training_arguments(cfg, output_dir=str(tmp_path), max_steps=5, has_eval=False, on_gpu=False)
    assert args.deepspeed["zero_optimization"]["stage"] == 2
    assert args.hf_deepspeed_config is not None  # HF parsed it and filled the "auto" values
    assert args.hf_deepspeed_config.config["gradient_accumulation_steps"] == 1


def test_backend_registry():
    assert set(BACKENDS) == {"hf", "deepspeed", "unsloth"}
    with pytest.raises(TrainError, match="unknown training backend 'jax'"):
        get_backend("jax")


def test_unsloth_without_gpu_fails_with_the_fix():
    with pytest.raises(MissingDependencyError, match="CUDA") as err:
        get_backend("unsloth").check(TrainConfig(backend="unsloth"))
    assert "train.backend: hf" in str(err.value)


def test_unsloth_worker_without_cuda_fails_before_importing_unsloth():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = TrainConfig(backend="unsloth", use_gpu=True)
    with pytest.raises(MissingDependencyError, match="torch sees no CUDA device"):
        get_backend("unsloth").load("/nonexistent", cfg, None)


def test_unsloth_argument_building():
    cfg = TrainConfig(backend="unsloth", use_gpu=True, max_seq_len=2048, seed=3)
    full = unsloth_load_kwargs("/models/llama", cfg, None)
    assert full == {"model_name": "/models/llama", "max_seq_length": 2048, "dtype": None,
                    "load_in_4bit": False, "full_finetuning": True}
    spec = LoraSpec(rank=128, dropout=0.0)
    lora = unsloth_lora_kwargs(spec, cfg)
    assert lora["r"] == 128 and lora["lora_alpha"] == 256 and lora["random_state"] == 3
    assert lora["use_gradient_checkpointing"] == "unsloth"
    assert unsloth_load_kwargs("/m", cfg, spec)["full_finetuning"] is False
    q = cfg.model_copy(update={"unsloth": cfg.unsloth.model_copy(update={"load_in_4bit": True})})
    assert unsloth_load_kwargs("/m", q, spec)["load_in_4bit"] is True
    with pytest.raises(TrainError, match="load_in_4bit needs LoRA"):
        unsloth_load_kwargs("/m", q, None)


@pytest.mark.slow  # DeepSpeed builds its CPU comm op on first use and starts slowly
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_trains_on_cpu(stage, ray_session, tiny_model_dir, tmp_path):
    """A real ZeRO run on CPU through the same Ray Train loop, exported as a loadable folder."""
    pytest.importorskip("deepspeed")
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from testkit import tiny_pairs

    from cogumi_ray.data.schema import Example, arrow_schema
    from cogumi_ray.models.load import load_model_and_tokenizer
    from cogumi_ray.train.checkpoints import export_checkpoint
    from cogumi_ray.train.trainer import SFTJob, run_sft

    rows = [Example(id=str(i), instruction=a, response=b).to_row()
            for i, (a, b) in enumerate(tiny_pairs(48))]
    data = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), data)
    cfg = TrainConfig(backend="deepspeed", deepspeed={"zero_stage": stage}, max_steps=3,
                      eval_steps=3, save_steps=3, per_device_batch_size=8, cpus_per_worker=1)
    result = run_sft(SFTJob(name=f"zero{stage}", model_path=tiny_model_dir, train_path=str(data),
                            val_path=None, cfg=cfg, storage_path=str(tmp_path / "ckpt")))
    assert result.metrics["steps"] == 3 and result.metrics["train_loss"] > 0
    trained, _ = load_model_and_tokenizer(export_checkpoint(result.checkpoint, str(tmp_path / "m")))
    base, _ = load_model_and_tokenizer(tiny_model_dir)
    assert not torch.equal(trained.lm_head.weight, base.lm_head.weight)
