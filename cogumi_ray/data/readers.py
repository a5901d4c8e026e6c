"""Read JSONL / Parquet inputs (local paths, directories or fsspec URIs) into annotated Example rows.

Ray Data plan: the driver only *lists* files and cuts them into pieces (whole small files, byte
ranges of large JSON Lines files, row-group runs of large Parquet files); a dataset of pieces is
then expanded by `FlatMap(read_piece)`, whose tasks each stream one piece on whichever node runs
them. So even one large file spreads over the cluster, memory per task stays bounded, and every
row keeps its file and line number, which Ray's built-in text/JSON readers drop. Line numbers of
byte ranges come from a first, cheap pass counting newlines per range (`Map(count_newlines)`).
Unreadable rows are not raised: they come out marked `_drop="quarantine:<reason>"` (see rows.py)
so the run continues and reports them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage
from cogumi_ray.data.parse import iter_json_array, iter_jsonl, iter_parquet
from cogumi_ray.errors import DataError

if TYPE_CHECKING:
    import ray.data

log = logging.getLogger(__name__)

# Suffix -> format. JSON Lines may be compressed (fsspec infers the codec from the suffix).
SUFFIXES: dict[str, str] = {
    ".jsonl": "jsonl", ".jsonl.gz": "jsonl", ".jsonl.zst": "jsonl", ".jsonl.bz2": "jsonl",
    ".ndjson": "jsonl", ".ndjson.gz": "jsonl", ".json": "json", ".parquet": "parquet",
}
PIECE_BYTES = 64 << 20  # files larger than this are read by several tasks
COMPRESSED = (".gz", ".zst", ".bz2")  # a compressed stream cannot be entered mid-way


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


def plan_pieces(files: list[tuple[str, str]], piece_bytes: int = PIECE_BYTES) -> list[dict[str, Any]]:
    """Cut files into read pieces: {uri, format, start, end, row_groups, first_row}."""
    pieces: list[dict[str, Any]] = []
    for uri, fmt in files:
        fs, path = storage.fs_and_path(uri)
        size = fs.size(path) or 0
        whole = {"uri": uri, "format": fmt, "start": 0, "end": -1, "row_groups": [], "first_row": 1}
        if size <= piece_bytes or fmt == "json" or uri.endswith(COMPRESSED):
            pieces.append(whole)
        elif fmt == "parquet":
            pieces.extend(_parquet_pieces(fs, path, whole, piece_bytes))
        else:
            pieces.extend({**whole, "start": s, "end": min(s + piece_bytes, size), "first_row": -1}
                          for s in range(0, size, piece_bytes))
    return pieces


def _parquet_pieces(fs: Any, path: str, whole: dict[str, Any], piece_bytes: int) -> list[dict]:
    """Runs of row groups of about `piece_bytes` each (footer read only)."""
    import pyarrow.parquet as pq

    try:
        with fs.open(path, "rb") as f:
            meta = pq.read_metadata(f)
    except Exception:  # noqa: BLE001 - unreadable: one piece, whose reader quarantines it
        return [whole]
    pieces, groups, group_bytes, first, row = [], [], 0, 1, 1
    for i in range(meta.num_row_groups):
        if groups and group_bytes >= piece_bytes:
            pieces.append({**whole, "row_groups": groups, "first_row": first})
            groups, group_bytes, first = [], 0, row
        groups.append(i)
        group_bytes += meta.row_group(i).total_byte_size
        row += meta.row_group(i).num_rows
    pieces.append({**whole, "row_groups": groups, "first_row": first})
    return pieces


def count_newlines(piece: dict[str, Any]) -> dict[str, Any]:
    """Ray Data map UDF: newlines in bytes [start, end) of a piece."""
    import fsspec

    count, pos = 0, piece["start"]
    with fsspec.open(piece["uri"], "rb") as f:
        f.seek(pos)
        while pos < piece["end"]:
            chunk = f.read(min(8 << 20, piece["end"] - pos))
            if not chunk:
                break
            count += chunk.count(b"\n")
            pos += len(chunk)
    return {**piece, "newlines": count}


def _number_ranges(pieces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill `first_row` of byte-range pieces with the newlines before them (one Ray pass)."""
    import ray.data

    ranges = [p for p in pieces if p["first_row"] == -1]
    if not ranges:
        return pieces
    counted = ray.data.from_items(ranges, override_num_blocks=len(ranges)).map(count_newlines)
    before: dict[tuple[str, int], int] = {}
    running: dict[str, int] = {}
    for p in sorted(counted.take_all(), key=lambda p: (p["uri"], p["start"])):
        before[p["uri"], p["start"]] = running.get(p["uri"], 0)
        running[p["uri"]] = running.get(p["uri"], 0) + p["newlines"]
    return [{**p, "first_row": before[p["uri"], p["start"]]} if p["first_row"] == -1 else p
            for p in pieces]


def read_piece(piece: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Ray Data flat_map UDF: one piece of a file in, its annotated rows out (streamed)."""
    uri = piece["uri"]
    if piece["format"] == "parquet":
        yield from iter_parquet(uri, list(piece["row_groups"]) or None, piece["first_row"])
    elif piece["format"] == "json":
        yield from iter_json_array(uri)
    elif piece["end"] < 0:
        yield from iter_jsonl(uri)
    else:  # for byte ranges, first_row holds the newlines before `start`
        yield from iter_jsonl(uri, piece["start"], piece["end"], piece["first_row"])


def read_examples(paths: Iterable[str], piece_bytes: int = PIECE_BYTES) -> ray.data.Dataset:
    """Annotated Example rows (see rows.py) from every input file, read in parallel on Ray."""
    import ray.data

    files = list_input_files(paths)
    pieces = _number_ranges(plan_pieces(files, piece_bytes))
    log.info("curate: reading %d input file(s) as %d piece(s)", len(files), len(pieces))
    # One block per piece so each piece is its own read task (parallel across the cluster).
    return ray.data.from_items(pieces, override_num_blocks=len(pieces)).flat_map(read_piece)
