"""The OpenAI HTTP layer in-process over a fake upstream (no Ray, no model): shapes, SSE, errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from starlette.testclient import TestClient

from cogumi_ray.serve.api import build_api
from cogumi_ray.serve.config import LimitsConfig, RateLimitConfig, ServeConfig
from cogumi_ray.serve.errors import ServeError
from cogumi_ray.serve.limits import key_digest
from cogumi_ray.serve.policy import NamePolicy
from cogumi_ray.serve.protocol import Decision, GenerationRequest, GenResult, Piece, Routed, Upstream

KEY = "sk-unit"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = {"model": "cogumi", "messages": [{"role": "user", "content": "hello there"}]}


class FakeUpstream:
    """The name policy over an 'echo' model; `delay` and `fail` simulate slow and broken servers."""

    def __init__(self) -> None:
        self.policy = NamePolicy("tiny", ["code"])
        self.delay = 0.0
        self.fail: Exception | None = None
        self.seen: list[GenerationRequest] = []

    def _answer(self, req: GenerationRequest, i: int) -> GenResult:
        last = req.prompt if isinstance(req.prompt, str) else req.prompt[-1]["content"]
        words = f"echo{i} {last}".split()[: req.params.max_new_tokens]
        return GenResult(" ".join(words), "stop", 3, len(words))

    async def models(self) -> list[str]:
        return self.policy.models()

    async def complete(self, req: GenerationRequest) -> Routed:
        self.seen.append(req)
        decision = self.policy.decide([], req.model)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise self.fail
        return Routed(decision, [self._answer(req, i) for i in range(req.n)])

    async def stream(self, req: GenerationRequest) -> AsyncIterator[Decision | Piece]:
        yield self.policy.decide([], req.model)
        if self.fail and isinstance(self.fail, ServeError) and self.fail.status == 400:
            raise self.fail  # refused before the first piece
        for i in range(req.n):
            result = self._answer(req, i)
            for j, word in enumerate(result.text.split()):
                yield Piece(i, text=word if j == 0 else " " + word)
                if self.fail:
                    raise self.fail  # mid-stream
            yield Piece(i, done=result)


@pytest.fixture()
def upstream() -> FakeUpstream:
    return FakeUpstream()


def _client(upstream: Upstream, **cfg) -> TestClient:
    config = ServeConfig.model_validate({
        "limits": LimitsConfig(max_body_bytes=4096, max_prompt_chars=200, max_tokens=32,
                               default_max_tokens=8, max_n=2).model_dump(),
        "rate_limit": RateLimitConfig(requests_per_minute=60, burst=100).model_dump(), **cfg})
    return TestClient(build_api(config, upstream, frozenset({key_digest(KEY)})))


def _error(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def test_chat_completion_shape(upstream):
    client = _client(upstream)
    r = client.post("/v1/chat/completions", headers={**AUTH, "x-request-id": "req-42"},
                    json={**CHAT, "model": "cogumi:code", "n": 2, "max_tokens": 5, "temperature": 0,
                          "stop": "zz", "seed": 9})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "chatcmpl-req-42" and r.headers["x-request-id"] == "req-42"
    assert body["object"] == "chat.completion" and body["model"] == "cogumi:code"
    assert [c["message"]["content"] for c in body["choices"]] == ["echo0 hello there", "echo1 hello there"]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
    assert body["cogumi"] == {"option": "code", "confidence": None, "switched_after": None}
    assert r.headers["x-cogumi-option"] == "code" and r.headers["x-cogumi-confidence"] == "none"
    params = upstream.seen[-1].params
    assert (params.max_new_tokens, params.temperature, params.stop, params.seed) == (5, 0.0, ["zz"], 9)
    minted = client.post("/v1/chat/completions", headers=AUTH, json=CHAT)
    assert len(minted.headers["x-request-id"]) == 32 and upstream.seen[-1].params.max_new_tokens == 8


def test_completions_and_models(upstream):
    client = _client(upstream)
    r = client.post("/v1/completions", headers=AUTH,
                    json={"model": "tiny", "prompt": ["a b", "c"], "max_tokens": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["cogumi"]["option"] == "base"
    assert [c["text"] for c in body["choices"]] == ["echo0 a", "echo0 c"]
    assert [c["index"] for c in body["choices"]] == [0, 1]
    models = client.get("/v1/models", headers=AUTH).json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["tiny", "cogumi", "cogumi:code"]
    assert client.get("/healthz").json() == {"status": "ok"}  # no key needed


def _events(resp) -> list:
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    frames = resp.text.split("\n\n")
    assert frames[-1] == "" and all(f.startswith("data: ") for f in frames[:-1])
    return [f[6:] if f[6:] == "[DONE]" else json.loads(f[6:]) for f in frames[:-1]]


def test_chat_stream(upstream):
    client = _client(upstream)
    r = client.post("/v1/chat/completions", headers=AUTH,
                    json={**CHAT, "stream": True, "stream_options": {"include_usage": True}})
    assert r.headers["x-cogumi-option"] == "base"
    events = _events(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:-1])
    assert text == "echo0 hello there"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    assert all(c["object"] == "chat.completion.chunk" and c["cogumi"]["option"] == "base" for c in chunks)

    r = client.post("/v1/completions", headers=AUTH,
                    json={"model": "cogumi", "prompt": "x y", "stream": True, "n": 2})
    events = _events(r)
    texts = {0: "", 1: ""}
    for c in events[:-1]:
        texts[c["choices"][0]["index"]] += c["choices"][0]["text"]
    assert texts == {0: "echo0 x y", 1: "echo1 x y"} and "usage" not in events[-2]


def test_stream_errors(upstream):
    client = _client(upstream)
    upstream.fail = ServeError(400, "too long", code="context_length_exceeded")
    r = client.post("/v1/chat/completions", headers=AUTH, json={**CHAT, "stream": True})
    _error(r, 400, "context_length_exceeded")  # an HTTP error, not a 200 stream
    upstream.fail = ServeError(500, "engine died", type="server_error")
    events = _events(client.post("/v1/chat/completions", headers=AUTH, json={**CHAT, "stream": True}))
    assert events[-1]["error"]["message"] == "engine died"  # mid-stream: an error event, no [DONE]
    bad = client.post("/v1/completions", headers=AUTH,
                      json={"model": "cogumi", "prompt": ["a", "b"], "stream": True})
    _error(bad, 400)


def test_auth_comes_first(upstream):
    client = _client(upstream)
    assert _error(client.post("/v1/chat/completions", json=CHAT), 401, "missing_api_key")["type"] == (
        "authentication_error")
    _error(client.get("/v1/models", headers={"Authorization": "Bearer nope"}), 401, "invalid_api_key")
    # a stranger's malformed body is refused for the key, before it is read
    _error(client.post("/v1/chat/completions", content=b"{oops", headers={"Authorization": "Bearer x"}),
           401)


def test_request_errors(upstream):
    client = _client(upstream)
    post = lambda body, **kw: client.post("/v1/chat/completions", headers=AUTH, json=body, **kw)  # noqa: E731
    r = client.post("/v1/chat/completions", headers={**AUTH, "content-type": "application/json"},
                    content=b'{"model": "cogumi", "messages": [')
    _error(r, 400, "invalid_json")
    err = _error(post({"model": "cogumi"}), 422)
    assert err["param"] == "messages"
    assert _error(post({**CHAT, "temprature": 0.5}), 422)["message"].startswith("temprature: unknown")
    assert _error(post({**CHAT, "temperature": 3}), 422)["param"] == "temperature"
    assert _error(post({**CHAT, "presence_penalty": 1}), 422)["param"] == "presence_penalty"
    assert _error(post({**CHAT, "max_tokens": 33}), 400)["param"] == "max_tokens"
    assert _error(post({**CHAT, "n": 3}), 400)["param"] == "n"
    long = {**CHAT, "messages": [{"role": "user", "content": "x" * 201}]}
    _error(post(long), 400, "context_length_exceeded")
    _error(post({**CHAT, "model": "gpt-4o"}), 404, "model_not_found")
    _error(client.get("/v1/nothing", headers=AUTH), 404, "not_found")
    _error(client.get("/v1/chat/completions", headers=AUTH), 405)


def test_body_size(upstream):
    client = _client(upstream)
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
    _error(client.post("/v1/chat/completions", headers=AUTH, json=big), 413, "request_too_large")

    def chunked():  # no Content-Length: counted while it arrives
        yield b'{"model": "cogumi", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    r = client.post("/v1/chat/completions", headers={**AUTH, "content-type": "application/json"},
                    content=chunked())
    _error(r, 413, "request_too_large")


def test_rate_limit(upstream):
    client = _client(upstream, rate_limit={"requests_per_minute": 6, "burst": 2})
    for _ in range(2):
        assert client.get("/v1/models", headers=AUTH).status_code == 200
    r = client.get("/v1/models", headers=AUTH)
    err = _error(r, 429, "rate_limit_exceeded")
    assert err["type"] == "rate_limit_error" and r.headers["retry-after"] == "10"
    assert client.get("/healthz").status_code == 200  # health checks are never limited


def test_timeouts_and_internal_errors(upstream):
    client = _client(upstream, request_timeout_s=0.2)
    upstream.delay = 2.0
    _error(client.post("/v1/chat/completions", headers=AUTH, json=CHAT), 504, "timeout")
    upstream.delay = 0.0
    upstream.fail = RuntimeError("segfault-ish")
    err = _error(client.post("/v1/chat/completions", headers=AUTH, json=CHAT), 500, "internal_error")
    assert "segfault-ish" in err["message"] and err["type"] == "server_error"


def test_no_keys_means_open(upstream):
    config = ServeConfig()
    client = TestClient(build_api(config, upstream))
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_route_prefix_keeps_routes_protected(upstream):
    """Under Serve's route_prefix the app sees root_path + path: the key check still applies."""
    client = TestClient(_client(upstream).app, root_path="/api")
    _error(client.get("/api/v1/models"), 401)
    assert client.get("/api/v1/models", headers=AUTH).status_code == 200
