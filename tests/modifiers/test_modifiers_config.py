"""The modifiers section: default LoRA ranks per domain; an empty domain list is an error."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cogumi_ray.config import CogumiConfig
from cogumi_ray.modifiers.config import ModifiersConfig


def test_modifier_defaults_scale_the_original_ranks():
    mods = CogumiConfig().modifiers
    # 8B: 128 code, 112 reasoning, 96 automation -> same 8:7:6 proportions on the tiny model
    ranks = {d: mods.spec(d).rank for d in ("code", "reasoning", "automation")}
    assert ranks["code"] * 7 == ranks["reasoning"] * 8 and ranks["code"] * 6 == ranks["automation"] * 8
    assert mods.spec("math") == mods.default
    with pytest.raises(ValidationError, match="domains is empty"):
        ModifiersConfig(domains=[])
