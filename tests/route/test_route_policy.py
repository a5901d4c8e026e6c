"""Decision rules and the serve-facing LearnedPolicy."""

from __future__ import annotations

import numpy as np
import pytest
from routekit import keyword_bundle, keyword_embed

from cogumi_ray.errors import ConfigError
from cogumi_ray.route.bundle import RouterBundle
from cogumi_ray.route.config import MemoryConfig, PolicyConfig
from cogumi_ray.route.memory import SessionStore
from cogumi_ray.route.policy import CutPolicy, LearnedPolicy, ProgressivePolicy, routing_cost
from cogumi_ray.serve.errors import ServeError
from cogumi_ray.serve.protocol import RoutingPolicy


def _probs(n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(4) * 0.5, size=n)


def test_higher_cut_means_fewer_modifier_calls():
    probs = _probs()
    shares = [(CutPolicy(c).route(probs).option > 0).mean() for c in np.linspace(0, 1, 21)]
    assert shares[0] == 1.0 and shares[-1] < 0.05
    assert all(b <= a for a, b in zip(shares[:-1], shares[1:], strict=True))
    assert shares[4] > shares[12] > shares[18]


def test_cut_policy_picks_the_best_modifier_with_its_confidence():
    probs = np.array([[0.6, 0.1, 0.2, 0.1], [0.1, 0.1, 0.7, 0.1], [0.2, 0.45, 0.3, 0.05]])
    r = CutPolicy(0.5).route(probs)
    assert r.option.tolist() == [0, 2, 0]
    assert np.allclose(r.confidence, [0.6, 0.7, 0.2])


def test_progressive_policy_steps_and_costs():
    rule = ProgressivePolicy((3, 4, 5), (0.85, 0.75, 0.65))
    probs = np.array([[0.05, 0.9, 0.03, 0.02], [0.2, 0.78, 0.01, 0.01], [0.3, 0.68, 0.01, 0.01],
                      [0.5, 0.4, 0.05, 0.05]])
    r = rule.route([probs])
    assert r.option.tolist() == [1, 1, 1, 0]
    assert r.step_tokens.tolist() == [3, 4, 5, -1]
    cost = routing_cost(r, np.array([1.0, 2.0, 2.0, 2.0]), 0.01)
    assert np.allclose(cost, [2.03, 2.04, 2.05, 1.0])
    # per-step probabilities: a prefix that convinces the router only later switches later
    later = rule.route([probs * 0 + [0.5, 0.4, 0.05, 0.05], probs, probs])
    assert later.step_tokens.tolist() == [4, 4, 5, -1]
    # raising every threshold never adds modifier calls
    strict = ProgressivePolicy((3, 4, 5), (0.95, 0.9, 0.85)).route([_probs()])
    loose = ProgressivePolicy((3, 4, 5), (0.85, 0.75, 0.65)).route([_probs()])
    assert (strict.option > 0).sum() < (loose.option > 0).sum()


def test_policy_config_validates_steps():
    with pytest.raises(ValueError, match="same, non-zero length"):
        PolicyConfig(steps=[3, 4], thresholds=[0.9])
    with pytest.raises(ValueError, match="strictly increasing"):
        PolicyConfig(steps=[4, 3], thresholds=[0.9, 0.8])


@pytest.fixture(scope="module")
def bundle() -> RouterBundle:
    return keyword_bundle()


def _policy(bundle, **kw) -> LearnedPolicy:
    return LearnedPolicy(bundle, "tiny", ["code", "math", "writing"], embed_fn=keyword_embed, **kw)


def test_learned_policy_routes_and_forced_names_still_force(bundle):
    p = _policy(bundle)
    assert isinstance(p, RoutingPolicy)
    assert p.models() == ["tiny", "cogumi", "cogumi:code", "cogumi:math", "cogumi:writing"]
    routed = p.decide([{"role": "user", "content": "write python to parse a file"}], "cogumi")
    assert (routed.option, routed.model) == ("code", "cogumi:code") and routed.confidence > 0.5
    base = p.decide([{"role": "user", "content": "hello, how are you"}], "cogumi")
    assert (base.option, base.model) == ("base", "tiny")
    forced = p.decide([{"role": "user", "content": "write python to parse a file"}], "cogumi:writing")
    assert (forced.option, forced.confidence, forced.model) == ("writing", None, "cogumi:writing")
    assert p.decide([], "math").option == "math"
    assert p.decide([{"role": "user", "content": "python"}], "tiny").option == "base"
    with pytest.raises(ServeError):
        p.decide([], "cogumi:poetry")


def test_learned_policy_refuses_unserved_modifiers(bundle):
    with pytest.raises(ConfigError, match=r"\['writing'\] that are not served"):
        LearnedPolicy(bundle, "tiny", ["code", "math"], embed_fn=keyword_embed)


class _Always:
    threshold = 0.5

    def is_escalation(self, text: str) -> bool:
        return "wrong" in text


def test_escalation_after_a_base_answer_goes_to_a_modifier(bundle, tmp_path):
    store = SessionStore(str(tmp_path / "s.db"))
    p = _policy(bundle, detector=_Always(), memory=store)
    first = [{"role": "user", "content": "a sorting question"}]  # no keyword: the base answers
    assert p.decide(first, "cogumi").option == "base"
    follow = first + [{"role": "assistant", "content": "..."}, {"role": "user", "content": "wrong"}]
    again = p.decide(follow, "cogumi")
    assert again.option != "base"
    turns = store.turns(_sid(first))
    assert [t.option for t in turns] == ["base", again.option] and turns[1].escalated
    assert store.likely_option(_sid(first)) == again.option
    forced = follow + [{"role": "assistant", "content": "..."}, {"role": "user", "content": "more"}]
    assert p.decide(forced, "cogumi:writing").option == "writing"
    assert store.state(_sid(first)).last_option == "writing"


def _sid(messages):
    from cogumi_ray.route.policy import session_id

    return session_id(messages)


def test_progressive_learned_policy_starts_with_base_then_switches(tmp_path):
    b = keyword_bundle(PolicyConfig(kind="progressive"))
    store = SessionStore(str(tmp_path / "s.db"))
    p = _policy(b, memory=store)
    msgs = [{"role": "user", "content": "python please"}]
    assert p.decide(msgs, "cogumi").option == "base"
    switched = p.progress(msgs, 0)
    assert switched is not None and switched.option == "code"
    (turn,) = store.turns(_sid(msgs))  # the switch revised the turn, it did not add one
    assert turn.option == "code"
    assert p.progress([{"role": "user", "content": "hello"}], 2) is None


def test_bundle_round_trip_identical_decisions(bundle, tmp_path):
    bundle.save(str(tmp_path))
    back = RouterBundle.load(str(tmp_path))
    texts = ["python a", "the sum b", "a poem c", "hello d"] * 5
    emb = keyword_embed(texts)
    np.testing.assert_allclose(back.probs_from_embeddings(emb), bundle.probs_from_embeddings(emb),
                               rtol=1e-6)
    a, b2 = _policy(bundle), _policy(back)
    for t in texts:
        m = [{"role": "user", "content": t}]
        assert a.decide(m, "cogumi") == b2.decide(m, "cogumi")


def test_serving_records_request_ids_and_expires_sessions_on_its_clock(bundle, tmp_path):
    store = SessionStore(str(tmp_path / "s.db"), MemoryConfig(ttl_s=100, expire_every_s=50))
    clock = [1000.0]
    p = _policy(bundle, memory=store, clock=lambda: clock[0])
    a = [{"role": "user", "content": "session a"}]
    b = [{"role": "user", "content": "session b"}]
    assert p.decide(a, "cogumi:code", request_id="r1").option == "code"  # sweeps: nothing old
    assert store.turns(_sid(a))[0].request_id == "r1" and store.turns(_sid(a))[0].ts == 1000.0
    store.record("old", "base", None, False, now=800.0)  # idle past ttl_s by the next sweep
    clock[0] = 1040.0
    p.decide(b, "tiny", request_id="r2")
    assert store.turns("old") != [] and p.expired == 0  # next sweep due at 1050
    clock[0] = 1060.0
    p.decide(b, "cogumi", request_id="r3")
    assert store.turns("old") == [] and p.expired == 1 and store.turns(_sid(a)) != []
    clock[0] = 1200.0
    p.decide(b, "tiny")
    assert store.turns(_sid(a)) == [] and p.expired == 2 and len(store.turns(_sid(b))) == 3


def test_the_memory_config_reaches_the_session_store(bundle, tmp_path):
    from cogumi_ray.serve.config import ServeConfig
    from cogumi_ray.serve.policy import make_policy

    bundle.save(str(tmp_path / "router"))
    mem = MemoryConfig(max_turns=2, ttl_s=60, expire_every_s=5, retries=3)
    p = LearnedPolicy.from_dir(str(tmp_path / "router"), "tiny", ["code", "math", "writing"],
                               memory_path=str(tmp_path / "a.db"), memory_cfg=mem)
    assert p.memory is not None and p.memory.cfg == mem
    cfg = ServeConfig(policy="learned", router_path=str(tmp_path / "router"),
                      adapters={"code": "c", "math": "m", "writing": "w"},
                      sessions_path=str(tmp_path / "b.db"), session_memory=mem)
    served = make_policy(cfg)
    assert isinstance(served, LearnedPolicy) and served.memory is not None
    assert served.memory.cfg == mem and served.memory.path == str(tmp_path / "b.db")
    same = [{"role": "user", "content": "same"}]
    for _ in range(4):
        served.decide(same, "cogumi:math")
    assert [t.turn for t in served.memory.turns(_sid(same))] == [3, 4]  # max_turns=2 applies
    assert served.likely_option(same) == "math"
    assert served.likely_option([{"role": "user", "content": "new"}]) is None


def test_warm_loads_the_embedder_before_any_request(bundle):
    seen: list[list[str]] = []

    def counting(texts: list[str]):
        seen.append(list(texts))
        return keyword_embed(texts)

    policy = LearnedPolicy(bundle, "tiny", ["code", "math", "writing"], embed_fn=counting)
    assert seen == []  # constructing stays cheap: a test or a CLI may never route
    policy.warm()
    assert len(seen) == 1
    policy.decide([{"role": "user", "content": "python code please"}], "cogumi")
    assert len(seen) == 2
