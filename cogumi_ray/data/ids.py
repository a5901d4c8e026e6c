"""Make row ids unique before deduplication (which keys on them) without losing given ids.

Ids collide when sources number their rows the same way (two files each with id "1") or when
identical rows lack an id (the content-derived id is then identical too). Only colliding ids
change: each such row becomes "<id>~<file name>:<line>", which is stable across runs and says
where the row came from. Counting ids is a Ray Data groupby over the id column alone, and only
the colliding ids come back to the driver.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cogumi_ray.data.rows import FILE, LINE

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

ROWS_PER_PARTITION = 250_000  # id rows are tiny; one shuffle partition per this many rows


class DisambiguateIds:
    """map_batches UDF (dashboard: MapBatches(DisambiguateIds)): rename rows whose id collides."""

    def __init__(self, colliding: set[str]) -> None:
        self.colliding = colliding

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        ids = batch.column("id").to_pylist()
        files = batch.column(FILE).to_pylist()
        lines = batch.column(LINE).to_pylist()
        new = [
            f"{i}~{f.rsplit('/', 1)[-1]}:{n}" if i in self.colliding else i
            for i, f, n in zip(ids, files, lines, strict=True)
        ]
        return batch.set_column(batch.schema.get_field_index("id"), "id", pa.array(new, pa.string()))


def unique_ids(ds: ray.data.Dataset, num_rows: int) -> tuple[ray.data.Dataset, int]:
    """(`ds` with unique ids, number of rows renamed). `ds` needs the `_file`/`_line` columns."""
    from ray.data.expressions import col

    partitions = max(1, math.ceil(num_rows / ROWS_PER_PARTITION))
    counts = ds.select_columns(["id"]).groupby("id", num_partitions=partitions).count()
    colliding = counts.filter(expr=col("count()") > 1).take_all()
    if not colliding:
        return ds, 0
    renamed = sum(r["count()"] for r in colliding)
    return ds.map_batches(DisambiguateIds({r["id"] for r in colliding}), batch_format="pyarrow"), renamed
