"""LSH bucket pairing, union-find, representative choice, and a single-process reference dedup.

The Ray Data pipeline (`cogumi_ray.data.dedup`) calls the same pieces inside its operators;
`dedup_local` runs the whole algorithm in one process and is what the tests compare it with.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cogumi_ray.data.config import DedupConfig
from cogumi_ray.data.minhash import (
    band_keys,
    exact_keys,
    normalized_units,
    pair_jaccards,
    pair_similarity,
    prefilter_threshold,
    signatures,
    sketches,
)

SNIPPET_CHARS = 160
MAX_EXAMPLES = 3  # clusters of each kind kept for the report


@dataclass
class DedupStats:
    """What deduplication did. `clusters` counts near-duplicate clusters, `exact_clusters` the
    groups of exact duplicates (normalised text), each of size >= 2; `bucket_pairs` pairs that
    shared an LSH bucket, `candidate_pairs` distinct ones that passed the sketch pre-filter (and
    were checked with exact Jaccard), `verified_pairs` those at or above the threshold."""

    rows_in: int = 0
    exact_dropped: int = 0
    near_dropped: int = 0
    rows_out: int = 0
    clusters: int = 0
    exact_clusters: int = 0
    cluster_examples: list[dict[str, Any]] = field(default_factory=list)
    bucket_pairs: int = 0
    candidate_pairs: int = 0
    verified_pairs: int = 0
    seconds: float = 0.0

    def as_metrics(self) -> dict[str, Any]:
        """Flat numbers for the run manifest (examples left out)."""
        return {k: v for k, v in self.__dict__.items() if k != "cluster_examples"}


def row_text(instruction: str | None, response: str | None) -> str:
    return f"{instruction or ''}\n{response or ''}"


def rank(quality: float | None, id_: str) -> tuple[float, str]:
    """Sort key of a representative: highest quality first (missing = lowest), then lowest id."""
    q = -math.inf if quality is None or math.isnan(quality) else float(quality)
    return (-q, id_)


def candidate_pairs(
    keys: np.ndarray, ids: np.ndarray, sketch_rows: np.ndarray, cap: int, min_estimate: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Pairs (a < b) of ids that share a band key and whose sketches estimate a Jaccard of at
    least `min_estimate`, plus the number of bucket pairs looked at.

    keys [m] uint64 (band keys), ids [m] str, sketch_rows [m, num_perm/2] uint8: one row per
    (doc, band). Vectorised over all buckets: rows are sorted by (key, id) and, for d = 1, 2, ..,
    every row is compared with the row d places later while that row is in the same bucket.
    A bucket larger than `cap` pairs each member with its first `cap` members (by id) only, so
    a huge cluster of templated rows costs O(cap * size), not O(size^2).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    m = keys.size
    if m < 2:
        return np.array([], dtype=object), np.array([], dtype=object), 0
    order = pc.sort_indices(
        pa.table({"k": pa.array(keys, pa.uint64()), "i": pa.array(ids, pa.string())}),
        sort_keys=[("k", "ascending"), ("i", "ascending")],
    ).to_numpy()
    keys, ids, sk = keys[order], np.asarray(ids, dtype=object)[order], sketch_rows[order]
    pos = np.arange(m)
    new = np.r_[True, keys[1:] != keys[:-1]]
    start = np.maximum.accumulate(np.where(new, pos, 0))
    run = np.cumsum(new) - 1
    end = start + np.bincount(run)[run]
    active = np.flatnonzero((end - pos > 1) & (pos - start < cap))
    found_i, found_j, looked, d = [], [], 0, 1
    while active.size:
        active = active[active + d < end[active]]
        looked += active.size
        for lo in range(0, active.size, 1 << 20):  # bounded memory per comparison
            i = active[lo : lo + (1 << 20)]
            keep = pair_similarity(sk[i], sk[i + d]) >= min_estimate
            found_i.append(i[keep])
            found_j.append(i[keep] + d)
        d += 1
    i = np.concatenate(found_i) if found_i else np.array([], dtype=np.int64)
    j = np.concatenate(found_j) if found_j else np.array([], dtype=np.int64)
    a, b = ids[i], ids[j]
    distinct = a != b  # the same id twice in a bucket is one row, not a pair
    return a[distinct], b[distinct], looked


class UnionFind:
    """Disjoint sets over string ids (path halving, union by lowest rank key for determinism)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            self.parent[hi] = lo

    def groups(self) -> list[list[str]]:
        out: dict[str, list[str]] = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return [sorted(g) for g in out.values()]


def resolve_clusters(
    groups: Iterable[list[str]], quality: dict[str, float | None]
) -> tuple[dict[str, str], list[tuple[str, list[str]]]]:
    """Keep the best-ranked member of every group of >= 2; returns (dropped id -> kept id,
    [(kept, members)] sorted largest first then by kept id)."""
    dropped: dict[str, str] = {}
    clusters = []
    for members in groups:
        if len(members) < 2:
            continue
        keep = min(members, key=lambda m: rank(quality.get(m), m))
        dropped.update({m: keep for m in members if m != keep})
        clusters.append((keep, members))
    clusters.sort(key=lambda c: (-len(c[1]), c[0]))
    return dropped, clusters


def example(kind: str, keep: str, members: list[str], snippets: dict[str, str]) -> dict[str, Any]:
    """One cluster for the report: the kept row first, then up to four others by id."""
    shown = [keep] + sorted(m for m in members if m != keep)[:4]
    return {
        "kind": kind,
        "kept": keep,
        "size": len(members),
        "members": [{"id": m, "snippet": snippets.get(m, "")} for m in shown],
    }


def dedup_local(
    rows: Sequence[dict[str, Any]], cfg: DedupConfig
) -> tuple[list[dict[str, Any]], DedupStats, set[tuple[str, str]]]:
    """The whole algorithm in one process: (kept rows in input order, stats, verified pairs)."""
    t0 = time.perf_counter()
    stats = DedupStats(rows_in=len(rows))
    ids = [str(r["id"]) for r in rows]
    quality = {i: r.get("quality") for i, r in zip(ids, rows, strict=True)}
    texts = [row_text(r.get("instruction"), r.get("response")) for r in rows]
    snippets = {i: t[:SNIPPET_CHARS] for i, t in zip(ids, texts, strict=True)}
    units, offsets = normalized_units(texts)
    alive = list(range(len(rows)))
    examples: list[dict[str, Any]] = []
    if cfg.exact:
        by_key: dict[str, list[str]] = {}
        for i, key in zip(ids, exact_keys(units, offsets), strict=True):
            by_key.setdefault(key, []).append(i)
        ex_dropped, ex_clusters = resolve_clusters(by_key.values(), quality)
        stats.exact_dropped, stats.exact_clusters = len(ex_dropped), len(ex_clusters)
        examples += [example("exact", k, m, snippets) for k, m in ex_clusters[:MAX_EXAMPLES]]
        alive = [k for k in alive if ids[k] not in ex_dropped]
    near_dropped: dict[str, str] = {}
    verified: set[tuple[str, str]] = set()
    if cfg.near and rows:
        # Buckets hold every row, exact copies too (as on Ray); pairs with a dropped copy go.
        sigs = signatures(units, offsets, cfg)
        keys, sk = band_keys(sigs, cfg), sketches(sigs)
        a, b, stats.bucket_pairs = candidate_pairs(
            keys.ravel(), np.repeat(np.array(ids, dtype=object), cfg.bands),
            np.repeat(sk, cfg.bands, axis=0), cfg.max_bucket_size, prefilter_threshold(cfg),
        )
        alive_ids = {ids[k] for k in alive}
        candidates = {(x, y) for x, y in zip(a.tolist(), b.tolist(), strict=True)
                      if x in alive_ids and y in alive_ids}
        stats.candidate_pairs = len(candidates)
        pos = {ids[k]: k for k in alive}
        cand_ids = sorted({x for p in candidates for x in p})
        slot = {c: k for k, c in enumerate(cand_ids)}
        ordered = sorted(candidates)
        sim = pair_jaccards(
            [texts[pos[c]] for c in cand_ids], np.array([slot[a] for a, _ in ordered], np.int64),
            np.array([slot[b] for _, b in ordered], np.int64), cfg,
        )
        uf = UnionFind()
        for (a, b), j in zip(ordered, sim.tolist(), strict=True):
            if j >= cfg.threshold:
                verified.add((a, b))
                uf.union(a, b)
        stats.verified_pairs = len(verified)
        near_dropped, near_clusters = resolve_clusters(uf.groups(), quality)
        stats.clusters = len(near_clusters)
        examples += [example("near", k, m, snippets) for k, m in near_clusters[:MAX_EXAMPLES]]
    stats.near_dropped = len(near_dropped)
    kept = [rows[k] for k in alive if ids[k] not in near_dropped]
    stats.rows_out = len(kept)
    stats.cluster_examples = examples
    stats.seconds = time.perf_counter() - t0
    return kept, stats, verified

