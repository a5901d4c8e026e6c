"""Steady-state tokens/s: warm-up steps and intervals holding an eval or a save are left out."""

from __future__ import annotations

from transformers import TrainerControl, TrainerState

from cogumi_ray.train import throughput
from cogumi_ray.train.throughput import Throughput


def test_steady_state_excludes_warmup_and_eval_intervals(monkeypatch):
    clock = iter([0.0, 10.0, 11.0, 12.0, 13.0, 14.0, 24.0, 25.0])  # step ends; eval before 24
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: next(clock))
    meter = Throughput(warmup_steps=2)
    state, control = TrainerState(), TrainerControl()
    meter.on_train_begin(None, state, control)
    for step in range(1, 9):
        state.global_step = step
        state.num_input_tokens_seen = 100 * step
        if step == 7:
            meter.on_evaluate(None, state, control)  # the eval ran inside the 6 -> 7 interval
        meter.on_step_end(None, state, control)
    # counted: intervals ending at steps 3, 4, 5, 6 and 8 (1 s, 100 tokens each); not the
    # 10 s warm-up interval ending at step 2, nor the one holding the eval (ending at step 7)
    assert meter.steps == 5 and meter.tokens_per_s == 100.0
    state.log_history = [{"loss": 1.0, "step": 8}]
    meter.on_log(None, state, control, logs={"loss": 1.0})
    assert state.log_history[-1]["tokens_per_s"] == 100.0
    assert state.log_history[-1]["start_step"] == 0


def test_a_save_before_the_first_log_still_reports_the_step():
    """A run shorter than logging_steps: RayTrainReportCallback must still see the step."""
    meter = Throughput()
    state, control = TrainerState(), TrainerControl()
    meter.on_train_begin(None, state, control)
    state.global_step = 3
    meter.on_save(None, state, control)
    assert state.log_history == [{"step": 3, "start_step": 0,
                                  "train_begin_unix": meter.train_begin_unix}]
    meter.on_save(None, state, control)  # already known: nothing appended twice
    state.log_history.append({"loss": 2.0, "step": 3})
    meter.on_save(None, state, control)
    assert len(state.log_history) == 2
