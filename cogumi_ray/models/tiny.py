"""The embedded default model: a tiny random-init Llama with a BPE tokenizer trained on the data.

Sized so that (a) it learns part of the task suite on 2 CPU cores in minutes and (b) every
weight row length is a multiple of 256, so llama.cpp K-quants apply to every matrix later.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from cogumi_ray.errors import ModelError
from cogumi_ray.models.config import K_QUANT_BLOCK, ModelConfig

log = logging.getLogger(__name__)


def llama_config(cfg: ModelConfig, tokenizer):
    """The `LlamaConfig` for the tiny spec and a trained tokenizer."""
    from transformers import LlamaConfig

    t = cfg.tiny
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_hidden_layers,
        num_attention_heads=t.num_attention_heads,
        num_key_value_heads=t.num_key_value_heads,
        head_dim=t.hidden_size // t.num_attention_heads,
        max_position_embeddings=t.max_position_embeddings,
        rms_norm_eps=t.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": t.rope_theta},
        tie_word_embeddings=t.tie_word_embeddings,
        initializer_range=t.initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )


def build_tiny(cfg: ModelConfig, texts: Iterable[str], out_dir: str) -> str:
    """Train the tokenizer on `texts`, random-init the Llama (seeded), save both to `out_dir`.

    Returns `out_dir`, a normal HF folder (config.json, model.safetensors, tokenizer files with
    the chat template, generation_config.json) that `load_model_and_tokenizer` and the GGUF
    exporter read.
    """
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    from cogumi_ray.models.tokenizer import train_tokenizer

    if not cfg.tiny.k_quant_ready():
        log.warning(
            "tiny model: hidden_size %d / intermediate_size %d are not multiples of %d; "
            "llama.cpp K-quants will skip some matrices",
            cfg.tiny.hidden_size, cfg.tiny.intermediate_size, K_QUANT_BLOCK,
        )
    tok = train_tokenizer(
        texts,
        vocab_size=cfg.tokenizer.vocab_size,
        min_frequency=cfg.tokenizer.min_frequency,
        max_texts=cfg.tokenizer.max_texts,
        model_max_length=cfg.tiny.max_position_embeddings,
    )
    config = llama_config(cfg, tok)
    # Seed only a private generator state: fork_rng keeps the caller's global RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.tiny.seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        max_new_tokens=256,
        do_sample=False,
    )
    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    try:
        model.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
    except OSError as e:
        raise ModelError(f"cannot write the tiny model to {out!r}: {e}") from None
    n_params = sum(p.numel() for p in model.parameters())
    log.info("tiny model: %d params, vocab %d, saved to %s", n_params, len(tok), out)
    return out
