"""The Router keeps session memory to answered requests: the learned policy records a turn when
it decides, and a request whose generation then fails before any answer reaches the client has
that turn deleted; the same holds for a forced request that the Ingress sends to the Generator
itself while the Router notes its turn (no Ray: fake handles)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_serve_memory import _router_dir

from cogumi_ray.generate.config import GenParams
from cogumi_ray.route.memory import SessionStore
from cogumi_ray.route.policy import session_id
from cogumi_ray.serve import router as router_mod
from cogumi_ray.serve.config import ServeConfig
from cogumi_ray.serve.ingress import HandleUpstream
from cogumi_ray.serve.policy import NamePolicy
from cogumi_ray.serve.protocol import GenerationRequest
from cogumi_ray.serve.router import Router


class _Call:
    def __init__(self, result: Any) -> None:
        self.result = result

    def __await__(self):
        async def run():
            if isinstance(self.result, BaseException):
                raise self.result
            return self.result

        return run().__await__()

    def __aiter__(self):
        async def pieces():
            for item in self.result:
                if isinstance(item, BaseException):
                    raise item
                yield item

        return pieces()


class _Method:
    def __init__(self, result: Any) -> None:
        self.result = result

    def remote(self, request: GenerationRequest) -> _Call:
        return _Call(self.result)


class _FakeGenerator:
    """A DeploymentHandle of the ModelServer whose calls return (or raise) `result`."""

    def __init__(self, result: Any) -> None:
        self.generate = self.stream = _Method(result)

    def options(self, **_: Any) -> _FakeGenerator:
        return self


class _RouterHandle:
    """A DeploymentHandle of a Router in this process: `.remote` starts the call at once, as
    Serve sends a handle call before it is awaited."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.router, name)

        class _Remote:
            @staticmethod
            def remote(*args: Any) -> Any:
                return asyncio.ensure_future(method(*args))

        return _Remote()


MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture
def make_router(tmp_path, monkeypatch):
    cfg = ServeConfig(base="tiny.gguf", adapters={"code": "c.gguf", "math": "m.gguf"},
                      policy="learned", router_path=_router_dir(str(tmp_path / "router")),
                      sessions_path=str(tmp_path / "sessions.sqlite"))
    rids = iter(f"rid-{i}" for i in range(100))
    monkeypatch.setattr(router_mod, "request_id", lambda: next(rids))

    def make(result: Any) -> Router:
        return Router(cfg.model_dump(), _FakeGenerator(result))

    def make_direct(result: Any) -> HandleUpstream:
        """The Ingress's upstream for forced requests: the Generator direct, the Router notes."""
        generator = _FakeGenerator(result)
        router = Router(cfg.model_dump(), generator)
        names = NamePolicy(cfg.served_base_name(), list(cfg.adapters))
        return HandleUpstream(_RouterHandle(router), generator, names, cfg.router_keeps_sessions)

    make.direct = make_direct  # type: ignore[attr-defined]

    def turns() -> list[tuple[str | None, str]]:
        with SessionStore(cfg.sessions_path) as store:
            return [(t.request_id, t.option) for t in store.turns(session_id(MESSAGES))]

    return make, turns


def _request() -> GenerationRequest:
    return GenerationRequest(MESSAGES, GenParams(max_new_tokens=4), "cogumi:code", 1)


def test_a_failed_generation_leaves_no_turn(make_router):
    make, turns = make_router
    asyncio.run(make(["an answer"]).complete(_request()))
    with pytest.raises(RuntimeError, match="replica died"):
        asyncio.run(make(RuntimeError("replica died")).complete(_request()))
    asyncio.run(make(["another"]).complete(_request()))  # the client's retry
    assert turns() == [("rid-0", "code"), ("rid-2", "code")]


def test_a_stream_keeps_its_turn_once_a_piece_is_out(make_router):
    make, turns = make_router

    async def drain(router: Router) -> list[Any]:
        return [item async for item in router.stream(_request())]

    with pytest.raises(RuntimeError):  # nothing reached the client: no turn
        asyncio.run(drain(make([RuntimeError("replica died")])))
    with pytest.raises(RuntimeError):  # part of the answer did: the turn stays
        asyncio.run(drain(make(["a piece", RuntimeError("replica died")])))
    assert turns() == [("rid-1", "code")]


def test_a_forced_request_answered_around_the_router_keeps_the_same_turns(make_router, monkeypatch):
    make, turns = make_router
    current = ["rid-0"]  # Serve gives the note and the forget of one request the same id
    monkeypatch.setattr(router_mod, "request_id", lambda: current[0])

    async def complete(upstream: HandleUpstream) -> Any:
        return await upstream.complete(_request())

    async def drain(upstream: HandleUpstream) -> list[Any]:
        return [item async for item in upstream.stream(_request())]

    routed = asyncio.run(complete(make.direct(["an answer"])))
    assert routed.decision.option == "code" and routed.results == ["an answer"]
    current[0] = "rid-1"
    with pytest.raises(RuntimeError, match="replica died"):
        asyncio.run(complete(make.direct(RuntimeError("replica died"))))
    current[0] = "rid-2"
    with pytest.raises(RuntimeError):  # nothing reached the client: no turn
        asyncio.run(drain(make.direct([RuntimeError("replica died")])))
    current[0] = "rid-3"
    with pytest.raises(RuntimeError):  # part of the answer did: the turn stays
        asyncio.run(drain(make.direct(["a piece", RuntimeError("replica died")])))
    assert turns() == [("rid-0", "code"), ("rid-3", "code")]


def test_forget_deletes_only_that_requests_turns(tmp_path):
    with SessionStore(str(tmp_path / "s.sqlite")) as store:
        store.record("s1", "code", None, False, "q1", request_id="a")
        store.record("s1", "math", None, False, "q2", request_id="b")
        store.record("s2", "base", None, False, "p", request_id="b")  # one request, two prompts
        assert store.forget("b") == 2
        assert store.forget("unknown") == 0
        assert [(t.turn, t.request_id) for t in store.turns("s1")] == [(1, "a")]
        assert store.turns("s2") == []
        assert store.record("s1", "code", None, False, "q2", request_id="c") == 2  # the retry
