"""Shared fixtures: one local Ray per test session, and torch kept to the machine's cores."""

from __future__ import annotations

import os

import pytest
from testkit import random_peft_adapter, tiny_pairs  # noqa: F401 - re-exported for fixtures

# Tests must never reach a model hub; everything they load is built or shipped by the project.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")


@pytest.fixture(scope="session")
def ray_session():
    """Start Ray once for the whole session (starting it costs seconds)."""
    import ray

    if not ray.is_initialized():
        from cogumi_ray.config import RayConfig
        from cogumi_ray.ray_session import init_ray

        init_ray(RayConfig(  # as `cogumi` starts a local Ray, with a small object store
            num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False,
            object_store_memory_mb=512,
        ))
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """The tiny Llama (random init, seeded) + its tokenizer, built once per test session."""
    from cogumi_ray.models.config import ModelConfig
    from cogumi_ray.models.tiny import build_tiny

    texts = [t for pair in tiny_pairs() for t in pair]
    return build_tiny(ModelConfig(), texts, str(tmp_path_factory.mktemp("tiny_model")))


@pytest.fixture(scope="session")
def tiny_sft_model_dir(tiny_model_dir, tmp_path_factory) -> str:
    """`tiny_model_dir` after a few plain-torch SFT steps on `tiny_pairs`: peaked, non-degenerate
    next-token distributions (greedy decoding is not a coin toss among near-ties)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cogumi_ray.models.chat import build_sft_pair, encode_chat

    # One thread: on a shared 2-core box, OpenMP threads spinning at barriers make 2 threads
    # ~20x slower than 1 as soon as other processes compete for the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    seqs = [encode_chat(tok, build_sft_pair(tok, i, r)[1]) for i, r in tiny_pairs()]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), tok.pad_token_id)
    labels = torch.full((len(seqs), width), -100)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s)
        labels[row, : len(s)] = torch.tensor(s)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(30):
        idx = torch.randint(0, len(seqs), (8,), generator=gen)
        width = int((labels[idx] != -100).sum(1).max())  # pad only to this batch's longest
        batch_ids, batch_labels = ids[idx, :width], labels[idx, :width]
        loss = model(input_ids=batch_ids, attention_mask=(batch_labels != -100).long(),
                     labels=batch_labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    torch.set_num_threads(threads)
    out = str(tmp_path_factory.mktemp("tiny_sft_model"))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


ADAPTER_SEEDS = {"code": 1, "math": 2}


@pytest.fixture(scope="session")
def serve_gguf(tiny_sft_model_dir, tmp_path_factory) -> str:
    """The tiny SFT model as an f32 GGUF: llama.cpp then matches HF (+PEFT) logits to ~1e-6, so
    greedy answers agree."""
    from cogumi_ray.export.gguf_export import export_gguf

    out = tmp_path_factory.mktemp("serve_gguf") / "tiny-sft.gguf"
    return export_gguf(tiny_sft_model_dir, str(out), outtype="f32").path


@pytest.fixture(scope="session")
def peft_adapters(tiny_sft_model_dir, tmp_path_factory) -> dict[str, str]:
    """Two LoRA modifiers of the tiny SFT model (random PEFT adapters), by name."""
    root = tmp_path_factory.mktemp("peft_adapters")
    return {name: random_peft_adapter(tiny_sft_model_dir, str(root / name), seed)
            for name, seed in ADAPTER_SEEDS.items()}


@pytest.fixture(scope="session")
def lora_ggufs(peft_adapters, tiny_sft_model_dir, tmp_path_factory) -> dict[str, str]:
    """`peft_adapters` as f32 llama.cpp LoRA GGUFs, by name."""
    from cogumi_ray.export.lora_gguf import export_lora_gguf

    root = tmp_path_factory.mktemp("lora_ggufs")
    return {name: export_lora_gguf(path, tiny_sft_model_dir, str(root / f"{name}-lora.gguf"),
                                   outtype="f32").path
            for name, path in peft_adapters.items()}
