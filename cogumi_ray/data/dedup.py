"""Exact and near-duplicate removal on Ray Data (MinHash LSH), unchanged from a laptop to a cluster.

    ds ─MinHashSignatures─► per row: exact key, quality, snippet, 16 LSH band keys, 4-bit sketch
       ─LSHBands─► one row per (band key, id, sketch), plus one per (exact key, id)
       ─hash-partition by key─► CandidatePairs: exact groups; id pairs sharing a band bucket
         whose sketches estimate a Jaccard near the threshold or above
    driver: exact drops; distinct candidate pairs (small: duplicates plus a few look-alikes)
    ds ─CandidateRows (only docs in a pair)─► (pair, side, text)
       ─hash-partition by pair─► VerifyCandidates: pairs with exact Jaccard >= threshold
    driver: union-find over verified pairs, one representative per cluster
    ds ─DropDuplicates─► result (lazy)

Nothing per row comes back to the driver, only pairs and drop ids (proportional to the
duplicates), so a cluster runs it unchanged. Only candidate docs' texts are shuffled (carrying
every text into its 16 band buckets would move 16x the corpus): they are re-read in a second
pass, and the result is a third. By default `ds` is materialised first (`materialize`), so the
input is read once and the three passes run over stored blocks. A
hash-partitioned block holds every row of its keys, as `GroupedData.map_groups` relies on.
Ray fuses consecutive map stages: the dashboard shows e.g.
"MapBatches(MinHashSignatures)->MapBatches(LSHBands)".
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from cogumi_ray.data.config import DedupConfig
from cogumi_ray.data.lsh import (
    MAX_EXAMPLES,
    SNIPPET_CHARS,
    DedupStats,
    UnionFind,
    candidate_pairs,
    example,
    rank,
    resolve_clusters,
)
from cogumi_ray.data.minhash import (
    band_keys,
    exact_keys,
    normalized_units,
    pair_jaccards,
    prefilter_threshold,
    signatures,
    sketches,
)
from cogumi_ray.errors import DataError

__all__ = ["DedupStats", "dedup"]

log = logging.getLogger(__name__)

# Kinds of rows in the keyed shuffle and in CandidatePairs' output.
BAND, EXACT, PAIR, COUNT, LOOKED = 0, 1, 2, 3, 4


def dedup(ds: Any, cfg: DedupConfig) -> tuple[Any, DedupStats]:
    """Drop exact then near duplicates from `ds` (Example columns, optional float `quality`).

    Keeps one row per cluster: highest quality, then lowest id. Returns the (lazy) filtered
    dataset and the stats. Row ids must be unique.
    """
    import pyarrow as pa
    import ray

    t0 = time.perf_counter()
    if cfg.materialize:  # a Ray Data read pass costs far more than a pass over stored blocks
        ds = ds.materialize()
    schema = ds.schema()
    if schema is None:  # an empty dataset without blocks
        return ds, DedupStats(seconds=time.perf_counter() - t0)
    missing = {"id", "instruction", "response"} - set(schema.names)
    if missing:
        raise DataError(f"dedup needs columns {sorted(missing)}; got {schema.names}")
    has_quality = "quality" in schema.names
    # Both passes over the rows need only these (a Parquet read then skips the other columns).
    needed = ds.select_columns(["id", "instruction", "response"] + ["quality"] * has_quality)

    keyed = needed.map_batches(
        MinHashSignatures(cfg, has_quality), batch_format="pyarrow", batch_size=cfg.batch_size
    ).map_batches(LSHBands(cfg), batch_format="pyarrow")
    found = _collect(
        keyed.repartition(_partitions(cfg), keys=["_key"]).map_batches(
            CandidatePairs(cfg), batch_size=None, batch_format="pyarrow"
        ),
        _schema("found"),
    )
    kind = found["kind"].to_numpy()
    n = found["n"].to_numpy(zero_copy_only=False)
    stats = DedupStats(rows_in=int(n[kind == COUNT].sum()), bucket_pairs=int(n[kind == LOOKED].sum()))
    log.info("dedup: %d rows sketched and bucketed in %.1fs", stats.rows_in, time.perf_counter() - t0)

    drops = _exact_drops(found.filter(pa.array(kind == EXACT)), stats)
    if cfg.near:
        pairs = found.filter(pa.array(kind == PAIR)).select(["a", "b"])
        near = _near_drops(needed, pairs, set(drops), cfg, has_quality, stats)
        drops.update(near)
    stats.rows_out = stats.rows_in - len(drops)
    if drops:
        ref = ray.put(pa.array(sorted(drops), type=pa.string()))
        ds = ds.map_batches(DropDuplicates(ref), batch_format="pyarrow", batch_size=None)
    stats.seconds = time.perf_counter() - t0
    log.info(
        "dedup: %d rows -> %d (exact %d, near %d) in %.1fs",
        stats.rows_in, stats.rows_out, stats.exact_dropped, stats.near_dropped, stats.seconds,
    )
    return ds, stats


def _exact_drops(marked: Any, stats: DedupStats) -> dict[str, str]:
    """Dropped id -> kept id from the members of exact groups (b: kept id, "" for the kept row)."""
    ids = marked["a"].to_pylist()
    if len(set(ids)) < len(ids):  # rows sharing an id would be dropped together
        clash = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DataError(f"dedup needs unique row ids; ids used by several rows: {clash}")
    keep_of = marked["b"].to_pylist()
    drops = {i: k for i, k in zip(ids, keep_of, strict=True) if k}
    stats.exact_dropped = len(drops)
    stats.exact_clusters = len(ids) - len(drops)
    groups: dict[str, list[str]] = {}
    for i, k in zip(ids, keep_of, strict=True):
        groups.setdefault(k or i, []).append(i)
    snippets = dict(zip(ids, marked["snippet"].to_pylist(), strict=True))
    top = sorted(groups.items(), key=lambda g: (-len(g[1]), g[0]))[:MAX_EXAMPLES]
    stats.cluster_examples += [example("exact", k, m, snippets) for k, m in top]
    return drops


def _near_drops(
    ds: Any, raw: Any, exact_dropped: set[str], cfg: DedupConfig, has_quality: bool,
    stats: DedupStats,
) -> dict[str, str]:
    """Dropped id -> kept id for near duplicates (fills the near-dup fields of `stats`)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import ray

    # A pair usually shares several bands: verify it once. Exact copies (already dropped)
    # collide with their kept twin in every band: skip them.
    pairs = raw.group_by(["a", "b"]).aggregate([]).sort_by([("a", "ascending"), ("b", "ascending")])
    if exact_dropped:
        gone = pa.array(sorted(exact_dropped), pa.string())
        pairs = pairs.filter(pc.invert(pc.or_(pc.is_in(pairs["a"], gone), pc.is_in(pairs["b"], gone))))
    stats.candidate_pairs = pairs.num_rows
    log.info("dedup: %d candidate pairs from %d bucket pairs", pairs.num_rows, stats.bucket_pairs)
    if pairs.num_rows == 0:
        return {}
    pairs = pairs.append_column("_pair", pa.array(np.arange(pairs.num_rows, dtype=np.int64)))
    shingled = ds.map_batches(
        CandidateRows(ray.put(pairs), has_quality), batch_format="pyarrow", batch_size=None
    )
    verified = _collect(
        shingled.repartition(_partitions(cfg), keys=["_pair"]).map_batches(
            VerifyCandidates(cfg), batch_size=None, batch_format="pyarrow"
        ),
        _schema("verified"),
    )
    stats.verified_pairs = verified.num_rows
    log.info("dedup: %d pairs verified at Jaccard >= %s", verified.num_rows, cfg.threshold)
    uf = UnionFind()
    quality: dict[str, float | None] = {}
    snippets: dict[str, str] = {}
    for r in verified.to_pylist():
        uf.union(r["a"], r["b"])
        quality.update({r["a"]: r["quality_a"], r["b"]: r["quality_b"]})
        snippets.update({r["a"]: r["snippet_a"], r["b"]: r["snippet_b"]})
    dropped, clusters = resolve_clusters(uf.groups(), quality)
    stats.near_dropped = len(dropped)
    stats.clusters = len(clusters)
    stats.cluster_examples += [example("near", k, m, snippets) for k, m in clusters[:MAX_EXAMPLES]]
    return dropped


def _partitions(cfg: DedupConfig) -> int:
    """Hash-shuffle partitions: the configured number, else two per CPU of the cluster."""
    import ray

    if cfg.shuffle_partitions:
        return cfg.shuffle_partitions
    return max(2, min(2 * int(ray.cluster_resources().get("CPU", 1)), 256))


def _collect(ds: Any, schema: Any) -> Any:
    """Gather a small dataset (pairs, drop lists) on the driver as one Arrow table."""
    import pyarrow as pa
    import ray

    tables = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    return pa.concat_tables(tables).cast(schema) if tables else schema.empty_table()


def _schema(kind: str) -> Any:
    import pyarrow as pa

    s, f = pa.string(), pa.float64()
    return {
        # kind EXACT: a = member id, b = kept id ("" for the kept row); PAIR: a < b; COUNT: n rows
        "found": pa.schema([
            ("kind", pa.int8()), ("a", s), ("b", s), ("snippet", s), ("n", pa.int64()),
        ]),
        "verified": pa.schema([
            ("a", s), ("b", s), ("jaccard", f), ("quality_a", f), ("quality_b", f),
            ("snippet_a", s), ("snippet_b", s),
        ]),
    }[kind]


# --- Ray Data operators (callable objects: the dashboard shows their class names) --------------


def _texts(batch: Any) -> list[str]:
    """instruction + "\\n" + response of every row (nulls read as empty)."""
    import pyarrow.compute as pc

    ins = pc.fill_null(batch.column("instruction"), "")
    res = pc.fill_null(batch.column("response"), "")
    return pc.binary_join_element_wise(ins, res, "\n").to_pylist()


def _quality(batch: Any, has_quality: bool) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not has_quality:
        return pa.nulls(batch.num_rows, pa.float64())
    return pc.cast(batch.column("quality"), pa.float64())


def _to_fixed_binary(rows: np.ndarray) -> Any:
    """[n, w] uint8 -> Arrow fixed_size_binary(w) without a Python object per row."""
    import pyarrow as pa

    n, w = rows.shape
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(w), n, [None, pa.py_buffer(np.ascontiguousarray(rows).tobytes())]
    )


def _from_fixed_binary(col: Any) -> np.ndarray:
    """Arrow fixed_size_binary(w) column (no nulls) -> [n, w] uint8."""
    arr = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    w = arr.type.byte_width
    if len(arr) == 0:
        return np.zeros((0, w), np.uint8)
    data = np.frombuffer(arr.buffers()[1], np.uint8)[arr.offset * w : (arr.offset + len(arr)) * w]
    return data.reshape(len(arr), w)


class MinHashSignatures:
    """Per row: id, quality, snippet, exact key of the normalised text and the LSH band keys."""

    def __init__(self, cfg: DedupConfig, has_quality: bool) -> None:
        self.cfg, self.has_quality = cfg, has_quality

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        texts = _texts(batch)
        units, offsets = normalized_units(texts)
        cols = {
            "id": batch.column("id").cast(pa.string()),
            "_quality": _quality(batch, self.has_quality),
            "_snippet": pa.array([t[:SNIPPET_CHARS] for t in texts], pa.string()),
            "_exact": pa.array(exact_keys(units, offsets), pa.string()),
        }
        if self.cfg.near:
            sigs = signatures(units, offsets, self.cfg)  # [n, num_perm]
            cols["_bands"] = pa.FixedSizeListArray.from_arrays(
                pa.array(band_keys(sigs, self.cfg).ravel(), pa.uint64()), self.cfg.bands
            )
            cols["_sketch"] = _to_fixed_binary(sketches(sigs))  # num_perm / 2 bytes per row
        return pa.table(cols)


def exact_bucket(hex_keys: list[str]) -> np.ndarray:
    """64-bit shuffle key of each exact key (its top bits; CandidatePairs re-checks all 128)."""
    return np.array([int(h[:16], 16) for h in hex_keys], dtype=np.uint64)


class LSHBands:
    """One row per (band key, id, sketch), plus one per (exact key, id) carrying what the
    exact-group decision needs (quality, full exact key, snippet); each kind leaves the other's
    columns null."""

    def __init__(self, cfg: DedupConfig) -> None:
        self.cfg = cfg

    def __call__(self, block: Any) -> Any:
        import pyarrow as pa

        n = block.num_rows
        parts = [  # always emitted: they also count the rows
            pa.table({
                "_key": pa.array(exact_bucket(block["_exact"].to_pylist()), pa.uint64()),
                "_kind": pa.array(np.full(n, EXACT, np.int8)),
                "id": block["id"],
                "_quality": block["_quality"],
                "_exact": block["_exact"],
                "_snippet": block["_snippet"],
                "_sketch": pa.nulls(n, pa.binary(self.cfg.num_perm // 2)),
            })
        ]
        if self.cfg.near:
            keys = block["_bands"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
            rows = pa.array(np.repeat(np.arange(n), self.cfg.bands))
            m = n * self.cfg.bands
            parts.append(pa.table({
                "_key": pa.array(keys, pa.uint64()),
                "_kind": pa.array(np.full(m, BAND, np.int8)),
                "id": block["id"].take(rows),
                "_quality": pa.nulls(m, pa.float64()),
                "_exact": pa.nulls(m, pa.string()),
                "_snippet": pa.nulls(m, pa.string()),
                "_sketch": block["_sketch"].take(rows),
            }))
        return pa.concat_tables(parts)


class CandidatePairs:
    """Per block of whole buckets: members of exact groups (with the kept id), pairs (a < b)
    sharing a band bucket whose sketches estimate a Jaccard near or above the threshold, the
    block's row count and the number of bucket pairs looked at."""

    def __init__(self, cfg: DedupConfig) -> None:
        self.cfg = cfg
        self.min_estimate = prefilter_threshold(cfg)

    def __call__(self, block: Any) -> Any:
        import pyarrow as pa

        kind = block["_kind"].to_numpy()
        rows: list[tuple] = [(COUNT, None, None, None, int((kind == EXACT).sum()))]
        exact = block.filter(pa.array(kind == EXACT))
        if self.cfg.exact and exact.num_rows:
            rows += self._exact_groups(exact)
        bands = block.filter(pa.array(kind == BAND))
        a, b, looked = candidate_pairs(
            bands["_key"].to_numpy(), bands["id"].to_numpy(zero_copy_only=False),
            _from_fixed_binary(bands["_sketch"]), self.cfg.max_bucket_size, self.min_estimate,
        )
        rows.append((LOOKED, None, None, None, looked))
        schema = _schema("found")
        pairs = pa.table({
            "kind": pa.array(np.full(a.size, PAIR, np.int8)), "a": pa.array(a, pa.string()),
            "b": pa.array(b, pa.string()), "snippet": pa.nulls(a.size, pa.string()),
            "n": pa.nulls(a.size, pa.int64()),
        }, schema=schema)
        named = [dict(zip(schema.names, r, strict=True)) for r in rows]
        return pa.concat_tables([pa.Table.from_pylist(named, schema=schema), pairs])

    @staticmethod
    def _exact_groups(exact: Any) -> list[tuple]:
        import pyarrow.compute as pc

        groups = exact.group_by("_exact").aggregate(
            [("id", "list"), ("_quality", "list"), ("_snippet", "list")]
        )
        groups = groups.filter(pc.greater(pc.list_value_length(groups["id_list"]), 1))
        out = []
        for ids, qs, snips in zip(
            groups["id_list"].to_pylist(), groups["_quality_list"].to_pylist(),
            groups["_snippet_list"].to_pylist(), strict=True,
        ):
            keep = min(zip(qs, ids, strict=True), key=lambda m: rank(m[0], m[1]))[1]
            out += [(EXACT, i, "" if i == keep else keep, s, None)
                    for i, s in zip(ids, snips, strict=True)]
        return out


_RESOLVED: dict[str, Any] = {}


def _resolve(ref: Any) -> Any:
    """ray.get once per worker process (the same table serves every batch)."""
    import ray

    key = ref.hex()
    if key not in _RESOLVED:
        _RESOLVED.clear()
        _RESOLVED[key] = ray.get(ref)
    return _RESOLVED[key]


class CandidateRows:
    """For docs in candidate pairs: one row per (pair, side) with the doc's text (smaller than
    its shingle set: ~3.5 KB against ~16 KB of 64-bit codes for a typical row)."""

    def __init__(self, pairs_ref: Any, has_quality: bool) -> None:
        self.pairs_ref, self.has_quality = pairs_ref, has_quality

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        pairs = _resolve(self.pairs_ref)
        ids = batch.column("id").cast(pa.string()).combine_chunks()
        pair_idx, side, rows = [], [], []
        for s, col in enumerate(("a", "b")):
            hit = pairs.filter(pc.is_in(pairs[col], value_set=ids))
            pair_idx.append(hit["_pair"].to_numpy())
            side.append(np.full(hit.num_rows, s, dtype=np.int8))
            rows.append(pc.index_in(hit[col], value_set=ids).to_numpy())
        take = pa.array(np.concatenate(rows).astype(np.int64))
        sub = batch.take(take)
        return pa.table({
            "_pair": pa.array(np.concatenate(pair_idx), pa.int64()),
            "_side": pa.array(np.concatenate(side), pa.int8()),
            "id": ids.take(take),
            "_quality": _quality(sub, self.has_quality),
            "_text": pa.array(_texts(sub), pa.large_string()),
        })


class VerifyCandidates:
    """Exact Jaccard of the shingle sets of both sides of each pair; keeps pairs at or above
    the threshold."""

    def __init__(self, cfg: DedupConfig) -> None:
        self.cfg = cfg

    def __call__(self, block: Any) -> Any:
        import pyarrow as pa

        block = block.sort_by([("_pair", "ascending"), ("_side", "ascending")])
        pair = block["_pair"].to_numpy()
        ids, quality = block["id"].to_pylist(), block["_quality"].to_pylist()
        texts = block["_text"].to_pylist()
        first = np.flatnonzero(pair[1:] == pair[:-1])  # first: side a, first + 1: side b
        sim = pair_jaccards(texts, first, first + 1, self.cfg)
        rows = []
        for i, j in zip(first.tolist(), sim.tolist(), strict=True):
            if j >= self.cfg.threshold:
                rows.append({
                    "a": ids[i], "b": ids[i + 1], "jaccard": j,
                    "quality_a": quality[i], "quality_b": quality[i + 1],
                    "snippet_a": texts[i][:SNIPPET_CHARS], "snippet_b": texts[i + 1][:SNIPPET_CHARS],
                })
        return pa.Table.from_pylist(rows, schema=_schema("verified"))


class DropDuplicates:
    """Removes the rows whose id is in the drop list."""

    def __init__(self, drop_ref: Any) -> None:
        self.drop_ref = drop_ref

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        drop = _resolve(self.drop_ref)
        keep = pc.invert(pc.is_in(batch.column("id").cast(pa.string()), value_set=drop))
        return batch.filter(keep)
