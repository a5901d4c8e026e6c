"""Config sections for base training and LoRA modifier training."""

from __future__ import annotations

from cogumi_ray.config_base import StrictModel


class TrainConfig(StrictModel):
    """`cogumi train base`."""


class ModifiersConfig(StrictModel):
    """`cogumi modifiers train`."""
