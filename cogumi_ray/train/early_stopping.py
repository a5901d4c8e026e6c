"""Stop training when validation loss stops improving (convergence-based training).

Unlike HF's `EarlyStoppingCallback` this needs no `load_best_model_at_end` (Ray Train's
keep-best checkpointing picks the best model), and it saves its counters in the HF checkpoint
(`ExportableState`) so a run restored after a worker failure keeps its patience count.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState


class EarlyStopping(TrainerCallback, ExportableState):
    def __init__(self, patience: int, min_delta: float = 0.0, metric: str = "eval_loss") -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = patience
        self.min_delta = min_delta
        self.metric = metric
        self.best: float = math.inf
        self.bad_evals = 0
        self.stopped_at: int | None = None

    def update(self, value: float) -> bool:
        """Record one evaluation; True when training should stop."""
        if value < self.best - self.min_delta:
            self.best = value
            self.bad_evals = 0
        else:
            self.bad_evals += 1
        return self.bad_evals >= self.patience

    def on_evaluate(self, args, state, control, metrics: dict[str, float] | None = None, **kwargs):
        value = (metrics or {}).get(self.metric)
        if value is None or not math.isfinite(value):
            return control
        if self.update(float(value)):
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control

    def state(self) -> dict[str, Any]:
        return {
            "args": {"patience": self.patience, "min_delta": self.min_delta, "metric": self.metric},
            "attributes": {"best": self.best, "bad_evals": self.bad_evals},
        }
