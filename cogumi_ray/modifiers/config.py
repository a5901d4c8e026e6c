"""Config section for LoRA modifier training (`modifiers`): one adapter per domain.

The defaults are scaled to the tiny model of the embedded default; a cluster config sets the
original ranks (see configs/llama31-8b.yaml).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from cogumi_ray.config_base import StrictModel
from cogumi_ray.train.config import LoraSpec, TrainConfig


def _default_adapters() -> dict[str, LoraSpec]:
    # The original spec on the 8B model: rank 128 code, 112 reasoning, 96 automation. Same
    # proportions on the tiny model (width 256 vs 4096): 16 / 14 / 12.
    return {
        "code": LoraSpec(rank=16),
        "reasoning": LoraSpec(rank=14),
        "automation": LoraSpec(rank=12),
    }


def _default_modifier_training() -> TrainConfig:
    # Adapters start from a trained base: few steps, no keep-best churn, LoRA-sized lr. One pass
    # over a domain's share of distill's training mix (its corrected failures + replayed rows:
    # 128-247 packed rows of 512 tokens on the 2026-12-07 demo) is 16-31 steps; four passes took
    # the stage 512 s on 2 cores for code +5.0 pp, reasoning and automation +0.0 on a base that
    # passed 3.7%. On the corrections alone (2026-12-06, base 22.7%): 8-12 steps gave code -6.7,
    # automation -5.0, reasoning +1.7 pp, and 64-80 steps overfit further (-13.3 / -6.7 / +3.3).
    return TrainConfig(
        epochs=1, learning_rate=2e-3, eval_steps=20, save_steps=20, logging_steps=10,
        warmup_ratio=0.05, weight_decay=0.0, per_device_batch_size=8, prompt_loss=False,
    )


class ModifiersConfig(StrictModel):
    """`cogumi modifiers train`: one PEFT LoRA adapter per domain, on the same Ray Train machinery.

    On the 8B model the original spec uses rank 128 (code), 112 (reasoning), 96 (automation),
    alpha = 2 * rank, dropout 0.05, all attention and MLP projections.
    """

    domains: list[str] = Field(
        default_factory=lambda: ["code", "reasoning", "automation"],
        description="Domains to train an adapter for (`--domain D`, repeatable).",
    )
    adapters: dict[str, LoraSpec] = Field(
        default_factory=_default_adapters,
        description="Per-domain LoRA settings; a domain without an entry gets `default`.",
    )
    default: LoraSpec = Field(default_factory=LoraSpec, description="LoRA settings of other domains.")
    training: TrainConfig = Field(
        default_factory=_default_modifier_training, description="Optimisation, scaling, checkpoints."
    )
    data: str | None = Field(
        None,
        description="Example Parquet/JSONL to train on, filtered per domain (default: the distill "
        "stage's training mix: the base's failures with their corrections, plus its replayed "
        "share of the training split, so an adapter sees its domain's skills and not only the "
        "~130 corrected failures a domain has on the embedded default).",
    )
    min_examples: int = Field(8, ge=1, description="Fewer training examples for a domain is an error.")
    merge: bool = Field(False, description="Also save base+adapter merged into a full HF folder.")
    score: bool = Field(
        True, description="Score the base and base + each adapter on the validation and held-out "
        "rows (uplift per domain, row verdicts in scores.parquet)."
    )
    min_uplift_pp: float = Field(
        0.0, description="An adapter whose held-out pass rate on its own domain does not beat "
        "the base's by more than this many percentage points is flagged."
    )

    @field_validator("domains", "adapters")
    @classmethod
    def _known_domains(cls, value: Any) -> Any:
        from cogumi_ray.data.config import DOMAINS

        bad = [d for d in value if d not in DOMAINS]
        if bad:
            raise ValueError(f"unknown domains {bad}; valid: {list(DOMAINS)}")
        if not value and isinstance(value, list):
            raise ValueError("domains is empty; name at least one (e.g. --domain code)")
        return value

    def spec(self, domain: str) -> LoraSpec:
        return self.adapters.get(domain, self.default)
