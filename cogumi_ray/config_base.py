"""Base for every config section: strict (unknown keys fail), documented, validated on assignment."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config section. A typo in YAML fails at load time with the key named."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
