"""The Serve graph under load and faults, called with the official `openai` SDK: 100 requests at
once, a Generator replica SIGKILLed mid-load (Serve replaces it; clients see answers or clean
5xx that the SDK retries, never a hang; with session memory, the store then holds exactly the
answered turns), and a client that hangs up mid-stream (its generation stops: the model
server's cancelled-generation counter says so)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

import pytest
from test_serve_app import KEY, MAX_TOKENS, QUESTION, _config, _free_port
from testkit import replica_stats, running_app

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
T = TypeVar("T")


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
    before = replica_stats(long_cfg.app_name)["cancelled_generations"]

    stream = client.completions.create(**request, stream=True)
    for i, _ in enumerate(stream):
        if i == 2:  # three chunks read
            break
    stream.close()  # hang up: the HTTP connection closes mid-stream

    deadline = time.monotonic() + 20
    stats = replica_stats(long_cfg.app_name)
    while stats["cancelled_generations"] == before and time.monotonic() < deadline:
        time.sleep(0.1)
        stats = replica_stats(long_cfg.app_name)
    assert stats["cancelled_generations"] == before + 1, stats
    sent = stats["cancelled_after_pieces"][-1]
    assert 3 <= sent < LONG_TOKENS // 2, stats  # stopped near where the client left, not at 1000
    # The replica's one llama context is free again: a request right after is answered.
    again = client.completions.create(**{**request, "max_tokens": 4})
    assert again.usage.completion_tokens == 4


def _recording_client(base_url: str, statuses: list[tuple[int, bool, str]]) -> Any:
    """An SDK client (3 retries) that appends (status, JSON error body, x-request-id) of every
    HTTP response, retried attempts included, to `statuses`."""
    import httpx

    def record(response: httpx.Response) -> None:
        clean = False
        if response.status_code >= 500:
            response.read()
            with contextlib.suppress(ValueError):
                clean = "error" in response.json()
        statuses.append((response.status_code, clean, response.headers.get("x-request-id", "")))

    http = httpx.Client(event_hooks={"response": [record]}, timeout=90)
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=3, http_client=http)


def _kill_generator_under_load(app: str, one: Callable[[int], T], total: int) -> list[T]:
    """one(0..total-1) on 48 threads (requests sent before and during the kill); once 8 have
    returned, SIGKILL the app's only Generator replica, then wait until Serve has replaced it.
    Returns the results in submission order."""
    replicas = _generator_replicas(app)
    assert len(replicas) == 1, replicas
    (old_id, old_pid), = replicas.items()
    with ThreadPoolExecutor(max_workers=48) as pool:
        futures = [pool.submit(one, i) for i in range(total)]
        while sum(f.done() for f in futures) < 8:  # under load: answers are coming back
            time.sleep(0.01)
        os.kill(old_pid, signal.SIGKILL)
        answered_before_kill = sum(f.done() for f in futures)
        _, not_done = wait(futures, timeout=240)
    assert answered_before_kill < total  # the kill hit requests in flight or queued
    assert not not_done, f"{len(not_done)} requests hung"

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = _generator_replicas(app)
        if now and old_id not in now:
            break
        time.sleep(0.5)
    assert now and old_id not in now and old_pid not in now.values(), now
    print(f"killed {app}'s Generator (pid {old_pid}) after {answered_before_kill}/{total} answers")
    return [f.result() for f in futures]


def _judge(outcomes: list[tuple[str, Any]], statuses: list[tuple[int, bool, str]]) -> None:
    """Every request answered or failed with a 5xx after the SDK's retries, and every 5xx seen
    was a clean one (a request caught by the kill: 503, retryable; a slow one: 504)."""
    for _, out in outcomes:
        if isinstance(out, BaseException):
            assert isinstance(out, openai.APIStatusError) and out.status_code >= 500, repr(out)
    bad = [(status, clean) for status, clean, _ in statuses if status >= 500]
    assert all(clean and status in (503, 504) for status, clean in bad), bad
    failed = sum(isinstance(out, BaseException) for _, out in outcomes)
    print(f"{len(outcomes) - failed} answered, {failed} 5xx after retries, "
          f"5xx responses seen: {[s for s, _ in bad]}")


@pytest.mark.slow
def test_generator_replica_killed_mid_load(base_url, cfg, expected):
    """SIGKILL the only Generator replica under load: Serve starts a new one; in-flight requests
    complete or get a clean 5xx (JSON error body) that the SDK retries; none hangs; later
    requests succeed with the right answers."""
    statuses: list[tuple[int, bool, str]] = []
    client = _recording_client(base_url, statuses)

    def one(i: int) -> tuple[str, str | BaseException]:
        opt = OPTIONS[i % 3]
        try:
            return opt, _chat(client, opt)
        except Exception as e:  # judged below: only a 5xx after retries is acceptable
            return opt, e

    outcomes = _kill_generator_under_load(cfg.app_name, one, total=96)
    _judge(outcomes, statuses)
    for opt, out in outcomes:
        if not isinstance(out, BaseException):
            assert out == expected[opt], opt
    # After recovery every option answers, correctly, without retries.
    fresh = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=60)
    for opt in OPTIONS * 2:
        assert _chat(fresh, opt) == expected[opt]


@pytest.fixture
def memory_app(base_url, cfg, tmp_path):
    """A third app on the same proxy (`/memory`): the learned policy with a session store (the
    router records every routed turn in SQLite); clients force options by name, so the router
    never embeds. It reserves no CPUs, beside the other apps on 2."""
    from ray import serve
    from test_serve_memory import _router_dir

    from cogumi_ray.route.config import MemoryConfig
    from cogumi_ray.serve.app import build_app

    free = DeploymentConfig(num_cpus=0, max_ongoing_requests=64)
    mem_cfg = ServeConfig.model_validate({
        **cfg.model_dump(), "app_name": "cogumi-memory", "route_prefix": "/memory",
        "policy": "learned", "router_path": _router_dir(str(tmp_path / "router")),
        "sessions_path": str(tmp_path / "sessions.sqlite"),
        "session_memory": MemoryConfig(max_turns=1000).model_dump(),  # keep every turn
        "request_timeout_s": 120.0, "generator": free.model_dump(), "router": free.model_dump(),
        "ingress": free.model_dump()})
    serve.run(build_app(mem_cfg), name=mem_cfg.app_name, route_prefix=mem_cfg.route_prefix)
    try:
        yield mem_cfg, base_url.removesuffix("/v1") + "/memory/v1"
    finally:
        serve.delete(mem_cfg.app_name)


def _turn_rows(path: str) -> dict[str, list[tuple[str | None, str, str]]]:
    """Session id -> its rows (request id, option, query) in the SQLite store, read directly."""
    import sqlite3

    rows: dict[str, list[tuple[str | None, str, str]]] = {}
    with contextlib.closing(sqlite3.connect(path)) as db:
        for sid, rid, option, query in db.execute(
                "SELECT session_id, request_id, option, query FROM turns ORDER BY id"):
            rows.setdefault(sid, []).append((rid, option, query))
    return rows


@pytest.mark.slow
def test_replica_kill_loses_no_session_turns(memory_app):
    """Requests of 8 conversations, sent before and during a Generator SIGKILL: each answered
    request has its turn in the session store (rows per session = its answered requests), and an
    attempt that failed with a clean 5xx left no half-written row."""
    from cogumi_ray.route.policy import session_id

    mem_cfg, url = memory_app
    statuses: list[tuple[int, bool, str]] = []
    client = _recording_client(url, statuses)
    base_name = mem_cfg.served_base_name()
    sessions, turns = 8, 6

    def messages(i: int) -> list[dict[str, str]]:
        s, k = i % sessions, i // sessions  # session s's turn k: its opening, then a question
        return [{"role": "user", "content": f"Conversation {s}: let's do sums."},
                {"role": "assistant", "content": "Sure."},
                {"role": "user", "content": f"What is {s} + {k}?"}]

    def one(i: int) -> tuple[str, Any]:
        opt = OPTIONS[i % 3]
        try:
            r = client.chat.completions.create(
                model=base_name if opt == "base" else MODELS[opt], messages=messages(i),
                max_tokens=MAX_TOKENS, temperature=0)
            assert r.cogumi["option"] == opt
            return opt, r.id.removeprefix("chatcmpl-")
        except openai.APIStatusError as e:  # judged below: only a 5xx after retries is acceptable
            return opt, e

    outcomes = _kill_generator_under_load(mem_cfg.app_name, one, total=sessions * turns)
    _judge(outcomes, statuses)

    rows = _turn_rows(mem_cfg.sessions_path)
    answered = {i: rid for i, (_, rid) in enumerate(outcomes) if isinstance(rid, str)}
    for s in range(sessions):
        sid = session_id(messages(s))
        mine = {i: rid for i, rid in answered.items() if i % sessions == s}
        kept = {rid: (option, query) for rid, option, query in rows.get(sid, [])}
        # Every answered request has its row, with its option and question, and nothing else.
        assert kept == {rid: (outcomes[i][0], messages(i)[-1]["content"])
                        for i, rid in mine.items()}, (s, rows.get(sid))
    failed_rids = {rid for status, _, rid in statuses if status >= 500}
    assert failed_rids, "the kill failed no attempt: nothing could leave a half-written row"
    assert failed_rids.isdisjoint(rid for r in rows.values() for rid, _, _ in r), failed_rids
    assert sum(len(r) for r in rows.values()) == len(answered)  # no other session appeared


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
        while not replica_stats(drain_cfg.app_name).get("in_flight") and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        serve.delete(drain_cfg.app_name)  # returns once every replica has stopped
        deleted_after = time.monotonic() - t0
        done = answer.result(timeout=120)
    assert done.choices[0].finish_reason == "length"
    assert done.usage.completion_tokens == LONG_TOKENS
    assert answer.done() and deleted_after > 0
