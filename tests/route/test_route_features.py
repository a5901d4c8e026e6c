"""The featurizer: PCA basis from training rows, extras standardised, session numbers."""

from __future__ import annotations

import numpy as np
import pytest

from cogumi_ray.errors import DataError
from cogumi_ray.route.features import Featurizer, SessionState, session_vector

OPTIONS = ["base", "code", "math"]


def test_pca_extras_and_session_columns(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(300, 384)).astype(np.float32)
    extras = rng.normal(5.0, 2.0, size=(300, 1))
    f = Featurizer.fit(emb, extras, OPTIONS, dims=128, session=True)
    assert f.dim == 128 + 1 + len(OPTIONS) + 2
    x = f.transform(emb, extras, [SessionState("code", True, 3)] * 300)
    assert x.shape == (300, f.dim) and x.dtype == np.float32
    assert abs(x[:, :128].std() - 1.0) < 0.05  # one global scale: ~unit variance on average
    assert abs(x[:, 128].mean()) < 1e-6 and abs(x[:, 128].std() - 1.0) < 1e-3
    assert x[0, 129:].tolist() == [0.0, 1.0, 0.0, 1.0, pytest.approx(0.3)]
    unknown = f.transform(emb[:2])  # extras not known yet: the training mean; no session: zeros
    assert unknown[:, 128].tolist() == [0.0, 0.0] and not unknown[:, 129:].any()
    with pytest.raises(DataError, match="extra features have shape"):
        f.transform(emb[:2], np.zeros((2, 3)))
    f.save(str(tmp_path))
    back = Featurizer.load(str(tmp_path))
    np.testing.assert_array_equal(back.transform(emb[:5], extras[:5]), f.transform(emb[:5], extras[:5]))


def test_few_rows_keep_fewer_dimensions():
    emb = np.random.default_rng(1).normal(size=(40, 384)).astype(np.float32)
    f = Featurizer.fit(emb, np.zeros((40, 0)), OPTIONS, dims=128, session=False)
    assert f.dim == 40


def test_session_vector_caps_turns():
    assert session_vector(None, OPTIONS).tolist() == [0.0] * 5
    assert session_vector(SessionState("nope", False, 50), OPTIONS).tolist() == [0, 0, 0, 0, 1.0]


def test_int8_embeddings_stay_close_to_full_precision():
    """The served router's MiniLM runs with int8 Linear layers: the same directions as full
    precision (cosine 0.88-0.99 on suite queries), not the same numbers (the quantization did happen)."""
    from cogumi_ray.route.config import FeatureConfig
    from cogumi_ray.route.features import embed

    texts = ["Write a Python function that reverses a list", "What is 17 + 25?",
             "Email Milo about the candle forest", "Sort these words: pear, fig, apple"]
    full = embed(texts, FeatureConfig(embed_quantize="none"))
    int8 = embed(texts, FeatureConfig())
    assert full.shape == int8.shape == (4, 384)
    cos = (full * int8).sum(axis=1)  # both L2-normalised
    assert cos.min() > 0.9, cos  # 0.94-0.98 on these four; the router trains on int8 ones too
    assert not np.allclose(full, int8, atol=1e-4)
    # still tells the queries apart: each is closest to its own full-precision vector
    assert ((int8 @ full.T).argmax(axis=1) == np.arange(4)).all()


def test_a_router_saved_before_int8_keeps_full_precision_embeddings(tmp_path):
    import json

    from routekit import keyword_bundle

    from cogumi_ray.route.bundle import RouterBundle

    keyword_bundle().save(str(tmp_path))
    meta_path = tmp_path / "bundle.json"
    meta = json.loads(meta_path.read_text())
    assert meta["features"]["embed_quantize"] == "int8"  # what a new router records
    del meta["features"]["embed_quantize"]
    meta_path.write_text(json.dumps(meta))
    assert RouterBundle.load(str(tmp_path)).features.embed_quantize == "none"


def test_int8_embeddings_are_refused_off_cpu_at_config_load():
    from cogumi_ray.config import load_config
    from cogumi_ray.errors import ConfigError

    with pytest.raises(ConfigError, match="int8' runs on CPU only"):
        load_config(None, {"route.features.device": "cuda"})
    cfg = load_config(None, {"route.features.device": "cuda", "route.features.embed_quantize": "none"})
    assert cfg.route.features.device == "cuda"
