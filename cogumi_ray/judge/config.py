"""Config sections for judging, failure analysis and distillation."""

from __future__ import annotations

from cogumi_ray.config_base import StrictModel


class JudgeConfig(StrictModel):
    """`cogumi judge`."""


class FailuresConfig(StrictModel):
    """`cogumi failures analyze`."""


class DistillConfig(StrictModel):
    """`cogumi distill`."""
