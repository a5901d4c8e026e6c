"""Read the judged failures: the judge stage's `failures/`, or any judgments filtered to 'fail'."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from cogumi_ray.errors import DataError

if TYPE_CHECKING:
    import ray.data


def read_failures(path: str, required: Iterable[str] = ()) -> ray.data.Dataset:
    """Rows judged "fail" at `path` (Parquet/JSONL); `required` columns must be present."""
    from cogumi_ray.generate.stage import read_dataset

    ds = read_dataset(path)
    names = ds.schema().names
    missing = [c for c in required if c not in names]
    if missing:
        raise DataError(
            f"failures {path!r} lack the columns {missing}; they have {sorted(names)}. To resolve: "
            "point at the judge stage's output (`cogumi judge` writes failures/ and judgments/), "
            "or add the columns."
        )
    if "verdict" in names:  # judgments: keep the failures (never 'unjudged': the model did no wrong)
        ds = ds.filter(expr="verdict == 'fail'")
    return ds


def joined_text(batch: dict, columns: list[str]) -> list[str]:
    """One text per row: the non-empty values of `columns`, one per line."""
    n = len(batch[columns[0]]) if columns else 0
    return ["\n".join(str(batch[c][i]) for c in columns if batch[c][i] not in (None, ""))
            for i in range(n)]
