"""The calibrator behind the backends' base-confidence probe (`protocol.ConfidenceProbe`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cogumi_ray.generate.engines.base import EngineError
from cogumi_ray.serve.config import ServeConfig

if TYPE_CHECKING:
    from cogumi_ray.compress.calibration import Calibrator


def load_calibrator(cfg: ServeConfig) -> Calibrator | None:
    """The compress stage's calibrator (serve.calibrator_path), or None; read at replica start so
    a bad path fails the deployment, not each probe."""
    if not cfg.calibrator_path:
        return None
    from cogumi_ray.compress.calibration import Calibrator

    return Calibrator.load(cfg.calibrator_path)


def require_calibrator(calibrator: Calibrator | None) -> Calibrator:
    if calibrator is None:
        raise EngineError("the base-confidence probe needs serve.calibrator_path (the compress "
                          "stage's calibrator.json); `cogumi serve` sets it from the run")
    return calibrator
