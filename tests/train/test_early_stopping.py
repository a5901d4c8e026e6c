"""Early stopping on validation loss: patience, min_delta, and the HF callback wiring."""

from __future__ import annotations

import math

import pytest
from transformers import TrainerControl, TrainerState

from cogumi_ray.train.early_stopping import EarlyStopping


def test_patience_counts_evaluations_without_improvement():
    es = EarlyStopping(patience=2)
    assert not es.update(3.0)
    assert not es.update(2.5)  # improved
    assert not es.update(2.6)  # worse: 1
    assert es.update(2.55)     # still not below the best: 2 -> stop
    assert es.best == 2.5


def test_min_delta_requires_a_real_improvement():
    es = EarlyStopping(patience=1, min_delta=0.1)
    es.update(2.0)
    assert es.update(1.95)  # 0.05 < min_delta: no improvement -> stop
    es2 = EarlyStopping(patience=1, min_delta=0.1)
    es2.update(2.0)
    assert not es2.update(1.8)


def test_callback_sets_should_training_stop_and_ignores_missing_metrics():
    es = EarlyStopping(patience=1)
    state, control = TrainerState(), TrainerControl()
    state.global_step = 30
    es.on_evaluate(None, state, control, metrics={"eval_loss": 1.0})
    assert not control.should_training_stop
    es.on_evaluate(None, state, control, metrics={"loss": 0.1})  # no eval_loss: ignored
    es.on_evaluate(None, state, control, metrics={"eval_loss": math.nan})  # nan: ignored
    assert not control.should_training_stop
    es.on_evaluate(None, state, control, metrics={"eval_loss": 1.2})
    assert control.should_training_stop and es.stopped_at == 30


def test_state_round_trips_for_resume():
    es = EarlyStopping(patience=3, min_delta=0.01)
    es.update(1.0)
    es.update(1.5)
    saved = es.state()
    restored = EarlyStopping(**saved["args"])
    for k, v in saved["attributes"].items():
        setattr(restored, k, v)
    assert (restored.best, restored.bad_evals, restored.patience) == (1.0, 1, 3)


def test_bad_patience_rejected():
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=0)
