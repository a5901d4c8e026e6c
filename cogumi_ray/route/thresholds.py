"""What each threshold setting of the progressive policy does, on held-out rows.

The report's table: the configured setting (route.policy.thresholds at route.policy.steps), the
same shifted by each of route.threshold_offsets, and the cut policy, each with its pass rate,
share of modifier calls, mean cost (a switch after k base tokens also pays for those k tokens) and
the share of rows switching at each step. The progressive rows read `step_probs[i]`, the router's
probabilities after steps[i] generated tokens (a router reading the base's confidence sees it
after that many tokens); the cut policy decides before the base generates anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from cogumi_ray.route.config import PolicyConfig
    from cogumi_ray.route.policy import Routing


def settings(pc: PolicyConfig, offsets: list[float]) -> list[tuple[float, tuple[float, ...]]]:
    """(offset, thresholds) per setting, highest thresholds first; offset 0 always present,
    shifted settings that clip to an earlier one dropped."""
    out: list[tuple[float, tuple[float, ...]]] = []
    for off in sorted({0.0, *offsets}, reverse=True):
        th = tuple(round(min(max(t + off, 0.0), 1.0), 4) for t in pc.thresholds)
        if off == 0.0 or all(th != seen for _, seen in out):
            out.append((round(off, 4), th))
    return out


def outcome(r: Routing, passed: np.ndarray, costs: np.ndarray, switch_cost_per_token: float,
            steps: list[int]) -> dict[str, Any]:
    import numpy as np

    from cogumi_ray.route.policy import routing_cost

    switched = r.option > 0
    return {"pass_rate": round(float(passed[np.arange(len(passed)), r.option].mean()), 4),
            "modifier_share": round(float(switched.mean()), 4),
            "mean_cost": round(float(routing_cost(r, costs, switch_cost_per_token).mean()), 4),
            "switches": {str(k): round(float((switched & (r.step_tokens == k)).mean()), 4)
                         for k in steps}}


def threshold_table(step_probs: list[np.ndarray], cut_probs: np.ndarray, passed: np.ndarray,
                    costs: np.ndarray, pc: PolicyConfig, offsets: list[float],
                    late: tuple[int, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """Rows of the table (see the module doc). `late` = (k, probabilities after k tokens): also
    the cut policy decided after k base tokens (what a router reading the confidence needs)."""
    import numpy as np

    from cogumi_ray.route.policy import CutPolicy, ProgressivePolicy

    rows: list[dict[str, Any]] = []
    for off, th in settings(pc, offsets):
        r = ProgressivePolicy(tuple(pc.steps), th).route(step_probs)
        rows.append({"policy": "progressive", "configured": off == 0.0, "offset": off,
                     "steps": list(pc.steps), "thresholds": list(th),
                     **outcome(r, passed, costs, pc.switch_cost_per_token, list(pc.steps))})
    r = CutPolicy(pc.cut).route(cut_probs)
    rows.append({"policy": "cut", "configured": pc.kind == "cut", "cut": pc.cut,
                 "decided_after": 0, **outcome(r, passed, costs, pc.switch_cost_per_token, [0])})
    if late is not None:
        k, probs = late
        r = CutPolicy(pc.cut).route(probs)
        r.step_tokens = np.where(r.option > 0, k, r.step_tokens)  # the base's k tokens are wasted
        rows.append({"policy": "cut", "configured": False, "cut": pc.cut, "decided_after": k,
                     **outcome(r, passed, costs, pc.switch_cost_per_token, [k])})
    return rows


def step_views(router: Any, featurizer: Any, emb: np.ndarray, extras: np.ndarray,
               confidence: Any, steps: list[int], first_tokens: int
               ) -> tuple[list[np.ndarray], np.ndarray, tuple[int, np.ndarray] | None]:
    """A router's probabilities as each policy sees them: (after each step, before generation,
    (first_tokens, after first_tokens) or None). `confidence` (a BaseConfidence of these rows) is
    None for a router that does not read it: then every view is the same array."""
    from cogumi_ray.route.confidence import confidence_at

    if confidence is None:
        probs = router.predict_proba(featurizer.transform(emb, extras))
        return [probs], probs, None

    def at(values: Any) -> np.ndarray:
        return router.predict_proba(featurizer.transform(emb, confidence_at(extras, values)))

    before = at(float(featurizer.extra_mean[-1]))  # unknown yet: the training mean
    return [at(confidence.at(k)) for k in steps], before, (first_tokens, at(confidence.at(first_tokens)))
