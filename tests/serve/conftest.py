"""Fixtures of the serving tests. The tiny SFT model as an f32 GGUF (`serve_gguf`) and its two
LoRA modifiers (`peft_adapters`, and as llama.cpp LoRA GGUFs `lora_ggufs`) are in
tests/conftest.py, shared with the export and CLI tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the shared 2-core box: spinning OpenMP threads cost far more
    yield
    torch.set_num_threads(threads)
