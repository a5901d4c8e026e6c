"""Stage "router" (`cogumi router train`): learn which option answers each query.

Inputs: `scores` (the modifiers stage's scores.parquet), `val` and `test` (the curated splits
whose rows it scored). Every router in `route.routers` trains on the validation rows' labels
(`route.train`), is reported on the held-out rows (`route.report`), and the best out-of-fold on
validation is saved with its featurizer and policy as `router/` (loadable by `LearnedPolicy.from_dir`),
with the escalation detector in `router/escalation/`. With `route.tune.enabled` (`--tune`), Ray
Tune picks the cut and progressive thresholds first. Writes `report.json` (with `routed`: the saved
router's option per held-out row id) and `routing.png`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage
from cogumi_ray.errors import DataError

if TYPE_CHECKING:
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.route.config import RouterConfig
    from cogumi_ray.runs import RunContext, StageOutput

log = logging.getLogger(__name__)

STAGE = "router"


def run(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str]) -> StageOutput:
    return train_stage(cfg.route, ctx.stage_dir(STAGE), inputs)


def _save_dir(write: Callable[[str], None], out: str) -> None:
    """Run `write(local_dir)` into `out`, uploading when `out` is a URI."""
    if storage.is_local(out):
        write(storage.local_path(out))
        return
    with tempfile.TemporaryDirectory() as local:
        write(local)
        fs, path = storage.fs_and_path(out)
        fs.put(local.rstrip("/") + "/", path.rstrip("/") + "/", recursive=True)


def train_stage(rc: RouterConfig, out_dir: str, inputs: dict[str, str]) -> StageOutput:
    from cogumi_ray.route.bundle import RouterBundle
    from cogumi_ray.route.calibration import softmax
    from cogumi_ray.route.escalation import build_detector
    from cogumi_ray.route.features import embed
    from cogumi_ray.route.labels import load_labels
    from cogumi_ray.route.report import operating_point, routed_options, router_report
    from cogumi_ray.route.train import choose, train_routers
    from cogumi_ray.runs import StageOutput

    missing = [k for k in ("scores", "val", "test") if k not in inputs]
    if missing:
        raise DataError(f"router stage inputs lack {missing}; it needs scores, val and test")
    val = load_labels(inputs["scores"], inputs["val"], "val", rc)
    test = load_labels(inputs["scores"], inputs["test"], "test", rc)
    if val.options != test.options:
        raise DataError(f"validation rows were scored for {val.options}, held-out rows for "
                        f"{test.options}; re-run the modifiers stage")
    featurizer, slices, trained = train_routers(val, embed(val.texts, rc.features), rc)
    x_test = featurizer.transform(embed(test.texts, rc.features), test.extras)
    reports: dict[str, Any] = {}
    curves = {}
    for t in trained:
        probs, raw = t.router.predict_proba(x_test), softmax(t.router.logits(x_test))
        reports[t.name], curves[t.name] = router_report(probs, raw, test, rc.policy, rc.sweep_points)
        reports[t.name].update(train=t.stats, selection=t.selection)
    best = choose(trained, rc.select_by)
    best_probs = best.router.predict_proba(x_test)
    outputs: dict[str, str] = {}
    policy, tuned = rc.policy, None
    if rc.tune.enabled:  # on the validation rows' out-of-fold probabilities, never on test
        from cogumi_ray.tune.router_thresholds import tune_thresholds

        res = tune_thresholds(rc, best.oof_probs, val.passed, val.options, val.costs, out_dir)
        policy, tuned = res.policy, {**res.chosen, "test": operating_point(
            best_probs, test.passed, test.costs, test.options, res.policy)}
        outputs["thresholds"] = storage.join(out_dir, "tune_thresholds.json")
    detector, escalation = build_detector(rc.escalation, rc.seed)
    bundle = RouterBundle(best.router, featurizer, rc.features, policy, [float(c) for c in val.costs])

    def write_router(local: str) -> None:
        bundle.save(local)
        detector.save(os.path.join(local, "escalation"))

    outputs["router"] = storage.join(out_dir, "router")
    _save_dir(write_router, outputs["router"])
    chosen = reports[best.name]
    report = {"chosen": best.name, "select_by": rc.select_by, "options": val.options,
              "costs": dict(zip(val.options, val.costs.tolist(), strict=True)),
              "rows": {"val": len(val), "test": len(test), "fit": len(slices.fit),
                       "stop": len(slices.stop)},
              "policy": policy.model_dump(mode="json"), "tune": tuned, "routers": reports,
              "escalation": escalation,
              # The saved router's choice per held-out row, under the policy it serves with.
              "routed": {"router": best.name, "policy": policy.kind, "split": "test",
                         "scores": inputs["scores"],
                         "option": routed_options(best_probs, test.ids, test.options, policy)}}
    outputs["report"] = storage.join(out_dir, "report.json")
    storage.atomic_write_json(outputs["report"], report)
    outputs["plot"] = storage.join(out_dir, "routing.png")
    _write_plot(curves, chosen["anchors"], outputs["plot"],
                (softmax(best.router.logits(x_test)), best_probs, test.targets))
    return StageOutput(outputs=outputs, metrics=_headline(best.name, chosen, escalation, tuned))


def _write_plot(curves: dict[str, Any], anchor: dict[str, Any], out: str, reliability: Any) -> None:
    from cogumi_ray.route.report import plot

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "routing.png")
        plot(curves, anchor, path, reliability)
        with open(path, "rb") as f:
            storage.atomic_write_bytes(out, f.read())


def _headline(name: str, rep: dict[str, Any], esc: dict[str, Any],
              tuned: dict[str, Any] | None) -> dict[str, Any]:
    cls, op = rep["classification"], rep["operating_point"]
    out = {"router": name, "accuracy": cls["accuracy"], "majority_accuracy": cls["majority_accuracy"],
           "ece": cls["ece"], "ece_uncalibrated": cls["ece_uncalibrated"], **rep["routing"],
           "pass_rate": op["pass_rate"], "modifier_share": op["modifier_share"],
           "base_only_pass_rate": rep["anchors"]["base_only"], "oracle_pass_rate": rep["anchors"]["oracle"],
           "escalation_hard_f1": esc["hard"]["f1"], "escalation_p99_ms": esc["hard"]["p99_ms"]}
    if tuned is not None:
        out.update(tuned_cut=tuned["cut"], tuned_thresholds=tuned["thresholds"],
                   tuned_test_pass_rate=tuned["test"]["pass_rate"])
    return out
