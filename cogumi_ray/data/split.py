"""Stratified train/val/test split by (domain, difficulty), deterministic by seed.

Each stratum is one Ray Data group: its rows are ordered by a seeded hash of their id (content as
the tie-break, so the order never depends on block order), then the first round(n * test_fraction)
go to test, the next round(n * val_fraction) to val and the rest to train. Every stratum is thus
split in proportion exactly (up to rounding), not only on average as per-row hashing would give,
and the same seed and rows give the same assignment on any cluster.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from cogumi_ray.data.schema import COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

    from cogumi_ray.data.config import SplitConfig

SPLIT = "_split"
SPLITS: tuple[str, ...] = ("train", "val", "test")
STRATA: list[str] = ["domain", "difficulty"]
# A stratum is one group, so more shuffle partitions than strata (5 domains x 3 difficulties by
# default) only add empty tasks; Ray's default of 200 costs tens of seconds on a small machine.
SHUFFLE_PARTITIONS = 16


def split_sizes(
    n: int, val_fraction: float, test_fraction: float,
    max_val: int | None = None, max_test: int | None = None,
) -> tuple[int, int, int]:
    """(train, val, test) row counts for a stratum of n rows; `max_*` cap the held-out shares
    (a large suite puts its extra rows into training instead of into ever longer evaluations)."""
    n_test = round(n * test_fraction)
    if max_test is not None:
        n_test = min(n_test, max_test)
    n_val = min(round(n * val_fraction), n - n_test)
    if max_val is not None:
        n_val = min(n_val, max_val)
    return n - n_val - n_test, n_val, n_test


def _order_key(seed: int, row: dict[str, str]) -> tuple[str, str, str, str]:
    digest = hashlib.blake2b(f"{seed}\x1f{row['id']}".encode(), digest_size=8).hexdigest()
    return digest, row["id"], row["instruction"], row["response"]


def assign_split(
    group: pa.Table, *, val_fraction: float, test_fraction: float, seed: int,
    max_val: int | None = None, max_test: int | None = None,
) -> pa.Table:
    """map_groups UDF (dashboard: MapBatches(assign_split)): adds `_split` to one stratum."""
    import pyarrow as pa

    rows = sorted(group.to_pylist(), key=lambda r: _order_key(seed, r))
    _, n_val, n_test = split_sizes(len(rows), val_fraction, test_fraction, max_val, max_test)
    for i, row in enumerate(rows):
        row[SPLIT] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return pa.Table.from_pylist(rows, schema=group.schema.append(pa.field(SPLIT, pa.string())))


def assign_splits(ds: ray.data.Dataset, cfg: SplitConfig) -> ray.data.Dataset:
    """The Example rows of `ds` with a `_split` column ("train" | "val" | "test")."""
    kwargs = {"val_fraction": cfg.val_fraction, "test_fraction": cfg.test_fraction, "seed": cfg.seed,
              "max_val": cfg.max_val_per_stratum, "max_test": cfg.max_test_per_stratum}
    return (
        ds.select_columns(list(COLUMNS))
        .groupby(STRATA, num_partitions=SHUFFLE_PARTITIONS)
        .map_groups(assign_split, batch_format="pyarrow", fn_kwargs=kwargs)
    )


def write_splits(ds: ray.data.Dataset, out_dirs: dict[str, str]) -> None:
    """Write each split as Parquet with the Example schema; an empty split still gets a file."""
    import pyarrow.parquet as pq
    from ray.data.expressions import col

    from cogumi_ray import storage
    from cogumi_ray.data.schema import arrow_schema

    for name in SPLITS:
        part = ds.filter(expr=col(SPLIT) == name).select_columns(list(COLUMNS))
        fs, path = storage.fs_and_path(out_dirs[name])
        if fs.exists(path):  # a forced re-run must not append to the previous run's files
            fs.rm(path, recursive=True)
        fs.makedirs(path, exist_ok=True)
        part.write_parquet(out_dirs[name], schema=arrow_schema())
        if not any(p.endswith(".parquet") for p in fs.ls(path, detail=False)):
            # Readers downstream expect a dataset, even an empty one, in every split directory.
            with fs.open(f"{path}/empty.parquet", "wb") as f:
                pq.write_table(arrow_schema().empty_table(), f)
