"""How good a router is on held-out rows: as a classifier (accuracy, per-class precision and
recall, confusion, ECE before/after temperature) and as RouteLLM measures routers, by quality
against cost.

The quality/cost curve orders queries by the best modifier's probability and sends the top
share to that modifier, the rest to the base (every cut of the CutPolicy is a point on it).
PGR = (quality - base-only) / (always-best-modifier - base-only); APGR = area under PGR over
the modifier-call share (random routing: 0.5); CPT(x) = the smallest share with PGR >= x.
"Always-best-modifier" answers each query with the modifier that passes most rows of its domain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from cogumi_ray.route.config import PolicyConfig
    from cogumi_ray.route.labels import LabelSet


def curve(probs: np.ndarray, passed: np.ndarray, costs: np.ndarray) -> dict[str, np.ndarray]:
    """Pass rate and mean cost with the top-k (k = 0..rows) queries sent to their best modifier."""
    import numpy as np

    from cogumi_ray.route.policy import best_modifier

    n = len(probs)
    m, p = best_modifier(probs)
    order = np.argsort(-p, kind="stable")
    rows = np.arange(n)
    gain = (passed[rows, m].astype(float) - passed[:, 0])[order]  # what switching row i changes
    extra = (costs[m] - costs[0])[order]
    quality = passed[:, 0].mean() + np.concatenate([[0.0], np.cumsum(gain)]) / n
    cost = costs[0] + np.concatenate([[0.0], np.cumsum(extra)]) / n
    return {"share": np.arange(n + 1) / n, "quality": quality, "cost": cost}


def anchors(passed: np.ndarray, costs: np.ndarray, options: list[str],
            domains: list[str] | None = None) -> dict[str, Any]:
    """Base-only, always-best-modifier and oracle pass rates. The best modifier is chosen per
    domain (the one passing most of that domain's rows): with one adapter per domain no single
    modifier beats the base overall, and RouteLLM's "strong model" is the modifier system."""
    import numpy as np

    rates = passed.mean(axis=0)
    doms = np.asarray(domains if domains is not None else [""] * len(passed))
    strong = np.zeros(len(passed), dtype=np.int64)
    per_domain = {}
    for d in np.unique(doms):
        rows = doms == d
        best = int(np.argmax(passed[rows, 1:].mean(axis=0)) + 1) if len(options) > 1 else 0
        strong[rows], per_domain[str(d)] = best, options[best]
    return {"base_only": float(rates[0]), "strong_option": per_domain,
            "always_best_modifier": float(passed[np.arange(len(passed)), strong].mean()),
            "strong_cost": float(costs[strong].mean()),
            "oracle": float(passed.any(axis=1).mean()),
            "per_option_pass_rate": {o: round(float(r), 4) for o, r in zip(options, rates, strict=True)}}


def apgr_cpt(c: dict[str, np.ndarray], weak: float, strong: float) -> dict[str, float | None]:
    import numpy as np

    if strong - weak <= 1e-12:  # no modifier beats the base: nothing to recover, PGR undefined
        return {"apgr": None, "cpt50": None, "cpt80": None}
    pgr = (c["quality"] - weak) / (strong - weak)
    area = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 names it trapz
    out: dict[str, float | None] = {"apgr": round(float(area(pgr, c["share"])), 4)}
    for x, key in ((0.5, "cpt50"), (0.8, "cpt80")):
        hit = np.nonzero(pgr >= x)[0]
        out[key] = round(float(c["share"][hit[0]]), 4) if len(hit) else None
    return out


def sweep(probs: np.ndarray, passed: np.ndarray, costs: np.ndarray, points: int) -> list[dict[str, float]]:
    """Pass rate, modifier share and mean cost of the CutPolicy at evenly spaced cuts."""
    import numpy as np

    from cogumi_ray.route.policy import CutPolicy

    out = []
    for cut in np.linspace(0.0, 1.0, points):
        r = CutPolicy(float(cut)).route(probs)
        out.append({"cut": round(float(cut), 4),
                    "modifier_share": round(float((r.option > 0).mean()), 4),
                    "pass_rate": round(float(passed[np.arange(len(probs)), r.option].mean()), 4),
                    "mean_cost": round(float(costs[r.option].mean()), 4)})
    return out


def operating_point(probs: np.ndarray, passed: np.ndarray, costs: np.ndarray, options: list[str],
                    pc: PolicyConfig) -> dict[str, Any]:
    """The configured policy on these rows (progressive: the same probabilities at every step)."""
    import numpy as np

    from cogumi_ray.route.policy import route_rows, routing_cost

    r = route_rows(pc, probs)
    share = np.bincount(r.option, minlength=len(options)) / len(probs)
    return {"policy": pc.kind, "cut": pc.cut, "steps": pc.steps, "thresholds": pc.thresholds,
            "pass_rate": round(float(passed[np.arange(len(probs)), r.option].mean()), 4),
            "mean_cost": round(float(routing_cost(r, costs, pc.switch_cost_per_token).mean()), 4),
            "modifier_share": round(float((r.option > 0).mean()), 4),
            "distribution": {o: round(float(s), 4) for o, s in zip(options, share, strict=True)}}


def routed_options(probs: np.ndarray, ids: list[str], options: list[str],
                   pc: PolicyConfig) -> dict[str, str]:
    """Each row's routed option under `pc` (id -> option name), so the run report can join the
    held-out rows with scores.parquet and show routed pass rates per domain × difficulty."""
    from cogumi_ray.route.policy import route_rows

    r = route_rows(pc, probs)
    return {i: options[int(k)] for i, k in zip(ids, r.option, strict=True)}


def classification(probs: np.ndarray, raw: np.ndarray, y: np.ndarray, options: list[str]) -> dict[str, Any]:
    import numpy as np
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from cogumi_ray.route.calibration import ece, nll

    pred = probs.argmax(axis=1)
    labels = list(range(len(options)))
    p, r, _, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    counts = np.bincount(y, minlength=len(options))
    return {
        "rows": len(y), "accuracy": round(float((pred == y).mean()), 4),
        "majority_accuracy": round(float(counts.max() / len(y)), 4),
        "majority_option": options[int(counts.argmax())],
        "per_class": {o: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                          "support": int(support[i])} for i, o in enumerate(options)},
        "confusion": {"labels": options, "matrix": confusion_matrix(y, pred, labels=labels).tolist()},
        "ece_uncalibrated": round(ece(raw, y), 4), "ece": round(ece(probs, y), 4),
        "nll_uncalibrated": round(nll(raw, y), 4), "nll": round(nll(probs, y), 4),
    }


def router_report(probs: np.ndarray, raw: np.ndarray, labels: LabelSet, pc: PolicyConfig,
                  points: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The report dict of one router on `labels`, and its quality/cost curve (for the plot)."""
    a = anchors(labels.passed, labels.costs, labels.options, labels.domains)
    c = curve(probs, labels.passed, labels.costs)
    return {
        "classification": classification(probs, raw, labels.targets, labels.options),
        "anchors": a,
        "routing": apgr_cpt(c, a["base_only"], a["always_best_modifier"]),
        "operating_point": operating_point(probs, labels.passed, labels.costs, labels.options, pc),
        "sweep": sweep(probs, labels.passed, labels.costs, points),
    }, c


def plot(curves: dict[str, dict[str, np.ndarray]], anchor: dict[str, Any], path: str,
         reliability: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
    """Pass rate vs modifier-call share per router (+ random/base/strong/oracle), and the
    reliability diagram (raw vs calibrated) of the chosen router."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a cluster node
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2 if reliability is not None else 1, figsize=(11, 4.5), squeeze=False)
    ax = axes[0][0]
    for name, c in curves.items():
        ax.plot(c["share"], c["quality"], label=name)
    weak, strong = anchor["base_only"], anchor["always_best_modifier"]
    ax.plot([0, 1], [weak, strong], "k--", lw=1, label="random")
    ax.scatter([0], [weak], c="k", marker="o", label="base only", zorder=3)
    ax.scatter([1], [strong], c="k", marker="s", label="always best modifier", zorder=3)
    ax.axhline(anchor["oracle"], color="g", ls=":", label="oracle")
    ax.set(xlabel="share of modifier calls", ylabel="pass rate", title="quality vs cost")
    ax.legend(fontsize=8)
    if reliability is not None:
        raw, cal, y = reliability
        ax2 = axes[0][1]
        edges = np.linspace(0, 1, 11)
        for probs, name in ((raw, "uncalibrated"), (cal, "temperature")):
            conf, right = probs.max(axis=1), probs.argmax(axis=1) == y
            idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, 9)
            xs = [conf[idx == b].mean() for b in range(10) if (idx == b).any()]
            ys = [right[idx == b].mean() for b in range(10) if (idx == b).any()]
            ax2.plot(xs, ys, "o-", label=name)
        ax2.plot([0, 1], [0, 1], "k--", lw=1)
        ax2.set(xlabel="confidence", ylabel="accuracy", title="reliability")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
