"""Which checkpoint training hands on: the annealed final one by default, or the best-loss one."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cogumi_ray.errors import TrainError
from cogumi_ray.train.config import TrainConfig
from cogumi_ray.train.trainer import _best, _final


def _ckpt(path: str) -> SimpleNamespace:
    return SimpleNamespace(path=path)


def _result() -> SimpleNamespace:
    early, late = _ckpt("/c/step_200"), _ckpt("/c/step_400")
    return SimpleNamespace(
        path="/c", checkpoint=late, metrics={"step": 400, "loss": 0.3},
        best_checkpoints=[(early, {"step": 200, "eval_loss": 1.1}),
                          (late, {"step": 400, "eval_loss": 1.3})],
    )


def test_final_is_the_latest_with_its_eval_loss_and_best_is_the_lowest_loss():
    r = _result()
    ckpt, metrics = _final(r)
    assert ckpt.path == "/c/step_400" and metrics["eval_loss"] == 1.3 and metrics["loss"] == 0.3
    best, best_metrics = _best(r, has_eval=True)
    assert best.path == "/c/step_200" and best_metrics["eval_loss"] == 1.1
    assert _best(r, has_eval=False)[0].path == "/c/step_400"  # without validation: the latest


def test_no_checkpoint_is_an_error():
    with pytest.raises(TrainError, match="no checkpoint"):
        _final(SimpleNamespace(path="/c", checkpoint=None, metrics={}, best_checkpoints=[]))


def test_defaults_keep_the_annealed_weights():
    cfg = TrainConfig()
    assert cfg.select_checkpoint == "final" and not cfg.early_stopping.enabled
    assert cfg.packing and cfg.prompt_loss
    with pytest.raises(ValueError, match="select_checkpoint"):
        TrainConfig(select_checkpoint="best")
