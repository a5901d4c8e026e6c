"""The Anthropic and OpenAI clients through the official SDKs against a local HTTP server that
speaks both wire formats: retries, give-up, fatal errors, cache hits, cost, batch APIs, resume."""

from __future__ import annotations

import os
import socket

import pytest
from fake_llm_server import FakeLLMServer

from cogumi_ray.errors import JudgeError
from cogumi_ray.judge.cache import JudgeCache
from cogumi_ray.judge.clients import make_client
from cogumi_ray.judge.clients.base import ChatRequest
from cogumi_ray.judge.clients.limits import CircuitBreaker, TokenBucket, backoff_delay
from cogumi_ray.judge.config import JudgeConfig

KEY_ENV = "COGUMI_TEST_JUDGE_KEY"
os.environ.setdefault(KEY_ENV, "test-key")
PROVIDERS = ["anthropic", "openai"]
ROUTE = {"anthropic": "messages", "openai": "chat"}
BATCH_CREATE = {"anthropic": "anthropic_batch_create", "openai": "openai_batch_create"}


@pytest.fixture
def server():
    s = FakeLLMServer(timeout_sleep_s=3.0).start()
    yield s
    s.stop()


def make_cfg(server: FakeLLMServer, judge: str, **kw) -> JudgeConfig:
    base = server.url if judge == "anthropic" else f"{server.url}/v1"
    opts = dict(judge=judge, base_url=base, api_key_env=KEY_ENV, timeout_s=1.5, max_retries=3,
                backoff_base_s=0.01, backoff_max_s=0.05, batch_poll_s=0.01, max_in_flight=4)
    opts.update(kw)
    return JudgeConfig(**opts)


def req(text: str) -> ChatRequest:
    return ChatRequest("You compare two answers", (("user", f"## Task\nt\n\n## Answer A\n{text}\n\n"
                                                      "## Answer B\nb\n"),), max_tokens=64)


def list_cost(cfg: JudgeConfig, tin: int, tout: int) -> float:
    p = cfg.prices[cfg.model_name]
    return (tin * p.input_per_mtok + tout * p.output_per_mtok) / 1e6


@pytest.mark.parametrize("judge", PROVIDERS)
def test_transient_errors_are_retried_then_succeed(server, judge):
    cfg = make_cfg(server, judge)
    client = make_client(cfg)
    (res,) = client.complete_many([req("correct [[fault:429,500,timeout]]")])
    assert res.error is None and '"winner": "A"' in res.text
    assert server.counts[ROUTE[judge]] == 4  # three failures, then the answer
    assert res.input_tokens > 0 and res.output_tokens > 0
    assert res.cost_usd == pytest.approx(list_cost(cfg, res.input_tokens, res.output_tokens))


@pytest.mark.parametrize("judge", PROVIDERS)
def test_exhausted_retries_give_an_error_not_an_exception(server, judge):
    server.always_fail = 503
    client = make_client(make_cfg(server, judge, max_retries=2))
    res = client.complete_many([req("x"), req("y")])
    assert all(r.text is None and "gave up after 2 retries" in r.error and "503" in r.error
               for r in res)
    assert server.counts[ROUTE[judge]] == 6


@pytest.mark.parametrize("judge", PROVIDERS)
def test_unreachable_api_is_an_error_per_request(judge):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}" + ("" if judge == "anthropic" else "/v1")
    cfg = JudgeConfig(judge=judge, base_url=base, api_key_env=KEY_ENV, max_retries=1,
                      backoff_base_s=0.01, timeout_s=0.5)
    (res,) = make_client(cfg).complete_many([req("x")])
    assert res.text is None and "Connection" in res.error


@pytest.mark.parametrize("judge", PROVIDERS)
def test_rejected_key_stops_the_run_without_showing_it(server, judge, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "wrong-secret-value")
    client = make_client(make_cfg(server, judge))
    with pytest.raises(JudgeError) as err:
        client.complete_many([req("x")])
    assert "401" in str(err.value) and KEY_ENV in str(err.value)
    assert "wrong-secret-value" not in str(err.value)
    assert server.counts[ROUTE[judge]] == 1  # not retried


@pytest.mark.parametrize("judge", PROVIDERS)
def test_missing_key_variable_is_named(judge, monkeypatch):
    monkeypatch.delenv("COGUMI_NO_SUCH_KEY", raising=False)
    cfg = JudgeConfig(judge=judge, api_key_env="COGUMI_NO_SUCH_KEY")
    with pytest.raises(JudgeError, match="COGUMI_NO_SUCH_KEY"):
        make_client(cfg)


def test_unpriced_model_is_refused_before_any_call(server):
    with pytest.raises(JudgeError, match="no price for judge model 'claude-unknown'"):
        make_client(make_cfg(server, "anthropic", model="claude-unknown"))
    # a self-hosted endpoint without a price is free
    cfg = make_cfg(server, "openai_compatible", model="local-judge")
    (res,) = make_client(cfg).complete_many([req("x")])
    assert res.error is None and res.cost_usd == 0.0


@pytest.mark.parametrize("judge", PROVIDERS)
def test_cache_hit_on_rerun_sends_nothing(server, judge, tmp_path):
    cfg = make_cfg(server, judge)
    first = make_client(cfg, cache=JudgeCache(str(tmp_path))).complete_many([req("a"), req("b")])
    sent = server.counts[ROUTE[judge]]
    again = make_client(cfg, cache=JudgeCache(str(tmp_path))).complete_many([req("b"), req("a")])
    assert server.counts[ROUTE[judge]] == sent == 2
    assert [r.text for r in again] == [first[1].text, first[0].text]
    assert all(r.cached for r in again) and not any(r.cached for r in first)
    assert again[0].cost_usd == first[1].cost_usd  # what the reply cost when it was paid for
    # a different judge model is a different cache namespace
    other = make_cfg(server, judge, model="claude-haiku-4-5" if judge == "anthropic" else "gpt-4o")
    make_client(other, cache=JudgeCache(str(tmp_path))).complete_many([req("a")])
    assert server.counts[ROUTE[judge]] == 3


@pytest.mark.parametrize("judge", PROVIDERS)
def test_batch_api_results_errors_and_discount(server, judge, tmp_path):
    cfg = make_cfg(server, judge, batch=True)
    res = make_client(cfg, cache=JudgeCache(str(tmp_path))).complete_many(
        [req("correct"), req("plain"), req("[[batch-error]]"), req("correct")])
    assert server.counts[BATCH_CREATE[judge]] == 1 and server.counts[ROUTE[judge]] == 0
    assert server.counts["batch_poll"] >= 2  # it waited for the batch to end
    assert '"A"' in res[0].text and '"tie"' in res[1].text and res[3].text == res[0].text
    assert res[2].text is None and "injected" in res[2].error
    assert res[0].cost_usd == pytest.approx(
        0.5 * list_cost(cfg, res[0].input_tokens, res[0].output_tokens))


@pytest.mark.parametrize("judge", PROVIDERS)
def test_batch_interrupted_while_processing_is_collected_not_resubmitted(server, judge, tmp_path):
    cfg = make_cfg(server, judge, batch=True, batch_max_wait_s=0.05)
    server.hold_batches = True  # the run ends (or is killed) before the batch finishes
    first = make_client(cfg, cache=JudgeCache(str(tmp_path))).complete_many([req("a"), req("b")])
    assert all(r.text is None and "still running" in r.error for r in first)
    server.hold_batches = False
    cfg = make_cfg(server, judge, batch=True)  # this time, wait for the batches to end
    again = make_client(cfg, cache=JudgeCache(str(tmp_path))).complete_many(
        [req("a"), req("b"), req("c")])
    assert all(r.error is None for r in again)
    # a and b came from the first batch; only c needed a new one
    assert server.counts[BATCH_CREATE[judge]] == 2
    assert len(server.batches) == 2
    third = make_client(cfg, cache=JudgeCache(str(tmp_path))).complete_many([req("a"), req("c")])
    assert all(r.cached for r in third) and server.counts[BATCH_CREATE[judge]] == 2


@pytest.mark.parametrize("judge", PROVIDERS)
def test_remembered_batch_that_vanished_is_resubmitted(server, judge, tmp_path):
    cfg = make_cfg(server, judge, batch=True)
    client = make_client(cfg, cache=JudgeCache(str(tmp_path)))
    client.cache.add_pending("batch_from_another_account", [client.key(req("a"))])
    (res,) = client.complete_many([req("a")])
    assert res.error is None and server.counts[BATCH_CREATE[judge]] == 1
    assert JudgeCache(str(tmp_path)).pending([client.key(req("a"))]) == {}  # both batches closed


def test_circuit_breaker_stops_sending_to_a_down_api(server):
    server.always_fail = 500
    cfg = make_cfg(server, "openai", max_retries=1, circuit_breaker=3, max_in_flight=1)
    res = make_client(cfg).complete_many([req(str(i)) for i in range(10)])
    assert server.counts["chat"] == 3 * 2  # three requests tried twice each, then nothing
    assert all(r.text is None for r in res)
    assert sum("not sent" in r.error for r in res) == 7


def test_circuit_breaker_probes_after_cooldown_and_closes_on_success():
    now = [0.0]
    b = CircuitBreaker(threshold=2, cooldown_s=10, clock=lambda: now[0])
    b.record(ok=False)
    assert b.allow()
    b.record(ok=False)
    assert not b.allow()
    now[0] = 10.0
    assert b.allow() and not b.allow()  # exactly one probe per cool-down
    b.record(ok=True)
    assert b.allow() and b.failures == 0
    assert CircuitBreaker(threshold=0, cooldown_s=1).allow()


def test_backoff_grows_with_jitter_and_respects_retry_after():
    delays = [backoff_delay(a, 1.0, 60.0, None) for a in range(6)]
    for a, d in enumerate(delays):
        cap = min(60.0, 2.0**a)
        assert cap / 2 <= d <= cap
    assert backoff_delay(0, 1.0, 60.0, retry_after_s=7.0) >= 7.0
    assert backoff_delay(0, 1.0, 5.0, retry_after_s=600.0) <= 5.0


def test_token_bucket_allows_a_burst_then_paces_requests():
    now = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        bucket.acquire()
    assert waits == []  # the burst goes out at once
    for _ in range(4):
        bucket.acquire()
    assert sum(waits) == pytest.approx(2.0)  # then 2 per second: 4 more take 2 s


def test_structured_output_request_shapes(server):
    from cogumi_ray.judge.rubric import REFERENCE_SCHEMA

    r = ChatRequest("s", (("user", "u"),), 100, 0.0, schema=REFERENCE_SCHEMA)
    anth = make_client(make_cfg(server, "anthropic", structured_output="json_schema"))
    a = anth._params(r)
    assert a["output_config"]["format"]["type"] == "json_schema" and "temperature" not in a
    oai = make_client(make_cfg(server, "openai", structured_output="json_schema"))
    o = oai._params(r)
    assert o["response_format"]["json_schema"]["strict"] is True
    assert o["max_completion_tokens"] == 100 and o["messages"][0]["role"] == "system"
    local = make_client(make_cfg(server, "openai_compatible", model="m",
                                 structured_output="json_object"))
    c = local._params(r)
    assert c["response_format"]["type"] == "json_object" and c["max_tokens"] == 100
    assert c["response_format"]["schema"]["properties"]["rationale"]["maxLength"] == 50
    assert "response_format" not in make_client(make_cfg(server, "openai"))._params(r)
    # the SDKs send these shapes over the wire
    for client in (anth, oai):
        (res,) = client.complete_many([r])
        assert res.error is None


def test_qps_limit_comes_from_config_or_the_actor_share(server):
    cfg = make_cfg(server, "openai", qps=8)
    assert make_client(cfg).bucket.rate == 8
    assert make_client(cfg, qps=8 / 4).bucket.rate == 2  # one of 4 Ray actors
    assert make_client(make_cfg(server, "openai")).bucket is None


def _anthropic_sdk_major() -> int:
    import anthropic

    return int(anthropic.__version__.split(".")[0])


def _sent(server: FakeLLMServer, route: str) -> tuple[dict[str, str], dict]:
    headers, body = next((h, b) for r, h, b in reversed(server.seen) if r == route)
    return {k.lower(): v for k, v in headers.items()}, body


def test_anthropic_sends_temperature_where_the_api_version_takes_it(server):
    cfg = make_cfg(server, "anthropic", anthropic_version="2023-06-01", temperature=0.7)
    anth = make_client(cfg)
    (res,) = anth.complete_many([ChatRequest("s", (("user", "u"),), 100, 0.7)])
    assert res.error is None
    headers, body = _sent(server, "messages")
    assert headers["anthropic-version"] == "2023-06-01" and body["temperature"] == 0.7
    r0, r1 = (ChatRequest("s", (("user", "u"),), 100, t) for t in (0.0, 0.9))
    assert anth.key(r0) != anth.key(r1)  # sent, so keyed
    # the batch API gets it in each request's params too
    batch = make_client(make_cfg(server, "anthropic", anthropic_version="2023-06-01",
                                 temperature=0.7, batch=True))
    (res,) = batch.complete_many([ChatRequest("s", (("user", "v"),), 100, 0.7)])
    assert res.error is None
    headers, body = _sent(server, "anthropic_batch_create")
    assert headers["anthropic-version"] == "2023-06-01"
    assert body["requests"][0]["params"]["temperature"] == 0.7


@pytest.mark.skipif(_anthropic_sdk_major() < 2, reason="the SDK default takes temperature before 2.x")
def test_anthropic_sdk_2_default_version_gets_no_temperature(server):
    anth = make_client(make_cfg(server, "anthropic"))
    (res,) = anth.complete_many([ChatRequest("s", (("user", "u"),), 100, 0.0)])
    assert res.error is None
    headers, body = _sent(server, "messages")
    assert headers["anthropic-version"] == "2026-10-21" and "temperature" not in body
    r0, r1 = (ChatRequest("s", (("user", "u"),), 100, t) for t in (0.0, 0.9))
    assert anth.key(r0) == anth.key(r1)  # never sent, so never keyed


def test_anthropic_temperature_the_version_rejects_is_a_config_error(server):
    from cogumi_ray.errors import ConfigError

    with pytest.raises(ConfigError, match="rejects sampling parameters.*anthropic_version: 2023-06-01"):
        make_client(make_cfg(server, "anthropic", anthropic_version="2026-10-21", temperature=0.7))
    if _anthropic_sdk_major() >= 2:
        with pytest.raises(ConfigError, match="SDK 2[.0-9]+ default"):
            make_client(make_cfg(server, "anthropic", temperature=0.7))
    make_client(make_cfg(server, "anthropic", anthropic_version="2026-10-21", temperature=0.0))
    oai = make_client(make_cfg(server, "openai"))
    r0, r1 = (ChatRequest("s", (("user", "u"),), 100, t) for t in (0.0, 0.9))
    assert oai.key(r0) != oai.key(r1) and oai._params(r1)["temperature"] == 0.9


@pytest.mark.parametrize("sdk_version, override, expected", [
    ("0.60.0", None, "2023-06-01"), ("1.9.2", None, "2023-06-01"),  # pre-2.0 SDKs send 2023-06-01
    ("1.9.2", "2026-10-21", "2026-10-21"), ("2.17.0", "2023-06-01", "2023-06-01"),
])
def test_anthropic_api_version_in_effect(sdk_version, override, expected):
    from types import SimpleNamespace

    from cogumi_ray.judge.clients.anthropic_client import api_version

    assert api_version(SimpleNamespace(__version__=sdk_version, __name__="anthropic"),
                       override) == expected
