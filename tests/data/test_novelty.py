"""Held-out novelty: each held-out row's closest training row, by exact Jaccard."""

from __future__ import annotations

from cogumi_ray.data.novelty import heldout_novelty, mild
from cogumi_ray.data.suite.base import char_ngrams, jaccard


def test_finds_the_planted_near_copy_with_its_exact_jaccard():
    train = [(f"t{i}", f"Task number {i}: sort the words {w} quickly") for i, w in
             enumerate(["apple pear", "river stone", "candle forest", "tiger lamp"] * 50)]
    near = "Task number 7: sort the words tiger lamp quickly!"
    heldout = [("h0", "Something else entirely about whales"), ("h1", near)]
    n = heldout_novelty(train, heldout)
    want = max(jaccard(char_ngrams(mild(near)), char_ngrams(mild(t))) for _, t in train)
    assert n.heldout_id == "h1" and n.max_jaccard == round(want, 4) and want > 0.8
    assert n.train_id == "t7"  # the exact copy but for the "!"
    assert 0 < n.mean_max_jaccard < n.max_jaccard
    assert heldout_novelty([], heldout).max_jaccard == 0.0
