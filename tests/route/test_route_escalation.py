"""The dissatisfaction detector: trained on generated follow-ups, judged on hand-written hard cases."""

from __future__ import annotations

import numpy as np
import pytest

from cogumi_ray.route.config import EscalationConfig
from cogumi_ray.route.escalation import (
    EscalationDetector,
    TfidfDetector,
    build_detector,
    normalise,
    read_hard_cases,
    split_generated,
)


@pytest.fixture(scope="module")
def built():
    return build_detector(EscalationConfig(), seed=0)


def test_hard_cases_file_is_balanced_and_kept_out_of_training():
    texts, labels = read_hard_cases()
    assert len(texts) >= 60 and 0.35 < np.mean(labels) < 0.65
    train, held = split_generated(EscalationConfig(), 0)
    generated = {normalise(t) for t, _ in train + held}
    assert len(generated) > 2000 and not generated & {normalise(t) for t in texts}


def test_detector_passes_the_hard_cases(built):
    _, rep = built
    assert rep["hard"]["f1"] >= 0.9, rep["hard"]
    assert rep["generated"]["f1"] >= 0.95, rep["generated"]


def test_detector_reads_negation_and_sarcasm(built):
    d, _ = built
    assert d.is_escalation("no, that's still wrong")
    assert d.is_escalation("oh wonderful, it crashes again")
    assert not d.is_escalation("no errors anymore, thanks!")
    assert not d.is_escalation("can you add type hints?")


def test_pure_python_scoring_matches_scikit_learn():
    from scipy.sparse import hstack
    from sklearn.linear_model import LogisticRegression

    from cogumi_ray.route.escalation import BLOCKS, _vectorizer

    ec = EscalationConfig(per_class=300)
    train, held = split_generated(ec, 1)
    texts, labels = [t for t, _ in train], [y for _, y in train]
    vecs = [_vectorizer(a, n) for a, n in BLOCKS]
    x = hstack([v.fit_transform(texts) for v in vecs]).tocsr()
    clf = LogisticRegression(C=ec.c, max_iter=2000).fit(x, labels)
    ours = TfidfDetector.train(texts, labels, ec)
    probe = [t for t, _ in held] + ["an unseen message with Odd Words!!"]
    sk = clf.predict_proba(hstack([v.transform(probe) for v in vecs]).tocsr())[:, 1]
    np.testing.assert_allclose(ours.proba(probe), sk, rtol=1e-6, atol=1e-9)


def test_save_load_round_trip(built, tmp_path):
    d, _ = built
    d.save(str(tmp_path))
    back = EscalationDetector.load(str(tmp_path))
    texts, _ = read_hard_cases()
    np.testing.assert_allclose(back.proba(texts), d.proba(texts), rtol=1e-9)
