"""Ray Tune over the routing thresholds: the cut policy's confidence cut and the progressive
policy's per-step thresholds, maximising pass rate - lam * mean cost per query.

Trials only replay a router's held-out probabilities against the rows' pass/fail per option
(microseconds each), so the search is cheap; Ray Tune runs it so that the candidates and the
choice are visible in its results like every other search. Progressive thresholds are sorted
high to low within a candidate: an earlier switch decides on less evidence, so it may not ask
for less confidence than a later one. The cut and the thresholds are chosen independently (the
best trial for each policy); the configured policy kind is kept.

Each policy is replayed on the probabilities it would see when serving: the progressive policy
on the router's probabilities after each of its steps (a router reading the base's confidence
sees it after that many tokens; `oof_step_views`), the cut policy on those before the base
generates anything. That is how the stage's threshold table (route.thresholds) scores the same
settings on the held-out rows; a router that does not read the confidence has one set for both.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage

if TYPE_CHECKING:
    import numpy as np

    from cogumi_ray.route.confidence import BaseConfidence
    from cogumi_ray.route.config import PolicyConfig, RouterConfig
    from cogumi_ray.route.labels import LabelSet
    from cogumi_ray.route.train import Trained

log = logging.getLogger(__name__)


@dataclass
class ThresholdResult:
    policy: PolicyConfig  # the configured policy with the chosen cut and thresholds
    table: list[dict[str, Any]]  # every candidate: its values and both policies' quality/cost
    chosen: dict[str, Any]


def oof_step_views(t: Trained, labels: LabelSet, emb: np.ndarray, confidence: BaseConfidence | None,
                   steps: list[int], rc: RouterConfig) -> tuple[list[np.ndarray], np.ndarray]:
    """Router `t`'s out-of-fold probabilities of the split as each policy sees them: (after each
    of `steps`, before generation), calibrated with its temperature. `labels` are the split as
    `t` was trained on it (the confidence as its last extra column); `confidence` None (a router
    that does not read it): `t.oof_probs` for both. The fold models are the ones
    route.train.out_of_fold fits (same folds, same seed), refitted here because it keeps only
    their logits at the confidence it trained with."""
    import numpy as np

    from cogumi_ray.route.calibration import softmax
    from cogumi_ray.route.confidence import confidence_at
    from cogumi_ray.route.train import fit_router, folds

    if confidence is None:
        return [t.oof_probs], t.oof_probs
    fold = folds(labels.targets, rc.cv_folds, rc.seed)
    after = np.zeros((len(steps), len(labels), len(labels.options)))  # (steps, rows, options)
    before = np.zeros((len(labels), len(labels.options)))
    for k in range(rc.cv_folds):
        held, rest = np.nonzero(fold == k)[0], np.nonzero(fold != k)[0]
        if not len(held):
            continue
        featurizer, router, _, _ = fit_router(t.name, labels, emb, rest, rc)
        mean = float(featurizer.extra_mean[-1])  # before generation the confidence is unknown
        for i, values in enumerate([mean, *(confidence.at(s)[held] for s in steps)]):
            x = featurizer.transform(emb[held], confidence_at(labels.extras[held], values))
            (before if i == 0 else after[i - 1])[held] = router.logits(x)
    temperature = t.router.temperature
    return [softmax(a, temperature) for a in after], softmax(before, temperature)


def evaluate(config: dict[str, Any], probs: np.ndarray, passed: np.ndarray, costs: np.ndarray,
             pc: PolicyConfig, lam: float, step_probs: list[np.ndarray] | None = None) -> dict[str, Any]:
    """Quality, cost and objective of both policies under one candidate. `probs`: what the cut
    policy reads (before the base generates); `step_probs[i]`: what the progressive policy reads
    after steps[i] tokens (None: `probs` at every step)."""
    import numpy as np

    from cogumi_ray.route.policy import CutPolicy, ProgressivePolicy, routing_cost

    thresholds = tuple(sorted((config[f"t{i}"] for i in range(len(pc.steps))), reverse=True))
    out: dict[str, Any] = {"cut": config["cut"], "thresholds": list(thresholds)}
    rows = np.arange(len(probs))
    progressive = ProgressivePolicy(tuple(pc.steps), thresholds)
    for kind, r in (("cut", CutPolicy(config["cut"]).route(probs)),
                    ("progressive", progressive.route(step_probs or [probs]))):
        quality = float(passed[rows, r.option].mean())
        cost = float(routing_cost(r, costs, pc.switch_cost_per_token).mean())
        share = np.bincount(r.option, minlength=passed.shape[1]) / len(probs)
        out[f"{kind}_policy"] = {"quality": round(quality, 4), "cost": round(cost, 4),
                     "objective": round(quality - lam * cost, 6),
                     "distribution": [round(float(v), 4) for v in share]}
    return out


def trial(config: dict[str, Any], *, probs: np.ndarray, passed: np.ndarray, costs: np.ndarray,
          pc: dict[str, Any], lam: float, step_probs: list[np.ndarray] | None = None) -> None:
    """One Ray Tune trial."""
    from ray import tune

    from cogumi_ray.route.config import PolicyConfig

    policy = PolicyConfig.model_validate(pc)
    res = evaluate(config, probs, passed, costs, policy, lam, step_probs)
    tune.report({"objective": res[f"{policy.kind}_policy"]["objective"],
                 "objective_cut": res["cut_policy"]["objective"],
                 "objective_progressive": res["progressive_policy"]["objective"], "result": res})


def tune_thresholds(rc: RouterConfig, probs: np.ndarray, passed: np.ndarray, options: list[str],
                    costs: np.ndarray, out: str,
                    step_probs: list[np.ndarray] | None = None) -> ThresholdResult:
    """Search on Ray Tune (rows held out from the router's fit); write `tune_results.json` and
    `tune_thresholds.json` to `out`; return the policy with the chosen values. `probs` (rows,
    options): what the cut policy reads; `step_probs`: one such array per progressive step
    (`oof_step_views`), None = `probs` at every step."""
    from cogumi_ray.errors import ConfigError

    if step_probs is not None and len(step_probs) not in (1, len(rc.policy.steps)):
        raise ConfigError(f"{len(step_probs)} per-step probability arrays for route.policy.steps "
                          f"{rc.policy.steps}; pass one per step (oof_step_views) or None")
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    t, pc = rc.tune, rc.policy
    space: dict[str, Any] = {"cut": tune.uniform(*t.cut_range)}
    space.update({f"t{i}": tune.uniform(*t.threshold_range) for i in range(len(pc.steps))})
    # Candidates the search must see: the configured values (the search can only improve on them).
    seed_point = {"cut": pc.cut, **{f"t{i}": v for i, v in enumerate(pc.thresholds)}}
    fn = tune.with_resources(tune.with_parameters(
        trial, probs=probs, passed=passed, costs=costs, pc=pc.model_dump(mode="json"), lam=t.lam,
        step_probs=step_probs),
        {"cpu": 1})
    tuner = tune.Tuner(
        fn, param_space=space,
        tune_config=tune.TuneConfig(
            metric="objective", mode="max", num_samples=t.num_samples,
            max_concurrent_trials=t.max_concurrent,
            search_alg=BasicVariantGenerator(points_to_evaluate=[seed_point], random_state=rc.seed)),
        run_config=tune.RunConfig(name="router_thresholds", verbose=0, storage_path=os.path.abspath(
            storage.local_path(storage.join(out, "tune")))),
    )
    results = tuner.fit()
    table = [r.metrics["result"] for r in results if not r.error and "result" in r.metrics]
    if not table:
        from cogumi_ray.errors import RunError

        errors = [str(r.error) for r in results if r.error]
        raise RunError(f"every router-threshold trial failed; first error: {errors[:1]}")
    return _choose(rc, table, options, out)


def _choose(rc: RouterConfig, table: list[dict[str, Any]], options: list[str], out: str) -> ThresholdResult:
    pc = rc.policy
    best_cut = max(table, key=lambda r: r["cut_policy"]["objective"])
    best_prog = max(table, key=lambda r: r["progressive_policy"]["objective"])
    policy = type(pc).model_validate({**pc.model_dump(), "cut": round(best_cut["cut"], 4),
                                      "thresholds": [round(v, 4) for v in best_prog["thresholds"]]})
    chosen = {
        "kind": pc.kind, "lam": rc.tune.lam, "cut": policy.cut, "thresholds": policy.thresholds,
        "steps": pc.steps, "options": options,
        "cut_policy": best_cut["cut_policy"], "progressive_policy": best_prog["progressive_policy"],
        "distribution": dict(zip(options, (best_cut if pc.kind == "cut" else best_prog)[
            f"{pc.kind}_policy"]["distribution"], strict=True)),
    }
    storage.atomic_write_json(storage.join(out, "tune_results.json"), {"trials": table})
    storage.atomic_write_json(storage.join(out, "tune_thresholds.json"), chosen)
    log.info("router thresholds: cut %.3f (objective %.4f), progressive %s (objective %.4f), "
             "%d candidates", policy.cut, best_cut["cut_policy"]["objective"], policy.thresholds,
             best_prog["progressive_policy"]["objective"], len(table))
    return ThresholdResult(policy, table, chosen)
