"""Ray Tune over the routing thresholds: the cut policy's confidence cut and the progressive
policy's per-step thresholds, maximising pass rate - lam * mean cost per query.

Trials only replay a router's held-out probabilities against the rows' pass/fail per option
(microseconds each), so the search is cheap; Ray Tune runs it so that the candidates and the
choice are visible in its results like every other search. Progressive thresholds are sorted
high to low within a candidate: an earlier switch decides on less evidence, so it may not ask
for less confidence than a later one. The cut and the thresholds are chosen independently (the
best trial for each policy); the configured policy kind is kept.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage

if TYPE_CHECKING:
    import numpy as np

    from cogumi_ray.route.config import PolicyConfig, RouterConfig

log = logging.getLogger(__name__)


@dataclass
class ThresholdResult:
    policy: PolicyConfig  # the configured policy with the chosen cut and thresholds
    table: list[dict[str, Any]]  # every candidate: its values and both policies' quality/cost
    chosen: dict[str, Any]


def evaluate(config: dict[str, Any], probs: np.ndarray, passed: np.ndarray, costs: np.ndarray,
             pc: PolicyConfig, lam: float) -> dict[str, Any]:
    """Quality, cost and objective of both policies under one candidate."""
    import numpy as np

    from cogumi_ray.route.policy import CutPolicy, ProgressivePolicy, routing_cost

    thresholds = tuple(sorted((config[f"t{i}"] for i in range(len(pc.steps))), reverse=True))
    out: dict[str, Any] = {"cut": config["cut"], "thresholds": list(thresholds)}
    rows = np.arange(len(probs))
    for kind, r in (("cut", CutPolicy(config["cut"]).route(probs)),
                    ("progressive", ProgressivePolicy(tuple(pc.steps), thresholds).route([probs]))):
        quality = float(passed[rows, r.option].mean())
        cost = float(routing_cost(r, costs, pc.switch_cost_per_token).mean())
        share = np.bincount(r.option, minlength=passed.shape[1]) / len(probs)
        out[f"{kind}_policy"] = {"quality": round(quality, 4), "cost": round(cost, 4),
                     "objective": round(quality - lam * cost, 6),
                     "distribution": [round(float(v), 4) for v in share]}
    return out


def trial(config: dict[str, Any], *, probs: np.ndarray, passed: np.ndarray, costs: np.ndarray,
          pc: dict[str, Any], lam: float) -> None:
    """One Ray Tune trial."""
    from ray import tune

    from cogumi_ray.route.config import PolicyConfig

    policy = PolicyConfig.model_validate(pc)
    res = evaluate(config, probs, passed, costs, policy, lam)
    tune.report({"objective": res[f"{policy.kind}_policy"]["objective"],
                 "objective_cut": res["cut_policy"]["objective"],
                 "objective_progressive": res["progressive_policy"]["objective"], "result": res})


def tune_thresholds(rc: RouterConfig, probs: np.ndarray, passed: np.ndarray, options: list[str],
                    costs: np.ndarray, out: str) -> ThresholdResult:
    """Search on Ray Tune (rows held out from the router's fit); write `tune_results.json` and
    `tune_thresholds.json` to `out`; return the policy with the chosen values."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    t, pc = rc.tune, rc.policy
    space: dict[str, Any] = {"cut": tune.uniform(*t.cut_range)}
    space.update({f"t{i}": tune.uniform(*t.threshold_range) for i in range(len(pc.steps))})
    # Candidates the search must see: the configured values (the search can only improve on them).
    seed_point = {"cut": pc.cut, **{f"t{i}": v for i, v in enumerate(pc.thresholds)}}
    fn = tune.with_resources(tune.with_parameters(
        trial, probs=probs, passed=passed, costs=costs, pc=pc.model_dump(mode="json"), lam=t.lam),
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
