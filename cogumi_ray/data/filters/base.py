"""One base class for curation filters: the base owns batching, counters and timing.

A filter implements one hook, `check(row) -> Outcome`: keep, drop with a reason, and/or replace
some fields (e.g. scrubbed text), plus optional named counts. The base runs it over a Ray Data
batch, skips rows an earlier step already dropped (so "rows in" of a filter is what survived the
filters before it), marks drops as `_drop="<name>:<reason>"`, and attaches the batch's counters
(`in`, `dropped_<reason>`, the hook's own counts, `seconds`) as JSON to the batch's first row.
Counting through the data rather than through global state keeps it correct on any cluster.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from cogumi_ray.data.rows import DROP, STATS
from cogumi_ray.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

Row = dict[str, Any]
TEXT_FIELDS: tuple[str, ...] = ("instruction", "response")


@dataclass(frozen=True)
class Outcome:
    reason: str = ""  # why the row is dropped; "" keeps it
    update: Row | None = None  # fields to replace (e.g. scrubbed text); None leaves the row as is
    counts: dict[str, int] = field(default_factory=dict)  # extra counters, e.g. {"email": 2}


KEEP = Outcome()


def drop(reason: str, **counts: int) -> Outcome:
    return Outcome(reason=reason, counts=counts)


class Filter(ABC):
    """Subclasses set `name` and implement `check`. Instances are Ray Data `map_batches` UDFs;
    the operator shows in the dashboard as MapBatches(<ClassName>)."""

    name: ClassVar[str]

    @abstractmethod
    def check(self, row: Row) -> Outcome:
        """Decide about one row whose text fields are strings."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        start = time.perf_counter()
        rows = batch.to_pylist()
        counts: Counter = Counter()
        for row in rows:
            row.setdefault(DROP, "")
            row.setdefault(STATS, "")
            if row[DROP]:
                continue
            self._validate(row)
            counts["in"] += 1
            out = self.check(row)
            if out.update:
                row.update(out.update)
            counts.update(out.counts)
            if out.reason:
                row[DROP] = f"{self.name}:{out.reason}"
                counts[f"dropped_{out.reason}"] += 1
        counts["seconds"] = time.perf_counter() - start
        if rows:
            mine = {f"{self.name}.{k}": v for k, v in counts.items()}
            prior = json.loads(rows[0][STATS]) if rows[0][STATS] else {}
            for k, v in mine.items():
                prior[k] = prior.get(k, 0) + v
            rows[0][STATS] = json.dumps(prior, sort_keys=True)
        schema = batch.schema
        for col in (DROP, STATS):
            if col not in schema.names:
                schema = schema.append(pa.field(col, pa.string()))
        return pa.Table.from_pylist(rows, schema=schema)

    def _validate(self, row: Row) -> None:
        for key in TEXT_FIELDS:
            value = row.get(key)
            if not isinstance(value, str):
                raise DataError(
                    f"{type(self).__name__}: row {row.get('id')!r} field {key!r} must be a string, "
                    f"got {type(value).__name__}; read inputs through cogumi_ray.data.readers so "
                    "rows follow the Example schema"
                )
