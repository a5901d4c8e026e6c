"""Confidence calibration: calibrators fix a known over-confidence, HF and llama.cpp read the same
features, the artifacts (JSON, PNG) round-trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cogumi_ray.compress.calibration import (
    FEATURES,
    Calibrator,
    calibrate,
    chat_token_ids,
    ece,
    hf_features,
    nll,
    raw_confidence,
    reliability_plot,
    split_rows,
)
from cogumi_ray.errors import DataError, EvalError

PROMPTS = [
    "What is 48 + 17? Answer with the number only.",
    "Sort the list [9, 0, 3, 3] in ascending order.",
    "Write a Python function add_7(x) that returns x + 7.",
    "What is 5 + 81? Answer with the number only.",
    "Sort the list [4, 1, 8, 2] in ascending order.",
    "Write a Python function add_42(x) that returns x + 42.",
]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True P(pass) = sigmoid(x); the model's raw confidence is sigmoid(3x): over-confident."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, 1.5, n)
    labels = (rng.random(n) < _sigmoid(x)).astype(int)
    mean_logprob = -np.logaddexp(0, -3 * x)  # log sigmoid(3x), so exp(.) is the raw confidence
    feats = np.stack([
        mean_logprob,
        rng.gamma(2.0, 0.5, n),  # entropy: noise, carries nothing
        mean_logprob - rng.gamma(1.0, 0.3, n),  # min <= mean
        0.5 + 0.1 * x,  # margin: the feature the labels are a known sigmoid of
    ], axis=1)
    return feats, labels


@pytest.fixture(scope="module")
def report():
    ff, yf = _synthetic(1500, 0)
    fe, ye = _synthetic(1000, 1)
    return calibrate(ff, yf, fe, ye, bins=10), fe, ye


def test_calibrators_fix_overconfidence(report):
    rep, fe, ye = report
    m = rep.metrics
    print({k: {n: round(v, 4) for n, v in d.items()} for k, d in m.items()},
          "T", rep.calibrators["temperature"].temperature)
    assert m["raw"]["ece"] > 0.08
    assert m["temperature"]["ece"] < 0.5 * m["raw"]["ece"]
    assert m["platt"]["ece"] < 0.5 * m["raw"]["ece"]
    assert m["platt"]["nll"] < m["raw"]["nll"] and m["temperature"]["brier"] < m["raw"]["brier"]
    assert 2.0 < rep.calibrators["temperature"].temperature < 4.5  # true over-confidence: 3x
    # both are the true model here (T = 3 undoes sigmoid(3x); Platt sees x): the lower eval NLL wins
    assert rep.chosen == min(rep.calibrators, key=lambda k: m[k]["nll"])
    assert rep.best is rep.calibrators[rep.chosen]
    assert not rep.notes and rep.n_fit == 1500 and rep.n_eval == 1000


def test_platt_beats_constant_predictor(report):
    rep, fe, ye = report
    constant = nll(np.full(len(ye), rep.fit_pass_rate), ye)
    assert rep.metrics["platt"]["nll"] < constant - 0.05


def test_json_round_trip(report, tmp_path):
    rep, fe, _ = report
    for name, cal in rep.calibrators.items():
        path = cal.save(str(tmp_path / f"{name}.json"))
        loaded = Calibrator.load(path)
        assert loaded == cal
        assert np.array_equal(loaded.predict(fe), cal.predict(fe))
    json.dumps(rep.as_dict())  # the stage writes the whole report as JSON
    with pytest.raises(DataError, match="unknown"):
        Calibrator.from_dict({**rep.best.to_dict(), "kind": "isotonic"})
    with pytest.raises(DataError, match="rows x 4"):
        rep.best.predict(np.zeros((3, 2)))


def test_single_class_falls_back_to_temperature():
    ff, _ = _synthetic(100, 2)
    fe, ye = _synthetic(50, 3)
    rep = calibrate(ff, np.ones(100), fe, ye)
    assert rep.chosen == "temperature" and set(rep.calibrators) == {"temperature"}
    assert any("Platt scaling cannot be fitted" in n for n in rep.notes)
    assert set(rep.metrics) == {"raw", "temperature"}
    assert np.isfinite(rep.metrics["temperature"]["nll"])


def test_too_few_rows():
    ff, yf = _synthetic(40, 4)
    with pytest.raises(EvalError, match="12 fit rows are too few.*>= 20"):
        calibrate(ff[:12], yf[:12], ff, yf)
    with pytest.raises(EvalError, match="5 eval rows"):
        calibrate(ff, yf, ff[:5], yf[:5])
    with pytest.raises(DataError, match="labels for"):
        calibrate(ff, yf[:30], ff, yf)


def test_metrics_and_split():
    assert ece([0.9] * 10, [1] * 9 + [0]) == pytest.approx(0.0)
    assert ece([0.8] * 4 + [0.2] * 4, [1] * 4 + [1] * 4) == pytest.approx(0.5)
    labels = np.array([1] * 30 + [0] * 10)
    fit, held = split_rows(labels, eval_share=0.3, seed=0)
    assert sorted(np.concatenate([fit, held]).tolist()) == list(range(40))
    assert labels[held].sum() == 9 and (labels[held] == 0).sum() == 3  # stratified


def test_reliability_plot_png(report, tmp_path):
    rep, fe, ye = report
    path = reliability_plot(str(tmp_path / "sub" / "reliability.png"), raw_confidence(fe),
                            rep.best.predict(fe), ye, bins=10)
    with open(path, "rb") as fh:
        data = fh.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


# ---------------------------------------------------------------- real model


@pytest.fixture
def one_thread():
    import torch

    # 2 shared cores: more torch threads than free cores spin at barriers and run far slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_hf_features_shape(tiny_model_dir, one_thread):
    f = hf_features(tiny_model_dir, PROMPTS, 5, dtype="float32")
    assert f.shape == (len(PROMPTS), len(FEATURES)) and np.isfinite(f).all()
    mean_lp, entropy, min_lp, margin = f.T
    assert (mean_lp <= 0).all() and (min_lp <= mean_lp + 1e-12).all()
    assert (entropy >= 0).all() and ((margin >= 0) & (margin <= 1)).all()
    assert ((raw_confidence(f) > 0) & (raw_confidence(f) <= 1)).all()


def test_gguf_features_match_hf(tiny_sft_model_dir, tmp_path, one_thread):
    pytest.importorskip("llama_cpp")
    from cogumi_ray.compress.calibration import gguf_features
    from cogumi_ray.export.gguf_export import export_gguf

    # the SFT'd model: peaked distributions, so greedy picks are not near-ties between backends
    gguf = export_gguf(tiny_sft_model_dir, str(tmp_path / "tiny-f32.gguf"), outtype="f32").path
    hf = hf_features(tiny_sft_model_dir, PROMPTS, 5, dtype="float32")
    gg = gguf_features(gguf, chat_token_ids(tiny_sft_model_dir, PROMPTS), 5, n_threads=1)
    print("hf", hf.round(4).tolist(), "max |diff|", float(np.abs(hf - gg).max()))
    assert gg.shape == hf.shape
    np.testing.assert_allclose(gg, hf, atol=2e-3, rtol=1e-3)
