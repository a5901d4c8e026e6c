"""Train every configured router on one labelled split.

Each router is first cross-validated: `cv_folds` copies, each trained without one fold, score
that fold, so every row gets a logit from a model that never saw it. Those out-of-fold logits
fit the router's temperature (every row is held out, so T rests on the whole split rather than
a slice of a few dozen rows; scikit-learn's CalibratedClassifierCV(ensemble=False) does the
same), choose the router, and feed the threshold search. The saved router then trains on the
whole split, cut (stratified by target) into `fit` (the PCA basis and the weights) and `stop`
(the MLP's early stopping), and takes that temperature. The held-out split the stage reports
on is never touched here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cogumi_ray.errors import DataError

if TYPE_CHECKING:
    import numpy as np

    from cogumi_ray.route.config import RouterConfig
    from cogumi_ray.route.features import Featurizer
    from cogumi_ray.route.labels import LabelSet
    from cogumi_ray.route.models import Router

log = logging.getLogger(__name__)


@dataclass
class Slices:
    fit: np.ndarray
    stop: np.ndarray


@dataclass
class Trained:
    name: str
    router: Router  # fitted on the whole split, with the out-of-fold temperature
    stats: dict[str, Any]
    oof_probs: np.ndarray  # (rows, options) out-of-fold calibrated probabilities of the split
    oof_logits: np.ndarray  # (rows, options) the same before the temperature
    selection: dict[str, Any] = field(default_factory=dict)


def split_rows(y: np.ndarray, rc: RouterConfig) -> Slices:
    """Stratified fit / stop indices; every class keeps at least one fit row."""
    import numpy as np

    rng = np.random.default_rng(rc.seed)
    fit: list[int] = []
    stop: list[int] = []
    for c in np.unique(y):
        idx = rng.permutation(np.nonzero(y == c)[0])
        n_stop = min(int(round(len(idx) * rc.early_stop_fraction)), len(idx) - 1)
        stop += idx[:n_stop].tolist()
        fit += idx[n_stop:].tolist()
    return Slices(np.sort(np.array(fit, dtype=np.int64)), np.sort(np.array(stop, dtype=np.int64)))


def fit_featurizer(labels: LabelSet, emb: np.ndarray, fit_rows: np.ndarray,
                   rc: RouterConfig) -> Featurizer:
    from cogumi_ray.route.features import Featurizer

    return Featurizer.fit(emb[fit_rows], labels.extras[fit_rows], labels.options,
                          rc.features.pca_dims, rc.features.session_features)


def selection_score(probs: np.ndarray, labels: LabelSet, metric: str) -> float:
    """Higher is better."""
    from cogumi_ray.route.calibration import nll
    from cogumi_ray.route.report import anchors, apgr_cpt, curve

    y = labels.targets
    if metric == "accuracy":
        return float((probs.argmax(axis=1) == y).mean())
    if metric == "apgr":
        a = anchors(labels.passed, labels.costs, labels.options, labels.domains)
        apgr = apgr_cpt(curve(probs, labels.passed, labels.costs), a["base_only"],
                        a["always_best_modifier"])["apgr"]
        if apgr is not None:
            return apgr
    return -nll(probs, y)  # nll, and apgr where no modifier beats the base


def fit_router(name: str, labels: LabelSet, emb: np.ndarray, rows: np.ndarray,
               rc: RouterConfig) -> tuple[Featurizer, Router, Slices, dict[str, Any]]:
    """Featurizer + router `name` on `rows` of the split (cut into fit / stop), uncalibrated."""
    from cogumi_ray.route.models import make_router

    y = labels.targets
    local = split_rows(y[rows], rc)
    s = Slices(rows[local.fit], rows[local.stop])
    featurizer = fit_featurizer(labels, emb, s.fit, rc)
    x = featurizer.transform(emb, labels.extras)
    router = make_router(name, labels.options, rc)
    stats = router.fit(x[s.fit], y[s.fit], x[s.stop], y[s.stop])
    return featurizer, router, s, stats


def folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(rows,) fold id in [0, k), stratified by target."""
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    fold = np.zeros(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = rng.permutation(np.nonzero(y == c)[0])
        fold[idx] = np.arange(len(idx)) % k
    return fold


def out_of_fold(name: str, labels: LabelSet, emb: np.ndarray, rc: RouterConfig) -> np.ndarray:
    """(rows, options) logits of each row from a router that never saw it."""
    import numpy as np

    fold = folds(labels.targets, rc.cv_folds, rc.seed)
    logits = np.zeros((len(labels), len(labels.options)))
    for k in range(rc.cv_folds):
        held, rest = np.nonzero(fold == k)[0], np.nonzero(fold != k)[0]
        if not len(held):
            continue
        featurizer, router, _, _ = fit_router(name, labels, emb, rest, rc)
        logits[held] = router.logits(featurizer.transform(emb[held], labels.extras[held]))
    return logits


def train_routers(labels: LabelSet, emb: np.ndarray,
                  rc: RouterConfig) -> tuple[Featurizer, Slices, list[Trained]]:
    """Every router in rc.routers: cross-validated, calibrated, then fitted on the whole split
    (all routers share one fit/stop cut, so they share the featurizer)."""
    import numpy as np

    from cogumi_ray.route.calibration import fit_temperature, softmax

    if len(labels) == 0:
        raise DataError("the router has no labelled rows to train on")
    if not rc.routers:
        raise DataError("route.routers is empty; name at least one of mlp, knn, logreg")
    y = labels.targets
    everything = np.arange(len(labels))
    trained, featurizer, slices = [], None, None
    for name in rc.routers:
        t0 = time.perf_counter()
        oof = out_of_fold(name, labels, emb, rc)
        featurizer, router, slices, stats = fit_router(name, labels, emb, everything, rc)
        router.temperature = fit_temperature(oof, y)
        probs = softmax(oof, router.temperature)
        stats.update(temperature=round(router.temperature, 4),
                     seconds=round(time.perf_counter() - t0, 3))
        score = selection_score(probs, labels, rc.select_by)
        trained.append(Trained(name, router, stats, probs, oof, {rc.select_by: round(score, 4)}))
        log.info("router %s: %s, out-of-fold %s %.4f", name, stats, rc.select_by, score)
    assert featurizer is not None and slices is not None
    return featurizer, slices, trained


def choose(trained: list[Trained], metric: str) -> Trained:
    """The best router by its out-of-fold score (the first configured wins ties)."""
    return max(trained, key=lambda t: t.selection[metric])


@dataclass
class Variant:
    """The routers trained on one feature set (with or without the base's confidence)."""

    name: str  # "with" or "without" (the base's confidence)
    labels: LabelSet  # the validation rows, their extras as this variant reads them
    featurizer: Featurizer
    slices: Slices
    trained: list[Trained]
    best: Trained


def train_variants(labels: LabelSet, emb: np.ndarray, confidence: np.ndarray | None,
                   rc: RouterConfig) -> tuple[Variant, dict[str, Variant]]:
    """Every router with and/or without `confidence` (validation rows' base confidence) as
    route.features.base_confidence says; the chosen variant (the best out-of-fold select_by; the
    one without on ties, it needs nothing from the base) and all trained variants."""
    from cogumi_ray.route.confidence import with_confidence

    mode = rc.features.base_confidence
    names = ["without"] if confidence is None or mode == "off" else \
        ["with"] if mode == "on" else ["without", "with"]
    if confidence is None and mode == "on":
        log.warning("route.features.base_confidence is 'on' but no compress calibrator is among "
                    "the inputs: the router trains without it")
    variants: dict[str, Variant] = {}
    for name in names:
        own = with_confidence(labels, confidence) if name == "with" else labels
        featurizer, slices, trained = train_routers(own, emb, rc)
        variants[name] = Variant(name, own, featurizer, slices, trained, choose(trained, rc.select_by))
    chosen = max(variants.values(), key=lambda v: v.best.selection[rc.select_by])
    return chosen, variants
