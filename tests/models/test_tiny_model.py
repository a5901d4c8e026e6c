"""Tiny model factory, tokenizer, chat template and loading."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from cogumi_ray.errors import ModelError
from cogumi_ray.models.chat import build_chat_prompt, build_prompt, build_sft_pair, encode_chat
from cogumi_ray.models.config import ModelConfig, TinyLlamaSpec
from cogumi_ray.models.load import load_model_and_tokenizer, load_tokenizer
from cogumi_ray.models.tokenizer import EOS, SPECIAL_TOKENS, train_tokenizer


def _texts(n: int = 200) -> list[str]:
    return [f"Compute {i} * {i + 3} and explain the steps, then return value_{i % 7}." for i in range(n)]


def test_tokenizer_is_deterministic_and_splits_digits():
    a = train_tokenizer(_texts(), vocab_size=400)
    b = train_tokenizer(_texts(), vocab_size=400)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    assert [a.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    pieces = a.tokenize("x = 1234")
    assert [p for p in pieces if p.isdigit()] == ["1", "2", "3", "4"]
    text = "Unicode é 😀 and\ttabs\n  spaces"
    assert a.decode(a(text)["input_ids"]) == text  # byte-level: lossless on any input


def test_a_word_is_one_id_wherever_it_stands():
    # Copying " Paris" from a request into `"city": "Paris"` must be copying the same id.
    texts = [f"What is the weather in {c}?\n{{\"city\": \"{c}\"}}" for c in
             ("Paris", "Lima", "Oslo", "Cairo", "Quito")] * 40
    tok = train_tokenizer(texts, vocab_size=400)
    for word in ("Paris", "weather", "city"):
        after_space = tok.tokenize(f"in {word}")
        after_quote = tok.tokenize(f'"{word}"')
        at_start = tok.tokenize(word)
        assert at_start == [word]  # frequent words are single tokens
        assert after_space[-1] == word and after_quote[1] == word
    assert all(p == "\u0120" * len(p) or "\u0120" not in p for p in tok.get_vocab())  # no Ġx merges
    spec = tok.backend_tokenizer.to_str()
    assert '"Split"' not in spec  # run time keeps llama.cpp's "starcoder" pre-tokenizer


def test_tokenizer_rejects_empty_and_non_text():
    with pytest.raises(ModelError, match="no merges"):
        train_tokenizer(["", ""], vocab_size=400)
    with pytest.raises(ModelError, match="must be str"):
        train_tokenizer(["ok", 3], vocab_size=400)  # type: ignore[list-item]


def test_chat_template_prompt_is_prefix_and_full_ends_with_eos(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    prompt = build_prompt(tok, "What is 2 + 3?")
    assert prompt.startswith(tok.bos_token) and prompt.endswith("<|assistant|>\n")
    p, full = build_sft_pair(tok, "What is 2 + 3?", "5")
    assert p == prompt and full == prompt + "5" + EOS
    p_ids, f_ids = encode_chat(tok, p), encode_chat(tok, full)
    assert f_ids[: len(p_ids)] == p_ids  # the loss mask boundary is exact
    assert f_ids[0] == tok.bos_token_id and f_ids.count(tok.bos_token_id) == 1
    assert f_ids[-1] == tok.eos_token_id
    assert tok.decode(f_ids[len(p_ids):], skip_special_tokens=True) == "5"


def test_chat_prompt_of_a_conversation_continues_its_turns(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    ask = [{"role": "user", "content": "What is 2 + 3?"}]
    assert build_chat_prompt(tok, ask) == build_prompt(tok, "What is 2 + 3?")
    _, full = build_sft_pair(tok, "What is 2 + 3?", "5")
    chat = [{"role": "system", "content": "Be brief."}, *ask, {"role": "assistant", "content": "5"},
            {"role": "user", "content": "And 3 + 4?"}]
    text = build_chat_prompt(tok, chat)
    assert text.count(tok.bos_token) == 1 and "Be brief." in text and text.endswith("<|assistant|>\n")
    assert text.index("What is 2 + 3?") < text.index("5") < text.index("And 3 + 4?")
    assert build_chat_prompt(tok, chat[1:3]).rstrip().startswith(full[: -len(EOS)].rstrip())


def test_chat_errors(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    with pytest.raises(Exception, match="unknown chat role"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)
    tok.chat_template = None
    with pytest.raises(ModelError, match="no chat template"):
        build_prompt(tok, "hi")
    with pytest.raises(ModelError, match="no chat template"):
        build_chat_prompt(tok, [{"role": "user", "content": "hi"}])


def test_tiny_model_shapes_are_k_quantisable(tiny_model_dir):
    import json

    from safetensors import safe_open

    with open(os.path.join(tiny_model_dir, "config.json")) as fh:
        cfg = json.load(fh)
    assert cfg["model_type"] == "llama" and cfg["tie_word_embeddings"] is False
    with safe_open(os.path.join(tiny_model_dir, "model.safetensors"), framework="pt") as f:
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}  # noqa: SIM118
    assert "lm_head.weight" in shapes  # separate output matrix
    for name, shape in shapes.items():
        if len(shape) == 2:  # llama.cpp quantises along the row (last dim)
            assert shape[1] % 256 == 0, (name, shape)


def test_build_is_seeded(tmp_path):
    import torch
    from safetensors.torch import load_file

    from cogumi_ray.models.tiny import build_tiny

    small = ModelConfig(tiny=TinyLlamaSpec(hidden_size=64, intermediate_size=128,
                                           num_hidden_layers=1, num_attention_heads=2,
                                           num_key_value_heads=1))
    a = load_file(os.path.join(build_tiny(small, _texts(), str(tmp_path / "a")), "model.safetensors"))
    b = load_file(os.path.join(build_tiny(small, _texts(), str(tmp_path / "b")), "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_config_validation():
    with pytest.raises(ValidationError, match="divisible"):
        TinyLlamaSpec(hidden_size=250, num_attention_heads=4)
    with pytest.raises(ValidationError, match="num_key_value_heads"):
        TinyLlamaSpec(num_attention_heads=4, num_key_value_heads=3)
    with pytest.raises(ValidationError):
        ModelConfig.model_validate({"tiny": {"hiden_size": 256}})
    assert TinyLlamaSpec().k_quant_ready()
    assert not TinyLlamaSpec(hidden_size=384, num_attention_heads=4).k_quant_ready()


def test_load_model_and_tokenizer(tiny_model_dir):
    import torch

    model, tok = load_model_and_tokenizer(tiny_model_dir, dtype="float16")
    assert model.dtype == torch.float16 and not model.training
    assert model.config.vocab_size == len(tok)


def test_load_errors(tmp_path, tiny_model_dir):
    with pytest.raises(ModelError, match="does not exist"):
        load_model_and_tokenizer(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config.json is missing"):
        load_model_and_tokenizer(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="unknown dtype"):
        load_model_and_tokenizer(tiny_model_dir, dtype="int3")


def test_load_from_uri_downloads_once(tiny_model_dir, tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.put(tiny_model_dir + "/", "/models/tiny/", recursive=True)
    try:
        model, tok = load_model_and_tokenizer("memory://models/tiny", cache_dir=str(tmp_path))
        assert model.config.model_type == "llama" and tok.eos_token == EOS
        (cached,) = [p for p in tmp_path.iterdir() if p.is_dir()]
        assert (cached / "config.json").is_file()
        with pytest.raises(ModelError, match="not a folder"):
            load_model_and_tokenizer("memory://models/missing", cache_dir=str(tmp_path))
    finally:
        fs.rm("/models", recursive=True)
