"""The Llama architecture as llama.cpp expects it: hyper-parameters, tensor names, Q/K layout.

Only what we can vouch for is accepted; anything else (another architecture, biases, another
activation or RoPE variant, unknown tensors) is a ModelError that names the missing piece.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cogumi_ray.errors import ModelError

_UNSUPPORTED_HINT = "export it with llama.cpp's convert_hf_to_gguf.py instead"


@dataclass
class LlamaHParams:
    vocab_size: int
    context_length: int
    embedding_length: int
    block_count: int
    feed_forward_length: int
    head_count: int
    head_count_kv: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope: dict[str, Any] = field(default_factory=dict)  # scaling parameters; empty = plain RoPE

    @property
    def rope_type(self) -> str:
        return str(self.rope.get("rope_type") or self.rope.get("type") or "default")


def _need(config: dict[str, Any], key: str) -> Any:
    if key not in config:
        raise ModelError(f"config.json lacks {key!r}, which the llama GGUF header needs")
    return config[key]


def llama_hparams(config: dict[str, Any]) -> LlamaHParams:
    """Check that config.json describes a plain Llama and read its hyper-parameters."""
    mtype, archs = config.get("model_type"), config.get("architectures") or []
    if mtype != "llama" or (archs and "LlamaForCausalLM" not in archs):
        raise ModelError(
            f"architecture {archs or '?'} (model_type {mtype!r}) is not supported by the GGUF "
            f"exporter, which writes llama.cpp's 'llama' architecture for LlamaForCausalLM only; "
            f"{_UNSUPPORTED_HINT}"
        )
    for flag in ("attention_bias", "mlp_bias"):
        if config.get(flag):
            raise ModelError(f"config.json sets {flag}=true: bias tensors are not supported; "
                             f"{_UNSUPPORTED_HINT}")
    if config.get("hidden_act", "silu") != "silu":
        raise ModelError(f"hidden_act {config['hidden_act']!r} is not supported (llama uses silu)")
    # transformers 5 nests RoPE settings in rope_parameters; older folders (and Meta's Llama-3.1
    # uploads) have rope_theta + rope_scaling at the top level.
    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    theta = rope.pop("rope_theta", None) or config.get("rope_theta", 10000.0)
    heads = int(_need(config, "num_attention_heads"))
    hidden = int(_need(config, "hidden_size"))
    hp = LlamaHParams(
        vocab_size=int(_need(config, "vocab_size")),
        context_length=int(_need(config, "max_position_embeddings")),
        embedding_length=hidden,
        block_count=int(_need(config, "num_hidden_layers")),
        feed_forward_length=int(_need(config, "intermediate_size")),
        head_count=heads,
        head_count_kv=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        rope_theta=float(theta),
        rope=rope,
    )
    if hp.rope_type not in ("default", "linear", "llama3"):
        raise ModelError(
            f"RoPE type {hp.rope_type!r} is not supported; supported: default, linear, llama3"
        )
    return hp


def write_hparams(writer: Any, hp: LlamaHParams) -> None:
    import gguf

    writer.add_vocab_size(hp.vocab_size)
    writer.add_context_length(hp.context_length)
    writer.add_embedding_length(hp.embedding_length)
    writer.add_block_count(hp.block_count)
    writer.add_feed_forward_length(hp.feed_forward_length)
    writer.add_head_count(hp.head_count)
    writer.add_head_count_kv(hp.head_count_kv)
    writer.add_key_length(hp.head_dim)
    writer.add_value_length(hp.head_dim)
    writer.add_rope_dimension_count(hp.head_dim)
    writer.add_rope_freq_base(hp.rope_theta)
    writer.add_layer_norm_rms_eps(hp.rms_norm_eps)
    if hp.rope_type == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(hp.rope["factor"]))


def permute_rotary(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder the rows of a HF q_proj/k_proj weight into llama.cpp's rotary layout.

    Both rotate pairs of dimensions in each head, but pair them differently. HF's Llama applies
    `rotate_half`: dimension i is paired with i + head_dim/2 (first half with second half), and the
    HF conversion script permuted Meta's original weights to make that work. llama.cpp's 'llama'
    architecture (RoPE mode NORM, like Meta's original code) pairs adjacent dimensions (2i, 2i+1).
    So within each head, output row 2i must be HF row i and row 2i+1 must be HF row i + head_dim/2:
    view the rows as (head, half, i), swap to (head, i, half), flatten. Only Q and K rotate; V and
    O are untouched, and attention scores are unchanged because Q and K get the same reorder.
    """
    rows = w.shape[0]
    if rows % (2 * n_heads):
        raise ModelError(f"cannot split {rows} rows into {n_heads} heads of even size")
    # (heads * head_dim, in) -> (heads, 2, head_dim/2, in) -> (heads, head_dim/2, 2, in)
    return w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(hp: LlamaHParams) -> np.ndarray:
    """Per-frequency divisors for Llama-3.1 RoPE scaling, stored as the `rope_freqs` tensor.

    High frequencies (short wavelengths) are kept, low ones are divided by `factor`, and the band
    in between is interpolated smoothly; llama.cpp divides each RoPE frequency by these values.
    """
    factor = float(hp.rope["factor"])
    low = float(hp.rope.get("low_freq_factor", 1.0))
    high = float(hp.rope.get("high_freq_factor", 4.0))
    old_ctx = float(hp.rope.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / hp.rope_theta ** (np.arange(0, hp.head_dim, 2, dtype=np.float64) / hp.head_dim)
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


_BLOCK = {  # HF name inside model.layers.N -> (gguf tensor, rows to permute by: "q", "kv", None)
    "input_layernorm.weight": ("ATTN_NORM", None),
    "self_attn.q_proj.weight": ("ATTN_Q", "q"),
    "self_attn.k_proj.weight": ("ATTN_K", "kv"),
    "self_attn.v_proj.weight": ("ATTN_V", None),
    "self_attn.o_proj.weight": ("ATTN_OUT", None),
    "post_attention_layernorm.weight": ("FFN_NORM", None),
    "mlp.gate_proj.weight": ("FFN_GATE", None),
    "mlp.up_proj.weight": ("FFN_UP", None),
    "mlp.down_proj.weight": ("FFN_DOWN", None),
}
_GLOBAL = {
    "model.embed_tokens.weight": "TOKEN_EMBD",
    "model.norm.weight": "OUTPUT_NORM",
    "lm_head.weight": "OUTPUT",
}
_SKIP = re.compile(r".*rotary_emb\.inv_freq$")  # recomputed by llama.cpp


def gguf_name(hf_name: str, hp: LlamaHParams) -> tuple[str, int | None] | None:
    """(GGUF tensor name, heads to un-permute by or None), None to skip; ModelError if unknown."""
    import gguf

    names, kinds = gguf.TENSOR_NAMES, gguf.MODEL_TENSOR
    if _SKIP.match(hf_name):
        return None
    if hf_name in _GLOBAL:
        return names[kinds[_GLOBAL[hf_name]]] + ".weight", None
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", hf_name)
    if m and m.group(2) in _BLOCK and int(m.group(1)) < hp.block_count:
        kind, permute = _BLOCK[m.group(2)]
        heads = {"q": hp.head_count, "kv": hp.head_count_kv, None: None}[permute]
        return names[kinds[kind]].format(bid=int(m.group(1))) + ".weight", heads
    raise ModelError(f"tensor {hf_name!r} has no place in llama.cpp's llama architecture; "
                     f"{_UNSUPPORTED_HINT}")
