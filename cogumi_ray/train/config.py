"""Config section for training on Ray Train (`train`), and the LoRA settings its jobs take.

The defaults are the embedded default: a tiny Llama trained from scratch on 2 CPU cores in a few
minutes (short packed sequences, the learning rate measured best for it). A cluster config overrides them
(see configs/llama31-8b.yaml): GPU workers, bf16, DeepSpeed ZeRO-3, lr ~1e-5.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cogumi_ray.config_base import StrictModel

BACKENDS: tuple[str, ...] = ("hf", "deepspeed", "unsloth")


class EarlyStoppingConfig(StrictModel):
    """Convergence-based training: stop when validation loss stops improving."""

    enabled: bool = Field(
        False, description="Stop early on a validation-loss plateau (off by default: a plateau "
        "at a still-high learning rate stops before the schedule anneals the weights)."
    )
    patience: int = Field(
        3, ge=1, description="Evaluations without an improvement of at least min_delta before stopping."
    )
    min_delta: float = Field(
        0.0, ge=0, description="Smallest decrease of eval_loss that counts as an improvement."
    )


class DeepSpeedConfig(StrictModel):
    """ZeRO settings used when `backend: deepspeed` (the JSON is generated from these)."""

    zero_stage: Literal[2, 3] = Field(
        3, description="2 shards optimizer state + gradients; 3 also shards the parameters."
    )
    offload_optimizer: bool = Field(False, description="Keep optimizer state in CPU memory.")
    offload_params: bool = Field(False, description="Keep parameters in CPU memory (ZeRO-3 only).")
    overlap_comm: bool = Field(True, description="Overlap gradient reduction with backward.")
    reduce_bucket_size: int | Literal["auto"] = Field(
        "auto", description="Elements per all-reduce bucket ('auto' = from the model size)."
    )

    @model_validator(mode="after")
    def _offload_params_needs_zero3(self) -> DeepSpeedConfig:
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offload_params needs zero_stage 3 (ZeRO-2 does not shard parameters)")
        return self


class UnslothConfig(StrictModel):
    """Settings used when `backend: unsloth` (GPU only)."""

    load_in_4bit: bool = Field(False, description="QLoRA-style 4-bit base weights (LoRA training only).")
    gradient_checkpointing: Literal["unsloth", "true", "false"] = Field(
        "unsloth", description="Unsloth's offloaded checkpointing, HF's, or none."
    )


class CurriculumConfig(StrictModel):
    """A curriculum for a model trained from scratch: its first steps see only the simple rows.

    A tiny model trained on the whole mix learns the answer formats early but not to copy a
    word or a number from the request into its answer (benchmarks/learning.py: the copying
    circuit forms after a few hundred steps of copy-heavy rows, and much later, if at all,
    when those rows are a small share of a mixed stream). The base's `train` section turns it on;
    distillation and the modifiers start from a model that already copies.
    """

    steps: int = Field(
        0, ge=0, description="Optimizer steps at the start that train on the warm-up rows alone "
        "(0 = no warm-up); they come before the epochs and count towards the time budget.")
    difficulties: list[str] = Field(
        default_factory=lambda: ["easy"],
        description="Warm-up rows: training rows of these difficulties ...")
    tasks: list[str] = Field(
        default_factory=list,
        description="... or whose metadata 'task' starts with one of these prefixes "
        "(e.g. 'automation.weather'); a row that matches either is a warm-up row.")

    def selects(self, difficulty: str | None, task: str | None) -> bool:
        """Whether a row of this difficulty and suite task is one of the warm-up rows."""
        return difficulty in self.difficulties or (
            bool(self.tasks) and str(task or "").startswith(tuple(self.tasks)))


class TrainConfig(StrictModel):
    """`cogumi train base`: full-precision SFT on Ray Train (TorchTrainer running HF Trainer)."""

    backend: Literal["hf", "deepspeed", "unsloth"] = Field(
        "hf", description="hf: plain HF Trainer (DDP); deepspeed: ZeRO-2/3; unsloth: GPU-only kernels."
    )
    # -- scaling (Ray Train ScalingConfig) --
    num_workers: int = Field(1, ge=1, description="Ray Train workers (one process each).")
    use_gpu: bool = Field(False, description="One GPU per worker.")
    cpus_per_worker: float = Field(
        2, gt=0, description="CPUs reserved per worker; torch uses this many threads on CPU."
    )
    resources_per_worker: dict[str, float] = Field(
        default_factory=dict, description="Extra Ray resources per worker (e.g. {'H100': 1})."
    )
    # -- optimisation --
    epochs: float = Field(2, gt=0, description="Passes over the training set (ignored if max_steps).")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps; overrides epochs.")
    max_minutes: float | None = Field(
        None, gt=0, description="Wall-clock budget of the optimizer loop: after 20 steps the run "
        "is cut to the steps that fit, with the learning-rate schedule re-planned to anneal by "
        "then (None: no budget).")
    per_device_batch_size: int = Field(
        4, ge=1, description="Sequences per worker per micro-step (packed rows of max_seq_len: "
        "4 x 512 tokens; small batches give a short CPU run more optimizer steps)."
    )
    grad_accum_steps: int = Field(1, ge=1, description="Micro-steps per optimizer step.")
    learning_rate: float = Field(
        5e-4, gt=0, description="Peak learning rate (the tiny model from scratch learned most "
        "at 5e-4 in benchmarks/learning.py's sweep; see the README's performance table)."
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = Field(
        "cosine", description="Schedule after warm-up."
    )
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of steps spent warming up.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 autocast on GPU and on CPUs with native bf16 "
        "(AVX512-BF16/AMX), else fp32; weights and optimizer state stay fp32 either way."
    )
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    seed: int = Field(0, description="Seed for init of new weights, data order and dropout.")
    # -- data --
    max_seq_len: int = Field(
        512, ge=8, description="Tokens per sequence; longer examples are truncated (prompt kept)."
    )
    packing: bool = Field(
        True, description="Concatenate examples into full max_seq_len rows (no padding waste; "
        "a block-diagonal mask keeps each example to itself)."
    )
    prompt_loss: bool = Field(
        True, description="Also train on the prompt tokens (language modelling of the "
        "instructions); False = loss on the response only."
    )
    # -- evaluation, checkpoints, fault tolerance --
    eval_steps: int = Field(200, ge=1, description="Evaluate validation loss every N steps.")
    save_steps: int = Field(
        200, ge=1, description="Checkpoint every N steps (a multiple of eval_steps, so every "
        "checkpoint carries a fresh eval_loss for keep-best)."
    )
    logging_steps: int = Field(10, ge=1, description="Log loss/lr/tokens per second every N steps.")
    num_to_keep: int = Field(2, ge=1, description="Checkpoints kept (best by eval_loss; the latest too).")
    storage_path: str | None = Field(
        None, description="Checkpoint storage (dir, s3://, gs://); None = inside the stage dir."
    )
    max_failures: int = Field(2, ge=0, description="Worker failures Ray Train recovers from.")
    select_checkpoint: Literal["final", "best_eval_loss", "val_pass_rate"] = Field(
        "final",
        description="Which checkpoint the stage exports: the last (annealed) one, the one with "
        "the lowest validation loss, or whichever of the two passes more validation rows "
        "(scored with the suite's verifiers; base training only).",
    )
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    curriculum: CurriculumConfig = Field(default_factory=CurriculumConfig)
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    unsloth: UnslothConfig = Field(default_factory=UnslothConfig)

    @model_validator(mode="after")
    def _save_on_eval(self) -> TrainConfig:
        if self.save_steps % self.eval_steps:
            raise ValueError(
                f"save_steps ({self.save_steps}) must be a multiple of eval_steps ({self.eval_steps}) "
                "so each checkpoint is scored by a fresh eval_loss"
            )
        return self


class LoraSpec(StrictModel):
    """One domain's LoRA adapter. Defaults are scaled to the tiny model (hidden 256)."""

    rank: int = Field(16, ge=1, description="LoRA rank r.")
    alpha: float | None = Field(None, gt=0, description="LoRA alpha; None = 2 * rank.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                 "down_proj"],
        description="Linear layers that get adapters (Llama names).",
    )
