"""Model-server backends without Ray: llama.cpp (GGUF + LoRA GGUFs) and HF (+ PEFT folders) answer
alike, adapters switch without reloading the base, and streaming gives the same text."""

from __future__ import annotations

import pytest

from cogumi_ray.generate.config import EngineConfig, GenParams, LlamaCppEngineConfig
from cogumi_ray.serve.config import ServeConfig
from cogumi_ray.serve.errors import ServeError
from cogumi_ray.serve.protocol import Generator, GenResult

pytest.importorskip("llama_cpp")

CHATS = [
    [{"role": "user", "content": "What is 48 + 17? Answer with the number only."}],
    [{"role": "user", "content": "Sort the list [9, 0, 3, 3] in ascending order."}],
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": "Write a Python function add_7(x) that returns x + 7."},
     {"role": "assistant", "content": "def add_7(x):\n    return x + 7"},
     {"role": "user", "content": "Now add_8."}],
]
GREEDY = GenParams(max_new_tokens=16)


@pytest.fixture(scope="module")
def llama_gen(serve_gguf, lora_ggufs):
    from cogumi_ray.serve.backends.llama_cpp import LlamaCppGenerator

    gen = LlamaCppGenerator(ServeConfig(base=serve_gguf, adapters=lora_ggufs,
                                        llama_cpp=LlamaCppEngineConfig(n_ctx=512, n_threads=1)))
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def hf_gen(tiny_sft_model_dir, peft_adapters):
    from cogumi_ray.serve.backends.hf import HFGenerator

    gen = HFGenerator(ServeConfig(backend="hf", base=tiny_sft_model_dir, adapters=peft_adapters))
    yield gen
    gen.close()


def _texts(gen: Generator, adapter: str | None, params: GenParams = GREEDY) -> list[str]:
    return [gen.generate(c, params, adapter).text for c in CHATS]


def test_protocol_and_names(llama_gen, hf_gen):
    assert isinstance(llama_gen, Generator) and isinstance(hf_gen, Generator)
    assert llama_gen.model_name == "tiny-sft"


def test_base_matches_the_batch_engine(llama_gen, serve_gguf):
    from cogumi_ray.generate.engines import make_engine

    eng = make_engine(EngineConfig(kind="llama_cpp", llama_cpp=LlamaCppEngineConfig(n_ctx=512, n_threads=1)),
                      serve_gguf)
    try:
        want = eng.generate([c[0]["content"] for c in CHATS[:2]], GREEDY)
    finally:
        eng.close()
    got = [llama_gen.generate(c, GREEDY, None) for c in CHATS[:2]]
    assert [(g.text, g.prompt_tokens, g.completion_tokens, g.finish_reason) for g in got] == [
        (w.text, w.prompt_tokens, w.completion_tokens, w.finish_reason) for w in want]


def test_llama_lora_matches_peft_and_switches_cleanly(llama_gen, hf_gen):
    base = _texts(llama_gen, None)
    assert base == _texts(hf_gen, None)
    for name in ("code", "math"):
        with_adapter = _texts(llama_gen, name)
        assert with_adapter == _texts(hf_gen, name), name
        assert with_adapter != base, f"adapter {name} changed nothing"
    # Back to the base after an adapter: the KV prefix cached under the adapter must be dropped.
    assert _texts(llama_gen, None) == base
    assert _texts(hf_gen, None) == base


def test_unload_and_reload(llama_gen, hf_gen):
    for gen in (llama_gen, hf_gen):
        before = gen.generate(CHATS[0], GREEDY, "code").text
        gen.unload_adapter("code")
        gen.unload_adapter("code")  # idempotent
        gen.unload_adapter("math")  # hf: the last adapter leaves PEFT, back to the plain base
        assert gen.generate(CHATS[0], GREEDY, "code").text == before  # loaded again on demand
        gen.load_adapter("math")


@pytest.mark.parametrize("which", ["llama", "hf"])
def test_stream_gives_the_same_answer(which, llama_gen, hf_gen):
    gen = llama_gen if which == "llama" else hf_gen
    for adapter in (None, "math"):
        items = list(gen.stream(CHATS[2], GREEDY, adapter))
        *pieces, result = items
        assert isinstance(result, GenResult) and all(isinstance(p, str) for p in pieces)
        assert "".join(pieces) == result.text == gen.generate(CHATS[2], GREEDY, adapter).text


@pytest.mark.parametrize("which", ["llama", "hf"])
def test_stops_lengths_and_seeds(which, llama_gen, hf_gen):
    gen = llama_gen if which == "llama" else hf_gen
    full = gen.generate(CHATS[2], GenParams(max_new_tokens=24), "code")
    assert full.completion_tokens <= 24
    if len(full.text) >= 6:
        stop = full.text[3:6]
        params = GenParams(max_new_tokens=24, stop=[stop])
        cut = gen.generate(CHATS[2], params, "code")
        assert cut.text == full.text[: full.text.find(stop)] and cut.finish_reason == "stop"
        streamed = [p for p in gen.stream(CHATS[2], params, "code") if isinstance(p, str)]
        assert "".join(streamed) == cut.text  # no piece of the stop string leaks into the stream
    sample = GenParams(max_new_tokens=12, temperature=1.0, seed=7)
    assert _texts(gen, None, sample) == _texts(gen, None, sample)


def test_raw_prompt_and_context_limit(llama_gen, hf_gen):
    assert llama_gen.generate("def add", GREEDY, None).text == hf_gen.generate("def add", GREEDY, None).text
    with pytest.raises(ServeError, match="context window of 512") as e:
        llama_gen.generate([{"role": "user", "content": "word " * 600}], GREEDY, None)
    assert e.value.status == 400 and e.value.code == "context_length_exceeded"
    with pytest.raises(ServeError):
        next(iter(llama_gen.stream("word " * 600, GREEDY, None)))  # before the first piece


def test_bad_adapter_paths(serve_gguf, tmp_path):
    from cogumi_ray.generate.engines import EngineError
    from cogumi_ray.serve.backends.llama_cpp import LlamaCppGenerator

    not_lora = tmp_path / "junk.gguf"
    not_lora.write_bytes(b"GGUF" + b"\0" * 64)
    gen = LlamaCppGenerator(ServeConfig(
        base=serve_gguf, adapters={"gone": str(tmp_path / "missing.gguf"), "junk": str(not_lora)},
        llama_cpp=LlamaCppEngineConfig(n_ctx=256, n_threads=1)))
    try:
        with pytest.raises(EngineError, match="does not exist"):
            gen.load_adapter("gone")
        with pytest.raises(EngineError, match="cannot load"):
            gen.load_adapter("junk")
        with pytest.raises(EngineError, match="no adapter named"):
            gen.generate(CHATS[0], GREEDY, "nope")
        assert gen.generate(CHATS[0], GREEDY, None).finish_reason in ("stop", "length")
    finally:
        gen.close()
