"""PEFT LoRA adapters: config from a `LoraSpec`, wrapping a model, and merging into the base."""

from __future__ import annotations

from typing import Any

from cogumi_ray.errors import TrainError
from cogumi_ray.train.config import LoraSpec


def lora_alpha(spec: LoraSpec) -> float:
    return spec.alpha if spec.alpha is not None else 2.0 * spec.rank


def lora_config(spec: LoraSpec) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=spec.rank,
        lora_alpha=lora_alpha(spec),
        lora_dropout=spec.dropout,
        target_modules=list(spec.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def apply_lora(model: Any, spec: LoraSpec) -> Any:
    """Wrap `model` with fresh LoRA adapters; only the adapters are trainable."""
    from peft import get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in spec.target_modules if m not in present]
    if missing:
        linear = sorted(
            n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"
        )
        raise TrainError(
            f"LoRA target_modules {missing} are not in the model; its linear layers are "
            f"{sorted(set(linear))}"
        )
    return get_peft_model(model, lora_config(spec))


def merge_adapter(base_path: str, adapter_dir: str, out_dir: str) -> str:
    """Save base + adapter as one plain HF folder (no PEFT needed to load it)."""
    from peft import PeftModel

    from cogumi_ray.models.load import load_model_and_tokenizer

    base, tok = load_model_and_tokenizer(base_path)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    return out_dir
