"""The base's calibrated confidence as a router feature: read from the served GGUF after each
progressive step, compared with and without on validation, and the threshold table it feeds."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from routekit import hashed_embed

from cogumi_ray.compress.calibration import Calibrator, chat_token_ids, gguf_features
from cogumi_ray.route import confidence, features
from cogumi_ray.route.bundle import RouterBundle
from cogumi_ray.route.config import EscalationConfig, FeatureConfig, PolicyConfig, RouterConfig
from cogumi_ray.route.policy import ProgressivePolicy
from cogumi_ray.route.stage import train_stage
from cogumi_ray.route.thresholds import settings, threshold_table

PROMPTS = ["What is 12 plus 30?", "Sort the list [3, 1, 2].", "Write a function that adds one.",
           "Name a colour.", "Reverse the string abc.", "Is 7 a prime number?"]
PLATT = Calibrator(kind="platt", mean=(0.0,) * 4, scale=(1.0,) * 4, coef=(1.0, -0.5, 0.3, 2.0),
                   intercept=0.2)


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir, tmp_path_factory) -> str:
    pytest.importorskip("llama_cpp")
    from cogumi_ray.export.gguf_export import export_gguf

    out = tmp_path_factory.mktemp("route_gguf") / "tiny-f32.gguf"
    return export_gguf(tiny_model_dir, str(out), outtype="f32").path


def test_base_confidence_is_read_per_step_and_changes_with_k(tiny_gguf, tiny_model_dir, tmp_path):
    cal = PLATT.save(str(tmp_path / "calibrator.json"))
    inputs = {"calibrator": cal, "gguf": tiny_gguf, "base": tiny_model_dir}
    conf = confidence.read_base_confidence(PROMPTS, [5, 3, 4, 1, 5], inputs, FeatureConfig(),
                                           str(tmp_path / "router"))
    assert conf is not None and conf.ks == [1, 3, 4, 5] and conf.source == "gguf"
    assert conf.values.shape == (4, len(PROMPTS)) and not conf.cached
    assert ((conf.values > 0) & (conf.values < 1)).all()
    # the prefixes of one run of 5 tokens are what a run of k tokens alone reads
    ids = chat_token_ids(tiny_model_dir, PROMPTS)
    for k in (1, 3, 5):
        alone = PLATT.predict(gguf_features(tiny_gguf, ids, k, n_threads=1))
        np.testing.assert_allclose(conf.at(k), alone, rtol=1e-6, atol=1e-9)
    # ... and the steps differ: the progressive policy sees new evidence at each one (relative
    # change: the random-init model is unsure of everything, so every P(pass) is small)
    assert np.abs(np.log(conf.at(3) / conf.at(5))).max() > 0.01
    assert np.abs(np.log(conf.at(1) / conf.at(3))).max() > 0.01
    summary = conf.summary()
    assert set(summary["mean"]) == {"1", "3", "4", "5"} and summary["mean_abs_change"]["3->4"] > 0
    again = confidence.read_base_confidence(PROMPTS, [1, 3, 4, 5], inputs, FeatureConfig(),
                                            str(tmp_path / "router"))
    assert again is not None and again.cached
    np.testing.assert_array_equal(again.values, conf.values)
    hf = confidence.read_base_confidence(PROMPTS[:2], [2], {"calibrator": cal, "base": tiny_model_dir},
                                         FeatureConfig(threads=1), str(tmp_path / "hf"))
    assert hf is not None and hf.source == "hf" and hf.values.shape == (1, 2)


def test_without_the_compress_outputs_there_is_no_confidence(tmp_path):
    assert confidence.read_base_confidence(PROMPTS, [3], {"scores": "x"}, FeatureConfig(),
                                           str(tmp_path)) is None


def test_threshold_table_is_consistent():
    rng = np.random.default_rng(0)
    n, pc = 3000, PolicyConfig(kind="progressive")
    passed = rng.random((n, 3)) < [0.5, 0.6, 0.6]
    costs = np.array([1.0, 2.0, 2.0])
    # sharper at each step: the later the step, the more rows clear a threshold
    step_probs = []
    logits = rng.normal(0, 1, (n, 3))
    for scale in (1.0, 2.0, 3.0):
        z = np.exp(logits * scale)
        step_probs.append(z / z.sum(axis=1, keepdims=True))
    rows = threshold_table(step_probs, step_probs[0], passed, costs, pc, [0.1, 0.0, -0.1, -0.2],
                           (5, step_probs[-1]))
    prog = [r for r in rows if r["policy"] == "progressive"]
    configured = [r for r in prog if r["configured"]]
    assert len(configured) == 1 and configured[0]["thresholds"] == [0.85, 0.75, 0.65]
    assert [r["offset"] for r in prog] == [0.1, 0.0, -0.1, -0.2]  # highest thresholds first
    shares = [r["modifier_share"] for r in prog]
    assert shares == sorted(shares) and shares[0] < shares[-1]  # lower thresholds: more calls
    for r in prog:
        assert sum(r["switches"].values()) == pytest.approx(r["modifier_share"], abs=2e-4)
        assert 0 <= r["pass_rate"] <= 1 and r["mean_cost"] >= 1.0
        assert all(r["switches"][str(k)] > 0 for k in pc.steps)  # every step switches some rows
    direct = ProgressivePolicy((3, 4, 5), (0.85, 0.75, 0.65)).route(step_probs)
    assert configured[0]["modifier_share"] == round(float((direct.option > 0).mean()), 4)
    cut_before, cut_after = [r for r in rows if r["policy"] == "cut"]
    assert (cut_before["decided_after"], cut_after["decided_after"]) == (0, 5)
    assert cut_after["mean_cost"] > cut_before["mean_cost"] - 1e-9 or cut_after["modifier_share"] \
        != cut_before["modifier_share"]


def test_threshold_settings_clip_and_keep_the_configured_one():
    pc = PolicyConfig(thresholds=[0.95, 0.9, 0.3])
    got = settings(pc, [0.2, 0.1, -0.1])
    assert (0.0, (0.95, 0.9, 0.3)) in got
    assert got[0] == (0.2, (1.0, 1.0, 0.5))


@pytest.fixture(scope="module")
def informed(synthetic, tmp_path_factory):
    """The stage with a fake compress calibrator/GGUF whose confidence knows the base's verdict
    (noisy after 3 tokens, clear after 5): the router with it must win on validation."""
    rc = RouterConfig(routers=["logreg"], cv_folds=3, features=FeatureConfig(pca_dims=32),
                      policy=PolicyConfig(kind="progressive"), escalation=EscalationConfig(per_class=50))
    return _informed_stage(synthetic, tmp_path_factory.mktemp("informed"), rc)


def _informed_stage(synthetic, d, rc: RouterConfig):
    cal = Calibrator(kind="temperature").save(str(d / "calibrator.json"))  # P = exp(feature 0)
    (d / "model.gguf").write_bytes(b"not read: _features is replaced")
    (d / "base").mkdir()
    (d / "base" / "config.json").write_text("{}")
    table = pq.read_table(synthetic.scores).to_pylist()
    from cogumi_ray.eval.stage import read_examples

    text = {e.id: e.instruction for path in (synthetic.val, synthetic.test)
            for e in read_examples(path)}
    verdict = {text[r["id"]]: r["passed"] for r in table if r["option"] == "base"}

    def fake_features(texts, ks, gguf, base, fc):
        rng = np.random.default_rng(0)
        y = np.array([verdict[t] for t in texts], dtype=float)
        out = np.zeros((len(ks), len(texts), 4))
        for i, k in enumerate(ks):  # the signal grows with the tokens read
            z = (2 * y - 1) * (k - 2) * 1.2 + rng.normal(0, 1.5, len(texts))
            out[i, :, 0] = -np.logaddexp(0, -z)  # log sigmoid: P(pass) = exp(feature 0)
        return out

    inputs = {"scores": synthetic.scores, "val": synthetic.val, "test": synthetic.test,
              "calibrator": cal, "gguf": str(d / "model.gguf"), "base": str(d / "base")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(features, "embed", hashed_embed)
        mp.setattr(confidence, "_features", fake_features)
        out = train_stage(rc, str(d / "router"), inputs, confidence_tokens=5)
    with open(out.outputs["report"]) as f:
        return out, json.load(f)


def test_the_stage_compares_with_and_without_and_keeps_the_better(informed):
    out, report = informed
    bc = report["base_confidence"]
    assert bc["mode"] == "auto" and bc["first_tokens"] == 5 and bc["confidence"]["ks"] == [3, 4, 5]
    with_, without = bc["variants"]["with"], bc["variants"]["without"]
    assert with_["val_nll"]["logreg"] > without["val_nll"]["logreg"] + 0.02  # nll is negated
    assert bc["used"] and out.metrics["base_confidence_used"]
    assert out.metrics["val_nll_with_confidence"] == with_["val_nll"]["logreg"]
    assert with_["test"]["nll"] < without["test"]["nll"]  # held out: it helps there too
    saved = RouterBundle.load(out.outputs["router"])
    assert saved.features.base_confidence == "on" and saved.featurizer.extra_mean.shape == (1,)


def test_the_progressive_steps_differ_with_the_confidence(informed):
    out, report = informed
    prog = [r for r in report["thresholds"] if r["policy"] == "progressive"]
    row = next(r for r in prog if r["configured"])
    assert row["thresholds"] == [0.85, 0.75, 0.65]
    assert out.metrics["progressive_pass_rate"] == row["pass_rate"]
    shares = [r["modifier_share"] for r in prog]
    assert shares == sorted(shares)
    low = prog[-1]  # the lowest thresholds switch at more than the first step
    assert sum(v > 0 for v in low["switches"].values()) >= 2, low
    cut = [r for r in report["thresholds"] if r["policy"] == "cut"]
    assert [r["decided_after"] for r in cut] == [0, 5]
    # knowing the base's verdict (after 5 tokens) routes better than deciding before any token
    assert cut[1]["pass_rate"] >= cut[0]["pass_rate"]


@pytest.mark.slow
def test_tune_replays_the_progressive_policy_per_step(synthetic, tmp_path, ray_session, monkeypatch):
    """With the confidence read, Ray Tune scores each candidate on the validation rows'
    out-of-fold probabilities after each step and before generation
    (tune.router_thresholds.oof_step_views), as the threshold table scores a setting."""
    from cogumi_ray.route.config import ThresholdTuneConfig
    from cogumi_ray.tune import router_thresholds

    seen = {}
    real = router_thresholds.tune_thresholds

    def spy(rc, probs, passed, options, costs, out, step_probs=None):
        seen.update(probs=probs, passed=passed, costs=costs, step_probs=step_probs)
        return real(rc, probs, passed, options, costs, out, step_probs)

    monkeypatch.setattr(router_thresholds, "tune_thresholds", spy)
    pc = PolicyConfig(kind="progressive", thresholds=[0.7, 0.6, 0.5], switch_cost_per_token=0.01)
    rc = RouterConfig(routers=["logreg"], cv_folds=3, features=FeatureConfig(pca_dims=32), policy=pc,
                      escalation=EscalationConfig(per_class=50),
                      tune=ThresholdTuneConfig(enabled=True, num_samples=3, lam=0.05))
    out, report = _informed_stage(synthetic, tmp_path, rc)
    assert report["base_confidence"]["used"]
    steps, before = seen["step_probs"], seen["probs"]
    assert len(steps) == 3 and np.abs(steps[0] - steps[2]).max() > 0.05
    assert np.abs(before - steps[2]).max() > 0.05
    trials = json.loads((tmp_path / "router" / "tune_results.json").read_text())["trials"]
    seed = next(t for t in trials if t["thresholds"] == pc.thresholds and t["cut"] == pc.cut)
    table = threshold_table(steps, before, seen["passed"], seen["costs"], pc, [])
    for kind in ("progressive", "cut"):
        row = next(r for r in table if r["policy"] == kind)
        got = seed[f"{kind}_policy"]
        assert (got["quality"], got["cost"]) == (row["pass_rate"], row["mean_cost"]), kind
    assert out.metrics["tuned_thresholds"] == report["policy"]["thresholds"]
