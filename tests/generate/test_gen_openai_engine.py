"""OpenAI engine through the official SDK against a real HTTP server on localhost.

The server is a small FastAPI app speaking the Chat Completions wire format, answering with the
HF engine over the tiny model, and able to fail its first N requests with 503 to exercise the
SDK's retries. (The llama.cpp server variant lives in test_gen_llama_cpp_engine.py.)
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from cogumi_ray.generate.config import EngineConfig, GenParams, OpenAIEngineConfig
from cogumi_ray.generate.engines import EngineError, make_engine
from cogumi_ray.generate.engines.openai_http import resolve_api_key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, backend) -> None:
        import uvicorn
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse

        self.backend = backend
        self.fail_next = 0
        self.requests: list[dict] = []
        app = FastAPI()

        @app.get("/v1/models")
        def models():
            return {"object": "list", "data": [{"id": "tiny", "object": "model", "owned_by": "test"}]}

        @app.post("/v1/chat/completions")
        def chat(body: dict):
            self.requests.append(body)
            if self.fail_next > 0:
                self.fail_next -= 1
                return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
            if body.get("model") != "tiny":
                return JSONResponse({"error": {"message": "no such model"}}, status_code=404)
            params = GenParams(max_new_tokens=body["max_tokens"], temperature=body["temperature"],
                               top_p=body["top_p"], stop=body.get("stop") or [], seed=body["seed"])
            [c] = self.backend.generate([body["messages"][-1]["content"]], params)
            return {
                "id": "cmpl-1", "object": "chat.completion", "created": int(time.time()),
                "model": "tiny",
                "choices": [{"index": 0, "finish_reason": c.finish_reason,
                             "message": {"role": "assistant", "content": c.text}}],
                "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                          "total_tokens": c.prompt_tokens + c.completion_tokens},
            }

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def hf_engine(tiny_model_dir):
    eng = make_engine(EngineConfig(), tiny_model_dir)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def server(hf_engine):
    with _Server(hf_engine) as srv:
        yield srv


def _cfg(port: int, **kw) -> EngineConfig:
    return EngineConfig(kind="openai", openai=OpenAIEngineConfig(
        base_url=f"http://127.0.0.1:{port}/v1", **kw))


def test_answers_match_the_model_behind_the_endpoint(server, hf_engine):
    prompts = ["What is 2 + 2?", "Sort the list [2, 1] in ascending order.", "hi"]
    params = GenParams(max_new_tokens=12)
    eng = make_engine(_cfg(server.port, concurrency=3, extra_body={"top_k": 50}))
    try:
        assert eng.model == "tiny"  # discovered from /v1/models
        got = eng.generate(prompts, params)
    finally:
        eng.close()
    want = hf_engine.generate(prompts, params)
    assert [c.text for c in got] == [c.text for c in want]  # order kept despite threads
    assert [c.completion_tokens for c in got] == [c.completion_tokens for c in want]
    assert all(c.latency_s > 0 for c in got)
    sent = server.requests[-1]
    assert sent["temperature"] == 0.0 and sent["max_tokens"] == 12
    assert sent["top_k"] == 50  # extra_body fields reach the server
    assert sent["messages"] == [{"role": "user", "content": sent["messages"][0]["content"]}]


def test_retries_through_503s(server):
    server.fail_next = 2
    before = len(server.requests)
    eng = make_engine(_cfg(server.port, model="tiny", max_retries=3))
    try:
        [c] = eng.generate(["hi"], GenParams(max_new_tokens=4))
    finally:
        eng.close()
    assert len(server.requests) - before == 3  # two 503s, then the answer
    assert c.completion_tokens >= 1


def test_http_errors_are_reported_with_the_status(server):
    server.fail_next = 5
    eng = make_engine(_cfg(server.port, model="tiny", max_retries=1))
    try:
        with pytest.raises(EngineError, match="HTTP 503"):
            eng.generate(["hi"], GenParams(max_new_tokens=4))
    finally:
        server.fail_next = 0
        eng.close()
    eng = make_engine(_cfg(server.port, model="no-such-model", max_retries=0))
    with pytest.raises(EngineError, match="HTTP 404"):
        eng.generate(["hi"], GenParams(max_new_tokens=4))


def test_unreachable_endpoint_is_a_clear_error():
    port = _free_port()  # nothing listens there
    with pytest.raises(EngineError, match=rf"cannot reach .*127.0.0.1:{port}.*base_url"):
        make_engine(_cfg(port, max_retries=0, timeout_s=2))


def test_api_key_comes_from_the_named_env_var(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test")
    assert resolve_api_key("MY_KEY", "https://api.example.com/v1") == "sk-test"
    monkeypatch.delenv("MY_KEY")
    assert resolve_api_key("MY_KEY", "http://localhost:8000/v1") == "not-needed"
    with pytest.raises(EngineError, match="MY_KEY is not set"):
        resolve_api_key("MY_KEY", "https://api.example.com/v1")
