"""Test helper: a PEFT LoRA folder written as a llama.cpp LoRA GGUF (no project exporter yet).

Layout as llama.cpp reads it: `general.type=adapter`, `adapter.type=lora`, `adapter.lora.alpha`,
and per target `<base tensor>.lora_a` (PEFT's lora_A, (r, n_in)) and `.lora_b` ((n_out, r)).
lora_b's rows are output rows, so q/k get the base weights' rotary row permutation.
"""

from __future__ import annotations

import json
import os
import re

_PEFT_KEY = re.compile(r"base_model\.model\.(.+)\.lora_([AB])\.weight$")


def peft_to_gguf(adapter_dir: str, base_dir: str, out_file: str) -> str:
    import gguf
    from safetensors.numpy import load_file

    from cogumi_ray.export.gguf_llama import gguf_name, llama_hparams, permute_rotary

    with open(os.path.join(adapter_dir, "adapter_config.json")) as fh:
        acfg = json.load(fh)
    if acfg.get("use_rslora") or acfg.get("use_dora"):
        raise ValueError("rsLoRA / DoRA scale differently; this helper writes plain LoRA only")
    with open(os.path.join(base_dir, "config.json")) as fh:
        hp = llama_hparams(json.load(fh))
    weights = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    writer = gguf.GGUFWriter(out_file, "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(acfg["lora_alpha"]))
    for key in sorted(weights):
        m = _PEFT_KEY.match(key)
        if m is None:
            raise ValueError(f"unexpected tensor {key!r} in {adapter_dir}")
        target = gguf_name(m.group(1) + ".weight", hp)
        assert target is not None
        name, heads = target
        w = weights[key].astype("float32")
        if m.group(2) == "B" and heads is not None:
            w = permute_rotary(w, heads)
        writer.add_tensor(f"{name}.lora_{m.group(2).lower()}", w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_file


def random_peft_adapter(base_dir: str, out_dir: str, seed: int, rank: int = 4, std: float = 0.1) -> str:
    """A PEFT LoRA on q/k/v/o/gate/up/down with random (non-zero) A and B: a visible change.

    PEFT initialises B to zero (the adapter starts as a no-op); training would move it, here we
    draw it so that the adapted model answers differently from the base. A small `std` keeps the
    adapted distributions peaked: with near-ties, llama.cpp's f16 KV cache could pick another
    greedy token than PEFT in f32.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets,
                                            lora_dropout=0.0, bias="none", task_type="CAUSAL_LM"))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    peft.save_pretrained(out_dir)
    return out_dir
