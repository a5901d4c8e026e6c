"""Config section for `cogumi export gguf`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cogumi_ray.config_base import StrictModel


class ExportConfig(StrictModel):
    gguf_outtype: Literal["f32", "f16"] = Field(
        "f16",
        description="GGUF weight type: f32 (exact) or f16 (half size; norms stay f32). "
        "K-quants are made from either by the compress stage.",
    )
