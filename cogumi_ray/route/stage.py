"""Stage "router" (`cogumi router train`): learn which option answers each query.

Inputs: `scores` (the modifiers stage's scores.parquet), `val` and `test` (the curated splits
whose rows it scored); when the compress stage ran, its `calibrator`, `gguf` and `base` (HF
folder) give the base's calibrated confidence per query (`route.confidence`), a feature the
routers are trained with and without (route.features.base_confidence). Every router in
`route.routers` trains on the validation rows' labels (`route.train`), is reported on the held-out
rows (`route.report`), and the best out-of-fold on validation is saved with its featurizer and
policy as `router/` (loadable by `LearnedPolicy.from_dir`), with the escalation detector in
`router/escalation/`. With `route.tune.enabled` (`--tune`), Ray
Tune picks the cut and progressive thresholds first. Writes `report.json` (with `routed`: the saved
router's option per held-out row id; `thresholds`: what each progressive threshold setting and the
cut do on the held-out rows, `route.thresholds`; `base_confidence`: with vs without) and
`routing.png`.
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
    compress = getattr(cfg, "compress", None)  # the calibrator read this many generated tokens
    tokens = compress.calibration.first_tokens if compress is not None else None
    return train_stage(cfg.route, ctx.stage_dir(STAGE), inputs, confidence_tokens=tokens)


def _save_dir(write: Callable[[str], None], out: str) -> None:
    """Run `write(local_dir)` into `out`, uploading when `out` is a URI."""
    if storage.is_local(out):
        write(storage.local_path(out))
        return
    with tempfile.TemporaryDirectory() as local:
        write(local)
        fs, path = storage.fs_and_path(out)
        fs.put(local.rstrip("/") + "/", path.rstrip("/") + "/", recursive=True)


def train_stage(rc: RouterConfig, out_dir: str, inputs: dict[str, str],
                confidence_tokens: int | None = None) -> StageOutput:
    """`inputs`: scores, val, test; optionally the compress stage's calibrator, gguf and base
    (its HF folder), which give the base's confidence (`route.confidence`) after
    `confidence_tokens` (the calibrator's first_tokens; None = the last progressive step)."""
    from cogumi_ray.route.bundle import RouterBundle
    from cogumi_ray.route.calibration import softmax
    from cogumi_ray.route.confidence import read_base_confidence, with_confidence
    from cogumi_ray.route.escalation import build_detector
    from cogumi_ray.route.features import embed
    from cogumi_ray.route.labels import load_labels
    from cogumi_ray.route.report import operating_point, routed_options, router_report
    from cogumi_ray.route.thresholds import step_views, threshold_table
    from cogumi_ray.route.train import choose, train_variants
    from cogumi_ray.runs import StageOutput

    missing = [k for k in ("scores", "val", "test") if k not in inputs]
    if missing:
        raise DataError(f"router stage inputs lack {missing}; it needs scores, val and test")
    val = load_labels(inputs["scores"], inputs["val"], "val", rc)
    test = load_labels(inputs["scores"], inputs["test"], "test", rc)
    if val.options != test.options:
        raise DataError(f"validation rows were scored for {val.options}, held-out rows for "
                        f"{test.options}; re-run the modifiers stage")
    first_tokens = confidence_tokens or max(rc.policy.steps)
    conf = read_base_confidence(val.texts + test.texts, [*rc.policy.steps, first_tokens], inputs,
                                rc.features, out_dir)
    conf_val, conf_test = (None, None) if conf is None else \
        (conf.rows(slice(0, len(val))), conf.rows(slice(len(val), None)))
    emb_val, emb_test = embed(val.texts, rc.features), embed(test.texts, rc.features)
    variant, variants = train_variants(val, emb_val, None if conf_val is None
                                       else conf_val.at(first_tokens), rc)
    featurizer, slices, trained, reads = variant.featurizer, variant.slices, variant.trained, \
        variant.name == "with"
    # the held-out rows as each variant reads them ("with" exists only when conf_test does)
    tests = {v: with_confidence(test, conf_test.at(first_tokens)) if conf_test is not None and v == "with"
             else test for v in variants}
    test = tests[variant.name]  # a router reading the confidence: known after first_tokens
    x_test = featurizer.transform(emb_test, test.extras)
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
        from cogumi_ray.tune.router_thresholds import oof_step_views, tune_thresholds

        # each policy on what it reads when serving: per step / before generation, as the table
        after, before = oof_step_views(best, variant.labels, emb_val, conf_val if reads else None,
                                       list(rc.policy.steps), rc)
        res = tune_thresholds(rc, before, val.passed, val.options, val.costs, out_dir, after)
        policy, tuned = res.policy, {**res.chosen, "test": operating_point(
            best_probs, test.passed, test.costs, test.options, res.policy)}
        outputs["thresholds"] = storage.join(out_dir, "tune_thresholds.json")
    detector, escalation = build_detector(rc.escalation, rc.seed)
    saved_features = rc.features.model_copy(update={"base_confidence": "on" if reads else "off"})
    bundle = RouterBundle(best.router, featurizer, saved_features, policy,
                          [float(c) for c in val.costs])

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
    views = step_views(best.router, featurizer, emb_test, test.extras, conf_test if reads else None,
                       list(policy.steps), first_tokens)
    report["thresholds"] = threshold_table(views[0], views[1], test.passed, test.costs, policy,
                                           rc.threshold_offsets, views[2])
    report["base_confidence"] = _confidence_report(conf, variants, variant.name, tests, emb_test,
                                                   rc, first_tokens)
    outputs["report"] = storage.join(out_dir, "report.json")
    storage.atomic_write_json(outputs["report"], report)
    outputs["plot"] = storage.join(out_dir, "routing.png")
    _write_plot(curves, chosen["anchors"], outputs["plot"],
                (softmax(best.router.logits(x_test)), best_probs, test.targets))
    return StageOutput(outputs=outputs, metrics={
        **_headline(best.name, chosen, escalation, tuned),
        **_policy_metrics(report["thresholds"], report["base_confidence"], rc.select_by)})


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


def _confidence_report(conf: Any, variants: dict[str, Any], chosen: str, tests: dict[str, Any],
                       emb_test: Any, rc: RouterConfig, first_tokens: int) -> dict[str, Any]:
    """The base's confidence (per k) and the routers trained with and without it: out-of-fold
    select_by on validation (what chose between them) and, for information, held-out numbers."""
    from cogumi_ray.route.calibration import nll
    from cogumi_ray.route.report import anchors, apgr_cpt, curve

    out: dict[str, Any] = {"used": chosen == "with", "mode": rc.features.base_confidence,
                           "first_tokens": first_tokens,
                           "confidence": None if conf is None else conf.summary(), "variants": {}}
    for name, v in variants.items():
        test = tests[name]
        probs = v.best.router.predict_proba(v.featurizer.transform(emb_test, test.extras))
        a = anchors(test.passed, test.costs, test.options, test.domains)
        out["variants"][name] = {
            "router": v.best.name,
            "val_" + rc.select_by: {t.name: t.selection[rc.select_by] for t in v.trained},
            "test": {"accuracy": round(float((probs.argmax(axis=1) == test.targets).mean()), 4),
                     "nll": round(nll(probs, test.targets), 4),
                     "apgr": apgr_cpt(curve(probs, test.passed, test.costs), a["base_only"],
                                      a["always_best_modifier"])["apgr"]}}
    return out


def _policy_metrics(table: list[dict[str, Any]], conf: dict[str, Any], select_by: str) -> dict[str, Any]:
    """Headline numbers: the configured progressive setting, and the with/without comparison."""
    out: dict[str, Any] = {"base_confidence_used": conf["used"]}
    for name, v in conf["variants"].items():
        out[f"val_{select_by}_{name}_confidence"] = v["val_" + select_by][v["router"]]
    row = next(r for r in table if r["policy"] == "progressive" and r["configured"])
    out.update({f"progressive_{k}": row[k] for k in ("pass_rate", "modifier_share", "mean_cost")})
    out["progressive_switches"] = row["switches"]
    return out
