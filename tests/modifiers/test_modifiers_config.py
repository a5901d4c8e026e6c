"""The modifiers section: default LoRA ranks per domain; domains are free, file-safe names."""

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


def test_domains_are_free_names_but_usable_as_files_and_model_ids():
    # not limited to the task suite's five: a new domain is config plus its data
    mods = ModifiersConfig(domains=["legal", "poetry-2"], adapters={"legal": {"rank": 4}})
    assert mods.domains == ["legal", "poetry-2"] and mods.spec("legal").rank == 4
    assert mods.spec("poetry-2") == mods.default
    for bad in ("Legal", "le gal", "../x", "a.gguf", "", "base", "cogumi", "x" * 65):
        with pytest.raises(ValidationError, match="not usable"):
            ModifiersConfig(domains=[bad])
    with pytest.raises(ValidationError, match="not usable"):
        ModifiersConfig(adapters={"Legal": {"rank": 4}})
    with pytest.raises(ValidationError, match=r"domains \['legal'\] are listed twice"):
        ModifiersConfig(domains=["legal", "code", "legal"])


def test_a_modifier_domain_is_a_valid_serve_adapter_name():
    from cogumi_ray.serve.config import ServeConfig

    # serve's own name rule accepts whatever the modifiers stage may name an adapter
    ServeConfig(base="/m.gguf", adapters={d: f"/{d}.gguf" for d in ("legal", "poetry-2", "x_1")})
