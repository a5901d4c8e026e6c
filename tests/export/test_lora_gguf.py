"""LoRA GGUF export: llama.cpp with base + adapter must answer as HF with base + PEFT adapter, and
adapters that a plain LoRA GGUF cannot hold (or that belong to another base) are refused."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from testkit import random_peft_adapter

from cogumi_ray.errors import ModelError
from cogumi_ray.export.lora_gguf import export_lora_gguf
from cogumi_ray.generate.engines.llama_load import open_llama

llama_cpp = pytest.importorskip("llama_cpp")

PROMPTS = [
    "What is 48 + 17? Answer with the number only.",
    "Sort the list [9, 0, 3, 3] in ascending order.",
    "Write a Python function add_7(x) that returns x + 7.",
    "What is 5 + 91? Answer with the number only.",
]
GREEDY_STEPS = 24
F16_MIN_AGREEMENT = 0.95
TARGETS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the shared 2-core box: spinning OpenMP threads cost far more
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tok(tiny_sft_model_dir):
    from cogumi_ray.models.load import load_tokenizer

    return load_tokenizer(tiny_sft_model_dir)


def _peft(base_dir: str, adapter_dir: str):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    return PeftModel.from_pretrained(model, adapter_dir).eval()


def _llama(base_gguf: str, adapter_gguf: str):
    # f32 KV cache (type 0): llama.cpp's default f16 cache alone moves logits by ~4e-4.
    return open_llama(base_gguf, lora_path=adapter_gguf, n_ctx=512, n_threads=1,
                      n_threads_batch=1, logits_all=True, verbose=False, type_k=0, type_v=0)


def _prompt_ids(tok, prompt: str) -> list[int]:
    from cogumi_ray.models.chat import build_prompt, encode_chat

    return encode_chat(tok, build_prompt(tok, prompt))


def _hf_greedy(model, ids: list[int]) -> tuple[list[int], np.ndarray]:
    """GREEDY_STEPS argmax tokens (EOS not special), and the prompt's logits."""
    import torch

    seq = list(ids)
    with torch.no_grad():
        prompt_logits = model(torch.tensor([ids])).logits[0].numpy()
        for _ in range(GREEDY_STEPS):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(ids):], prompt_logits


def _lc_greedy(llm, ids: list[int]) -> tuple[list[int], np.ndarray]:
    llm.reset()
    llm.eval(ids)
    prompt_logits = np.array(llm.scores[: len(ids)])
    out = []
    for _ in range(GREEDY_STEPS):
        out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([out[-1]])
    return out, prompt_logits


def _lc_agreement(llm, ids: list[int], want: list[int]) -> int:
    """How many of HF's greedy tokens `want` llama.cpp also picks when fed the same prefix
    (teacher forcing: one early disagreement does not count every later token as wrong)."""
    llm.reset()
    llm.eval(ids + want[:-1])
    picks = np.argmax(np.array(llm.scores[len(ids) - 1: len(ids) + len(want) - 1]), axis=1)
    return int((picks == np.array(want)).sum())


@pytest.fixture(scope="module")
def hf_answers(tiny_sft_model_dir, peft_adapters, tok) -> dict[str, list[tuple[list[int], np.ndarray]]]:
    """HF + PEFT greedy tokens and prompt logits per adapter and prompt."""
    out = {}
    for name, path in peft_adapters.items():
        model = _peft(tiny_sft_model_dir, path)
        out[name] = [_hf_greedy(model, _prompt_ids(tok, p)) for p in PROMPTS]
    return out


def test_f32_adapter_reproduces_peft_greedy_tokens(serve_gguf, peft_adapters, hf_answers, tok,
                                                   tiny_sft_model_dir, tmp_path):
    worst = 0.0
    for name, path in peft_adapters.items():
        res = export_lora_gguf(path, tiny_sft_model_dir, str(tmp_path / f"{name}.gguf"), outtype="f32")
        assert res.tensors == 2 * 2 * len(TARGETS) and res.rank == 4 and res.alpha == 8.0
        llm = _llama(serve_gguf, res.path)
        try:
            for prompt, (want, hf_logits) in zip(PROMPTS, hf_answers[name], strict=True):
                got, lc_logits = _lc_greedy(llm, _prompt_ids(tok, prompt))
                assert got == want, (name, prompt)
                worst = max(worst, float(np.abs(lc_logits - hf_logits).max()))
        finally:
            llm.close()
    print(f"max |logit diff| llama.cpp f32 base+LoRA vs HF+PEFT: {worst:.2e}")
    assert worst < 1e-3


def test_f16_adapter_agrees_on_greedy_tokens(serve_gguf, peft_adapters, hf_answers, tok,
                                             tiny_sft_model_dir, tmp_path):
    for name, path in peft_adapters.items():
        res = export_lora_gguf(path, tiny_sft_model_dir, str(tmp_path / f"{name}.gguf"))
        f32 = export_lora_gguf(path, tiny_sft_model_dir, str(tmp_path / f"{name}-f32.gguf"),
                               outtype="f32")
        assert res.outtype == "f16" and res.bytes < 0.6 * f32.bytes
        llm = _llama(serve_gguf, res.path)
        try:
            agree = sum(_lc_agreement(llm, _prompt_ids(tok, p), want)
                        for p, (want, _) in zip(PROMPTS, hf_answers[name], strict=True))
        finally:
            llm.close()
        share = agree / (len(PROMPTS) * GREEDY_STEPS)
        print(f"{name}: f16 LoRA GGUF {res.bytes / 1024:.1f} KiB (f32 {f32.bytes / 1024:.1f} KiB), "
              f"greedy-token agreement with HF+PEFT {100 * share:.1f}%")
        assert share >= F16_MIN_AGREEMENT, name


def test_metadata_and_layout_are_what_llama_cpp_reads(peft_adapters, tiny_sft_model_dir, serve_gguf,
                                                      tmp_path):
    import gguf
    from safetensors.numpy import load_file

    from cogumi_ray.export.gguf_llama import permute_rotary

    path = peft_adapters["code"]
    out = export_lora_gguf(path, tiny_sft_model_dir, str(tmp_path / "code.gguf"), outtype="f32").path
    reader = gguf.GGUFReader(out)
    kv = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert kv["general.architecture"] == "llama" and kv["general.type"] == "adapter"
    assert kv["adapter.type"] == "lora" and kv["adapter.lora.alpha"] == 8.0
    assert not [k for k in kv if "rank" in k]  # llama.cpp reads r from the shapes
    tensors = {t.name: t for t in reader.tensors}
    assert set(tensors) == {f"blk.{b}.{t}.weight.lora_{ab}" for b in range(2) for t in TARGETS
                            for ab in "ab"}
    peft = load_file(os.path.join(path, "adapter_model.safetensors"))
    prefix = "base_model.model.model.layers.1.self_attn"
    q_a, q_b = peft[f"{prefix}.q_proj.lora_A.weight"], peft[f"{prefix}.q_proj.lora_B.weight"]
    assert np.array_equal(tensors["blk.1.attn_q.weight.lora_a"].data, q_a)  # (r, n_in) as is
    assert np.array_equal(tensors["blk.1.attn_q.weight.lora_b"].data, permute_rotary(q_b, 4))
    v_b = peft[f"{prefix}.v_proj.lora_B.weight"]
    assert np.array_equal(tensors["blk.1.attn_v.weight.lora_b"].data, v_b)  # v is not rotated

    f16 = gguf.GGUFReader(export_lora_gguf(path, tiny_sft_model_dir, str(tmp_path / "c16.gguf")).path)
    assert {t.tensor_type for t in f16.tensors} == {gguf.GGMLQuantizationType.F16}
    # the base's GGUF is as good a reference as its HF folder: the same file comes out
    from_gguf = export_lora_gguf(path, serve_gguf, str(tmp_path / "from-gguf.gguf"), outtype="f32")
    with open(out, "rb") as a, open(from_gguf.path, "rb") as b:
        assert a.read() == b.read()


def test_rslora_and_alpha_patterns_keep_peft_scale(serve_gguf, tiny_sft_model_dir, tok, tmp_path):
    # rsLoRA scales by alpha/sqrt(r) and alpha_pattern gives some modules their own alpha;
    # llama.cpp has one alpha and divides by r, so the exporter folds the ratio into lora_b.
    adapter = random_peft_adapter(tiny_sft_model_dir, str(tmp_path / "rs"), seed=3, rank=8,
                                  use_rslora=True, alpha_pattern={"down_proj": 3.0},
                                  rank_pattern={"q_proj": 2})
    res = export_lora_gguf(adapter, tiny_sft_model_dir, str(tmp_path / "rs.gguf"), outtype="f32")
    assert res.rank == 8
    model = _peft(tiny_sft_model_dir, adapter)
    llm = _llama(serve_gguf, res.path)
    try:
        for prompt in PROMPTS[:2]:
            ids = _prompt_ids(tok, prompt)
            want, hf_logits = _hf_greedy(model, ids)
            got, lc_logits = _lc_greedy(llm, ids)
            assert got == want and np.abs(lc_logits - hf_logits).max() < 1e-3
    finally:
        llm.close()


def _copy(adapter: str, dst: str, **config) -> str:
    shutil.copytree(adapter, dst)
    with open(os.path.join(dst, "adapter_config.json")) as fh:
        cfg = json.load(fh)
    cfg.update(config)
    with open(os.path.join(dst, "adapter_config.json"), "w") as fh:
        json.dump(cfg, fh)
    return dst


def test_bad_inputs_are_refused_clearly(peft_adapters, tiny_sft_model_dir, lora_ggufs, tmp_path):
    adapter, out = peft_adapters["code"], str(tmp_path / "out.gguf")

    def refused(match: str, adapter_dir: str, base: str = tiny_sft_model_dir, **kw) -> None:
        with pytest.raises(ModelError, match=match):
            export_lora_gguf(adapter_dir, base, out, **kw)
        assert not os.path.exists(out) and not [f for f in os.listdir(tmp_path) if ".tmp-" in f]

    refused("is not a PEFT adapter folder", tiny_sft_model_dir)  # a model, not an adapter
    refused("does not exist", str(tmp_path / "nowhere"))
    refused("unknown LoRA GGUF outtype 'q8_0'", adapter, outtype="q8_0")
    refused("use_dora=True is not supported", _copy(adapter, str(tmp_path / "dora"), use_dora=True))
    refused("bias='all'", _copy(adapter, str(tmp_path / "bias"), bias="all"))
    refused(r"but rank 8 per adapter_config\.json", _copy(adapter, str(tmp_path / "r8"), r=8))
    no_weights = _copy(adapter, str(tmp_path / "bin"))
    os.rename(os.path.join(no_weights, "adapter_model.safetensors"),
              os.path.join(no_weights, "adapter_model.bin"))
    refused(r"no adapter_model\.safetensors .*adapter_model\.bin", no_weights)

    head = random_peft_adapter(tiny_sft_model_dir, str(tmp_path / "head"), seed=4,
                               target_modules=["q_proj", "lm_head"])
    refused(r"cannot hold: \['lm_head'\]; supported target_modules: \['down_proj'", head)

    # another base: same architecture, other widths (llama.cpp would refuse to load the pair)
    other = tmp_path / "other-base"
    other.mkdir()
    with open(os.path.join(tiny_sft_model_dir, "config.json")) as fh:
        cfg = json.load(fh)
    (other / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 2 * cfg["intermediate_size"]}))
    refused("the adapter was trained on another base model", adapter, base=str(other))
    (other / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 1}))
    refused(r"has no tensor 'blk\.1\.", adapter, base=str(other))
    refused("is itself an adapter GGUF", adapter, base=lora_ggufs["code"])
    refused("neither a .gguf file nor a HF model folder", adapter, base=str(tmp_path / "dora"))
