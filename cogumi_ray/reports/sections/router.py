"""Router: confusion matrix and quality/cost curve, rendered only when a `router` stage is in the
manifest (nothing at all otherwise).

The router stage is newer than this report, so its report.json is read by shape, not by one fixed
schema: a confusion matrix as {"labels": [...], "matrix": [[...]]} (rows = best option, columns =
routed option) or as {true: {routed: count}}; a quality/cost table as a list of points with a cost
key (cost, mean_cost, strong_share, call_share) and a quality key (pass_rate, quality).
"""

from __future__ import annotations

from typing import Any

from cogumi_ray.reports import plots
from cogumi_ray.reports.doc import Figure, Note, Section, Table
from cogumi_ray.reports.fmt import is_num, num
from cogumi_ray.reports.load import RunData
from cogumi_ray.reports.sections.common import Inline, gate

STAGE = "router"
CONFUSION_KEYS = ("confusion", "confusion_matrix")
CURVE_KEYS = ("quality_cost", "sweep", "curve", "quality_vs_cost")
X_KEYS = ("cost", "mean_cost", "strong_share", "call_share", "share")
Y_KEYS = ("pass_rate", "quality", "score")


def _first(d: dict, keys: tuple[str, ...]) -> Any:
    return next((d[k] for k in keys if k in d), None)


def confusion(raw: Any) -> tuple[list[str], list[list[float]]] | None:
    if isinstance(raw, dict) and isinstance(raw.get("matrix"), list):
        labels = [str(x) for x in raw.get("labels") or raw.get("options") or range(len(raw["matrix"]))]
        matrix = [[float(v) if is_num(v) else 0.0 for v in row] for row in raw["matrix"]
                  if isinstance(row, list)]
        return (labels, matrix) if matrix and len(matrix) == len(labels) else None
    if isinstance(raw, dict) and raw and all(isinstance(v, dict) for v in raw.values()):
        labels = list(dict.fromkeys([*raw, *[k for v in raw.values() for k in v]]))
        return labels, [[float(raw.get(t, {}).get(p, 0)) for p in labels] for t in labels]
    return None


def curve(raw: Any) -> tuple[str, str, list[tuple[float, float]]] | None:
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], dict):
        return None
    xk = next((k for k in X_KEYS if k in raw[0]), None)
    yk = next((k for k in Y_KEYS if k in raw[0]), None)
    if xk is None or yk is None:
        return None
    pts = [(float(p[xk]), float(p[yk])) for p in raw
           if isinstance(p, dict) and is_num(p.get(xk)) and is_num(p.get(yk))]
    return (xk, yk, pts) if pts else None


def section(run: RunData) -> Section | None:
    if run.stage(STAGE) is None:
        return None
    sec = Section("Router", "router")
    if not gate(run, sec, STAGE):
        return sec
    inline = Inline(run, sec)
    m = run.metrics(STAGE)
    scalars = [[k, num(v)] for k, v in m.items() if isinstance(v, int | float | str | bool)]
    if scalars:
        sec.add(Table(["metric", "value"], scalars, "Router stage metrics", numeric=(1,)))
    rep = inline.json(STAGE, "report", "report.json", required=False)
    rep = rep if isinstance(rep, dict) else {}
    if cm := confusion(_first(rep, CONFUSION_KEYS)):
        labels, matrix = cm
        sec.add(Table(["best \\ routed", *labels],
                      [[t, *[num(v) for v in row]] for t, row in zip(labels, matrix, strict=True)],
                      "Confusion matrix (rows: best option, columns: routed option)",
                      numeric=tuple(range(1, len(labels) + 1))))
        sec.add(Figure("router_confusion.png", plots.heatmap(
            matrix, labels, labels, "Router confusion matrix", lambda v: num(v, 3), 0.0,
            max(max(r) for r in matrix) or 1.0, cmap="viridis"), "Router confusion matrix"))
    if cv := curve(_first(rep, CURVE_KEYS)):
        xk, yk, pts = cv
        sec.add(Figure("router_quality_cost.png", plots.xy(pts, "Quality vs cost", xk, yk),
                       "Router quality/cost curve"))
    for path in run.glob(STAGE, "*.png"):
        name = path.rsplit("/", 1)[-1]
        if png := inline.bytes_at(path, STAGE):
            sec.add(Figure(f"router_{name}", png, f"Router stage: {name}"))
    if len(sec.blocks) == 0:
        sec.add(Note("router: finished, but recorded no metrics or report to show"))
    return sec
