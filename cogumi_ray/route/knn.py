"""The similarity-weighted kNN router: the labelled queries most like this one vote for their
targets, each with weight exp(cosine / temperature).

Nothing is fitted but the stored rows, so it is the strongest baseline when labels are few and
the first to show label noise (its votes are the labels themselves).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cogumi_ray.route.config import KNNConfig
from cogumi_ray.route.models import Router

if TYPE_CHECKING:
    import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    import numpy as np

    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)


class KNNRouter(Router):
    name = "knn"
    config_cls = KNNConfig
    cfg: KNNConfig

    def __init__(self, options: list[str], cfg: KNNConfig, seed: int = 0) -> None:
        super().__init__(options, cfg, seed)
        self.keys: np.ndarray | None = None  # (train rows, dim) unit vectors
        self.labels: np.ndarray | None = None  # (train rows,)

    def fit(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> dict[str, Any]:
        import numpy as np

        self.keys = _unit(x).astype(np.float32)
        self.labels = y.astype(np.int64)
        return {"rows": len(y), "k": min(self.cfg.k, len(y))}

    def logits(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        assert self.keys is not None and self.labels is not None, "fit or load the router first"
        k = min(self.cfg.k, len(self.labels))
        sims = _unit(x.astype(np.float32)) @ self.keys.T  # (queries, train rows)
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (queries, k), unordered
        top_sims = np.take_along_axis(sims, top, axis=1)
        # Relative to each query's nearest neighbour (weight 1): far-away neighbourhoods still
        # vote with their labels instead of drowning in the smoothing.
        weights = np.exp((top_sims - top_sims.max(axis=1, keepdims=True)) / self.cfg.temperature)
        votes = np.full((len(x), len(self.options)), self.cfg.smoothing, dtype=np.float64)
        rows = np.repeat(np.arange(len(x)), k)
        np.add.at(votes, (rows, self.labels[top].ravel()), weights.ravel())
        return np.log(votes / votes.sum(axis=1, keepdims=True))

    def state(self) -> dict[str, np.ndarray]:
        assert self.keys is not None and self.labels is not None
        return {"keys": self.keys, "labels": self.labels}

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.keys, self.labels = arrays["keys"], arrays["labels"]
