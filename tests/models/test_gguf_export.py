"""GGUF export: llama.cpp must tokenize, score and decode exactly like the HF model it came from."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from cogumi_ray.errors import ModelError
from cogumi_ray.export.gguf_export import export_gguf
from cogumi_ray.generate.engines.llama_load import open_llama
from cogumi_ray.models.config import ModelConfig

PROMPTS = [
    "What is 48 + 17? Answer with the number only.",
    "Sort the list [9, 0, 3, 3] in ascending order.",
    "Write a Python function add_7(x) that returns x + 7.",
    "Unicode: café, naïve, 東京, emoji 😀 — and   spaces\tand\ttabs\n\nnew lines 1234567",
]
# raw texts with special-token markup in the middle, as the chat template writes it
RAW = ["<|bos|><|system|>\nBe brief.<|end|><|user|>\nhi<|end|><|assistant|>\n", "a<|end|>b<|pad|>"]
GREEDY_STEPS = 24
F32_TOL = 1e-3  # llama.cpp with an f32 KV cache vs HF in f32 (measured ~1e-6)


def _llama(path: str):
    pytest.importorskip("llama_cpp")
    # f32 KV cache (type 0): the default f16 cache alone costs ~4e-4 of logit error.
    # One thread: ggml threads spin at barriers, so 2 threads on a busy 2-core box are far slower.
    return open_llama(path, n_ctx=512, n_threads=1, n_threads_batch=1, logits_all=True,
                      verbose=False, type_k=0, type_v=0)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see _llama: spinning OpenMP threads on a shared 2-core box
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def hf(tiny_sft_model_dir):
    from cogumi_ray.models.load import load_model_and_tokenizer

    return load_model_and_tokenizer(tiny_sft_model_dir, dtype="float32")


@pytest.fixture(scope="module")
def gguf_f32(tiny_sft_model_dir, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf")
    return export_gguf(tiny_sft_model_dir, out, outtype="f32").path


@pytest.fixture(scope="module")
def llm(gguf_f32):
    model = _llama(gguf_f32)
    yield model
    model.close()


def _hf_logits(model, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def _lc_logits(llm, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


def _chat_ids(tok, instruction: str) -> list[int]:
    from cogumi_ray.models.chat import build_prompt, encode_chat

    return encode_chat(tok, build_prompt(tok, instruction))


def test_same_tokenization(hf, llm):
    from cogumi_ray.models.chat import build_prompt, encode_chat

    _, tok = hf
    texts = PROMPTS + [build_prompt(tok, p) for p in PROMPTS] + RAW
    for text in texts:
        ids = encode_chat(tok, text)
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids, text
        # with "add special tokens" both sides follow the tokenizer's add-BOS flag (off here)
        assert llm.tokenize(text.encode(), add_bos=True, special=True) == tok(text)["input_ids"]
    for text in PROMPTS:
        ids = encode_chat(tok, text)
        assert llm.detokenize(ids).decode() == text


def test_same_logits_and_greedy_tokens(hf, llm):
    model, tok = hf
    worst = 0.0
    for prompt in PROMPTS:
        ids = _chat_ids(tok, prompt)
        diff = np.abs(_lc_logits(llm, ids) - _hf_logits(model, ids)).max()
        worst = max(worst, float(diff))
        # greedy decoding, HF without cache vs llama.cpp incrementally
        hf_ids, lc_out = list(ids), []
        for _ in range(GREEDY_STEPS):
            hf_ids.append(int(_hf_logits(model, hf_ids)[-1].argmax()))
        llm.reset()
        llm.eval(ids)
        for _ in range(GREEDY_STEPS):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            lc_out.append(nxt)
            llm.eval([nxt])
        assert lc_out == hf_ids[len(ids):], prompt
    print(f"max |logit diff| llama.cpp f32 vs HF: {worst:.2e}")
    assert worst < F32_TOL


def test_gguf_metadata(gguf_f32, hf):
    from gguf import GGUFReader

    _, tok = hf
    reader = GGUFReader(gguf_f32)

    def field(key: str):
        return reader.fields[key].contents()

    assert field("general.architecture") == "llama"
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "starcoder"
    assert field("tokenizer.ggml.bos_token_id") == tok.bos_token_id
    assert field("tokenizer.ggml.eos_token_id") == tok.eos_token_id
    assert field("tokenizer.ggml.padding_token_id") == tok.pad_token_id
    assert field("tokenizer.ggml.add_bos_token") is False
    assert field("tokenizer.chat_template") == tok.chat_template
    spec = ModelConfig().tiny
    assert field("llama.embedding_length") == spec.hidden_size
    assert field("llama.block_count") == spec.num_hidden_layers
    assert field("llama.attention.head_count_kv") == 2
    types = field("tokenizer.ggml.token_type")
    assert types[tok.eos_token_id] == 3 and types[10] == 1  # CONTROL vs NORMAL (a byte)


def test_rotary_permutation_is_what_makes_it_match(tiny_sft_model_dir, hf, tmp_path, monkeypatch):
    """Negative control: without the Q/K row reorder llama.cpp computes something else."""
    from cogumi_ray.export import gguf_llama

    model, tok = hf
    monkeypatch.setattr(gguf_llama, "permute_rotary", lambda w, n_heads: w)
    path = export_gguf(tiny_sft_model_dir, str(tmp_path / "noperm.gguf"), outtype="f32").path
    wrong = _llama(path)
    try:
        ids = _chat_ids(tok, PROMPTS[0])
        assert np.abs(_lc_logits(wrong, ids) - _hf_logits(model, ids)).max() > 100 * F32_TOL
    finally:
        wrong.close()


def test_f16_export_loads_and_stays_close(tiny_sft_model_dir, hf, gguf_f32, tmp_path):
    from gguf import GGMLQuantizationType, GGUFReader

    model, tok = hf
    res = export_gguf(tiny_sft_model_dir, str(tmp_path / "tiny-f16.gguf"), outtype="f16")
    assert res.bytes < 0.6 * os.path.getsize(gguf_f32)
    kinds = {t.name: t.tensor_type for t in GGUFReader(res.path).tensors}
    assert kinds["blk.0.attn_q.weight"] == GGMLQuantizationType.F16
    assert kinds["blk.0.attn_norm.weight"] == GGMLQuantizationType.F32  # norms stay f32
    llm16 = _llama(res.path)
    try:
        ids = _chat_ids(tok, PROMPTS[1])
        ref = _hf_logits(model, ids)
        assert np.abs(_lc_logits(llm16, ids) - ref).max() < 0.05 * np.abs(ref).max()
    finally:
        llm16.close()


def test_llama31_rope_scaling(tiny_sft_model_dir, tmp_path):
    """Llama-3.1's RoPE scaling becomes a rope_freqs tensor; checked past the original context."""
    from cogumi_ray.models.load import load_model_and_tokenizer

    scaled = tmp_path / "scaled"
    shutil.copytree(tiny_sft_model_dir, scaled)
    cfg = json.loads((scaled / "config.json").read_text())
    cfg["rope_parameters"] = {
        "rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
    }
    (scaled / "config.json").write_text(json.dumps(cfg))
    model, tok = load_model_and_tokenizer(str(scaled), dtype="float32")
    path = export_gguf(str(scaled), str(tmp_path / "scaled.gguf"), outtype="f32").path
    llm = _llama(path)
    try:
        ids = _chat_ids(tok, " ".join(PROMPTS))
        assert len(ids) > 100
        assert np.abs(_lc_logits(llm, ids) - _hf_logits(model, ids)).max() < F32_TOL
    finally:
        llm.close()


def _small_copy(src: str, dst) -> str:
    """A model folder without its weights (config and tokenizer checks come first)."""
    os.makedirs(dst)
    for name in os.listdir(src):
        if not name.endswith(".safetensors"):
            shutil.copy(os.path.join(src, name), dst)
    return str(dst)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"model_type": "mistral", "architectures": ["MistralForCausalLM"]}, "MistralForCausalLM"),
        ({"attention_bias": True}, "attention_bias"),
        ({"hidden_act": "gelu"}, "gelu"),
        ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "yarn"),
        ({"max_position_embeddings": None}, "max_position_embeddings"),
        ({"vocab_size": 10}, "vocab_size is 10"),
        ({}, "no \\*.safetensors"),
    ],
)
def test_unsupported_models_are_named(tiny_model_dir, tmp_path, edit, match):
    d = _small_copy(tiny_model_dir, tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    cfg = json.loads(config.read_text())
    for k, v in edit.items():
        if v is None:
            cfg.pop(k)
        else:
            cfg[k] = v
    config.write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match=match):
        export_gguf(d, str(tmp_path / "out.gguf"))
    assert not os.path.exists(tmp_path / "out.gguf")


def test_unknown_pre_tokenizer_and_missing_tensors(tiny_model_dir, tmp_path):
    d = _small_copy(tiny_model_dir, tmp_path / "m")
    tok_file = tmp_path / "m" / "tokenizer.json"
    spec = json.loads(tok_file.read_text())
    spec["pre_tokenizer"] = {"type": "Whitespace"}
    tok_file.write_text(json.dumps(spec))
    with pytest.raises(ModelError, match="Whitespace"):
        export_gguf(d, str(tmp_path / "out.gguf"))

    deeper = tmp_path / "deeper"
    shutil.copytree(tiny_model_dir, deeper)
    cfg = json.loads((deeper / "config.json").read_text())
    missing = cfg["num_hidden_layers"]
    cfg["num_hidden_layers"] += 1  # weights for the extra block do not exist
    (deeper / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match=f"blk.{missing}"):
        export_gguf(str(deeper), str(tmp_path / "out.gguf"))
    with pytest.raises(ModelError, match="outtype"):
        export_gguf(tiny_model_dir, str(tmp_path / "out.gguf"), outtype="q4")


def test_cli_model_build_then_export(tiny_model_dir, tmp_path, capsys):
    from cogumi_ray.cli import main
    from cogumi_ray.runs import RunContext

    common = ["--root", str(tmp_path), "--name", "r", "--set", f"model.source={tiny_model_dir}"]
    assert main(["model", "build", *common]) == 0
    # by default the distilled base is exported: a clear error while it does not exist
    assert main(["export", "gguf", *common]) == 2
    assert "stage 'distill' has not finished" in capsys.readouterr().err
    assert main(["export", "gguf", *common, "--outtype", "f32", "--model", "model.model"]) == 0
    rec = RunContext(str(tmp_path / "r")).manifest.stages["export_gguf"]
    assert rec.status == "done" and rec.metrics["outtype"] == "f32"
    assert rec.outputs["gguf"].endswith("model-f32.gguf") and os.path.isfile(rec.outputs["gguf"])
    assert rec.metrics["params"] > 1_000_000
