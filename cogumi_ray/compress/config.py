"""Config section `compress`: pruning, recovery, the two quantisation branches, packing, tuning."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from cogumi_ray.config_base import StrictModel
from cogumi_ray.train.config import EarlyStoppingConfig, TrainConfig


def _default_recovery() -> TrainConfig:
    # A short continuation: the hardest rows once, then max_steps over replay rows; lower lr, no
    # eval (masks are the point).
    return TrainConfig(
        max_steps=60, learning_rate=5e-4, warmup_ratio=0.1, eval_steps=60, save_steps=60,
        logging_steps=10, early_stopping=EarlyStoppingConfig(enabled=False), prompt_loss=False,
    )


class SparsityConfig(StrictModel):
    """Share of weights zeroed per layer group (0 = leave the group dense)."""

    attention: float = Field(0.6, ge=0, lt=1, description="q/k/v/o projections.")
    mlp: float = Field(0.7, ge=0, lt=1, description="gate/up/down projections.")
    embeddings: float = Field(
        0.5, ge=0, lt=1, description="Input embedding rows' weights, by magnitude (SparseGPT and "
        "Wanda prune Linear layers only). lm_head is never pruned; a tied lm_head keeps the "
        "embeddings dense.",
    )


class PruneConfig(StrictModel):
    enabled: bool = Field(True, description="Prune before quantising.")
    method: Literal["sparsegpt", "wanda"] = Field(
        "sparsegpt", description="llm-compressor one-shot pruning modifier."
    )
    sparsity: SparsityConfig = Field(default_factory=SparsityConfig)
    mask_structure: str = Field(
        "0:0", description="'0:0' unstructured, or N:M (e.g. '2:4': 2 of every 4 weights zero)."
    )
    calibration_rows: int = Field(128, ge=1, description="Curated train rows for calibration.")
    max_seq_len: int = Field(256, ge=16, description="Calibration sequence length (tokens).")
    recover: bool = Field(True, description="Recovery fine-tuning with the masks held fixed.")
    recovery: TrainConfig = Field(default_factory=_default_recovery)
    replay_rows: int = Field(
        2000, ge=0, description="Curated train rows that recovery trains on (recovery.max_steps, "
        "shuffled) after one pass over the hardest rows (distill's failure corrections), so "
        "recovery does not only learn the failures.",
    )

    @field_validator("mask_structure")
    @classmethod
    def _nm(cls, v: str) -> str:
        n, sep, m = v.partition(":")
        if not sep or not n.isdigit() or not m.isdigit() or (int(m) and int(n) >= int(m)):
            raise ValueError("mask_structure must be '0:0' (unstructured) or 'N:M' with N < M")
        return v


class AWQConfig(StrictModel):
    enabled: Literal["auto", "on", "off"] = Field(
        "auto", description="GPU branch: AWQ + W4A16 via llm-compressor. auto = only where CUDA "
        "is present; on = also on CPU (slow, but the checkpoint reloads and generates on CPU).",
    )
    scheme: str = Field(
        "W4A16", description="llm-compressor preset scheme (W4A16: int4 weights in groups of 128)."
    )


class CalibrationConfig(StrictModel):
    enabled: bool = Field(True, description="Fit temperature + Platt scaling of the confidence.")
    first_tokens: int = Field(5, ge=1, le=64, description="Generated tokens the features read.")
    max_rows: int = Field(300, ge=20, description="Validation rows used to fit.")
    bins: int = Field(10, ge=2, le=50, description="Bins of the ECE and reliability diagram.")


class SparsityTuneConfig(StrictModel):
    """`cogumi compress --tune`: Ray Tune picks per-group sparsity and the K-quant type."""

    enabled: bool = Field(False, description="Search before compressing; the stage then uses the "
                          "chosen recipe instead of prune.sparsity and kquants.")
    num_samples: int = Field(
        8, ge=1, description="Trials: the whole grid of the choices below when it has at most "
        "this many recipes, else this many distinct recipes drawn from it (seeded by run.seed).")
    max_concurrent: int = Field(2, ge=1, description="Trials at once.")
    cpus_per_trial: int = Field(
        1, ge=1, description="CPUs (and llama.cpp/torch/zstd threads) of one trial: "
        "max_concurrent x cpus_per_trial should not exceed the machine's cores.")
    attention: list[float] = Field(default_factory=lambda: [0.0, 0.3, 0.5, 0.6])
    mlp: list[float] = Field(default_factory=lambda: [0.0, 0.3, 0.5, 0.7])
    embeddings: list[float] = Field(default_factory=lambda: [0.0, 0.5])
    kquants: list[str] = Field(default_factory=lambda: ["Q5_K_M", "Q4_K_M"])
    calibration_rows: int = Field(32, ge=1, description="Calibration rows per trial's pruning.")
    ppl_rows: int = Field(60, ge=1, description="Validation responses each trial's perplexity reads.")
    max_drop_pp: float | None = Field(
        None, ge=0, description="Largest suite pass-rate drop (percentage points) from the dense "
        "base a recipe may have, on the first pass_rows validation rows (on top of "
        "compress.max_ppl_increase); None = the perplexity budget alone (no generation per trial).")
    pass_rows: int = Field(
        40, ge=1, description="Validation rows each trial's pass rate is scored on (when "
        "max_drop_pp is set; 40 rows resolve 2.5 points).")


class CompressConfig(StrictModel):
    """`cogumi compress`: what each compression step buys, per branch, measured."""

    prune: PruneConfig = Field(default_factory=PruneConfig)
    kquants: list[str] = Field(
        default_factory=lambda: ["Q5_K_M", "Q4_K_M"],
        description="CPU/edge branch: llama.cpp types made from the f16 GGUF of the (pruned) model "
        "(Q5_K_M 'desktop', Q4_K_M 'mobile'; any llama.cpp type by name).",
    )
    imatrix: str | None = Field(None, description="Importance-matrix file for the K-quants.")
    strict_kquants: bool = Field(
        True, description="Fail when llama.cpp silently fell back to another type for a matrix."
    )
    awq: AWQConfig = Field(default_factory=AWQConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    max_drop_pp: float = Field(
        2.0, ge=0, description="Largest held-out pass-rate drop (percentage points) vs the dense "
        "base that the chosen GGUF may have.",
    )
    max_ppl_increase: float = Field(
        0.03, ge=0, description="Largest relative perplexity increase the chosen GGUF may have.",
    )
    pack_level: int = Field(19, ge=1, le=22, description="zstd level of the lossless packs.")
    eval_limit: int | None = Field(
        None, ge=1, description="Score each variant on the first N held-out rows; None = all."
    )
    ppl_rows: int = Field(200, ge=1, description="Held-out responses the perplexity reads.")
    tune: SparsityTuneConfig = Field(default_factory=SparsityTuneConfig)
