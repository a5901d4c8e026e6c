"""The LoRA modifier stage on Ray Train with the tiny model: PEFT adapters, merge, LoRA GGUF."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from testkit import FAST_TRAIN, sft_inputs, write_sft_splits

from cogumi_ray.config import CogumiConfig
from cogumi_ray.runs import RunContext


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_sft_splits(tmp_path_factory.mktemp("sft_data"))


def test_modifier_stage_gives_peft_adapter_and_merged_model(
    ray_session, tiny_model_dir, data_dir, tmp_path
):
    import torch
    from peft import PeftModel

    from cogumi_ray.models.load import load_model_and_tokenizer
    from cogumi_ray.modifiers.stage import run

    cfg = CogumiConfig.model_validate({"modifiers": {
        "domains": ["math"], "merge": True, "min_examples": 8,
        "adapters": {"math": {"rank": 4, "target_modules": ["q_proj", "v_proj"]}},
        "training": {**FAST_TRAIN, "max_steps": 4, "learning_rate": 1e-2},
    }})
    out = run(cfg, RunContext(str(tmp_path / "run")), sft_inputs(tiny_model_dir, data_dir))

    adapter = os.path.join(out.outputs["adapters"], "math")
    conf = json.loads(Path(adapter, "adapter_config.json").read_text())
    assert conf["r"] == 4 and conf["lora_alpha"] == 8
    assert sorted(conf["target_modules"]) == ["q_proj", "v_proj"]
    assert not os.path.exists(os.path.join(adapter, "optimizer.pt"))
    base, _ = load_model_and_tokenizer(tiny_model_dir)
    peft_model = PeftModel.from_pretrained(base, adapter)
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: it trained

    merged, _ = load_model_and_tokenizer(os.path.join(out.outputs["merged"], "math"))
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, peft_model(ids).logits, atol=1e-4)
    assert out.metrics["math_train_rows"] == 32 and out.metrics["math_rank"] == 4
    assert math.isfinite(out.metrics["math_eval_loss"])
    # ... and the same adapter as a llama.cpp LoRA GGUF (f16) for the llama.cpp serve backend
    lora_gguf = out.outputs["math_adapter_gguf"]
    assert lora_gguf == os.path.join(out.outputs["adapters"], "math.gguf")
    assert out.metrics["math_adapter_gguf_mb"] == round(os.path.getsize(lora_gguf) / 2**20, 3) > 0
    # ... and packed losslessly: the archive restores the PEFT folder bit for bit
    from cogumi_ray.compress.pack import unpack

    archive = out.outputs["math_adapter_packed"]
    assert out.metrics["math_adapter_packed_mb"] == round(os.path.getsize(archive) / 2**20, 3)
    assert out.metrics["math_adapter_pack_ratio"] > 1.0
    restored = unpack(archive, str(tmp_path / "restored"))
    for f in restored.files:
        assert Path(tmp_path, "restored", f.path).read_bytes() == Path(adapter, f.path).read_bytes()
    assert {f.path for f in restored.files} == set(os.listdir(adapter))


def test_modifier_stage_rejects_a_domain_without_enough_examples(
    ray_session, tiny_model_dir, data_dir, tmp_path
):
    from cogumi_ray.errors import TrainError
    from cogumi_ray.modifiers.stage import run

    # checked before any adapter trains (math has its rows): the error names the domain, the
    # data and the domains the data does have
    cfg = CogumiConfig.model_validate({"modifiers": {"domains": ["math", "automation"]}})
    with pytest.raises(TrainError, match=r"domain 'automation' has 0 training rows in \[.*train"
                       r"\.parquet'\], fewer than modifiers.min_examples=8\. The data's "
                       r"domains: code \(32\), math \(32\), reasoning \(32\)"):
        run(cfg, RunContext(str(tmp_path / "run")), sft_inputs(tiny_model_dir, data_dir))
    assert not os.path.exists(tmp_path / "run" / "modifiers" / "adapters" / "math")
