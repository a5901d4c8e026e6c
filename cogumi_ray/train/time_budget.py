"""A wall-clock budget for the optimizer loop (`train.max_minutes`).

A fixed step count that fits 8 minutes on one 2-core machine takes 20 on a slower one (the same
demo measured 9.6k and 3.1k tokens/s on two such machines). After `probe_steps` steps this
callback measures seconds per step, cuts the run to the steps that fit the budget, and re-plans
the learning-rate schedule so it still anneals to its end at the new last step: a run cut short
by a timer would otherwise stop at a high learning rate. The pace is measured after the first
`skip_steps` (data streaming and kernels warm up there: on the demo they ran ~3x slower than the
rest, and a plan from them left a third of the budget unused), and the plan is made again every
`replan_every` steps from the pace since the last plan (evaluations and checkpoints included)
while the run is in its first half, where the cosine schedule is still near its peak. Every worker takes the
smallest plan, so distributed workers stop on the same step.
"""

from __future__ import annotations

import functools
import logging
import time

from transformers import TrainerCallback

log = logging.getLogger(__name__)


def steps_within(budget_s: float, elapsed_s: float, done: int, planned: int,
                 per_step: float | None = None) -> int:
    """The last step that fits the budget at `per_step` seconds a step (default: the average so
    far); at least one more, at most the plan."""
    per_step = elapsed_s / max(done, 1) if per_step is None else per_step
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
    def __init__(self, max_minutes: float, probe_steps: int = 20, skip_steps: int = 5,
                 replan_every: int = 100) -> None:
        self.budget_s = max_minutes * 60.0
        self.probe_steps = probe_steps
        self.skip_steps = min(skip_steps, probe_steps - 1)
        self.replan_every = replan_every
        self.planned: int | None = None
        self._t0 = 0.0
        self._mark: tuple[int, float] | None = None  # (steps done, time) the pace is taken from
        self._first = 0
        self._limit = 0  # the step the run would end on without a budget

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0, self._first = time.perf_counter(), state.global_step
        self._limit = state.max_steps

    def _due(self, done: int, state) -> bool:
        if self.planned is None:
            return done >= min(self.probe_steps, state.max_steps - self._first)
        before_the_end = 10 * done < 9 * (self.planned - self._first)
        return before_the_end and (done - self.probe_steps) % self.replan_every == 0

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        now = time.perf_counter()
        done = state.global_step - self._first
        if done == self.skip_steps:
            self._mark = (done, now)
        if self._due(done, state):
            # The pace since the last plan (the first: since the skipped steps).
            per_step = ((now - self._mark[1]) / (done - self._mark[0])
                        if self._mark is not None and done > self._mark[0] else None)
            self._mark = (done, now)
            # The budget counts this attempt only; a resumed run keeps its step numbers.
            end = self._first + steps_within(self.budget_s, now - self._t0, done,
                                             self._limit - self._first, per_step)
            end = _agree(end)
            if end != state.max_steps:
                replanned = replan_schedule(lr_scheduler, end)
                log.info("time budget %.1f min: %d of %d steps fit (%.2f s/step)%s",
                         self.budget_s / 60, end, self._limit, per_step or (now - self._t0) / done,
                         "; learning-rate schedule re-planned" if replanned else "")
                state.max_steps = end
            self.planned = end
            state.log_history.append({"step": state.global_step, "budget_steps": end})
        if self.planned is not None and state.global_step >= self.planned:
            control.should_training_stop = True
            control.should_save = True  # the last step is the checkpoint Ray Train reports
            if args.eval_strategy != "no":
                control.should_evaluate = True
        return control
