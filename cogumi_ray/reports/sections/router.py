"""Router: rendered only when a `router` stage is in the manifest (nothing at all otherwise).

Reads the stage's report.json as `cogumi_ray.route.stage` writes it: every trained router's report
under `routers.<name>` (`classification`, `anchors`, `routing`, `operating_point`, `sweep`, `train`,
`selection`; see `cogumi_ray.route.report.router_report`) and the saved one named by `chosen`.
For the chosen router: the confusion matrix, per-class precision/recall, accuracy against the
majority option, ECE/NLL before and after temperature, and the quality/cost curve with its anchors
and APGR/CPT; the routed and oracle pass rates per domain × difficulty (the stage's `routed`
option per held-out row joined with the modifiers stage's scores.parquet); what each threshold
setting does (`thresholds`, route.thresholds.threshold_table) and the routers trained with and
without the base's confidence (`base_confidence`); then all routers side by side, the escalation
detector and the stage's own plot. A key an older report.json lacks leaves its table out.
"""

from __future__ import annotations

from typing import Any

from cogumi_ray import storage
from cogumi_ray.reports import plots
from cogumi_ray.reports.doc import Figure, Note, Section, Stats, Table, Text
from cogumi_ray.reports.fmt import DASH, is_num, num, pct
from cogumi_ray.reports.load import RunData
from cogumi_ray.reports.sections.common import Inline, expect, gate
from cogumi_ray.reports.sections.modifiers import COLUMNS
from cogumi_ray.reports.sections.quality import Counts, grid, tally, totals

STAGE = "router"


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _first(v: Any) -> Any:
    return v[0] if isinstance(v, list) and v else None


def _arrow(before: Any, after: Any) -> str:
    return f"{num(before)} → {num(after)}" if is_num(before) or is_num(after) else DASH


def _headline(name: str, rep: dict[str, Any], r: dict[str, Any]) -> Stats:
    cls, rt, op, a = (_d(r.get(k)) for k in ("classification", "routing", "operating_point", "anchors"))
    return Stats([
        ("chosen router", name, f"best {rep.get('select_by', DASH)} out-of-fold on validation"),
        ("accuracy", pct(cls.get("accuracy")),
         f"majority '{cls.get('majority_option', DASH)}': {pct(cls.get('majority_accuracy'))}"),
        ("ECE", num(cls.get("ece")), f"{num(cls.get('ece_uncalibrated'))} before temperature"),
        ("APGR", num(rt.get("apgr")), f"CPT(50%) {pct(rt.get('cpt50'))}, CPT(80%) {pct(rt.get('cpt80'))}"),
        ("routed pass rate", pct(op.get("pass_rate")),
         f"base only {pct(a.get('base_only'))}, {pct(op.get('modifier_share'))} modifier calls"),
    ])


def _confusion(cls: dict[str, Any]) -> list[Table | Figure]:
    cm = _d(cls.get("confusion"))
    labels, matrix = cm.get("labels"), cm.get("matrix")
    if not (isinstance(labels, list) and isinstance(matrix, list) and len(matrix) == len(labels)
            and all(isinstance(row, list) and len(row) == len(labels) for row in matrix)):
        return []
    names = [str(x) for x in labels]
    table = Table(["best \\ routed", *names],
                  [[t, *[num(v) for v in row]] for t, row in zip(names, matrix, strict=True)],
                  f"Confusion matrix on {num(cls.get('rows'))} held-out rows (rows: the option that "
                  "should answer, columns: the router's top option)",
                  numeric=tuple(range(1, len(names) + 1)))
    cells = [[float(v) if is_num(v) else None for v in row] for row in matrix]
    top = max([v for row in cells for v in row if v is not None] + [1.0])
    fig = Figure("router_confusion.png", plots.heatmap(
        cells, names, names, "Router confusion matrix", lambda v: f"{v:.0f}", 0.0, top,
        colorbar="queries", xlabel="routed option", ylabel="best option"),
        "Confusion matrix of the chosen router (rows: best option, columns: routed)")
    return [table, fig]


def _per_class(cls: dict[str, Any]) -> Table | None:
    pc = _d(cls.get("per_class"))
    rows = [[o, pct(_d(v).get("precision")), pct(_d(v).get("recall")), num(_d(v).get("support"))]
            for o, v in pc.items()]
    return Table(["option", "precision", "recall", "support"], rows,
                 "Per-class precision and recall (held-out rows)", numeric=(1, 2, 3)) if rows else None


def _calibration(cls: dict[str, Any], train: dict[str, Any]) -> Table:
    return Table(["", "before temperature", "after temperature"], [
        ["ECE", num(cls.get("ece_uncalibrated")), num(cls.get("ece"))],
        ["NLL", num(cls.get("nll_uncalibrated")), num(cls.get("nll"))],
    ], f"Calibration on held-out rows (temperature {num(train.get('temperature'))}, fitted "
       "out-of-fold on validation)", numeric=(1, 2))


def _routing(r: dict[str, Any], base_cost: Any) -> list[Table | Figure | Text]:
    a, rt, op = _d(r.get("anchors")), _d(r.get("routing")), _d(r.get("operating_point"))
    strong = _d(a.get("strong_option"))
    rows = [
        ["base only", pct(a.get("base_only")), num(base_cost)],
        ["always best modifier", pct(a.get("always_best_modifier")), num(a.get("strong_cost"))],
        ["oracle (any option passes)", pct(a.get("oracle")), DASH],
        [f"router, {op.get('policy', 'configured')} policy ({pct(op.get('modifier_share'))} "
         "modifier calls)", pct(op.get("pass_rate")), num(op.get("mean_cost"))],
    ]
    out: list[Table | Figure | Text] = [Table(
        ["anchor", "pass rate", "mean cost"], rows,
        "Quality/cost anchors (held-out rows); always best modifier = per domain: "
        + (", ".join(f"{d or 'all'} → {o}" for d, o in strong.items()) or DASH)
        + "; cost in base answers", numeric=(1, 2))]
    out.append(Table(["APGR", "CPT(50%)", "CPT(80%)"],
                     [[num(rt.get("apgr")), pct(rt.get("cpt50")), pct(rt.get("cpt80"))]],
                     "APGR = area under the recovered-performance-gap curve over the modifier-call "
                     "share (random routing: 0.5); CPT(x) = the smallest share of modifier calls "
                     "that recovers x of the gap", numeric=(0, 1, 2)))
    sweep = [p for p in r.get("sweep") or [] if isinstance(p, dict)]
    pts = [(float(p["modifier_share"]), float(p["pass_rate"])) for p in sweep
           if is_num(p.get("modifier_share")) and is_num(p.get("pass_rate"))]
    if pts and is_num(a.get("base_only")) and is_num(a.get("always_best_modifier")):
        oracle = a.get("oracle")
        here = ((float(op["modifier_share"]), float(op["pass_rate"]))
                if is_num(op.get("modifier_share")) and is_num(op.get("pass_rate")) else None)
        out.append(Figure("router_quality_cost.png", plots.quality_cost(
            pts, float(a["base_only"]), float(a["always_best_modifier"]),
            float(oracle) if is_num(oracle) else None, "Pass rate vs modifier calls", here),
            "Quality/cost curve of the chosen router (cut policy swept over its cut)"))
    if sweep:
        out.append(Table(["cut", "modifier calls", "pass rate", "mean cost"],
                         [[num(p.get("cut")), pct(p.get("modifier_share")), pct(p.get("pass_rate")),
                           num(p.get("mean_cost"))] for p in sweep],
                         "Cut policy sweep (held-out rows; cost in base answers)",
                         numeric=(0, 1, 2, 3)))
    return out


def _scores_path(run: RunData, routed: dict[str, Any]) -> str | None:
    """The modifiers stage's scores.parquet, else the one the router stage read."""
    if path := run.path("modifiers", "scores", "scores.parquet"):
        return path
    given = routed.get("scores")
    return given if isinstance(given, str) and storage.exists(given) else None


def _routed_counts(rows: list[dict], choice: dict[str, Any], split: str) -> tuple[Counts, Counts, int]:
    """(routed, oracle, rows without a verdict for their routed option): a routed row passes iff
    its chosen option passed it; the oracle passes a row iff any option did."""
    verdict: dict[tuple[str, str], bool] = {}
    slot: dict[str, tuple[str, str]] = {}
    for r in rows:
        if r.get("split") == split:
            qid = str(r.get("id"))
            verdict[(qid, str(r.get("option")))] = bool(r.get("passed"))
            slot[qid] = (str(r.get("domain")), str(r.get("difficulty")))
    routed, missing = [], 0
    for qid, option in choice.items():
        if (qid, str(option)) not in verdict:
            missing += 1
            continue
        d, f = slot[qid]
        routed.append({"domain": d, "difficulty": f, "passed": verdict[(qid, str(option))]})
    any_pass = {q: False for q in slot}
    for (q, _), ok in verdict.items():
        any_pass[q] = any_pass[q] or ok
    oracle = [{"domain": slot[q][0], "difficulty": slot[q][1], "passed": any_pass[q]} for q in slot]
    return tally(routed), tally(oracle), missing


def _routed(run: RunData, inline: Inline, sec: Section, rep: dict[str, Any]) -> None:
    routed = _d(rep.get("routed"))
    choice = _d(routed.get("option"))
    if not choice:
        sec.add(Note("router: report.json records no routed option per held-out row (a router "
                     "stage from before that was added); re-run the router stage for the routed "
                     "pass rates per domain × difficulty"))
    path = _scores_path(run, routed)
    if path is None:
        sec.add(Note("router: no scores.parquet (modifiers stage), so no routed or oracle pass "
                     "rates per domain × difficulty"))
        return
    split = str(routed.get("split") or "test")
    rows = inline.rows(path, STAGE, COLUMNS) or []
    by_routed, by_oracle, missing = _routed_counts(rows, choice, split)
    if choice and by_routed:
        sec.add(Text(f"Routed pass rates: each {split} row answered by the option the saved router "
                     f"({routed.get('router', DASH)}, {routed.get('policy', DASH)} policy) chose for "
                     "it, passing iff that option passed the row in scores.parquet; the oracle "
                     "passes a row iff any option did."))
        grid(sec, by_routed, *totals(by_routed), f"Routed ({split} split)", "routed_pass_rates.png")
    if missing:
        sec.add(Note(f"router: {missing} of {len(choice)} routed rows have no verdict for their "
                     f"option in {path} ({split} split); they are left out", "warn"))
    if by_oracle:
        grid(sec, by_oracle, *totals(by_oracle), f"Oracle ({split} split)", None)


def _compare(routers: dict[str, Any], chosen: str, select_by: Any) -> Table:
    rows = []
    for name, r in routers.items():
        r = _d(r)
        cls, rt, op = (_d(r.get(k)) for k in ("classification", "routing", "operating_point"))
        sel = _d(r.get("selection"))
        rows.append([name + (" (chosen)" if name == chosen else ""), pct(cls.get("accuracy")),
                     _arrow(cls.get("ece_uncalibrated"), cls.get("ece")),
                     _arrow(cls.get("nll_uncalibrated"), cls.get("nll")), num(rt.get("apgr")),
                     pct(rt.get("cpt50")), pct(rt.get("cpt80")), pct(op.get("pass_rate")),
                     pct(op.get("modifier_share")), num(sel.get(str(select_by)))])
    return Table(["router", "accuracy", "ECE before → after", "NLL before → after", "APGR",
                  "CPT(50%)", "CPT(80%)", "pass rate", "modifier calls",
                  f"selection ({select_by}, higher wins)"],
                 rows, "Every trained router on the held-out rows (selection: out-of-fold on "
                 "validation)", numeric=(1, 4, 5, 6, 7, 8, 9))


def _escalation(esc: dict[str, Any]) -> Table | None:
    rows = [[split, num(_d(esc.get(split)).get("rows")), num(_d(esc.get(split)).get("precision")),
             num(_d(esc.get(split)).get("recall")), num(_d(esc.get(split)).get("f1")),
             num(_d(esc.get(split)).get("p99_ms"))]
            for split in ("generated", "hard") if split in esc]
    return Table(["set", "rows", "precision", "recall", "F1", "p99 ms"], rows,
                 f"Escalation detector ({esc.get('model', DASH)}): held-out generated messages and "
                 "the shipped hard cases", numeric=(1, 2, 3, 4, 5)) if rows else None


def _tuned(tune: dict[str, Any]) -> Text:
    test = _d(tune.get("test"))
    return Text(f"Ray Tune chose cut {num(tune.get('cut'))} and progressive thresholds "
                f"{num(tune.get('thresholds'))} on validation; on the held-out rows that policy "
                f"passes {pct(test.get('pass_rate'))} with {pct(test.get('modifier_share'))} "
                "modifier calls.")


def _setting(row: dict[str, Any]) -> str:
    """A threshold-table row's setting in words: thresholds at steps, or the cut and when."""
    if row.get("policy") == "cut":
        after = row.get("decided_after")
        when = "before generation" if after == 0 else f"after {num(after)} base tokens"
        return f"cut {num(row.get('cut'))}, {when}"
    th, steps = row.get("thresholds"), row.get("steps")
    if isinstance(th, list) and isinstance(steps, list) and len(th) == len(steps):
        return ", ".join(f"{num(t)} at {num(k)}" for t, k in zip(th, steps, strict=True))
    return f"thresholds {num(th)}"


def _switches(row: dict[str, Any]) -> str:
    sw = _d(row.get("switches"))
    return ", ".join(f"{pct(v)} after {k}" for k, v in sw.items()) or DASH


def _thresholds(table: list[Any], kind: Any) -> Table | None:
    rows = []
    for r in (_d(x) for x in table):
        if not r:
            continue
        mark = " (configured)" if r.get("configured") is True else ""
        offset = r.get("offset")
        rows.append([f"{r.get('policy', DASH)}{mark}", _setting(r),
                     f"{offset:+g}" if is_num(offset) else DASH, pct(r.get("pass_rate")),
                     pct(r.get("modifier_share")), num(r.get("mean_cost")), _switches(r)])
    return Table(["policy", "setting", "offset", "pass rate", "modifier calls", "mean cost",
                  "switches (share of rows, by base tokens)"], rows,
                 "Threshold settings on the held-out rows: the configured progressive thresholds "
                 "(tokens generated by the base before each check), the same shifted by each "
                 "offset, and the cut policy decided before generation or after k base tokens; "
                 f"the served policy is '{num(kind)}'; cost in base answers, a late switch also "
                 "pays for the base tokens", numeric=(3, 4, 5)) if rows else None


def _base_confidence(bc: dict[str, Any], select_by: Any) -> list[Table | Text]:
    variants = _d(bc.get("variants"))
    if not variants:
        return []
    key = f"val_{select_by}"
    rows = []
    for name, v in variants.items():
        v = _d(v)
        router, test = v.get("router"), _d(v.get("test"))
        kept = (name == "with") == (bc.get("used") is True)
        rows.append([f"{name} base confidence", num(router), num(_d(v.get(key)).get(str(router))),
                     pct(test.get("accuracy")), num(test.get("nll")), num(test.get("apgr")),
                     "kept" if kept else DASH])
    out: list[Table | Text] = [Table(
        ["router features", "best router", f"validation {select_by} (out-of-fold, higher wins)",
         "held-out accuracy", "held-out NLL", "held-out APGR", ""], rows,
        "Base confidence feature: the routers trained with and without the base's calibrated "
        f"confidence (mode '{num(bc.get('mode'))}'; read after {num(bc.get('first_tokens'))} base "
        "tokens); the out-of-fold validation score chose, held-out numbers for information",
        numeric=(2, 3, 4, 5))]
    conf = _d(bc.get("confidence"))
    if mean := _d(conf.get("mean")):
        out.append(Text("Mean calibrated base confidence by base tokens read ("
                        f"{num(conf.get('source'))}): "
                        + ", ".join(f"{num(v)} after {k}" for k, v in mean.items()) + "."))
    return out


def section(run: RunData) -> Section | None:
    if run.stage(STAGE) is None:
        return None
    sec = Section("Router", "router")
    if not gate(run, sec, STAGE):
        return sec
    inline = Inline(run, sec)
    rep = expect(inline, STAGE, "report.json", inline.json(STAGE, "report", "report.json"), dict)
    routers = expect(inline, STAGE, "routers", (rep or {}).get("routers"), dict) or {}
    chosen = str((rep or {}).get("chosen"))
    r = _d(routers.get(chosen))
    if rep is None or not r:
        # Without the report the manifest's headline metrics are all there is to show.
        m = run.metrics(STAGE)
        scalars = [[k, num(v)] for k, v in m.items() if isinstance(v, int | float | str | bool)]
        if scalars:
            sec.add(Table(["metric", "value"], scalars, "Router stage metrics (manifest)", numeric=(1,)))
        if rep is not None:
            sec.add(Note(f"router: report.json names no trained router {chosen!r}", "warn"))
    else:
        rows = _d(rep.get("rows"))
        sec.add(_headline(chosen, rep, r), Text(
            f"Options {num(rep.get('options'))}; trained on {num(rows.get('val'))} validation rows "
            f"(fit {num(rows.get('fit'))}, early stop {num(rows.get('stop'))}), measured on "
            f"{num(rows.get('test'))} held-out rows."))
        cls = _d(r.get("classification"))
        sec.add(*_confusion(cls))
        if pc := _per_class(cls):
            sec.add(pc)
        sec.add(_calibration(cls, _d(r.get("train"))))
        sec.add(*_routing(r, _d(rep.get("costs")).get(str(_first(rep.get("options"))))))
        _routed(run, inline, sec, rep)
        if isinstance(rep.get("tune"), dict):
            sec.add(_tuned(rep["tune"]))
        table = expect(inline, STAGE, "thresholds", rep.get("thresholds"), list)
        if table and (th := _thresholds(table, _d(rep.get("policy")).get("kind"))):
            sec.add(th)
        bc = expect(inline, STAGE, "base_confidence", rep.get("base_confidence"), dict)
        if bc:
            sec.add(*_base_confidence(bc, rep.get("select_by")))
        sec.add(_compare(routers, chosen, rep.get("select_by")))
        if esc := _escalation(_d(rep.get("escalation"))):
            sec.add(esc)
    for path in run.glob(STAGE, "*.png"):  # the stage's own plot: every router's curve, reliability
        name = path.rsplit("/", 1)[-1]
        if png := inline.bytes_at(path, STAGE):
            sec.add(Figure(f"router_{name}", png, f"Router stage: {name}", wide=True))
    if len(sec.blocks) == 0:
        sec.add(Note("router: finished, but recorded no metrics or report to show"))
    return sec
