"""Config section for `cogumi export gguf`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cogumi_ray.config_base import StrictModel


class ExportConfig(StrictModel):
    model: str | None = Field(
        None, description="HF Llama folder to export (default: the final base, after distillation)."
    )
    gguf_outtype: Literal["f32", "f16"] = Field(
        "f16",
        description="GGUF weight type: f32 (exact) or f16 (half size; norms stay f32). "
        "K-quants are made from either by the compress stage.",
    )
