"""Parse one piece of an input file into annotated Example rows (see rows.py), streaming.

A piece is a whole file, a byte range of a JSON Lines file, or some row groups of a Parquet file,
so one large file can be read by many tasks. Every row keeps its 1-based line (JSONL) or row
(Parquet) number; unreadable rows come out quarantined with a reason instead of raising.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from cogumi_ray.data.normalize import RecordError, normalize_record
from cogumi_ray.data.rows import bad_row, good_row

PARQUET_BATCH_ROWS = 1024


def source_name(uri: str) -> str:
    """Default `source` for rows without one: the file name without its suffixes."""
    return uri.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0] or "unknown"


def _annotated(record: Any, uri: str, line: int, raw: str) -> dict[str, Any]:
    try:
        example = normalize_record(record, source_name(uri))
    except RecordError as e:
        return bad_row(uri, line, e.reason, e.detail, raw)
    return good_row(example.to_row(), uri, line)


def _line_row(uri: str, number: int, raw_bytes: bytes) -> dict[str, Any] | None:
    try:
        line = raw_bytes.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        text = raw_bytes.decode("utf-8", errors="replace").rstrip("\r\n")
        return bad_row(uri, number, "bad_encoding", f"not UTF-8 ({e.reason})", text)
    if not line.strip():
        return None  # blank lines are layout, not records
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        return bad_row(uri, number, "bad_json", f"{e.msg} (column {e.colno})", line)
    return _annotated(record, uri, number, line)


def iter_jsonl(
    uri: str, start: int = 0, end: int | None = None, newlines_before: int = 0
) -> Iterator[dict[str, Any]]:
    """Rows of the lines that *start* in bytes [start, end) of a JSON Lines file.

    `newlines_before` is the number of newlines in bytes [0, start), which gives line numbers.
    A line straddling `start` belongs to the previous range; a line straddling `end` is read whole.
    """
    import fsspec

    with fsspec.open(uri, "rb", compression="infer") as f:
        number = 1
        if start > 0:
            f.seek(start - 1)
            at_line_start = f.read(1) == b"\n"
            if not at_line_start:
                f.readline()  # the rest of a line that started in the previous range
            number = newlines_before + (1 if at_line_start else 2)
        pos = f.tell()
        while end is None or pos < end:
            raw = f.readline()
            if not raw:
                break
            pos += len(raw)
            row = _line_row(uri, number, raw)
            if row is not None:
                yield row
            number += 1


def iter_json_array(uri: str) -> Iterator[dict[str, Any]]:
    """A `.json` file: one JSON array (Alpaca's alpaca_data.json style) or JSON Lines."""
    import fsspec

    with fsspec.open(uri, "rb", compression="infer") as f:
        blob = f.read()
    if not blob.lstrip().startswith(b"["):
        yield from iter_jsonl(uri)
        return
    try:
        records = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raw = blob[:200].decode(errors="replace")
        yield bad_row(uri, 1, "bad_json", f"file is not a valid JSON array ({e})", raw)
        return
    for number, record in enumerate(records, start=1):  # "line" = 1-based element index
        yield _annotated(record, uri, number, json.dumps(record, default=str))


def iter_parquet(
    uri: str, row_groups: list[int] | None = None, first_row: int = 1
) -> Iterator[dict[str, Any]]:
    """Rows of a Parquet file (or of some of its row groups), batch by batch."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(uri, "rb") as f:
        try:
            reader = pq.ParquetFile(f)
        except Exception as e:  # noqa: BLE001 - any decode failure means "not Parquet"
            yield bad_row(uri, 0, "bad_parquet", f"cannot open as Parquet ({e})", "")
            return
        number = first_row
        for batch in reader.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=row_groups):
            for record in batch.to_pylist():
                yield _annotated(record, uri, number, json.dumps(record, default=str))
                number += 1
