"""Routers on feature blobs: they learn, their probabilities are calibrated, they round-trip."""

from __future__ import annotations

import numpy as np
import pytest
from routekit import clusters

from cogumi_ray.errors import ConfigError, ModelError
from cogumi_ray.route.calibration import ece, fit_temperature, softmax
from cogumi_ray.route.config import RouterConfig
from cogumi_ray.route.models import ROUTERS, load_router, make_router

OPTIONS = ["base", "code", "math", "writing"]


@pytest.fixture(scope="module")
def blobs():
    x, y = clusters(1400, seed=0, noise=0.15)
    return (x[:800], y[:800]), (x[800:1000], y[800:1000]), (x[1000:], y[1000:])


@pytest.fixture(scope="module")
def trained(blobs):
    (xf, yf), (xv, yv), (xc, yc) = blobs
    out = {}
    for name in ROUTERS:
        r = make_router(name, OPTIONS, RouterConfig())
        r.fit(xf, yf, xv, yv)
        r.calibrate(xc[:200], yc[:200])
        out[name] = r
    return out


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_router_beats_majority_and_probabilities_sum_to_one(name, trained, blobs):
    _, _, (xc, yc) = blobs
    x, y = xc[200:], yc[200:]
    probs = trained[name].predict_proba(x)
    assert probs.shape == (len(y), 4)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-6) and (probs >= 0).all()
    acc = (probs.argmax(axis=1) == y).mean()
    majority = np.bincount(y).max() / len(y)
    assert acc > majority + 0.3, (name, acc, majority)


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_save_load_gives_identical_decisions(name, trained, blobs, tmp_path):
    _, _, (xc, _) = blobs
    trained[name].save(str(tmp_path))
    back = load_router(str(tmp_path))
    assert type(back) is type(trained[name]) and back.temperature == trained[name].temperature
    np.testing.assert_allclose(back.predict_proba(xc), trained[name].predict_proba(xc), rtol=1e-6)


def test_temperature_lowers_ece_of_an_overconfident_model():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 3000)
    logits = rng.normal(0, 1, (3000, 4))
    logits[np.arange(3000), y] += 1.5  # right ~60% of the time ...
    hot = logits * 6.0  # ... but ~100% sure: over-confident
    t = fit_temperature(hot[:1500], y[:1500])
    assert t > 3.0
    before, after = ece(softmax(hot[1500:]), y[1500:]), ece(softmax(hot[1500:], t), y[1500:])
    assert after < before / 3, (before, after)
    # the argmax never moves with one temperature
    assert (softmax(hot, t).argmax(1) == hot.argmax(1)).all()


def test_mlp_calibration_on_noisy_labels():
    """Label noise makes a long-trained MLP over-confident; its temperature repairs that."""
    x, y = clusters(2400, seed=3, noise=0.35)
    rc = RouterConfig.model_validate({"mlp": {"max_epochs": 80, "dropout": 0.0, "lr": 0.01,
                                              "batch_size": 100}})
    r = make_router("mlp", OPTIONS, rc)
    r.fit(x[:400], y[:400], x[:0], y[:0])  # no validation rows: no early stop, memorises the noise
    raw = softmax(r.logits(x[1600:]))
    r.calibrate(x[1000:1600], y[1000:1600])
    assert r.temperature > 1.5
    assert ece(r.predict_proba(x[1600:]), y[1600:]) < 0.5 * ece(raw, y[1600:])


def test_absent_class_gets_no_probability():
    x, y = clusters(400, seed=1)
    keep = y != 2
    for name in ROUTERS:
        r = make_router(name, OPTIONS, RouterConfig())
        r.fit(x[keep], y[keep], x[keep][:50], y[keep][:50])
        assert r.predict_proba(x)[:, 2].max() < 0.2, name
    single = make_router("logreg", OPTIONS, RouterConfig())
    single.fit(x, np.zeros(len(x), dtype=np.int64), x[:5], np.zeros(5, dtype=np.int64))
    assert (single.predict_proba(x).argmax(1) == 0).all()


def test_unknown_router_and_missing_save(tmp_path):
    with pytest.raises(ConfigError, match="unknown router 'forest'.*valid"):
        make_router("forest", OPTIONS, RouterConfig())
    with pytest.raises(ModelError, match="no saved router"):
        load_router(str(tmp_path))
