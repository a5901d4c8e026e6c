"""llama.cpp engine on a GGUF the project exported, and the OpenAI engine against llama.cpp's own
OpenAI-compatible server (`python -m llama_cpp.server`) over the same file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from cogumi_ray.generate.config import EngineConfig, GenParams, LlamaCppEngineConfig, OpenAIEngineConfig
from cogumi_ray.generate.engines import EngineError, make_engine

pytest.importorskip("llama_cpp")

PROMPTS = [
    "What is 48 + 17? Answer with the number only.",
    "Sort the list [9, 0, 3, 3] in ascending order.",
    "Write a Python function add_7(x) that returns x + 7.",
]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def gguf(tiny_sft_model_dir, tmp_path_factory) -> str:
    from cogumi_ray.export.gguf_export import export_gguf

    # f32: llama.cpp then computes the same logits as HF up to ~1e-6, so greedy answers agree.
    out = tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf"
    return export_gguf(tiny_sft_model_dir, str(out), outtype="f32").path


def _llama_cfg(**kw) -> EngineConfig:
    return EngineConfig(kind="llama_cpp", llama_cpp=LlamaCppEngineConfig(n_ctx=512, n_threads=1, **kw))


@pytest.fixture(scope="module")
def llama_engine(gguf):
    eng = make_engine(_llama_cfg(), gguf)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def hf_engine(tiny_sft_model_dir):
    eng = make_engine(EngineConfig(), tiny_sft_model_dir)
    yield eng
    eng.close()


def test_prompt_ids_match_training(llama_engine, gguf, tiny_sft_model_dir, hf_engine):
    from cogumi_ray.models.chat import build_prompt, encode_chat

    assert llama_engine._formatter is not None  # no tokenizer beside the file: embedded template
    with_tok = make_engine(_llama_cfg(tokenizer=tiny_sft_model_dir), gguf)
    try:
        for p in PROMPTS:
            want = encode_chat(hf_engine.tokenizer, build_prompt(hf_engine.tokenizer, p))
            assert llama_engine.prompt_ids(p) == want
            assert with_tok.prompt_ids(p) == want
    finally:
        with_tok.close()


def test_greedy_answers_match_the_hf_model(llama_engine, hf_engine):
    params = GenParams(max_new_tokens=20)
    got = llama_engine.generate(PROMPTS, params)
    want = hf_engine.generate(PROMPTS, params)
    assert [c.text for c in got] == [c.text for c in want]
    assert [(c.prompt_tokens, c.completion_tokens, c.finish_reason) for c in got] == [
        (c.prompt_tokens, c.completion_tokens, c.finish_reason) for c in want]


def test_limits_stops_and_seeds(llama_engine):
    [c] = llama_engine.generate([PROMPTS[2]], GenParams(max_new_tokens=3))
    assert c.completion_tokens <= 3
    [full] = llama_engine.generate([PROMPTS[2]], GenParams(max_new_tokens=20))
    if len(full.text) >= 4:
        stop = full.text[2:4]
        [cut] = llama_engine.generate([PROMPTS[2]], GenParams(max_new_tokens=20, stop=[stop]))
        assert cut.text == full.text[: full.text.find(stop)] and cut.finish_reason == "stop"
    sample = GenParams(max_new_tokens=10, temperature=1.0, seed=5)
    assert [c.text for c in llama_engine.generate(PROMPTS, sample)] == [
        c.text for c in llama_engine.generate(PROMPTS, sample)]


def test_errors(tmp_path, gguf, llama_engine):
    with pytest.raises(EngineError, match="does not exist"):
        make_engine(_llama_cfg(), str(tmp_path / "missing.gguf"))
    with pytest.raises(EngineError, match="is not a directory"):
        make_engine(_llama_cfg(tokenizer=str(tmp_path / "nope")), gguf)
    with pytest.raises(EngineError, match="exceed n_ctx 512"):
        llama_engine.generate(["word " * 600], GenParams(max_new_tokens=8))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(gguf):
    pytest.importorskip("sse_starlette")
    pytest.importorskip("starlette_context")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "512", "--n_threads", "1", "--model_alias", "tiny"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {proc.stderr.read().decode()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.time() > deadline:
                raise RuntimeError("llama_cpp.server did not start within 120 s")
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_openai_engine_against_llama_cpp_server(llama_server, llama_engine):
    cfg = EngineConfig(kind="openai", openai=OpenAIEngineConfig(
        base_url=f"http://127.0.0.1:{llama_server}/v1", max_retries=1, timeout_s=60,
        extra_body={"repeat_penalty": 1.0}))  # the server's default 1.1 would change answers
    eng = make_engine(cfg)
    try:
        assert eng.model == "tiny"
        params = GenParams(max_new_tokens=12)
        got = eng.generate(PROMPTS, params)
    finally:
        eng.close()
    want = llama_engine.generate(PROMPTS, params)
    # The server renders the GGUF's embedded template exactly as our engine does.
    assert [c.prompt_tokens for c in got] == [c.prompt_tokens for c in want]
    assert [c.text for c in got] == [c.text for c in want]
