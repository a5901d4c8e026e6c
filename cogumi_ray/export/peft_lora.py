"""Read a PEFT LoRA folder into (module, A, B, scale) pairs, refusing what plain LoRA cannot hold.

A plain LoRA adds `scale * B @ A` to a linear layer's weight, `scale = alpha / r`. PEFT also
knows variants that change that formula (DoRA's magnitude vector, trained biases, whole-module
copies): a converter that dropped them would write an adapter that loads and answers differently,
so each is a ModelError that names the setting. rsLoRA and per-module rank/alpha patterns only
change the scale, which is kept exactly (see `LoraPair.scale`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from cogumi_ray.errors import ModelError

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
# PEFT's saved key: base_model.model.<module path>.lora_<A|B>.weight (adapter name stripped)
_KEY = re.compile(r"base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.weight")
# PEFT also saves the base weight of an adapted embedding / lm_head (save_embedding_layers): a
# copy, not part of the LoRA, left to the module check (those targets are refused downstream)
_BASE_COPY = re.compile(r"base_model\.model\.(?P<module>.+)\.base_layer\.weight")
_UNSUPPORTED = (  # adapter_config.json setting -> why it cannot be written as a plain LoRA
    ("use_dora", "DoRA adds a per-column magnitude vector"),
    ("fan_in_fan_out", "weights are stored transposed (GPT-2 Conv1D layers, not Llama)"),
    ("modules_to_save", "whole modules are saved next to the LoRA weights"),
    ("trainable_token_indices", "rows of the embedding are trained"),
)


@dataclass
class LoraPair:
    module: str  # module path in the base, e.g. "model.layers.3.self_attn.q_proj"
    a: np.ndarray  # (r, n_in): PEFT's lora_A
    b: np.ndarray  # (n_out, r): PEFT's lora_B
    scale: float  # what PEFT multiplies B @ A by for this module

    @property
    def rank(self) -> int:
        return int(self.a.shape[0])


@dataclass
class PeftLora:
    path: str
    alpha: float  # the config's lora_alpha
    pairs: list[LoraPair]


def _config(local: str, shown: str) -> dict[str, Any]:
    path = os.path.join(local, CONFIG)
    if not os.path.isfile(path):
        raise ModelError(
            f"{shown!r} is not a PEFT adapter folder ({CONFIG} is missing); point at a folder "
            "written by PEFT's save_pretrained, such as the modifiers stage's adapters/<domain>/"
        )
    with open(path) as fh:
        cfg = json.load(fh)
    if cfg.get("peft_type") != "LORA":
        raise ModelError(f"{shown!r} is a PEFT {cfg.get('peft_type')!r} adapter; only LORA adapters "
                         "can be written as llama.cpp LoRA GGUFs")
    for key, why in _UNSUPPORTED:
        if cfg.get(key):
            raise ModelError(f"{shown!r}: {key}={cfg[key]!r} is not supported ({why}); llama.cpp's "
                             f"LoRA GGUF holds plain LoRA only. Retrain without {key}")
    if cfg.get("bias", "none") != "none":
        raise ModelError(f"{shown!r}: bias={cfg['bias']!r} trains bias vectors, which a LoRA GGUF "
                         "cannot hold; retrain with bias='none'")
    if not cfg.get("lora_alpha") or not cfg.get("r"):
        raise ModelError(f"{shown!r}: {CONFIG} needs positive 'r' and 'lora_alpha', got "
                         f"r={cfg.get('r')!r}, lora_alpha={cfg.get('lora_alpha')!r}")
    return cfg


def _weights(local: str, shown: str) -> dict[str, np.ndarray]:
    from safetensors.torch import load_file

    path = os.path.join(local, WEIGHTS)
    if not os.path.isfile(path):
        found = sorted(f for f in os.listdir(local) if f.startswith("adapter_model"))
        raise ModelError(
            f"{shown!r} has no {WEIGHTS} (found {found or 'no weights'}); pickled .bin adapters are "
            "not read: re-save it with save_pretrained(..., safe_serialization=True)"
        )
    # via torch: a bf16-trained adapter has no numpy dtype
    return {k: v.float().numpy() for k, v in load_file(path).items()}


def _expected(patterns: dict[str, Any], module: str, default: Any) -> Any:
    from peft.utils.other import get_pattern_key  # PEFT's own matching of rank/alpha patterns

    return patterns.get(get_pattern_key(list(patterns), module), default)


def read_peft_lora(adapter_dir: str) -> PeftLora:
    """The LoRA pairs of the PEFT folder `adapter_dir` (path or URI), checked for consistency."""
    from cogumi_ray import storage
    from cogumi_ray.models.load import resolve_local

    if storage.is_local(adapter_dir) and not os.path.isdir(storage.local_path(adapter_dir)):
        raise ModelError(f"adapter folder {adapter_dir!r} does not exist (or is not a folder); "
                         "point at a PEFT adapter folder")
    local = resolve_local(adapter_dir)  # a URI: downloaded once into the model cache
    cfg = _config(local, adapter_dir)
    halves: dict[str, dict[str, np.ndarray]] = {}
    copies: dict[str, str] = {}
    for key, w in _weights(local, adapter_dir).items():
        if m := _KEY.fullmatch(key):
            halves.setdefault(m["module"], {})[m["ab"]] = w
        elif m := _BASE_COPY.fullmatch(key):
            copies[m["module"]] = key
        else:
            raise ModelError(f"{adapter_dir!r}: tensor {key!r} is not a LoRA A/B weight (a plain "
                             "LoRA GGUF holds only those)")
    for module, key in copies.items():
        if module not in halves:
            raise ModelError(f"{adapter_dir!r}: tensor {key!r} is a full weight without LoRA "
                             "weights beside it (a plain LoRA GGUF holds only A/B weights)")
    if not halves:
        raise ModelError(f"{adapter_dir!r}: {WEIGHTS} holds no LoRA weights")
    alpha = float(cfg["lora_alpha"])
    pairs = []
    for module in sorted(halves):
        ab = halves[module]
        if set(ab) != {"A", "B"}:
            raise ModelError(f"{adapter_dir!r}: module {module!r} has lora_{''.join(ab)} only")
        a, b = ab["A"], ab["B"]
        r = int(_expected(cfg.get("rank_pattern") or {}, module, cfg["r"]))
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != r or b.shape[1] != r:
            raise ModelError(
                f"{adapter_dir!r}: module {module!r} has lora_A {a.shape} and lora_B {b.shape}, "
                f"but rank {r} per {CONFIG} (want A (r, n_in) and B (n_out, r)); the folder's "
                "config and weights do not belong together"
            )
        mod_alpha = float(_expected(cfg.get("alpha_pattern") or {}, module, alpha))
        scale = mod_alpha / (r**0.5 if cfg.get("use_rslora") else r)
        pairs.append(LoraPair(module, a, b, scale))
    return PeftLora(adapter_dir, alpha, pairs)
