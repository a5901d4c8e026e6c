"""KMeans over failure embeddings, k chosen by silhouette (or fixed), clusters numbered by size.

This runs on the driver: failures are a small subset of what was judged (thousands of rows, not
millions), and KMeans over a few thousand 384-d vectors takes seconds. Silhouette is O(n^2), so
it is computed on a sample once n is large.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Clustering:
    labels: list[int]  # cluster per row; 0 is the largest cluster
    k: int
    selection: str  # "silhouette", "config" or why neither applied
    silhouette: dict[int, float] = field(default_factory=dict)  # k -> score, for every k tried

    @property
    def best_silhouette(self) -> float | None:
        return self.silhouette.get(self.k)


def _fit(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)


def _by_size(labels: np.ndarray) -> list[int]:
    """Renumber clusters so 0 is the largest (ties: first seen)."""
    import numpy as np

    ids, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = sorted(range(len(ids)), key=lambda i: (-counts[i], first[i]))
    remap = {int(ids[i]): rank for rank, i in enumerate(order)}
    return [remap[int(c)] for c in labels]


def cluster(
    x: np.ndarray, *, k: int | None, k_min: int, k_max: int, seed: int, sample: int
) -> Clustering:
    """Cluster the rows of `x` (n, dim). k=None searches k_min..k_max by silhouette."""
    import numpy as np
    from sklearn.metrics import silhouette_score

    n = len(x)
    if n == 0:
        return Clustering([], 0, "no failures")
    distinct = len(np.unique(np.round(x, 5), axis=0))
    if k is not None:
        k_eff = min(k, distinct)
        return Clustering(_by_size(_fit(x, k_eff, seed)) if k_eff > 1 else [0] * n, k_eff,
                          "config" if k_eff == k else f"config (capped at {distinct} distinct)")
    # Silhouette needs 2 <= k <= n - 1, and k beyond the distinct points makes empty clusters.
    hi = min(k_max, distinct, n - 1)
    if hi < k_min:
        k_eff = min(distinct, k_min)
        labels = _by_size(_fit(x, k_eff, seed)) if k_eff > 1 else [0] * n
        return Clustering(labels, k_eff, f"too few distinct failures ({distinct}) to search k")
    scores: dict[int, float] = {}
    best: tuple[float, int, np.ndarray] | None = None
    for kk in range(k_min, hi + 1):
        labels = _fit(x, kk, seed)
        if len(set(labels.tolist())) < 2:
            continue
        s = float(silhouette_score(x, labels, sample_size=min(n, sample), random_state=seed))
        scores[kk] = round(s, 4)
        if best is None or s > best[0] + 1e-9:  # ties keep the smaller k
            best = (s, kk, labels)
    if best is None:
        return Clustering([0] * n, 1, "every k collapsed to one cluster")
    return Clustering(_by_size(best[2]), best[1], "silhouette", scores)
