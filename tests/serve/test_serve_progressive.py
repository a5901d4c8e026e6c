"""The Router runs a progressive learned policy: a routed turn starts with the base, the Generator
probes the base's calibrated confidence after each step, and a switch hands the answer to the
modifier (no Ray: a fake Generator handle; the router reads a fixed embedding, not MiniLM)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from cogumi_ray.generate.config import GenParams
from cogumi_ray.route.config import PolicyConfig
from cogumi_ray.route.memory import SessionStore
from cogumi_ray.route.policy import session_id
from cogumi_ray.serve.config import ServeConfig
from cogumi_ray.serve.protocol import BASE, Decision, GenerationRequest, GenResult, Piece
from cogumi_ray.serve.router import Router

PROGRESSIVE = PolicyConfig(kind="progressive", steps=[3, 4, 5], thresholds=[0.8, 0.7, 0.6])
MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Solve for x: 3x + 4 = 0"}]
LOW = 0.3  # the made-up truth: the base fails (math answers) below this confidence


def _router_dir(path: str, policy: PolicyConfig, base_confidence: str = "on") -> str:
    """A saved router over base/math reading one extra, the base's confidence (last column, as the
    router stage appends it): math below LOW, else the base; the embedding carries no signal."""
    from cogumi_ray.route.bundle import RouterBundle
    from cogumi_ray.route.config import FeatureConfig, RouterConfig
    from cogumi_ray.route.features import Featurizer
    from cogumi_ray.route.models import make_router

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(400, 384)).astype(np.float32)
    conf = rng.uniform(0, 1, size=(400, 1))
    y = (conf[:, 0] < LOW).astype(np.int64)
    feat = Featurizer.fit(emb, conf, ["base", "math"], 4, session=False)
    x = feat.transform(emb, conf)
    router = make_router("logreg", ["base", "math"], RouterConfig())
    router.fit(x[:300], y[:300], x[300:350], y[300:350])
    router.calibrate(x[350:], y[350:])
    RouterBundle(router, feat, FeatureConfig(base_confidence=base_confidence), policy,
                 [1.0, 2.0]).save(path)
    return path


class _Remote:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def remote(self, *args: Any) -> _Call:
        return _Call(self.fn, args)


class _Call:
    """An awaitable (generate, probe) or async-iterable (stream) call, run when consumed."""

    def __init__(self, fn: Any, args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args

    def __await__(self):
        async def run() -> Any:
            return self.fn(*self.args)

        return run().__await__()

    def __aiter__(self):
        async def pieces():
            for item in self.fn(*self.args):
                yield item

        return pieces()


class _FakeGenerator:
    """A DeploymentHandle of the ModelServer: answers name the option that generated them; the
    probe returns `confidences` (or raises them) and is logged in `probes`."""

    def __init__(self, confidences: Any, model_id: str | None = None,
                 probes: list[tuple[Any, list[int]]] | None = None) -> None:
        self.confidences, self.model_id = confidences, model_id
        self.probes = [] if probes is None else probes

    def options(self, multiplexed_model_id: str | None = None, **_: Any) -> _FakeGenerator:
        return _FakeGenerator(self.confidences, multiplexed_model_id, self.probes)

    def _answer(self) -> GenResult:
        return GenResult(f"answer by {self.model_id or BASE}", "stop", 1, 1)

    @property
    def generate(self) -> _Remote:
        return _Remote(lambda request: [self._answer()])

    @property
    def stream(self) -> _Remote:
        return _Remote(lambda request: [Piece(0, done=self._answer())])

    @property
    def base_confidence(self) -> _Remote:
        def probe(prompt: Any, ks: list[int]) -> Any:
            assert self.model_id is None  # the base, on any replica
            self.probes.append((prompt, ks))
            if isinstance(self.confidences, BaseException):
                raise self.confidences
            return self.confidences

        return _Remote(probe)


@pytest.fixture
def make_router(tmp_path):
    def make(confidences: Any, policy: PolicyConfig = PROGRESSIVE, calibrator: bool = True,
             base_confidence: str = "on") -> tuple[Router, _FakeGenerator]:
        path = _router_dir(str(tmp_path / f"router-{policy.kind}-{base_confidence}"), policy,
                           base_confidence)
        cfg = ServeConfig(base="tiny.gguf", adapters={"math": "m.gguf"}, policy="learned",
                          router_path=path, sessions_path=str(tmp_path / "sessions.sqlite"),
                          calibrator_path=str(tmp_path / "calibrator.json") if calibrator else None)
        gen = _FakeGenerator(confidences)
        router = Router(cfg.model_dump(), gen)
        fixed = np.random.default_rng(1).normal(size=(1, 384)).astype(np.float32)
        router.policy._embed = lambda texts: fixed  # type: ignore[attr-defined]
        return router, gen

    return make


def _request(model: str = "cogumi") -> GenerationRequest:
    return GenerationRequest(MESSAGES, GenParams(max_new_tokens=4), model, 1)


def _turns(tmp_path) -> list[tuple[str, float | None]]:
    with SessionStore(str(tmp_path / "sessions.sqlite")) as store:
        return [(t.option, t.confidence) for t in store.turns(session_id(MESSAGES))]


def test_low_confidence_after_step_2_switches_to_the_modifier(make_router, tmp_path):
    router, gen = make_router([0.9, 0.85, 0.02])  # after 3, 4, 5 base tokens
    routed = asyncio.run(router.complete(_request()))
    d = routed.decision
    assert (d.option, d.model, d.switched_after) == ("math", "cogumi:math", 5)
    assert d.confidence is not None and d.confidence >= PROGRESSIVE.thresholds[2]
    assert [r.text for r in routed.results] == ["answer by math"]
    # one probe, of the last user message alone (as the router stage read its rows), every step
    assert gen.probes == [([{"role": "user", "content": MESSAGES[-1]["content"]}], [3, 4, 5])]
    # the session's turn was revised to the modifier, not duplicated
    assert _turns(tmp_path) == [("math", pytest.approx(d.confidence))]
    stats = asyncio.run(router.stats())
    assert stats["progressive_switches"] == {"math@5": 1} and stats["confidence_probe_failures"] == 0

    async def drain() -> list[Any]:
        return [item async for item in router.stream(_request())]

    first, piece = asyncio.run(drain())
    assert isinstance(first, Decision) and (first.option, first.switched_after) == ("math", 5)
    assert piece.done.text == "answer by math"


def test_a_confident_base_keeps_answering(make_router, tmp_path):
    router, gen = make_router([0.9, 0.8, 0.95])
    routed = asyncio.run(router.complete(_request()))
    d = routed.decision
    assert (d.option, d.switched_after) == (BASE, None)
    assert [r.text for r in routed.results] == ["answer by base"]
    assert len(gen.probes) == 1 and _turns(tmp_path)[0][0] == BASE
    assert asyncio.run(router.stats())["progressive_switches"] == {}


def test_a_failed_probe_leaves_the_base_answering(make_router, tmp_path):
    router, _ = make_router(RuntimeError("generator replica died"))
    routed = asyncio.run(router.complete(_request()))
    assert routed.decision.option == BASE and routed.results[0].text == "answer by base"
    assert asyncio.run(router.stats())["confidence_probe_failures"] == 1
    assert _turns(tmp_path)[0][0] == BASE  # the answered turn is kept
    # a Generator that cannot probe (no calibrator there, or the vLLM backend): the training mean
    router, gen = make_router(None)
    assert asyncio.run(router.complete(_request())).decision.option == BASE
    assert asyncio.run(router.complete(_request())).decision.option == BASE
    assert len(gen.probes) == 1  # asked once, then no more


def test_forced_names_and_other_policies_never_probe(make_router):
    router, gen = make_router([0.02, 0.02, 0.02])
    d = asyncio.run(router.complete(_request("cogumi:math"))).decision
    assert d.option == "math" and d.switched_after is None
    d = asyncio.run(router.complete(_request("tiny"))).decision
    assert d.option == BASE and gen.probes == []
    # a cut policy decides before the base generates: its confidence is unknown (training mean)
    router, gen = make_router([0.02], policy=PolicyConfig(kind="cut", cut=0.5))
    assert asyncio.run(router.complete(_request())).decision.option == BASE and gen.probes == []
    # no calibrator configured: progressive with the training mean, no probe
    router, gen = make_router([0.02, 0.02, 0.02], calibrator=False)
    assert asyncio.run(router.complete(_request())).decision.option == BASE and gen.probes == []


def test_a_progressive_router_without_the_confidence_switches_without_a_probe(make_router):
    # trained without the feature (base_confidence off): the same probabilities at every step
    router, gen = make_router([0.02, 0.02, 0.02], base_confidence="off")
    assert router.progressive is not None and not router._probe
    asyncio.run(router.complete(_request()))
    assert gen.probes == []


def test_confidence_extras_put_the_confidence_last(tmp_path):
    from cogumi_ray.route.policy import LearnedPolicy

    p = LearnedPolicy.from_dir(_router_dir(str(tmp_path / "r"), PROGRESSIVE), "tiny", ["math"])
    assert p.reads_confidence and p.confidence_extras(None) is None
    np.testing.assert_allclose(p.confidence_extras(0.25), [[0.25]])
    mean = float(p.bundle.featurizer.extra_mean[-1])
    assert 0.4 < mean < 0.6  # the training mean the policy reads before the base generated


def test_serving_a_run_takes_the_compress_calibrator(tmp_path):
    import os

    from cogumi_ray.config import load_config
    from cogumi_ray.runs import RunContext, StageOutput
    from cogumi_ray.serve.from_run import serve_config_for_run

    def touch(path: str) -> str:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()
        return path

    ctx = RunContext(str(tmp_path / "fake"))
    d = ctx.run_dir
    stages = {"export_gguf": ({"gguf": touch(f"{d}/export_gguf/m.gguf")}, {}),
              "modifiers": ({"code_adapter_gguf": touch(f"{d}/modifiers/code.gguf")},
                            {"domains": ["code"]}),
              "router": ({"router": os.path.dirname(touch(f"{d}/router/router/x"))}, {})}

    def run(*names: str) -> None:
        for name in names:
            outputs, metrics = stages[name]
            ctx.run_stage(name, lambda o=outputs, m=metrics: StageOutput(o, m), {"fake": name})

    def served(**overrides: Any) -> ServeConfig:
        return serve_config_for_run(load_config(overrides={
            "run.root": str(tmp_path), "run.name": "fake", **overrides}))

    run("export_gguf", "modifiers", "router")
    assert served().policy == "learned" and served().calibrator_path is None  # no compress stage
    stages["compress"] = ({"gguf": touch(f"{d}/compress/q.gguf"),
                           "calibrator": touch(f"{d}/compress/calibrator.json")}, {})
    run("compress")
    assert served().calibrator_path == f"{d}/compress/calibrator.json"
    assert served(**{"serve.calibrator_path": "/x/cal.json"}).calibrator_path == "/x/cal.json"


def test_served_graph_probes_and_switches(ray_session, serve_gguf, lora_ggufs, tmp_path):
    """Through Ray Serve and the real llama.cpp Generator: a calibrator that finds the base hopeless
    makes the progressive router switch to math at its first step; a confident one keeps the base.
    The router's embedding of a real query (MiniLM) is ~0 on its random training basis, so the
    confidence decides."""
    openai = pytest.importorskip("openai")
    pytest.importorskip("llama_cpp")
    import socket

    from testkit import replica_stats, running_app

    from cogumi_ray.compress.calibration import Calibrator
    from cogumi_ray.generate.config import LlamaCppEngineConfig
    from cogumi_ray.serve.config import DeploymentConfig

    def calibrator(intercept: float) -> str:  # P(pass) = sigmoid(intercept) whatever the tokens
        return Calibrator("platt", mean=(0.0,) * 4, scale=(1.0,) * 4, coef=(0.0,) * 4,
                          intercept=intercept).save(str(tmp_path / f"cal{intercept}.json"))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    router = _router_dir(str(tmp_path / "router"), PROGRESSIVE)
    for intercept, option in ((-8.0, "math"), (8.0, BASE)):
        cfg = ServeConfig(base=serve_gguf, adapters={"math": lora_ggufs["math"]}, port=port,
                          api_keys=[], api_key_env=None, policy="learned", router_path=router,
                          calibrator_path=calibrator(intercept),
                          llama_cpp=LlamaCppEngineConfig(n_ctx=512, n_threads=1),
                          generator=DeploymentConfig(num_cpus=1))
        with running_app(cfg) as url:
            client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=60)
            r = client.chat.completions.with_raw_response.create(
                model="cogumi", messages=MESSAGES, max_tokens=4, temperature=0)
            reply = r.parse()
            assert reply.cogumi["option"] == option and r.headers["x-cogumi-option"] == option
            # the switch happened at the first step (3 base tokens); staying with the base is no
            # switch at all
            after = 3 if option == "math" else None
            assert reply.cogumi["switched_after"] == after
            assert r.headers.get("x-cogumi-switched-after") == (str(after) if after else None)
            assert reply.model == ("cogumi:math" if option == "math" else cfg.served_base_name())
            stats = replica_stats(cfg.app_name)
            assert stats["confidence_probes"] == 1, stats
            assert stats["adapter_loads"] == ({"math": 1} if option == "math" else {})
