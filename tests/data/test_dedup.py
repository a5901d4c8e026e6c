"""Dedup on Ray Data vs the single-process reference; representative rule; edge cases."""

from __future__ import annotations

import random

import numpy as np
import pytest

from cogumi_ray.data.config import DedupConfig
from cogumi_ray.data.lsh import UnionFind, candidate_pairs, dedup_local, resolve_clusters
from cogumi_ray.errors import DataError

CFG = DedupConfig()


def _row(id_: str, text: str, quality: float | None = 0.5) -> dict:
    head, _, tail = text.partition(" | ")
    return {
        "id": id_, "instruction": head, "response": tail, "domain": "general",
        "difficulty": "easy", "source": "test", "metadata": "{}", "quality": quality,
    }


def _doc(rng: random.Random, vocab: list[str], n: int = 90) -> str:
    words = [rng.choice(vocab) for _ in range(n)]
    return " ".join(words[:15]) + " | " + " ".join(words[15:])


def _edit(rng: random.Random, vocab: list[str], text: str, k: int) -> str:
    words = text.split(" ")
    for i in rng.sample(range(len(words)), k):
        if words[i] != "|":
            words[i] = rng.choice(vocab)
    return " ".join(words)


def _corpus() -> tuple[list[dict], dict[str, str]]:
    """40 distinct docs plus planted duplicates; returns rows and the expected winner per group."""
    rng = random.Random(11)
    vocab = ["".join(rng.choice("etaoinshrdlcumwfgypbvk") for _ in range(rng.randint(2, 8)))
             for _ in range(4000)]
    base = [_doc(rng, vocab) for _ in range(40)]
    rows = [_row(f"b{i:03d}", t, quality=0.5) for i, t in enumerate(base)]
    # Exact (after normalisation) copies: higher quality wins over the lower id...
    rows.append(_row("z000", base[0].upper().replace(" ", "  "), quality=0.9))
    # ...equal quality falls back to the lowest id; missing quality ranks last.
    rows.append(_row("a001", base[1] + "  ", quality=0.5))
    rows.append(_row("a002", base[2], quality=None))
    # Near duplicates (2 words of 90 edited: Jaccard ~0.9).
    for i in range(3, 9):
        rows.append(_row(f"n{i:03d}", _edit(rng, vocab, base[i], 2), quality=0.7 if i % 2 else 0.1))
    # A chain of near duplicates forms one cluster of three.
    rows.append(_row("c000", _edit(rng, vocab, base[9], 2), quality=0.2))
    rows.append(_row("c001", _edit(rng, vocab, base[9], 2), quality=0.2))
    winners = {"b000": "z000", "b001": "a001", "a002": "b002", "b009": "b009"}
    winners |= {f"b{i:03d}": (f"n{i:03d}" if i % 2 else f"b{i:03d}") for i in range(3, 9)}
    return rows, winners


@pytest.mark.parametrize("materialize", [True, False])
def test_ray_path_matches_single_process_and_drops_planted_duplicates(
    ray_session, materialize: bool
) -> None:
    import pyarrow as pa

    from cogumi_ray.data.dedup import dedup

    rows, winners = _corpus()
    ds = ray_session.data.from_arrow(pa.Table.from_pylist(rows)).repartition(3)
    out, stats = dedup(ds, CFG.model_copy(update={"materialize": materialize}))
    out_rows = out.take_all()
    assert set(out_rows[0]) == set(rows[0])  # every input column comes through
    kept = sorted(r["id"] for r in out_rows)
    ref_rows, ref, ref_pairs = dedup_local(rows, CFG)
    assert kept == sorted(r["id"] for r in ref_rows)
    for key in ("rows_in", "exact_dropped", "near_dropped", "rows_out", "clusters",
                "exact_clusters", "candidate_pairs", "verified_pairs"):
        assert getattr(stats, key) == getattr(ref, key), key
    assert stats.cluster_examples == ref.cluster_examples
    assert (stats.rows_in, stats.exact_dropped, stats.near_dropped) == (len(rows), 3, 8)
    assert stats.rows_out == len(kept) == 40
    assert stats.clusters == 7 and stats.exact_clusters == 3
    # Representatives: highest quality, then lowest id (missing quality ranks last).
    for loser, winner in winners.items():
        assert winner in kept and (loser == winner or loser not in kept), (loser, winner)
    assert not {"c000", "c001"} & set(kept)  # the chain's best member is b009
    assert any(ex["kind"] == "near" for ex in stats.cluster_examples)
    assert all(ex["members"][0]["snippet"] for ex in stats.cluster_examples)


def test_without_quality_column_lowest_id_wins(ray_session) -> None:
    from cogumi_ray.data.dedup import dedup

    text = "the same instruction | and the same long response " * 5
    rows = [{k: v for k, v in _row(i, text).items() if k != "quality"} for i in ("m2", "m1", "m3")]
    rows.append({k: v for k, v in _row("solo", "something else entirely | ok").items()
                 if k != "quality"})
    out, stats = dedup(ray_session.data.from_items(rows), CFG)
    assert sorted(r["id"] for r in out.take_all()) == ["m1", "solo"]
    assert stats.exact_dropped == 2 and stats.near_dropped == 0


def test_empty_dataset(ray_session) -> None:
    from cogumi_ray.data.dedup import dedup
    from cogumi_ray.data.schema import arrow_schema

    out, stats = dedup(ray_session.data.from_arrow(arrow_schema().empty_table()), CFG)
    assert stats.rows_in == stats.rows_out == 0 and out.count() == 0


def test_bad_input_is_rejected(ray_session) -> None:
    from cogumi_ray.data.dedup import dedup

    with pytest.raises(DataError, match="response"):
        dedup(ray_session.data.from_items([{"id": "1", "instruction": "x"}]), CFG)
    same = [_row("dup-id", "one text | here"), _row("dup-id", "one text | here")]
    with pytest.raises(DataError, match="unique row ids"):
        dedup(ray_session.data.from_items(same), CFG)


def test_distinct_texts_are_all_kept() -> None:
    rng = random.Random(2)
    vocab = ["".join(rng.choice("abcdefghijklmnop") for _ in range(6)) for _ in range(5000)]
    rows = [_row(f"d{i}", _doc(rng, vocab)) for i in range(150)]
    kept, stats, pairs = dedup_local(rows, CFG)
    assert len(kept) == 150 and stats.rows_out == 150 and not pairs
    assert stats.exact_dropped == stats.near_dropped == stats.clusters == 0


def test_threshold_and_switches() -> None:
    rng = random.Random(4)
    vocab = ["".join(rng.choice("abcdefghijklmnop") for _ in range(5)) for _ in range(3000)]
    a = _doc(rng, vocab, 120)
    b = _edit(rng, vocab, a, 25)  # ~20% of words edited: Jaccard ~0.7
    rows = [_row("a", a), _row("b", b), _row("c", a)]
    _, strict, _ = dedup_local(rows, CFG)
    assert strict.exact_dropped == 1 and strict.near_dropped == 0
    loose = DedupConfig(threshold=0.6, bands=32, rows=4)
    kept, st, pairs = dedup_local(rows, loose)
    assert [r["id"] for r in kept] == ["a"] and pairs == {("a", "b")}
    kept, st, _ = dedup_local(rows, DedupConfig(threshold=0.6, bands=32, rows=4, exact=False))
    assert st.exact_dropped == 0 and st.near_dropped == 2 and [r["id"] for r in kept] == ["a"]
    kept, st, _ = dedup_local(rows, DedupConfig(near=False))
    assert [r["id"] for r in kept] == ["a", "b"] and st.candidate_pairs == 0


def test_word_shingles_find_reordered_near_duplicates() -> None:
    cfg = DedupConfig(shingle="word", ngram=1, threshold=0.8)
    text = " ".join(f"w{i}" for i in range(60))
    shuffled = " ".join(reversed(text.split()))  # same word set, different order
    kept, stats, _ = dedup_local([_row("x", text), _row("y", shuffled)], cfg)
    assert [r["id"] for r in kept] == ["x"] and stats.near_dropped == 1


def test_bucket_pairs_and_clusters_are_deterministic() -> None:
    def pairs(ids: list[str], keys: list[int], sk: np.ndarray, cap: int = 64):
        a, b, looked = candidate_pairs(np.array(keys, np.uint64), np.array(ids, dtype=object),
                                       sk, cap=cap, min_estimate=0.6)
        return sorted(zip(a.tolist(), b.tolist(), strict=True)), looked

    same = np.zeros((4, 64), np.uint8)
    assert pairs(["c", "a", "b", "d"], [7, 7, 7, 9], same) == (
        [("a", "b"), ("a", "c"), ("b", "c")], 3)
    odd = same.copy()
    odd[0] = 0x11  # "c" agrees with no other sketch value: estimate < 0
    assert pairs(["c", "a", "b", "d"], [7, 7, 7, 9], odd)[0] == [("a", "b")]
    ids = [f"i{k:02d}" for k in range(10)]
    capped, looked = pairs(ids[::-1], [1] * 10, np.zeros((10, 64), np.uint8), cap=2)
    assert len(capped) == looked == 9 + 8 and all(a in ("i00", "i01") for a, _ in capped)
    edges = [("a", "b"), ("c", "d"), ("b", "e"), ("x", "y")]
    results = []
    for order in (edges, list(reversed(edges))):
        uf = UnionFind()
        for x, y in order:
            uf.union(x, y)
        results.append(resolve_clusters(uf.groups(), {"e": 0.9, "c": 0.1, "d": 0.1}))
    assert results[0] == results[1]
    dropped, clusters = results[0]
    assert dropped == {"a": "e", "b": "e", "d": "c", "y": "x"}
    assert clusters[0] == ("e", ["a", "b", "e"])
