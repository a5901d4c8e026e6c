"""The llama.cpp engine with a LoRA GGUF on top of the base (`llama_cpp.lora`): it answers as
base + adapter (HF with the adapter merged), not as the base; a missing or foreign adapter file is
refused with the setting named; score-cache keys tell base and base + adapter apart."""

from __future__ import annotations

import pytest

from cogumi_ray.generate.config import EngineConfig, GenParams, LlamaCppEngineConfig
from cogumi_ray.generate.engines import EngineError, make_engine

pytest.importorskip("llama_cpp")

PROMPTS = [
    "What is 48 + 17? Answer with the number only.",
    "Sort the list [9, 0, 3, 3] in ascending order.",
    "Write a Python function add_7(x) that returns x + 7.",
]
GREEDY = GenParams(max_new_tokens=16)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    torch.set_num_threads(1)


def _cfg(lora: str | None = None, tokenizer: str | None = None) -> EngineConfig:
    return EngineConfig(kind="llama_cpp", llama_cpp=LlamaCppEngineConfig(
        n_ctx=256, n_threads=1, lora=lora, tokenizer=tokenizer))


def _answers(cfg: EngineConfig, gguf: str) -> list[str]:
    eng = make_engine(cfg, gguf)
    try:
        return [c.text for c in eng.generate(PROMPTS, GREEDY)]
    finally:
        eng.close()


def test_adapter_changes_greedy_answers_as_hf_merged_does(serve_gguf, lora_ggufs, peft_adapters,
                                                         tiny_sft_model_dir, tmp_path):
    from cogumi_ray.train.lora import merge_adapter

    base = _answers(_cfg(), serve_gguf)
    with_code = _answers(_cfg(lora_ggufs["code"]), serve_gguf)
    assert with_code != base
    assert _answers(_cfg(), serve_gguf) == base  # nothing of the adapter outlives its engine

    merged = str(tmp_path / "merged-code")
    merge_adapter(tiny_sft_model_dir, peft_adapters["code"], merged)
    hf = make_engine(EngineConfig(), merged)
    try:
        assert with_code == [c.text for c in hf.generate(PROMPTS, GREEDY)]
    finally:
        hf.close()


def test_missing_or_foreign_adapter_is_refused(serve_gguf, tmp_path):
    with pytest.raises(EngineError, match=r"does not exist; set generate\.engine\.llama_cpp\.lora"):
        make_engine(_cfg(str(tmp_path / "missing.gguf")), serve_gguf)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(EngineError, match="cannot load .* as a LoRA adapter"):
        make_engine(_cfg(str(junk)), serve_gguf)


def test_serve_refuses_a_fixed_adapter(serve_gguf, lora_ggufs):
    from cogumi_ray.serve.backends.llama_cpp import LlamaCppGenerator
    from cogumi_ray.serve.config import ServeConfig

    with pytest.raises(EngineError, match="serve.adapters"):
        LlamaCppGenerator(ServeConfig(base=serve_gguf, llama_cpp=LlamaCppEngineConfig(
            n_ctx=256, lora=lora_ggufs["code"])))


def test_score_cache_key_follows_the_adapter(serve_gguf, lora_ggufs, tmp_path):
    import shutil

    from cogumi_ray.data.schema import Example
    from cogumi_ray.eval import score_cache

    rows = [Example(id="r1", instruction="What is 1 + 1?", response="2", domain="math")]

    def key(lora: str | None) -> str | None:
        return score_cache.key(serve_gguf, rows, _cfg(lora), GREEDY, 1)

    base = key(None)
    # a base's key is the one it had before the field existed: a run's cached scores stay valid
    from cogumi_ray import __version__, storage

    engine = _cfg().model_dump(mode="json", exclude={"model"})
    del engine["llama_cpp"]["lora"]
    assert base == storage.hash_object({
        "format": score_cache.FORMAT, "version": __version__,
        "model": storage.content_hash(serve_gguf), "engine": engine,
        "params": GREEDY.model_dump(mode="json"), "batch_size": 1,
        "rows": storage.hash_object([ex.to_row() for ex in rows])})
    code, math = key(lora_ggufs["code"]), key(lora_ggufs["math"])
    assert len({base, code, math}) == 3
    copy = tmp_path / "same-code.gguf"
    shutil.copy(lora_ggufs["code"], copy)
    assert key(str(copy)) == code  # content, not path
    assert key(str(tmp_path / "missing.gguf")) is None  # never the base's entry
