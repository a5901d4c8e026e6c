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

from cogumi_ray.data.config import DedupConfig
from cogumi_ray.data.minhash import (
    band_keys,
    exact_key,
    jaccard,
    normalize,
    shingle_sets,
    signatures_of_normalized,
)

SNIPPET_CHARS = 160
MAX_EXAMPLES = 3  # clusters of each kind kept for the report


@dataclass
class DedupStats:
    """What deduplication did; `clusters` counts near-duplicate clusters, `exact_clusters` the
    groups of exact duplicates (normalised text), each of size >= 2."""

    rows_in: int = 0
    exact_dropped: int = 0
    near_dropped: int = 0
    rows_out: int = 0
    clusters: int = 0
    exact_clusters: int = 0
    cluster_examples: list[dict[str, Any]] = field(default_factory=list)
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


def bucket_pairs(ids: Sequence[str], cap: int) -> list[tuple[str, str]]:
    """Candidate pairs (a < b) of one LSH bucket: all pairs, or each member with the first `cap`
    members (by id) when the bucket is larger, so a huge templated cluster stays O(cap * size)."""
    members = sorted(set(ids))
    return [
        (members[i], members[j])
        for i in range(min(cap, len(members)))
        for j in range(i + 1, len(members))
    ]


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
    norm = [normalize(t) for t in texts]
    alive = list(range(len(rows)))
    examples: list[dict[str, Any]] = []
    if cfg.exact:
        by_key: dict[str, list[str]] = {}
        for i, n in zip(ids, norm, strict=True):
            by_key.setdefault(exact_key(n), []).append(i)
        ex_dropped, ex_clusters = resolve_clusters(by_key.values(), quality)
        stats.exact_dropped, stats.exact_clusters = len(ex_dropped), len(ex_clusters)
        examples += [example("exact", k, m, snippets) for k, m in ex_clusters[:MAX_EXAMPLES]]
        alive = [k for k in alive if ids[k] not in ex_dropped]
    near_dropped: dict[str, str] = {}
    verified: set[tuple[str, str]] = set()
    if cfg.near and rows:
        # Buckets hold every row, exact copies too (as on Ray); pairs with a dropped copy go.
        keys = band_keys(signatures_of_normalized(norm, cfg), cfg)
        buckets: dict[int, list[str]] = {}
        for k, row_keys in enumerate(keys.tolist()):
            for key in row_keys:
                buckets.setdefault(key, []).append(ids[k])
        cap = cfg.max_bucket_size
        alive_ids = {ids[k] for k in alive}
        candidates = {
            (a, b) for bucket in buckets.values() if len(bucket) > 1
            for a, b in bucket_pairs(bucket, cap) if a in alive_ids and b in alive_ids
        }
        stats.candidate_pairs = len(candidates)
        pos = {ids[k]: k for k in alive}
        cand_ids = sorted({x for p in candidates for x in p})
        sets = shingle_sets([texts[pos[c]] for c in cand_ids], cfg)
        by_id = dict(zip(cand_ids, sets, strict=True))
        uf = UnionFind()
        for a, b in sorted(candidates):
            if jaccard(by_id[a], by_id[b]) >= cfg.threshold:
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

