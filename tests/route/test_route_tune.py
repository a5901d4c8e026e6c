"""Threshold search: the objective moves the thresholds the expected way; Ray Tune end to end."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cogumi_ray.route.config import PolicyConfig, RouterConfig, ThresholdTuneConfig
from cogumi_ray.tune.router_thresholds import _choose, evaluate, tune_thresholds

OPTIONS = ["base", "code", "math"]
COSTS = np.array([1.0, 2.0, 2.0])


def _data(n: int = 600, seed: int = 0):
    """Modifier 1 rescues the rows where its probability is high; elsewhere it only costs."""
    rng = np.random.default_rng(seed)
    p1 = rng.random(n)
    probs = np.stack([1 - p1, p1 * 0.9, p1 * 0.1], axis=1)
    base = rng.random(n) < 0.5
    rescue = rng.random(n) < p1**2
    passed = np.stack([base, base | rescue, base & (rng.random(n) < 0.5)], axis=1)
    return probs, passed


def _grid(lam: float, pc: PolicyConfig):
    probs, passed = _data()
    table = [evaluate({"cut": c, "t0": t, "t1": t - 0.05, "t2": t - 0.1}, probs, passed, COSTS, pc, lam)
             for c in np.linspace(0.05, 0.95, 19) for t in np.linspace(0.4, 0.95, 12)]
    return table


def test_cost_weight_moves_thresholds_up(tmp_path):
    pc = PolicyConfig()
    chosen = {}
    for lam in (0.0, 0.5):
        rc = RouterConfig(tune=ThresholdTuneConfig(lam=lam))
        res = _choose(rc, _grid(lam, pc), OPTIONS, str(tmp_path / str(lam)))
        chosen[lam] = res
    cheap, dear = chosen[0.0], chosen[0.5]
    assert dear.policy.cut > cheap.policy.cut
    assert dear.chosen["cut_policy"]["cost"] < cheap.chosen["cut_policy"]["cost"]
    assert dear.chosen["cut_policy"]["quality"] <= cheap.chosen["cut_policy"]["quality"]
    assert min(dear.policy.thresholds) >= min(cheap.policy.thresholds)
    assert dear.chosen["distribution"]["base"] > cheap.chosen["distribution"]["base"]
    saved = json.loads((tmp_path / "0.5" / "tune_thresholds.json").read_text())
    assert saved["cut"] == dear.policy.cut and len(saved["thresholds"]) == 3


def test_candidate_thresholds_are_sorted_and_costs_include_late_switches():
    probs, passed = _data()
    pc = PolicyConfig(switch_cost_per_token=0.1)
    res = evaluate({"cut": 0.5, "t0": 0.6, "t1": 0.9, "t2": 0.7}, probs, passed, COSTS, pc, 0.0)
    assert res["thresholds"] == [0.9, 0.7, 0.6]
    cut_cost, prog_cost = res["cut_policy"]["cost"], res["progressive_policy"]["cost"]
    cut_calls = 1 - res["cut_policy"]["distribution"][0]
    assert cut_cost == pytest.approx(1 + cut_calls, abs=1e-3)  # no switch cost for a cut decision
    prog_calls = 1 - res["progressive_policy"]["distribution"][0]
    assert prog_cost > 1 + prog_calls  # every progressive switch wasted >= 3 base tokens


@pytest.mark.slow
def test_ray_tune_search(ray_session, tmp_path):
    probs, passed = _data()
    rc = RouterConfig(tune=ThresholdTuneConfig(enabled=True, num_samples=6, lam=0.1))
    res = tune_thresholds(rc, probs, passed, OPTIONS, COSTS, str(tmp_path))
    assert len(res.table) == 6  # the configured point + 5 random candidates
    assert os.path.exists(tmp_path / "tune_results.json")
    best = max(r["cut_policy"]["objective"] for r in res.table)
    assert res.chosen["cut_policy"]["objective"] == best
