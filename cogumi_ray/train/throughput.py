"""Steady-state training throughput (tokens/s), logged with the loss so Ray Train reports it.

Step intervals are timed between consecutive `on_step_end`s; the first `warmup_steps` (graph
warm-up, allocator growth) and any interval that contained an evaluation or a checkpoint save
are left out, so the number is the training loop's own speed.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback


class Throughput(TrainerCallback):
    def __init__(self, warmup_steps: int = 3) -> None:
        self.warmup_steps = warmup_steps
        self.tokens = 0  # tokens of the counted (steady-state) steps, all workers together
        self.seconds = 0.0
        self.steps = 0
        self._last_t: float | None = None
        self._last_tokens = 0
        self._dirty = False  # an eval/save happened inside the current interval
        self._first_step = 0
        self.train_begin_unix: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_t = None
        self._dirty = False
        self._first_step = state.global_step  # > 0 after a resume
        self.train_begin_unix = time.time()  # the driver turns this into start-up overhead

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        seen = int(state.num_input_tokens_seen)
        warm = state.global_step - self._first_step > self.warmup_steps
        if self._last_t is not None and not self._dirty and warm:
            self.tokens += seen - self._last_tokens
            self.seconds += now - self._last_t
            self.steps += 1
        self._last_t, self._last_tokens, self._dirty = now, seen, False
        return control

    def on_evaluate(self, args, state, control, **kwargs):
        self._dirty = True

    def on_save(self, args, state, control, **kwargs):
        self._dirty = True
        # RayTrainReportCallback (after this one) reports the merged log_history: make sure it
        # knows the step even when no loss was logged yet (a run shorter than logging_steps).
        if not state.log_history or state.log_history[-1].get("step") != state.global_step:
            state.log_history.append({"step": state.global_step, "start_step": self._first_step,
                                      "train_begin_unix": self.train_begin_unix})
        return control

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.seconds if self.seconds > 0 else None

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The entry Trainer just appended to log_history is what RayTrainReportCallback reports.
        if not (logs and "loss" in logs and state.log_history):
            return control
        entry = state.log_history[-1]
        entry["start_step"] = self._first_step  # > 0: this attempt resumed from a checkpoint
        entry["train_begin_unix"] = self.train_begin_unix
        if self.tokens_per_s is not None:
            entry["tokens_per_s"] = round(self.tokens_per_s, 1)
            entry["steady_steps"] = self.steps
        return control
