"""How close each held-out row comes to the training rows: the largest char-3-gram Jaccard.

Held-out rows must be new parameter combinations of the trained skills, never near-copies of a
training row. Comparing every pair exactly is quadratic in Python, so a one-byte-per-permutation
MinHash (`ByteMinHash`, shared with the suite generator) ranks the training rows for each
held-out row in one vectorised comparison, and the top candidates get an exact Jaccard.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def mild(text: str) -> str:
    """Case and whitespace normalised (what the suite's distinctness check compares)."""
    return " ".join(text.lower().split())


class ByteMinHash:
    """128-permutation MinHash of a gram set, truncated to one byte per permutation.

    Two different grams collide with probability 1/256, which biases the estimated Jaccard up by
    < 0.004; its standard deviation at Jaccard 0.8 is 0.035.
    """

    perms = 128

    def __init__(self, seed: int = 20240917) -> None:
        import numpy as np

        self.np = np
        gen = np.random.default_rng(seed)
        # Multiply-shift hashing: (a*h + b mod 2^64) >> 32 with odd 64-bit a. (A small a with
        # "mod prime" would keep the order of h, so every permutation would pick the same gram.)
        self.a = gen.integers(0, 1 << 64, self.perms, dtype=np.uint64, endpoint=False) | 1
        self.b = gen.integers(0, 1 << 64, self.perms, dtype=np.uint64, endpoint=False)

    def signature(self, grams: frozenset[str]) -> Any:
        np = self.np
        if not grams:
            return np.zeros(self.perms, dtype=np.uint8)
        h = np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint64, count=len(grams))
        low = ((h[:, None] * self.a + self.b) >> np.uint64(32)).min(axis=0)  # wraps mod 2^64
        return (low & np.uint64(0xFF)).astype(np.uint8)


@dataclass
class Novelty:
    max_jaccard: float  # largest exact Jaccard of any held-out row with any training row
    heldout_id: str | None
    train_id: str | None
    mean_max_jaccard: float  # mean over held-out rows of their closest training row


def closest_train_rows(train: Sequence[str], texts: Sequence[str],
                       candidates: int = 8) -> list[tuple[float, int]]:
    """For each text, (exact Jaccard, index) of its closest training text among the `candidates`
    best MinHash estimates."""
    import numpy as np

    # inside: the suite package imports this module (its generator shares ByteMinHash)
    from cogumi_ray.data.suite.base import char_ngrams, jaccard

    mh = ByteMinHash()
    train_grams = [char_ngrams(mild(t)) for t in train]
    sigs = np.stack([mh.signature(g) for g in train_grams])  # (n_train, perms)
    k = min(candidates, len(train))
    best: list[tuple[float, int]] = []
    for text in texts:
        grams = char_ngrams(mild(text))
        est = (sigs == mh.signature(grams)).sum(axis=1)
        top = np.argpartition(-est, k - 1)[:k]
        best.append(max((jaccard(grams, train_grams[j]), int(j)) for j in top))
    return best


def heldout_novelty(
    train: Sequence[tuple[str, str]], heldout: Sequence[tuple[str, str]], candidates: int = 8
) -> Novelty:
    """(id, text) rows; each held-out row's closest training row by exact Jaccard among the
    `candidates` best MinHash estimates."""
    if not train or not heldout:
        return Novelty(0.0, None, None, 0.0)
    best = closest_train_rows([t for _, t in train], [t for _, t in heldout], candidates)
    i = max(range(len(best)), key=lambda n: best[n][0])
    return Novelty(
        max_jaccard=round(best[i][0], 4), heldout_id=heldout[i][0], train_id=train[best[i][1]][0],
        mean_max_jaccard=round(sum(b for b, _ in best) / len(best), 4),
    )
