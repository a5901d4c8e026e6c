"""Config section for the base model (a tiny Llama built from config, or any HF folder)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cogumi_ray.config_base import StrictModel

# llama.cpp's K-quants work on super-blocks of 256 values along each weight row (the input
# dimension); a matrix whose row length is not a multiple of 256 falls back to a cruder type.
K_QUANT_BLOCK = 256


class TinyLlamaSpec(StrictModel):
    """Shape of the tiny Llama. Defaults: ~5M parameters, every matrix K-quantisable."""

    hidden_size: int = Field(256, ge=8, description="Model width (input dim of q/k/v/o/gate/up/lm_head).")
    intermediate_size: int = Field(768, ge=8, description="MLP width (input dim of down_proj).")
    num_hidden_layers: int = Field(
        2, ge=1, description="Transformer blocks (2 learn more per CPU minute than 4 on the "
        "embedded default; see benchmarks/learning.py)."
    )
    num_attention_heads: int = Field(4, ge=1, description="Query heads (head_dim = hidden / heads).")
    num_key_value_heads: int = Field(2, ge=1, description="K/V heads (grouped-query attention).")
    max_position_embeddings: int = Field(1024, ge=16, description="Context length (RoPE, no weights).")
    rope_theta: float = Field(10000.0, gt=0, description="RoPE base frequency.")
    rms_norm_eps: float = Field(1e-5, gt=0, description="RMSNorm epsilon.")
    tie_word_embeddings: bool = Field(
        False, description="Share embedding and output matrix (False keeps a separate lm_head)."
    )
    initializer_range: float = Field(0.02, gt=0, description="Std of the random weight init.")
    seed: int = Field(0, description="Seed of the random init (same seed + texts -> same weights).")

    @model_validator(mode="after")
    def _shapes(self) -> TinyLlamaSpec:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not divisible by "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        if (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError("head_dim (hidden_size / num_attention_heads) must be even for RoPE")
        return self

    def k_quant_ready(self) -> bool:
        """True when every weight row length is a multiple of 256 (K-quants apply everywhere)."""
        return self.hidden_size % K_QUANT_BLOCK == 0 and self.intermediate_size % K_QUANT_BLOCK == 0


class TokenizerSpec(StrictModel):
    """Byte-level BPE trained on the curated training texts (instructions + responses)."""

    vocab_size: int = Field(
        2048, ge=300, description="Target vocabulary incl. 256 byte tokens and the special tokens "
        "(2048: the output layer is a large share of a 2-layer model's compute)."
    )
    min_frequency: int = Field(2, ge=1, description="A merge needs at least this many occurrences.")
    max_texts: int | None = Field(
        None, ge=1, description="Train on at most this many texts (None = all)."
    )


class ModelConfig(StrictModel):
    source: str = Field(
        "tiny",
        description="'tiny' builds a small Llama from `tiny`; otherwise a local HF folder or URI.",
    )
    tiny: TinyLlamaSpec = Field(default_factory=TinyLlamaSpec)
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto",
        description="Weights dtype when loading ('auto' = as saved; the tiny model is saved float32).",
    )
    cache_dir: str | None = Field(
        None, description="Where URI model folders are downloaded (None = ~/.cache/cogumi/models)."
    )
