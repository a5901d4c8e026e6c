"""Threshold search: the objective moves the thresholds the expected way; each candidate scored
as the stage's threshold table scores the same setting (per-step probabilities for the
progressive policy, those before generation for the cut); Ray Tune end to end."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from routekit import hashed_embed

from cogumi_ray.route.confidence import BaseConfidence, with_confidence
from cogumi_ray.route.config import FeatureConfig, PolicyConfig, RouterConfig, ThresholdTuneConfig
from cogumi_ray.route.labels import load_labels
from cogumi_ray.route.thresholds import threshold_table
from cogumi_ray.route.train import train_routers
from cogumi_ray.tune.router_thresholds import _choose, evaluate, oof_step_views, tune_thresholds

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


def _step_data(n: int = 2000, seed: int = 3):
    """Per-step probabilities that sharpen with the tokens read, and different ones before
    generation: a router reading the base's confidence."""
    rng = np.random.default_rng(seed)
    passed = rng.random((n, 3)) < [0.5, 0.6, 0.6]
    logits = rng.normal(0, 1, (n, 3))
    views = []
    for scale in (0.5, 1.0, 2.0, 3.0):  # before generation, then after 3, 4, 5 tokens
        z = np.exp(logits * scale + rng.normal(0, 0.3, (n, 3)))
        views.append(z / z.sum(axis=1, keepdims=True))
    return views[0], views[1:], passed


def _candidate(cut: float, thresholds: list[float]) -> dict[str, float]:
    return {"cut": cut, **{f"t{i}": t for i, t in enumerate(thresholds)}}


def _same(res: dict, row: dict) -> None:
    assert res["quality"] == row["pass_rate"], (res, row)
    assert res["cost"] == row["mean_cost"], (res, row)
    assert round(1 - res["distribution"][0], 4) == pytest.approx(row["modifier_share"], abs=1e-4)


def test_a_candidate_scores_as_the_stage_threshold_table_row():
    before, steps, passed = _step_data()
    pc = PolicyConfig(kind="progressive", switch_cost_per_token=0.01)
    table = threshold_table(steps, before, passed, COSTS, pc, [0.1, 0.0, -0.1, -0.2])
    prog = [r for r in table if r["policy"] == "progressive"]
    cut_row = next(r for r in table if r["policy"] == "cut" and r["decided_after"] == 0)
    for row in prog:
        res = evaluate(_candidate(pc.cut, row["thresholds"]), before, passed, COSTS, pc, 0.1, steps)
        _same(res["progressive_policy"], row)
        _same(res["cut_policy"], cut_row)
    # the check has teeth: one set of probabilities at every step scores the setting differently
    configured = next(r for r in prog if r["configured"])
    single = evaluate(_candidate(pc.cut, pc.thresholds), steps[-1], passed, COSTS, pc, 0.1)
    assert single["progressive_policy"]["cost"] != configured["mean_cost"]


def test_oof_step_views_are_the_out_of_fold_probabilities_per_step(synthetic):
    """The refitted fold models give back the out-of-fold probabilities train_routers kept (at
    the confidence it trained with), and other probabilities at the other steps."""
    rc = RouterConfig(routers=["logreg"], cv_folds=3, features=FeatureConfig(pca_dims=16),
                      policy=PolicyConfig(kind="progressive"))
    val = load_labels(synthetic.scores, synthetic.val, "val", rc)
    emb = hashed_embed(val.texts)
    rng = np.random.default_rng(0)
    y = val.passed[:, 0].astype(float)
    ks = [3, 4, 5]
    values = np.stack([1 / (1 + np.exp(-((2 * y - 1) * (k - 2) * 1.2 + rng.normal(0, 1.5, len(y)))))
                       for k in ks])
    conf = BaseConfidence(ks, values, "gguf", 0.0, False)
    labels = with_confidence(val, conf.at(5))
    _, _, (trained,) = train_routers(labels, emb, rc)
    after, before = oof_step_views(trained, labels, emb, conf, ks, rc)
    assert len(after) == 3 and before.shape == trained.oof_probs.shape
    np.testing.assert_allclose(after[-1], trained.oof_probs, rtol=0, atol=1e-9)
    assert np.abs(after[0] - after[-1]).max() > 0.05 and np.abs(before - after[-1]).max() > 0.05
    for p in (*after, before):
        np.testing.assert_allclose(p.sum(axis=1), 1.0)
    none = oof_step_views(trained, val, emb, None, ks, rc)  # a router without the confidence
    assert none[0][0] is trained.oof_probs and none[1] is trained.oof_probs


@pytest.mark.slow
def test_ray_tune_scores_the_configured_point_as_the_threshold_table(ray_session, tmp_path):
    before, steps, passed = _step_data(n=600)
    pc = PolicyConfig(kind="progressive", switch_cost_per_token=0.01)
    rc = RouterConfig(policy=pc, tune=ThresholdTuneConfig(enabled=True, num_samples=3, lam=0.1))
    res = tune_thresholds(rc, before, passed, OPTIONS, COSTS, str(tmp_path), steps)
    table = threshold_table(steps, before, passed, COSTS, pc, [])
    seed = next(r for r in res.table if r["thresholds"] == pc.thresholds and r["cut"] == pc.cut)
    _same(seed["progressive_policy"], next(r for r in table if r["policy"] == "progressive"))
    _same(seed["cut_policy"], next(r for r in table if r["policy"] == "cut"))
