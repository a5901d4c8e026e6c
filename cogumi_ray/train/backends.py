"""Training backends, chosen by `train.backend`: how a worker loads the model and which extra
TrainingArguments it needs. The training loop itself (HF Trainer on Ray Train) is shared.

- hf: plain HF Trainer; DDP across workers.
- deepspeed: ZeRO-2/3 (optional CPU offload) through TrainingArguments(deepspeed=<generated dict>).
- unsloth: Unsloth's FastLanguageModel (fused kernels); CUDA only.
"""

from __future__ import annotations

from typing import Any

from cogumi_ray.errors import MissingDependencyError, TrainError
from cogumi_ray.train.config import LoraSpec, TrainConfig


def _load_hf(model_path: str, lora: LoraSpec | None) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    from cogumi_ray.models.load import load_tokenizer, resolve_local
    from cogumi_ray.train.lora import apply_lora

    local = resolve_local(model_path)
    tok = load_tokenizer(local)
    # fp32 master weights; bf16 on GPU comes from autocast (TrainingArguments.bf16), which keeps
    # AdamW updates exact. Under ZeRO-3 this load is already sharded (HfDeepSpeedConfig is live).
    try:
        model = AutoModelForCausalLM.from_pretrained(local, dtype=torch.float32)
    except Exception as e:
        raise TrainError(f"cannot load model {model_path!r} for training: {type(e).__name__}: {e}") from None
    # No KV cache in training: transformers derives the block-diagonal mask of packed rows from
    # position_ids only when no cache is passed; with one, packed examples attend to each other.
    model.config.use_cache = False
    if lora is not None:
        model = apply_lora(model, lora)
    return model, tok


class HFBackend:
    name = "hf"

    def check(self, cfg: TrainConfig) -> None:
        """Driver-side: fail before any worker starts."""

    def training_kwargs(self, cfg: TrainConfig) -> dict[str, Any]:
        return {}

    def load(self, model_path: str, cfg: TrainConfig, lora: LoraSpec | None) -> tuple[Any, Any]:
        return _load_hf(model_path, lora)


class DeepSpeedBackend(HFBackend):
    name = "deepspeed"

    def check(self, cfg: TrainConfig) -> None:
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                "DeepSpeed (train.backend: deepspeed)",
                "pip install 'cogumi-ray[deepspeed]' on the driver and the workers, "
                "or set train.backend: hf",
            ) from None

    def training_kwargs(self, cfg: TrainConfig) -> dict[str, Any]:
        from cogumi_ray.train.deepspeed_config import deepspeed_config

        return {"deepspeed": deepspeed_config(cfg.deepspeed)}

    def load(self, model_path: str, cfg: TrainConfig, lora: LoraSpec | None) -> tuple[Any, Any]:
        self.check(cfg)
        return _load_hf(model_path, lora)


def _no_cuda_error(why: str) -> MissingDependencyError:
    return MissingDependencyError(
        "the Unsloth backend (train.backend: unsloth)",
        "run on CUDA GPU workers (train.use_gpu: true) with `pip install unsloth`, or set "
        "train.backend: hf (or deepspeed), which run on CPU too",
        why,
    )


def unsloth_load_kwargs(local_path: str, cfg: TrainConfig, lora: LoraSpec | None) -> dict[str, Any]:
    """Arguments of `FastLanguageModel.from_pretrained` for this config."""
    if cfg.unsloth.load_in_4bit and lora is None:
        raise TrainError("unsloth.load_in_4bit needs LoRA training (4-bit weights cannot be trained)")
    return {
        "model_name": local_path,
        "max_seq_length": cfg.max_seq_len,
        "dtype": None,  # Unsloth picks bf16 where the GPU supports it
        "load_in_4bit": cfg.unsloth.load_in_4bit,
        "full_finetuning": lora is None,
    }


def unsloth_lora_kwargs(spec: LoraSpec, cfg: TrainConfig) -> dict[str, Any]:
    """Arguments of `FastLanguageModel.get_peft_model` for one adapter."""
    from cogumi_ray.train.lora import lora_alpha

    checkpointing: str | bool = {"unsloth": "unsloth", "true": True, "false": False}[
        cfg.unsloth.gradient_checkpointing
    ]
    return {
        "r": spec.rank,
        "lora_alpha": lora_alpha(spec),
        "lora_dropout": spec.dropout,
        "target_modules": list(spec.target_modules),
        "bias": "none",
        "use_gradient_checkpointing": checkpointing,
        "random_state": cfg.seed,
    }


class UnslothBackend(HFBackend):
    name = "unsloth"

    def check(self, cfg: TrainConfig) -> None:
        if not cfg.use_gpu:
            raise _no_cuda_error("train.use_gpu is false; Unsloth's kernels are CUDA-only")

    def load(self, model_path: str, cfg: TrainConfig, lora: LoraSpec | None) -> tuple[Any, Any]:
        import torch

        from cogumi_ray.models.load import resolve_local

        if not torch.cuda.is_available():
            raise _no_cuda_error("torch sees no CUDA device on this worker")
        try:
            from unsloth import FastLanguageModel
        except ImportError:
            raise MissingDependencyError(
                "unsloth", "pip install 'cogumi-ray[gpu]' (or pip install unsloth) on the GPU workers"
            ) from None
        model, tok = FastLanguageModel.from_pretrained(
            **unsloth_load_kwargs(resolve_local(model_path), cfg, lora)
        )
        if lora is not None:
            model = FastLanguageModel.get_peft_model(model, **unsloth_lora_kwargs(lora, cfg))
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return model, tok


BACKENDS: dict[str, HFBackend] = {
    "hf": HFBackend(),
    "deepspeed": DeepSpeedBackend(),
    "unsloth": UnslothBackend(),
}


def get_backend(name: str) -> HFBackend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise TrainError(f"unknown training backend {name!r}; valid: {sorted(BACKENDS)}") from None
