"""Config section for the evaluation harness."""

from __future__ import annotations

from cogumi_ray.config_base import StrictModel


class EvalConfig(StrictModel):
    """`cogumi eval`."""
