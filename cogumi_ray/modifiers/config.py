"""Config section for LoRA modifier training (`modifiers`): one adapter per domain.

The defaults are scaled to the tiny model of the embedded default; a cluster config sets the
original ranks (see configs/llama31-8b.yaml).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from cogumi_ray.config_base import StrictModel
from cogumi_ray.train.config import LoraSpec, TrainConfig

# A domain names a folder and a file (adapters/<domain>/, adapters/<domain>.gguf), metric keys and
# the served model id cogumi:<domain>: serve's adapter-name rule without '.', so no domain's
# folder can be another's "<domain>.gguf"; "base" and "cogumi" are the router's own options.
DOMAIN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
RESERVED = ("base", "cogumi")


def _default_adapters() -> dict[str, LoraSpec]:
    # The original spec on the 8B model: rank 128 code, 112 reasoning, 96 automation. Same
    # proportions on the tiny model (width 256 vs 4096): 16 / 14 / 12.
    return {
        "code": LoraSpec(rank=16),
        "reasoning": LoraSpec(rank=14),
        "automation": LoraSpec(rank=12),
    }


def _default_modifier_training() -> TrainConfig:
    # Adapters start from a trained base: no keep-best churn, LoRA-sized lr, one pass. On the
    # 2026-12-07 05:50 demo (base 27.8%), one pass over a domain's share of the training split
    # (72-139 steps) gave code +6.7 pp, reasoning +1.7, automation +10.0; over distill's training
    # mix (corrected failures + replayed rows, 16-28 steps) -6.7 / +0.0 / +3.3, and four passes
    # over it (64-112 steps) +0.0 / +5.0 / +6.7. On the corrections alone (2026-12-06): 8-12
    # steps gave -6.7 / +1.7 / -5.0 pp, and 64-80 steps overfit further.
    # One minute of steps per adapter (the schedule re-planned to anneal by then, as the base's):
    # the 13:19 demo's one pass took 54-110 s of steps per domain (code: 141 steps), and the
    # whole demo ran 82 s over its 20 minutes.
    return TrainConfig(
        epochs=1, learning_rate=2e-3, eval_steps=20, save_steps=20, logging_steps=10,
        warmup_ratio=0.05, weight_decay=0.0, per_device_batch_size=8, prompt_loss=False,
        max_minutes=1.0,
    )


class ModifiersConfig(StrictModel):
    """`cogumi modifiers train`: one PEFT LoRA adapter per domain, on the same Ray Train machinery.

    On the 8B model the original spec uses rank 128 (code), 112 (reasoning), 96 (automation),
    alpha = 2 * rank, dropout 0.05, all attention and MLP projections.
    """

    domains: list[str] = Field(
        default_factory=lambda: ["code", "reasoning", "automation"],
        description="Domains to train an adapter for (`--domain D`, repeatable): any name the "
        "training data labels rows with (the task suite's, or a new one such as 'legal').",
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
        description="Example Parquet to train on, filtered per domain, or a stage output such as "
        "distill.train_mix (default: the curated training split, plus `failures`).",
    )
    failures: bool = Field(
        True, description="With the default data, also train on the distillation set (the "
        "base's judged failures with their corrections), so the rows the base failed weigh "
        "twice. A domain's share of the training split alone has ~6K rows on the embedded "
        "default; its corrected failures alone ~140, too few for an adapter to beat the base.",
    )
    min_examples: int = Field(8, ge=1, description="Fewer training examples for a domain is an error.")
    merge: bool = Field(False, description="Also save base+adapter merged into a full HF folder.")
    pack_level: int | None = Field(
        19, ge=1, le=22, description="zstd level of each adapter's lossless archive "
        "(adapters/<domain>.cogz, the compress stage's byte-plane packer: `cogumi unpack` restores "
        "the PEFT folder bit for bit); None = no archive.",
    )
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
    def _domain_names(cls, value: Any) -> Any:
        # Free names, not the task suite's five: a new domain is config plus data. Whether the
        # data has rows of each domain is checked when the stage runs (it knows the data).
        if not value and isinstance(value, list):
            raise ValueError("domains is empty; name at least one (e.g. --domain code)")
        bad = [d for d in value if not DOMAIN_NAME.match(d) or d in RESERVED]
        if bad:
            raise ValueError(
                f"domain names {bad} are not usable: a domain names its adapter's folder and the "
                "model id cogumi:<domain>, so use 1-64 lower-case letters, digits, '_' or '-' "
                f"(starting with a letter or digit), not {list(RESERVED)}"
            )
        dups = sorted({d for d in value if isinstance(value, list) and value.count(d) > 1})
        if dups:
            raise ValueError(f"domains {dups} are listed twice")
        return value

    def spec(self, domain: str) -> LoraSpec:
        return self.adapters.get(domain, self.default)
