"""Serving rules without Ray or a model: config, rate limits, keys, routing policy, streaming text."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from cogumi_ray.errors import ConfigError
from cogumi_ray.serve.config import LimitsConfig, RateLimitConfig, ServeConfig, serve_config_from_args
from cogumi_ray.serve.errors import ServeError
from cogumi_ray.serve.limits import (
    Authenticator,
    RateLimiter,
    TokenBucket,
    check_body_size,
    check_n,
    check_prompt_chars,
    resolve_max_tokens,
)
from cogumi_ray.serve.policy import NamePolicy, make_policy
from cogumi_ray.serve.protocol import BASE, Decision, RoutingPolicy
from cogumi_ray.serve.text_stream import DeltaText
from cogumi_ray.serve.threads import iterate_in_thread


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_refills_at_its_rate():
    b = TokenBucket(rate=2.0, capacity=3, now=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) == pytest.approx(0.5)  # one token every 0.5 s
    assert b.take(0.5) == 0.0
    assert b.take(10.0) == 0.0 and b.tokens == pytest.approx(2.0)  # capped at capacity - 1


def test_rate_limiter_is_per_key_with_retry_after():
    clock = Clock()
    rl = RateLimiter(RateLimitConfig(requests_per_minute=30, burst=2, max_keys=2), clock)
    rl.check("a")
    rl.check("a")
    with pytest.raises(ServeError) as e:
        rl.check("a")
    assert e.value.status == 429 and e.value.code == "rate_limit_exceeded"
    assert e.value.headers["retry-after"] == "2"  # 30/min = one every 2 s
    rl.check("b")  # other keys have their own bucket
    clock.t += 2.0
    rl.check("a")
    rl.check("c")  # evicts the least recently used bucket ("b"), memory stays bounded
    assert len(rl._buckets) == 2
    RateLimiter(RateLimitConfig(), clock).check("x")  # no rate configured: never limited


def test_authenticator():
    auth = Authenticator.from_keys(frozenset({"sk-1", "sk-2"}))
    assert auth.enabled and auth.check("Bearer sk-2") and auth.check("bearer  sk-1 ")
    assert "sk-1" not in str(auth.digests)  # only digests are held
    for header, code in [(None, "missing_api_key"), ("Basic sk-1", "missing_api_key"),
                         ("Bearer ", "missing_api_key"), ("Bearer sk-3", "invalid_api_key")]:
        with pytest.raises(ServeError) as e:
            auth.check(header)
        assert (e.value.status, e.value.type, e.value.code) == (401, "authentication_error", code)
    assert Authenticator(frozenset()).check(None) is None


def test_request_limits():
    lim = LimitsConfig(max_body_bytes=2048, max_prompt_chars=10, max_tokens=64, default_max_tokens=8,
                       max_n=2)
    assert resolve_max_tokens(None, lim) == 8 and resolve_max_tokens(64, lim) == 64
    cases = [(lambda: resolve_max_tokens(65, lim), 400, "max_tokens"),
             (lambda: check_n(3, lim), 400, "n"),
             (lambda: check_prompt_chars(11, lim, "messages"), 400, "messages"),
             (lambda: check_body_size(2049, lim), 413, None)]
    for call, status, param in cases:
        with pytest.raises(ServeError) as e:
            call()
        assert e.value.status == status and e.value.param == param
    check_body_size(2048, lim)
    check_prompt_chars(10, lim, "prompt")
    with pytest.raises(ValueError, match="default_max_tokens"):
        LimitsConfig(max_tokens=4, default_max_tokens=8)


def test_error_body_and_pickling():
    import pickle

    e = ServeError(429, "slow down", type="rate_limit_error", code="rate_limit_exceeded",
                   headers={"retry-after": "3"})
    assert e.body() == {"error": {"message": "slow down", "type": "rate_limit_error", "param": None,
                                  "code": "rate_limit_exceeded"}}
    back = pickle.loads(pickle.dumps(e))  # crosses Ray replicas this way
    assert (back.status, back.body(), back.headers) == (429, e.body(), {"retry-after": "3"})


def test_name_policy():
    p = NamePolicy("tiny", ["math", "code"])
    assert isinstance(p, RoutingPolicy)
    assert p.models() == ["tiny", "cogumi", "cogumi:code", "cogumi:math"]
    msgs = [{"role": "user", "content": "hi"}]
    assert p.decide(msgs, "cogumi") == Decision(BASE, None, "tiny")
    assert p.decide(msgs, "tiny") == Decision(BASE, None, "tiny")
    assert p.decide(msgs, "cogumi:code") == Decision("code", None, "cogumi:code")
    assert p.decide(msgs, "math") == Decision("math", None, "cogumi:math")
    for unknown in ("gpt-4o", "cogumi:nope", "cogumi:", "base"):
        with pytest.raises(ServeError) as e:
            p.decide(msgs, unknown)
        assert (e.value.status, e.value.code, e.value.param) == (404, "model_not_found", "model")
        assert "cogumi:math" in e.value.message  # lists what exists


def test_config(tmp_path, monkeypatch):
    cfg = ServeConfig(base="/m/tiny-f16.gguf", adapters={"code": "/m/code.gguf"})
    assert cfg.served_base_name() == "tiny-f16"
    assert make_policy(cfg).models() == ["tiny-f16", "cogumi", "cogumi:code"]
    assert ServeConfig(base="/m/folder/").served_base_name() == "folder"
    monkeypatch.setenv("MY_KEYS", "k1, k2,")
    assert ServeConfig(api_keys=["k0"], api_key_env="MY_KEYS").resolved_api_keys() == {"k0", "k1", "k2"}
    for bad in ({"adapters": {"Base": "x"}}, {"adapters": {"cogumi": "x"}}, {"bse": 1},
                {"base_name": "code", "adapters": {"code": "x"}}):
        with pytest.raises(ValueError):
            ServeConfig.model_validate(bad)
    opts = ServeConfig().generator.options()
    assert opts["num_replicas"] == 1 and opts["ray_actor_options"]["num_cpus"] == 1.0
    assert opts["graceful_shutdown_timeout_s"] == 60.0  # in-flight requests drain on shutdown
    scaled = ServeConfig.model_validate({"generator": {"autoscaling": {"max_replicas": 4}}})
    assert "num_replicas" not in scaled.generator.options()
    assert scaled.generator.options()["autoscaling_config"]["max_replicas"] == 4


def test_config_from_serve_run_args(tmp_path):
    yaml_file = tmp_path / "pipeline.yaml"
    yaml_file.write_text("run: {name: x}\nserve:\n  base: /m/a.gguf\n  port: 9000\n")
    cfg = serve_config_from_args({"config": str(yaml_file), "port": "9001",
                                  "adapters.code": "/m/code.gguf", "rate_limit.burst": "3"})
    assert (cfg.base, cfg.port, cfg.adapters, cfg.rate_limit.burst) == (
        "/m/a.gguf", 9001, {"code": "/m/code.gguf"}, 3)
    with pytest.raises(ConfigError, match="prot: unknown key"):
        serve_config_from_args({"prot": "1"})
    with pytest.raises(ConfigError, match="does not exist"):
        serve_config_from_args({"config": str(tmp_path / "none.yaml")})


def test_build_app_checks_paths_before_deploying(tmp_path):
    from cogumi_ray.serve.app import build_app

    with pytest.raises(ConfigError, match="serve.base is not set"):
        build_app({})
    with pytest.raises(ConfigError, match=r"serve.adapters.code = .* is not a .gguf file"):
        gguf = tmp_path / "m.gguf"
        gguf.write_bytes(b"")
        build_app({"base": str(gguf), "adapters.code": str(tmp_path / "missing.gguf")})


def test_delta_text_holds_back_stop_prefixes_and_partial_characters():
    d = DeltaText(["</s>", "STOP"])
    out = [d.update(t) for t in ["Hel", "Hello <", "Hello </", "Hello </x", "Hello </x caf\ufffd",
                                 "Hello </x café", "Hello </x café ST", "Hello </x café STOP!"]]
    assert out == ["Hel", "lo ", "", "</x", " caf", "é", " ", ""]
    assert d.stopped and d.sent == "Hello </x café "
    assert d.finish("Hello </x café ") == ""
    plain = DeltaText([])
    assert plain.update("ab") == "ab" and plain.finish("abc") == "c"


def test_iterate_in_thread_closes_an_abandoned_iterator():
    closed = []

    def numbers():
        try:
            yield from range(1000)
        finally:
            closed.append(True)

    def failing():
        yield 1
        raise ServeError(400, "bad")

    async def main():
        got = []
        async with aclosing(iterate_in_thread(numbers)) as items:
            async for x in items:
                got.append(x)
                if x == 2:
                    break
        assert closed == [True]  # closed in its thread as soon as the consumer left
        seen = []
        with pytest.raises(ServeError):
            async for x in iterate_in_thread(failing):
                seen.append(x)
        return got, seen

    got, seen = asyncio.run(main())
    assert got == [0, 1, 2] and closed == [True] and seen == [1]


def test_learned_policy_needs_the_router_stage_output():
    from cogumi_ray.errors import ConfigError
    from cogumi_ray.serve.config import ServeConfig
    from cogumi_ray.serve.policy import make_policy

    with pytest.raises(ConfigError, match="router_path"):
        make_policy(ServeConfig(base="m.gguf", policy="learned"))


@pytest.mark.parametrize("update,keeps", [
    ({}, False),  # names policy: the Router only looks names up
    ({"policy": "learned", "router_path": "/r"}, False),  # no store
    ({"policy": "learned", "router_path": "/r", "sessions_path": "/s.db"}, True),
    ({"sessions_path": "/s.db"}, False),  # the names policy keeps no sessions
])
def test_the_router_keeps_sessions_only_with_a_learned_policy_and_a_store(update, keeps):
    """What decides whether a forced request skipping the Router has it note its turn."""
    assert ServeConfig(base="/m/b.gguf", **update).router_keeps_sessions is keeps
