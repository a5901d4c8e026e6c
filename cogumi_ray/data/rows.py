"""The annotated row that flows through curation before the split.

Curation never deletes a row until the end: readers and filters *mark* it instead, so one pass
over the data yields both the kept rows and every count the report needs (rows in/out per filter,
drop reasons, PII kinds) as plain columns that Ray Data aggregates, with no global state:

- `_drop`: "" keeps the row; "<step>:<reason>" drops it, where step is "quarantine" (unreadable
  input, e.g. "quarantine:bad_json") or a filter name (e.g. "length:too_short").
- `_detail`: for quarantined rows, the human-readable reason.
- `_file`, `_line`: where the row came from (1-based line for JSONL, row for Parquet).
- `_raw`: the raw input text of a quarantined row (truncated), for the quarantine file.
- `_stats`: JSON counters a filter attaches to the first row of each batch it processed
  (e.g. {"pii.email": 2, "pii.seconds": 0.01}); summing the column gives the run's totals.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from cogumi_ray.data.schema import COLUMNS

DROP, DETAIL, FILE, LINE, RAW, STATS = "_drop", "_detail", "_file", "_line", "_raw", "_stats"
ANNOTATIONS: tuple[str, ...] = (DROP, DETAIL, FILE, LINE, RAW, STATS)
QUARANTINE = "quarantine"
RAW_LIMIT = 2000  # characters of a bad input line kept in the quarantine file


def annotated_schema():
    import pyarrow as pa

    fields = [(c, pa.string()) for c in COLUMNS]
    fields += [(c, pa.int64() if c == LINE else pa.string()) for c in ANNOTATIONS]
    return pa.schema(fields)


def good_row(example_row: dict[str, str], file: str, line: int) -> dict[str, Any]:
    return {**example_row, DROP: "", DETAIL: "", FILE: file, LINE: line, RAW: "", STATS: ""}


def bad_row(file: str, line: int, reason: str, detail: str, raw: str) -> dict[str, Any]:
    empty = dict.fromkeys(COLUMNS, "")
    return {
        **empty, DROP: f"{QUARANTINE}:{reason}", DETAIL: detail, FILE: file, LINE: line,
        RAW: raw[:RAW_LIMIT], STATS: "",
    }


def sum_stats(blobs: Iterable[str]) -> Counter:
    """Add up `_stats` JSON blobs (empty strings are skipped)."""
    total: Counter = Counter()
    for blob in blobs:
        if blob:
            total.update(json.loads(blob))
    return total
