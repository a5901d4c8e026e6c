"""The Serve graph under load and faults, called with the official `openai` SDK: 100 requests at
once, a Generator replica SIGKILLed mid-load (Serve replaces it; clients see answers or clean
5xx that the SDK retries, never a hang), and a client that hangs up mid-stream (its generation
stops: the model server's cancelled-generation counter says so)."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import pytest
from test_serve_app import KEY, MAX_TOKENS, QUESTION, _config, _free_port
from testkit import generator_stats, running_app

from cogumi_ray.generate.config import GenParams, LlamaCppEngineConfig
from cogumi_ray.serve.config import DeploymentConfig, LimitsConfig, RateLimitConfig, ServeConfig

openai = pytest.importorskip("openai")
pytest.importorskip("llama_cpp")

MODELS = {"base": "cogumi", "code": "cogumi:code", "math": "cogumi:math"}
OPTIONS = list(MODELS)
GENERATOR_CLASS = "ServeReplica:{app}:Generator"  # Serve's actor class name for a replica
# The untrained tiny model, greedy, on a raw prompt repeats one token and never emits EOS: a
# generation of LONG_TOKENS lasts seconds, long enough to hang up in the middle of.
LONG_TOKENS = 1000


@pytest.fixture(scope="module")
def cfg(serve_gguf, lora_ggufs) -> ServeConfig:
    base = _config(serve_gguf, lora_ggufs, _free_port())
    # No rate limit (100 requests from one key at once), and a server deadline (504) well before
    # the client's timeout, so a stuck request still gets an answer.
    return base.model_copy(update={"rate_limit": RateLimitConfig(), "request_timeout_s": 60.0})


@pytest.fixture(scope="module")
def base_url(ray_session, cfg):
    with running_app(cfg) as url:
        yield url


@pytest.fixture(scope="module")
def expected(cfg) -> dict[str, str]:
    """Greedy answer per option of the same GGUF + adapters, computed here without Serve."""
    from cogumi_ray.serve.backends.llama_cpp import LlamaCppGenerator

    gen = LlamaCppGenerator(cfg)
    msgs = [{"role": "user", "content": QUESTION}]
    try:
        return {opt: gen.generate(msgs, GenParams(max_new_tokens=MAX_TOKENS),
                                  None if opt == "base" else opt).text for opt in OPTIONS}
    finally:
        gen.close()


def _chat(client: Any, option: str) -> str:
    resp = client.chat.completions.create(
        model=MODELS[option], messages=[{"role": "user", "content": QUESTION}],
        max_tokens=MAX_TOKENS, temperature=0)
    assert resp.cogumi["option"] == option
    return resp.choices[0].message.content


def _generator_replicas(app: str) -> dict[str, int]:
    """Actor id -> pid of the app's live Generator replicas, from the GCS actor table."""
    import ray._private.state

    name = GENERATOR_CLASS.format(app=app)
    return {aid: int(a["Pid"]) for aid, a in ray._private.state.actors().items()
            if a.get("ActorClassName") == name and a.get("State") == "ALIVE"}


@pytest.mark.slow  # the three together: ~2 min on the shared 2-core box
def test_100_concurrent_chats(base_url, expected):
    """100 requests at once over three options (one adapter slot, so adapters swap under load):
    all succeed, each with the answer its option gives alone."""
    client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=120)

    def one(i: int) -> tuple[str, str]:
        opt = OPTIONS[i % 3]
        return opt, _chat(client, opt)

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(one, range(100)))
    assert len(results) == 100
    for opt, text in results:
        assert text == expected[opt], opt
    assert time.monotonic() - t0 < 120


@pytest.fixture(scope="module")
def long_app(base_url, cfg, tiny_model_dir, tmp_path_factory):
    """A second app on the same proxy (`/long`): the untrained tiny model, which talks forever."""
    from ray import serve

    from cogumi_ray.export.gguf_export import export_gguf
    from cogumi_ray.serve.app import build_app

    gguf = export_gguf(tiny_model_dir, str(tmp_path_factory.mktemp("long") / "untrained.gguf"),
                       outtype="f32").path
    long_cfg = ServeConfig(
        base=gguf, app_name="cogumi-long", route_prefix="/long", port=cfg.port, api_keys=[KEY],
        limits=LimitsConfig(max_tokens=LONG_TOKENS, default_max_tokens=16),
        llama_cpp=LlamaCppEngineConfig(n_ctx=1024, n_threads=1),
        generator=DeploymentConfig(num_cpus=0.5))  # beside the main app on 2 CPUs
    serve.run(build_app(long_cfg), name=long_cfg.app_name, route_prefix=long_cfg.route_prefix)
    try:
        yield long_cfg, base_url.removesuffix("/v1") + "/long/v1"
    finally:
        serve.delete(long_cfg.app_name)


@pytest.mark.slow
def test_client_disconnect_stops_generation(long_app):
    long_cfg, url = long_app
    client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=120)
    request = {"model": "cogumi", "prompt": "def add", "max_tokens": LONG_TOKENS, "temperature": 0}
    full = client.completions.create(**request)  # what an uninterrupted stream decodes
    assert full.choices[0].finish_reason == "length"
    assert full.usage.completion_tokens == LONG_TOKENS
    before = generator_stats(long_cfg.app_name)["cancelled_generations"]

    stream = client.completions.create(**request, stream=True)
    for i, _ in enumerate(stream):
        if i == 2:  # three chunks read
            break
    stream.close()  # hang up: the HTTP connection closes mid-stream

    deadline = time.monotonic() + 20
    stats = generator_stats(long_cfg.app_name)
    while stats["cancelled_generations"] == before and time.monotonic() < deadline:
        time.sleep(0.1)
        stats = generator_stats(long_cfg.app_name)
    assert stats["cancelled_generations"] == before + 1, stats
    sent = stats["cancelled_after_pieces"][-1]
    assert 3 <= sent < LONG_TOKENS // 2, stats  # stopped near where the client left, not at 1000
    # The replica's one llama context is free again: a request right after is answered.
    again = client.completions.create(**{**request, "max_tokens": 4})
    assert again.usage.completion_tokens == 4


@pytest.mark.slow
def test_generator_replica_killed_mid_load(base_url, cfg, expected):
    """SIGKILL the only Generator replica under load: Serve starts a new one; in-flight requests
    complete or get a clean 5xx (JSON error body) that the SDK retries; none hangs; later
    requests succeed with the right answers."""
    import httpx

    statuses: list[tuple[int, bool]] = []  # every HTTP response: (status, body has "error")

    def record(response: httpx.Response) -> None:
        if response.status_code >= 500:
            response.read()
            try:
                clean = "error" in response.json()
            except ValueError:
                clean = False
            statuses.append((response.status_code, clean))
        else:
            statuses.append((response.status_code, False))

    http = httpx.Client(event_hooks={"response": [record]}, timeout=90)
    client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=3, http_client=http)
    replicas = _generator_replicas(cfg.app_name)
    assert len(replicas) == 1, replicas
    (old_id, old_pid), = replicas.items()

    def one(i: int) -> tuple[str, str | BaseException]:
        opt = OPTIONS[i % 3]
        try:
            return opt, _chat(client, opt)
        except Exception as e:  # judged below: only a 5xx after retries is acceptable
            return opt, e

    total = 96
    with ThreadPoolExecutor(max_workers=48) as pool:
        futures = [pool.submit(one, i) for i in range(total)]
        while sum(f.done() for f in futures) < 8:  # under load: answers are coming back
            time.sleep(0.01)
        os.kill(old_pid, signal.SIGKILL)
        answered_before_kill = sum(f.done() for f in futures)
        done, not_done = wait(futures, timeout=240)
    assert answered_before_kill < total  # the kill hit requests in flight or queued
    assert not not_done, f"{len(not_done)} requests hung"
    outcomes = [f.result() for f in done]
    for opt, out in outcomes:
        if isinstance(out, BaseException):
            assert isinstance(out, openai.APIStatusError) and out.status_code >= 500, repr(out)
        else:
            assert out == expected[opt], opt
    # A request caught by the kill is a 503 (retryable, Retry-After), a slow one a 504.
    assert all(clean and status in (503, 504) for status, clean in statuses if status >= 500), statuses

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = _generator_replicas(cfg.app_name)
        if now and old_id not in now:
            break
        time.sleep(0.5)
    assert now and old_id not in now and old_pid not in now.values(), now
    # After recovery every option answers, correctly, without retries.
    fresh = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=60)
    for opt in OPTIONS * 2:
        assert _chat(fresh, opt) == expected[opt]
    failed = sum(isinstance(out, BaseException) for _, out in outcomes)
    print(f"killed pid {old_pid} after {answered_before_kill}/{total} answers: "
          f"{len(outcomes) - failed} answered, {failed} 5xx after retries, "
          f"5xx responses seen: {[s for s, _ in statuses if s >= 500]}")


def test_unwrap_maps_a_dead_replica_to_503():
    from ray.exceptions import ActorDiedError

    from cogumi_ray.serve.errors import ServeError
    from cogumi_ray.serve.ingress import unwrap

    err = unwrap(ActorDiedError())
    assert isinstance(err, ServeError) and err.status == 503 and err.code == "unavailable"
    assert err.headers == {"retry-after": "1"}
    other = RuntimeError("a bug")
    assert unwrap(other) is other  # anything else stays itself (the ingress makes it a 500)


@pytest.mark.slow
def test_deleting_the_app_drains_requests_in_flight(base_url, cfg, long_app):
    """`serve.delete` (as `serve shutdown` or a redeploy) while a long generation runs: the
    replicas stop taking requests but finish the one in flight (graceful_shutdown_timeout_s)."""
    from ray import serve

    from cogumi_ray.serve.app import build_app

    long_cfg, _ = long_app
    # a third app beside the other two on 2 CPUs: it reserves none (llama.cpp on one thread)
    free = DeploymentConfig(num_cpus=0)
    drain_cfg = long_cfg.model_copy(update={"app_name": "cogumi-drain", "route_prefix": "/drain",
                                            "generator": free, "router": free, "ingress": free})
    serve.run(build_app(drain_cfg), name=drain_cfg.app_name, route_prefix=drain_cfg.route_prefix)
    url = base_url.removesuffix("/v1") + "/drain/v1"
    client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=120)
    request = {"model": "cogumi", "prompt": "def add", "max_tokens": LONG_TOKENS, "temperature": 0}
    with ThreadPoolExecutor(max_workers=1) as pool:
        answer = pool.submit(client.completions.create, **request)
        deadline = time.monotonic() + 30
        while not generator_stats(drain_cfg.app_name).get("in_flight") and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        serve.delete(drain_cfg.app_name)  # returns once every replica has stopped
        deleted_after = time.monotonic() - t0
        done = answer.result(timeout=120)
    assert done.choices[0].finish_reason == "length"
    assert done.usage.completion_tokens == LONG_TOKENS
    assert answer.done() and deleted_after > 0
