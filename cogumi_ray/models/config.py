"""Config section for the base model (a tiny Llama built from config, or any HF folder)."""

from __future__ import annotations

from pydantic import Field

from cogumi_ray.config_base import StrictModel


class ModelConfig(StrictModel):
    source: str = Field(
        "tiny",
        description="'tiny' builds a small Llama from `tiny`; otherwise a local HF folder or URI.",
    )
