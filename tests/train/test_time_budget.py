"""train.max_minutes: the run is cut to the steps that fit and the LR still anneals to zero."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments, get_cosine_schedule_with_warmup

from cogumi_ray.train import time_budget
from cogumi_ray.train.time_budget import TimeBudget, replan_schedule, steps_within


def test_steps_within_the_budget():
    assert steps_within(60.0, 10.0, 20, 1000) == 120  # 0.5 s/step: 100 more steps fit
    assert steps_within(60.0, 10.0, 20, 50) == 50  # never more than planned
    assert steps_within(60.0, 90.0, 20, 1000) == 21  # over budget already: stop next step


def _scheduler(total: int):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return opt, get_cosine_schedule_with_warmup(opt, num_warmup_steps=10, num_training_steps=total)


def test_replan_moves_the_end_of_a_cosine_schedule():
    opt, sched = _scheduler(1000)
    assert replan_schedule(sched, 100)
    for _ in range(100):
        opt.step()
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.0, abs=1e-9)  # annealed at the new end
    assert not replan_schedule(torch.optim.lr_scheduler.StepLR(opt, 10), 5)  # nothing to move


def test_callback_cuts_the_run_and_saves_the_last_step(tmp_path, monkeypatch):
    now = {"t": 0.0}  # one "second" per step
    monkeypatch.setattr(time_budget.time, "perf_counter", lambda: now["t"])
    args = TrainingArguments(output_dir=str(tmp_path), eval_strategy="steps", eval_steps=50,
                             report_to=[])
    state, control = TrainerState(max_steps=1000, global_step=0), TrainerControl()
    opt, sched = _scheduler(1000)
    cb = TimeBudget(max_minutes=1.0, probe_steps=20)
    cb.on_train_begin(args, state, control)
    stopped_at = None
    for step in range(1, 1001):
        state.global_step, now["t"] = step, float(step)
        cb.on_step_end(args, state, control, lr_scheduler=sched)
        opt.step()
        sched.step()
        if control.should_training_stop:
            stopped_at = step
            break
    # 1 s/step and 40 s left at step 20: 60 steps in all
    assert cb.planned == 60 and state.max_steps == 60 and stopped_at == 60
    assert control.should_save and control.should_evaluate
    assert {"step": 20, "budget_steps": 60} in state.log_history
    assert sched.get_last_lr()[0] == pytest.approx(0.0, abs=1e-9)


def _run(cb, tmp_path, monkeypatch, seconds_of_step, limit: int = 1000):
    """Drive the callback over a run whose step k takes seconds_of_step(k); (stopped at, state)."""
    now = {"t": 0.0}
    monkeypatch.setattr(time_budget.time, "perf_counter", lambda: now["t"])
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[])
    state, control = TrainerState(max_steps=limit, global_step=0), TrainerControl()
    opt, sched = _scheduler(limit)
    cb.on_train_begin(args, state, control)
    for step in range(1, limit + 1):
        state.global_step = step
        now["t"] += seconds_of_step(step)
        cb.on_step_end(args, state, control, lr_scheduler=sched)
        opt.step()
        sched.step()
        if control.should_training_stop:
            return step, state, sched
    return None, state, sched


def test_a_slow_start_does_not_set_the_pace(tmp_path, monkeypatch):
    # The first 5 steps take 10 s each (data streaming, kernels), then 1 s a step: at step 20,
    # 65 s are gone and the rest of a 2-min budget holds 55 more steps at the real pace.
    stopped, state, sched = _run(TimeBudget(max_minutes=2.0, probe_steps=20, replan_every=10),
                                 tmp_path, monkeypatch, lambda k: 10.0 if k <= 5 else 1.0)
    assert stopped == 75 and state.max_steps == 75  # the old average (3.25 s/step) gave 36
    assert sched.get_last_lr()[0] == pytest.approx(0.0, abs=1e-9)


def test_the_plan_follows_a_pace_that_changes_in_the_first_half(tmp_path, monkeypatch):
    # 1 s a step until step 40, then 3 s: the plan made at step 20 (120 steps in 2 min) shrinks
    # at the re-plans; the run stops within the budget and still anneals.
    stopped, state, sched = _run(TimeBudget(max_minutes=2.0, probe_steps=20, replan_every=10),
                                 tmp_path, monkeypatch, lambda k: 1.0 if k <= 40 else 3.0)
    assert {"step": 20, "budget_steps": 120} in state.log_history
    assert stopped is not None and stopped < 120 and stopped == state.max_steps
    spent = 40 + 3.0 * (stopped - 40)
    assert spent <= 125  # a small overrun at most (re-plans stop at 90% of the run)
    assert sched.get_last_lr()[0] == pytest.approx(0.0, abs=1e-9)


def test_a_slowdown_in_the_second_half_is_caught(tmp_path, monkeypatch):
    # 1 s a step, then 2 s from step 80 of a 120-step plan (past half of it): the run still
    # stops near its 2-min budget instead of ~40 s past it.
    stopped, state, sched = _run(TimeBudget(max_minutes=2.0, probe_steps=20, replan_every=10),
                                 tmp_path, monkeypatch, lambda k: 1.0 if k <= 80 else 2.0)
    assert {"step": 20, "budget_steps": 120} in state.log_history
    assert stopped is not None and stopped == state.max_steps < 120
    spent = 80 + 2.0 * (stopped - 80)
    assert spent <= 130  # planned once in the first half only: 80 + 2 * 40 = 160 s
    assert sched.get_last_lr()[0] == pytest.approx(0.0, abs=1e-9)
