"""Config section for batch generation."""

from __future__ import annotations

from cogumi_ray.config_base import StrictModel


class GenerateConfig(StrictModel):
    """`cogumi generate`."""
