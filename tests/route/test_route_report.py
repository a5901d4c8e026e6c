"""RouteLLM metrics on constructed cases whose answers are known."""

from __future__ import annotations

import numpy as np

from cogumi_ray.route.config import PolicyConfig
from cogumi_ray.route.report import anchors, apgr_cpt, classification, curve, operating_point, plot, sweep

COSTS = np.array([1.0, 2.0, 2.0])


def _passed(n: int = 1000, seed: int = 0) -> np.ndarray:
    """Base passes 40%; modifier 1 passes 80% (a superset of the base); modifier 2 passes 30%."""
    rng = np.random.default_rng(seed)
    base = rng.random(n) < 0.4
    return np.stack([base, base | (rng.random(n) < 0.67), rng.random(n) < 0.3], axis=1)


def test_oracle_like_router_beats_random_which_scores_half():
    passed = _passed()
    a = anchors(passed, COSTS, ["base", "m1", "m2"])
    assert a["strong_option"] == {"": "m1"} and a["oracle"] >= a["always_best_modifier"]
    gain = passed[:, 1] & ~passed[:, 0]  # rows where switching to m1 helps
    oracle_probs = np.stack([~gain * 0.9 + 0.05, gain * 0.9 + 0.05, np.full(len(gain), 0.05)], 1)
    rng = np.random.default_rng(1)
    random_probs = rng.dirichlet(np.ones(3), size=len(gain))
    random_probs[:, 2] = 0.0  # random order of queries, always towards m1
    good = apgr_cpt(curve(oracle_probs, passed, COSTS), a["base_only"], a["always_best_modifier"])
    rand = apgr_cpt(curve(random_probs, passed, COSTS), a["base_only"], a["always_best_modifier"])
    # gains are 40% of rows: PGR ramps to 1 over that share, so the area is 0.2 + 0.6
    assert good["apgr"] > 0.75 and abs(rand["apgr"] - 0.5) < 0.06
    assert good["cpt50"] < good["cpt80"] < 0.5 and rand["cpt80"] > 0.7
    c = curve(oracle_probs, passed, COSTS)
    assert c["share"][0] == 0 and c["share"][-1] == 1
    assert np.isclose(c["quality"][0], a["base_only"]) and np.isclose(c["quality"][-1], passed[:, 1].mean())
    assert np.isclose(c["cost"][-1], 2.0)


def test_no_modifier_gain_gives_no_apgr():
    passed = np.zeros((10, 3), dtype=bool)
    passed[:, 0] = True
    a = anchors(passed, COSTS, ["base", "m1", "m2"])
    assert apgr_cpt(curve(np.full((10, 3), 1 / 3), passed, COSTS), a["base_only"],
                    a["always_best_modifier"]) == {"apgr": None, "cpt50": None, "cpt80": None}


def test_sweep_operating_point_and_classification(tmp_path):
    passed = _passed()
    probs = np.random.default_rng(2).dirichlet(np.ones(3), size=len(passed))
    rows = sweep(probs, passed, COSTS, 11)
    assert rows[0]["modifier_share"] == 1.0 and rows[-1]["modifier_share"] <= 0.01
    shares = [r["modifier_share"] for r in rows]
    assert shares == sorted(shares, reverse=True)
    op = operating_point(probs, passed, COSTS, ["base", "m1", "m2"], PolicyConfig(cut=0.5))
    assert abs(sum(op["distribution"].values()) - 1) < 1e-3
    y = probs.argmax(1)
    cls = classification(probs, probs, y, ["base", "m1", "m2"])
    assert cls["accuracy"] == 1.0 and cls["per_class"]["m1"]["recall"] == 1.0
    assert np.array(cls["confusion"]["matrix"]).trace() == len(y)
    out = tmp_path / "p.png"
    plot({"r": curve(probs, passed, COSTS)}, anchors(passed, COSTS, ["base", "m1", "m2"]), str(out),
         (probs, probs, y))
    assert out.stat().st_size > 5000
