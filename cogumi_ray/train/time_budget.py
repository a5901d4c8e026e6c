"""A wall-clock budget for the optimizer loop (`train.max_minutes`).

A fixed step count that fits 8 minutes on one 2-core machine takes 20 on a slower one (the same
demo measured 9.6k and 3.1k tokens/s on two such machines). After `probe_steps` steps this
callback measures seconds per step (evaluations included), cuts the run to the steps that fit the
budget, and re-plans the learning-rate schedule so it still anneals to its end at the new last
step: a run cut short by a timer would otherwise stop at a high learning rate. Every worker
takes the smallest plan, so distributed workers stop on the same step.
"""

from __future__ import annotations

import functools
import logging
import time

from transformers import TrainerCallback

log = logging.getLogger(__name__)


def steps_within(budget_s: float, elapsed_s: float, done: int, planned: int) -> int:
    """The last step that fits the budget at the speed so far (at least one more, at most the
    plan)."""
    per_step = elapsed_s / max(done, 1)
    fits = done + int(max(budget_s - elapsed_s, 0.0) // per_step) if per_step > 0 else planned
    return max(done + 1, min(planned, fits))


def replan_schedule(scheduler: object, total_steps: int) -> bool:
    """Point a transformers LambdaLR schedule (linear, cosine, polynomial, ...) at a new end;
    False when it has no `num_training_steps` to change (constant schedules)."""
    lambdas = getattr(scheduler, "lr_lambdas", None) or []
    changed = False
    for i, fn in enumerate(lambdas):
        if isinstance(fn, functools.partial) and "num_training_steps" in fn.keywords:
            lambdas[i] = functools.partial(fn.func, *fn.args,
                                           **{**fn.keywords, "num_training_steps": total_steps})
            changed = True
    return changed


def _agree(steps: int) -> int:
    """The smallest plan over all workers (a worker that stops alone would hang the others)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return steps
    t = torch.tensor([steps], dtype=torch.long)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


class TimeBudget(TrainerCallback):
    def __init__(self, max_minutes: float, probe_steps: int = 20) -> None:
        self.budget_s = max_minutes * 60.0
        self.probe_steps = probe_steps
        self.planned: int | None = None
        self._t0 = 0.0
        self._first = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0, self._first = time.perf_counter(), state.global_step

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        done = state.global_step - self._first
        if self.planned is None and done >= min(self.probe_steps, state.max_steps):
            elapsed = time.perf_counter() - self._t0
            # The budget counts this attempt only; a resumed run keeps its step numbers.
            end = state.global_step - done + steps_within(self.budget_s, elapsed, done,
                                                          state.max_steps - state.global_step + done)
            self.planned = _agree(end)
            if self.planned < state.max_steps:
                replanned = replan_schedule(lr_scheduler, self.planned)
                log.info("time budget %.1f min: %d of %d steps fit (%.2f s/step)%s",
                         self.budget_s / 60, self.planned, state.max_steps, elapsed / done,
                         "; learning-rate schedule re-planned" if replanned else "")
                state.max_steps = self.planned
            state.log_history.append({"step": state.global_step, "budget_steps": self.planned})
        if self.planned is not None and state.global_step >= self.planned:
            control.should_training_stop = True
            control.should_save = True  # the last step is the checkpoint Ray Train reports
            if args.eval_strategy != "no":
                control.should_evaluate = True
        return control
