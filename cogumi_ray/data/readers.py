"""Read JSONL / Parquet inputs (local paths, directories or fsspec URIs) into annotated Example rows.

Ray Data plan: the driver only *lists* files; a dataset of file names is then expanded by a
`flat_map` whose tasks each stream one file (line by line for JSONL, record batch by record batch
for Parquet) on whichever node runs them. Memory per task stays bounded by one batch rather than one
file, files spread over the cluster, and every row keeps its file and line number, which Ray's
built-in text/JSON readers drop. Unreadable rows are not raised: they come out marked
`_drop="quarantine:<reason>"` (see rows.py) so the run continues and reports them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage
from cogumi_ray.data.normalize import RecordError, normalize_record
from cogumi_ray.data.rows import bad_row, good_row
from cogumi_ray.errors import DataError

if TYPE_CHECKING:
    import ray.data

log = logging.getLogger(__name__)

# Suffix -> format. JSON Lines may be compressed (fsspec infers the codec from the suffix).
SUFFIXES: dict[str, str] = {
    ".jsonl": "jsonl", ".jsonl.gz": "jsonl", ".jsonl.zst": "jsonl", ".jsonl.bz2": "jsonl",
    ".ndjson": "jsonl", ".ndjson.gz": "jsonl", ".json": "jsonl", ".parquet": "parquet",
}
PARQUET_BATCH_ROWS = 1024


def file_format(path: str) -> str | None:
    name = path.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    return None


def list_input_files(paths: Iterable[str]) -> list[tuple[str, str]]:
    """(uri, format) for every input file: explicit files, or supported files found under dirs."""
    found: list[tuple[str, str]] = []
    for given in paths:
        fs, path = storage.fs_and_path(given)
        if not fs.exists(path):
            raise DataError(f"input {given!r} does not exist; pass a JSONL/Parquet file, dir or URI")
        if fs.isdir(path):
            names = sorted(p for p in fs.find(path) if not fs.isdir(p))
            hits = [
                (_uri(fs, given, p), fmt) for p in names
                if (fmt := file_format(p)) and not _hidden(p[len(path):])
            ]
            if not hits:
                raise DataError(
                    f"input directory {given!r} holds no supported files; "
                    f"supported suffixes: {sorted(SUFFIXES)}"
                )
            found.extend(hits)
        else:
            fmt = file_format(path)
            if fmt is None:
                raise DataError(
                    f"input {given!r} has an unsupported suffix; supported: {sorted(SUFFIXES)}"
                )
            found.append((given, fmt))
    if not found:
        raise DataError("no inputs given; set curate.inputs or pass --input PATH")
    return found


def _hidden(rel: str) -> bool:
    # Skip dot-files, temp files and Spark/Ray markers like _SUCCESS.
    return any(part.startswith((".", "_")) or ".tmp-" in part for part in rel.split("/") if part)


def _uri(fs: Any, given: str, path: str) -> str:
    return path if storage.is_local(given) else fs.unstrip_protocol(path)


def _source_name(uri: str) -> str:
    """Default `source` for rows without one: the file name without its suffixes."""
    return uri.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0] or "unknown"


def _annotated(record: Any, uri: str, line: int, raw: str) -> dict[str, Any]:
    try:
        example = normalize_record(record, _source_name(uri))
    except RecordError as e:
        return bad_row(uri, line, e.reason, e.detail, raw)
    return good_row(example.to_row(), uri, line)


def iter_jsonl(uri: str) -> Iterator[dict[str, Any]]:
    """Stream one JSON Lines file (a `.json` file holding one JSON array also works)."""
    import fsspec

    with fsspec.open(uri, "rb", compression="infer") as f:
        first = f.read(1)
        while first and first.isspace():
            first = f.read(1)
        if first == b"[":  # a whole-file JSON array (e.g. Alpaca's alpaca_data.json)
            yield from _iter_json_array(uri, first + f.read())
            return
        for number, raw_bytes in enumerate(_prepend(first, f), start=1):
            try:
                line = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as e:
                text = raw_bytes.decode("utf-8", errors="replace")
                yield bad_row(uri, number, "bad_encoding", f"not UTF-8 ({e.reason})", text)
                continue
            if not line.strip():
                continue  # blank lines are layout, not records
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                yield bad_row(uri, number, "bad_json", f"{e.msg} at column {e.colno}", line.rstrip("\n"))
                continue
            yield _annotated(record, uri, number, line.rstrip("\n"))


def _prepend(first: bytes, f: Any) -> Iterator[bytes]:
    """Lines of `f`, with the byte already consumed while sniffing put back on the first line."""
    lines = iter(f)
    head = next(lines, b"")
    yield first + head
    yield from lines


def _iter_json_array(uri: str, blob: bytes) -> Iterator[dict[str, Any]]:
    try:
        records = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raw = blob[:200].decode(errors="replace")
        yield bad_row(uri, 1, "bad_json", f"file is not a valid JSON array ({e})", raw)
        return
    for number, record in enumerate(records, start=1):  # "line" = 1-based element index
        yield _annotated(record, uri, number, json.dumps(record, default=str))


def iter_parquet(uri: str) -> Iterator[dict[str, Any]]:
    """Stream one Parquet file batch by batch; `line` is the 1-based row number."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(uri, "rb") as f:
        try:
            reader = pq.ParquetFile(f)
        except Exception as e:  # noqa: BLE001 - any decode failure means "not Parquet"
            yield bad_row(uri, 0, "bad_parquet", f"cannot open as Parquet ({e})", "")
            return
        number = 0
        for batch in reader.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for record in batch.to_pylist():
                number += 1
                yield _annotated(record, uri, number, json.dumps(record, default=str))


def read_input_file(item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Ray Data flat_map UDF: one file name in, its annotated rows out (streamed)."""
    reader = iter_parquet if item["format"] == "parquet" else iter_jsonl
    yield from reader(item["uri"])


def read_examples(paths: Iterable[str]) -> ray.data.Dataset:
    """Annotated Example rows (see rows.py) from every input file, read in parallel on Ray."""
    import ray.data

    files = list_input_files(paths)
    log.info("curate: reading %d input file(s)", len(files))
    items = [{"uri": uri, "format": fmt} for uri, fmt in files]
    # One block per file so each file is its own read task (parallel across the cluster).
    return ray.data.from_items(items, override_num_blocks=len(items)).flat_map(read_input_file)
