"""The logistic-regression router (scikit-learn, multinomial, L2): the linear baseline.

Saved as its weight matrix and intercepts, one row per option: options no training row targets
get an intercept of ABSENT_LOGIT, so they are never chosen yet the matrix keeps its shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cogumi_ray.route.config import LogRegConfig
from cogumi_ray.route.models import ABSENT_LOGIT, Router

if TYPE_CHECKING:
    import numpy as np


class LogRegRouter(Router):
    name = "logreg"
    config_cls = LogRegConfig
    cfg: LogRegConfig

    def __init__(self, options: list[str], cfg: LogRegConfig, seed: int = 0) -> None:
        super().__init__(options, cfg, seed)
        self.coef: np.ndarray | None = None  # (options, dim)
        self.intercept: np.ndarray | None = None  # (options,)

    def fit(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> dict[str, Any]:
        import numpy as np

        n = len(self.options)
        present = np.unique(y)
        self.coef = np.zeros((n, x.shape[1]))
        self.intercept = np.full(n, ABSENT_LOGIT)
        if len(present) == 1:  # scikit-learn refuses one class: the constant answer is exact
            self.intercept[present[0]] = 0.0
            return {"classes": 1}
        from sklearn.linear_model import LogisticRegression

        from cogumi_ray.route.mlp import class_weights

        w = class_weights(y, n, self.cfg.class_weights)
        clf = LogisticRegression(C=self.cfg.c, max_iter=self.cfg.max_iter, random_state=self.seed,
                                 class_weight={int(c): float(w[c]) for c in present})
        clf.fit(x, y)
        if len(present) == 2:  # binary: one row w, P(classes_[1]) = sigmoid(w.x + b) = softmax([0, z])
            self.coef[present[1]], self.intercept[present[1]] = clf.coef_[0], clf.intercept_[0]
            self.intercept[present[0]] = 0.0
        else:
            self.coef[present], self.intercept[present] = clf.coef_, clf.intercept_
        return {"classes": int(len(present)), "iterations": int(np.max(clf.n_iter_))}

    def logits(self, x: np.ndarray) -> np.ndarray:
        assert self.coef is not None and self.intercept is not None, "fit or load the router first"
        return x @ self.coef.T + self.intercept

    def state(self) -> dict[str, np.ndarray]:
        assert self.coef is not None and self.intercept is not None
        return {"coef": self.coef, "intercept": self.intercept}

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.coef, self.intercept = arrays["coef"], arrays["intercept"]
