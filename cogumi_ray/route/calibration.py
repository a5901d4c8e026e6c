"""Probabilities a router can be held to: softmax with one fitted temperature, and the expected
calibration error (ECE) that shows whether "0.8 confident" means right 80% of the time.

One temperature (Guo et al., 2017) rescales all logits: it fixes over-confidence without
changing any argmax, so accuracy is untouched and thresholds keep their meaning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

_T_BOUNDS = (0.05, 20.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    import numpy as np

    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)  # stable: exp of non-positive numbers only
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    import numpy as np

    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)).mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) on held-out rows."""
    import numpy as np
    from scipy.optimize import minimize_scalar

    if len(y) == 0:
        return 1.0
    lo, hi = np.log(_T_BOUNDS[0]), np.log(_T_BOUNDS[1])  # search log T: the NLL is smoother there
    res = minimize_scalar(lambda t: nll(softmax(logits, float(np.exp(t))), y), bounds=(lo, hi),
                          method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the top-1 confidence, equal-width bins."""
    import numpy as np

    if len(y) == 0:
        return 0.0
    conf = probs.max(axis=1)
    right = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.mean() * abs(right[m].mean() - conf[m].mean())
    return float(total)
