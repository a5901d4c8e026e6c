"""Fixtures of the serving tests: the tiny SFT model as an f32 GGUF, and two LoRA modifiers for it
(random PEFT adapters, also written as llama.cpp LoRA GGUFs)."""

from __future__ import annotations

import pytest

ADAPTER_SEEDS = {"code": 1, "math": 2}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the shared 2-core box: spinning OpenMP threads cost far more
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def serve_gguf(tiny_sft_model_dir, tmp_path_factory) -> str:
    from cogumi_ray.export.gguf_export import export_gguf

    # f32: llama.cpp then matches HF (+PEFT) logits to ~1e-6, so greedy answers agree.
    out = tmp_path_factory.mktemp("serve_gguf") / "tiny-sft.gguf"
    return export_gguf(tiny_sft_model_dir, str(out), outtype="f32").path


@pytest.fixture(scope="session")
def peft_adapters(tiny_sft_model_dir, tmp_path_factory) -> dict[str, str]:
    from lora_gguf import random_peft_adapter

    root = tmp_path_factory.mktemp("peft_adapters")
    return {name: random_peft_adapter(tiny_sft_model_dir, str(root / name), seed)
            for name, seed in ADAPTER_SEEDS.items()}


@pytest.fixture(scope="session")
def lora_ggufs(peft_adapters, tiny_sft_model_dir, tmp_path_factory) -> dict[str, str]:
    from lora_gguf import peft_to_gguf

    root = tmp_path_factory.mktemp("lora_ggufs")
    return {name: peft_to_gguf(path, tiny_sft_model_dir, str(root / f"{name}-lora.gguf"))
            for name, path in peft_adapters.items()}
