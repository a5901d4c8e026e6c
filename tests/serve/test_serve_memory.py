"""Session memory in serving: ratings joined to recorded turns, route.memory reaching the served
store, and a base turn pre-loading the modifier its session keeps coming back to (the whole
Serve graph on the tiny GGUF)."""

from __future__ import annotations

import os
import socket
import time

import pytest
from starlette.testclient import TestClient
from testkit import replica_stats, running_app

from cogumi_ray.route.config import MemoryConfig
from cogumi_ray.route.memory import SessionStore
from cogumi_ray.route.policy import session_id
from cogumi_ray.serve.api import build_api
from cogumi_ray.serve.config import DeploymentConfig, ServeConfig
from cogumi_ray.serve.feedback import (
    RingBufferFeedbackStore,
    SessionFeedbackStore,
    feedback_store_for,
)


class _NoModel:
    """An upstream for endpoints that never reach a model (/v1/feedback)."""

    async def models(self) -> list[str]:
        return []

    async def complete(self, request):
        raise AssertionError("no generation in this test")

    def stream(self, request):
        raise AssertionError("no generation in this test")


def _learned(tmp_path, **kw) -> ServeConfig:
    kw.setdefault("sessions_path", str(tmp_path / "serve" / "sessions.sqlite"))
    return ServeConfig(policy="learned", router_path=str(tmp_path / "router"), **kw)


def test_feedback_goes_to_session_memory_joined_by_request_id(tmp_path):
    cfg = _learned(tmp_path, session_memory=MemoryConfig(retries=2))
    store = feedback_store_for(cfg)
    assert isinstance(store, SessionFeedbackStore) and store.store.cfg.retries == 2
    assert isinstance(feedback_store_for(ServeConfig()), RingBufferFeedbackStore)
    assert isinstance(feedback_store_for(_learned(tmp_path, sessions_path=None)),
                      RingBufferFeedbackStore)
    with SessionStore(cfg.sessions_path) as memory:  # what the router replica recorded
        memory.record("s1", "code", 0.8, False, "q", request_id="rid-1")
    api = TestClient(build_api(cfg, _NoModel()))
    r = api.post("/v1/feedback", json={"request_id": "chatcmpl-rid-1", "rating": "down",
                                       "comment": "wrong"})
    assert r.status_code == 200 and r.json()["request_id"] == "rid-1"
    r = api.post("/v1/feedback", json={"session_id": "conv-1", "rating": "up"})
    assert r.status_code == 200
    with SessionStore(cfg.sessions_path) as memory:
        joined, loose = memory.ratings()
        assert (joined["session_id"], joined["turn"], joined["rating"], joined["comment"]) == (
            "s1", 1, -1, "wrong")
        assert (loose["session_id"], loose["client_session"], loose["rating"]) == (None, "conv-1", 1)
        assert memory.turns("s1")[0].feedback == -1


def _file(path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(b"x")
    return path


def test_serving_a_run_takes_its_route_memory(tmp_path):
    from cogumi_ray.config import load_config
    from cogumi_ray.runs import RunContext, StageOutput
    from cogumi_ray.serve.from_run import serve_config_for_run

    ctx = RunContext(str(tmp_path / "fake"))
    d = ctx.run_dir
    stages = {"export_gguf": ({"gguf": _file(f"{d}/export_gguf/m.gguf")}, {}),
              "modifiers": ({"code_adapter_gguf": _file(f"{d}/modifiers/code.gguf")},
                            {"domains": ["code"]}),
              "router": ({"router": os.path.dirname(_file(f"{d}/router/router/x"))}, {})}
    for name, (outputs, metrics) in stages.items():
        ctx.run_stage(name, lambda o=outputs, m=metrics: StageOutput(o, m), {"fake": name})

    def cfg(**overrides):
        return serve_config_for_run(load_config(overrides={
            "run.root": str(tmp_path), "run.name": "fake", "route.memory.max_turns": 7,
            "route.memory.ttl_s": 30, **overrides}))

    served = cfg()
    assert served.policy == "learned" and served.sessions_path == f"{d}/serve/sessions.sqlite"
    assert (served.session_memory.max_turns, served.session_memory.ttl_s) == (7, 30)
    assert cfg(**{"route.memory.path": str(tmp_path / "elsewhere.db")}).sessions_path == str(
        tmp_path / "elsewhere.db")


def _router_dir(path: str) -> str:
    """A saved router over base/code/math; the app test only forces names, so never asks it."""
    import numpy as np

    from cogumi_ray.route.bundle import RouterBundle
    from cogumi_ray.route.config import FeatureConfig, PolicyConfig, RouterConfig
    from cogumi_ray.route.features import Featurizer
    from cogumi_ray.route.models import make_router

    options = ["base", "code", "math"]
    emb = np.random.default_rng(0).normal(size=(90, 384)).astype(np.float32)
    y = np.arange(90) % 3
    feat = Featurizer.fit(emb, np.zeros((90, 0)), options, 8, session=True)
    x = feat.transform(emb, None, None)
    router = make_router("logreg", options, RouterConfig())
    router.fit(x[:60], y[:60], x[60:75], y[60:75])
    router.calibrate(x[75:], y[75:])
    RouterBundle(router, feat, FeatureConfig(session_features=True), PolicyConfig(),
                 [1.0, 2.0, 2.0]).save(path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until(check, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_a_base_turn_preloads_the_modifier_its_session_needs(ray_session, serve_gguf, lora_ggufs,
                                                             tmp_path):
    openai = pytest.importorskip("openai")
    pytest.importorskip("llama_cpp")
    import httpx

    from cogumi_ray.generate.config import LlamaCppEngineConfig

    cfg = ServeConfig(
        base=serve_gguf, adapters=lora_ggufs, port=_free_port(), api_keys=[], api_key_env=None,
        policy="learned", router_path=_router_dir(str(tmp_path / "router")),
        sessions_path=str(tmp_path / "sessions.sqlite"),
        session_memory=MemoryConfig(max_turns=5),
        max_adapters_per_replica=1,  # a second modifier evicts the first
        llama_cpp=LlamaCppEngineConfig(n_ctx=512, n_threads=1),
        generator=DeploymentConfig(num_cpus=1, max_ongoing_requests=16))
    base = cfg.served_base_name()
    one = [{"role": "user", "content": "What is 2 + 2?"}]
    with running_app(cfg) as url:
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=60)

        def chat(messages, model):
            r = client.chat.completions.create(model=model, messages=messages, max_tokens=4,
                                               temperature=0)
            return r, messages + [{"role": "assistant", "content": r.choices[0].message.content}]

        _, one = chat(one, "cogumi:code")  # session one needs the code modifier
        chat([{"role": "user", "content": "Another conversation"}], "cogumi:math")  # evicts code
        assert replica_stats(cfg.app_name)["adapter_loads"] == {"code": 1, "math": 1}
        # session one's next turn goes to the base: the router pre-loads code, not awaited
        reply, one = chat(one + [{"role": "user", "content": "And 3 + 3?"}], base)
        assert reply.cogumi["option"] == "base"
        stats = _until(lambda: (s := replica_stats(cfg.app_name))["warmed"] and s)
        assert stats["warmed"] == {"code": 1} and stats["adapter_loads"]["code"] == 2
        chat(one + [{"role": "user", "content": "Now in Python"}], "cogumi:code")
        assert replica_stats(cfg.app_name)["adapter_loads"] == {"code": 2, "math": 1}  # held

        # a thumbs-down on the base answer reaches the turn that answer was routed as
        fb = httpx.post(f"{url}/feedback", json={"request_id": reply.id, "rating": "down"})
        assert fb.status_code == 200, fb.text
    with SessionStore(cfg.sessions_path) as memory:
        turns = memory.turns(session_id(one))
        assert [t.option for t in turns] == ["code", "base", "code"]
        assert turns[1].request_id == reply.id.removeprefix("chatcmpl-") and turns[1].feedback == -1
        (rating,) = memory.ratings()
        assert (rating["session_id"], rating["turn"]) == (session_id(one), 2)
