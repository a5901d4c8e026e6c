"""The pack archive format: header, chunk table manifest and footer, written and checked.

Layout (integers little-endian):

    header    MAGIC (8 bytes) | format version (u16) | flags (u16, 0) | reserved (u32, 0)
    dict      the zstd dictionary, when packed with one
    chunks    the stored parts of every chunk of every file, in file order
    manifest  zstd-compressed JSON: per file its relative path, size, SHA-256, codec, chunk table
    footer    manifest offset (u64) | manifest length (u64) | manifest SHA-256 (32) | END_MAGIC (8)

The manifest comes last so packing streams (chunk sizes are known only once compressed), and the
footer's end marker tells a truncated archive from a finished one. Everything read back is
checked before use: a damaged or crafted archive fails with a DataError naming what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from cogumi_ray.errors import DataError

MAGIC = b"CGMPACK\x00"
END_MAGIC = b"CGMPEND\x00"
FORMAT_VERSION = 1
HEADER = struct.Struct("<8sHHI")
FOOTER = struct.Struct("<QQ32s8s")
MAX_CHUNK = 2**30  # refuse manifests that would make us allocate more than this per chunk
_WIDTHS = (0, 2, 4)  # plain, 16-bit and 32-bit byte planes


@dataclass(frozen=True)
class Chunk:
    offset: int  # archive offset of the chunk's first stored part
    size: int  # original bytes
    width: int  # 0: plain zstd; 2/4: that many byte planes
    parts: tuple[tuple[str, int], ...]  # (RAW|ZSTD, stored bytes) per plane


@dataclass(frozen=True)
class Entry:
    path: str  # relative, "/"-separated
    size: int
    sha256: str
    chunks: tuple[Chunk, ...]

    @property
    def codec(self) -> str:
        return "planes+zstd" if any(c.width for c in self.chunks) else "zstd"

    @property
    def stored(self) -> int:
        return sum(n for c in self.chunks for _, n in c.parts)


@dataclass(frozen=True)
class Manifest:
    version: int
    level: int
    chunk_bytes: int
    dictionary: dict[str, Any] | None  # {"offset", "size", "sha256"}
    files: tuple[Entry, ...]


def write_header(out: Any) -> None:
    out.write(HEADER.pack(MAGIC, FORMAT_VERSION, 0, 0))


def manifest_json(level: int, chunk_bytes: int, dictionary: dict[str, Any] | None,
                  entries: list[Entry]) -> dict[str, Any]:
    return {"format": "cogumi-pack", "version": FORMAT_VERSION, "level": level,
            "chunk_bytes": chunk_bytes, "dictionary": dictionary,
            "files": [entry_json(e) for e in entries]}


def entry_json(e: Entry) -> dict[str, Any]:
    return {"path": e.path, "size": e.size, "sha256": e.sha256, "codec": e.codec,
            "chunks": [{"offset": c.offset, "size": c.size, "width": c.width,
                        "parts": [list(p) for p in c.parts]} for c in e.chunks]}


def write_tail(out: Any, manifest: dict[str, Any]) -> None:
    """Write the manifest and the footer that points to it (the last bytes of every archive)."""
    import zstandard

    blob = zstandard.ZstdCompressor(level=19).compress(json.dumps(manifest).encode())
    offset = out.tell()
    out.write(blob)
    out.write(FOOTER.pack(offset, len(blob), hashlib.sha256(blob).digest(), END_MAGIC))


def read_manifest(archive: str) -> Manifest:
    """The archive's manifest, after checking magic, version, end marker and manifest hash."""
    import zstandard

    try:
        size = os.path.getsize(archive)
        with open(archive, "rb") as fh:
            head = fh.read(HEADER.size)
            _check_header(archive, head)
            if size < HEADER.size + FOOTER.size:
                raise DataError(f"archive {archive!r} is truncated ({size} bytes); re-create it")
            fh.seek(size - FOOTER.size)
            offset, length, digest, end = FOOTER.unpack(fh.read(FOOTER.size))
            if end != END_MAGIC:
                raise DataError(f"archive {archive!r} is truncated or unfinished: its end marker is "
                                "missing (was packing interrupted, or the copy cut short?); re-create it")
            if offset < HEADER.size or offset + length != size - FOOTER.size:
                raise DataError(f"archive {archive!r} is corrupted: its footer points outside the file")
            fh.seek(offset)
            blob = fh.read(length)
    except OSError as e:
        raise DataError(f"archive {archive!r} cannot be read ({e})") from e
    if hashlib.sha256(blob).digest() != digest:
        raise DataError(f"archive {archive!r} is corrupted: its manifest does not match its SHA-256")
    try:
        doc = json.loads(zstandard.ZstdDecompressor().decompress(blob))
    except (zstandard.ZstdError, ValueError) as e:
        raise DataError(f"archive {archive!r} has an unreadable manifest ({e})") from e
    return _parse_manifest(archive, doc, data_end=offset)


def _check_header(archive: str, head: bytes) -> None:
    if len(head) < HEADER.size and MAGIC.startswith(head[:len(MAGIC)]):
        raise DataError(f"archive {archive!r} is truncated: its header is incomplete; re-create it")
    if head[:len(MAGIC)] != MAGIC:
        raise DataError(f"{archive!r} is not a cogumi pack archive (its first bytes are "
                        f"{head[:len(MAGIC)]!r}, expected {MAGIC!r}); was it made by `cogumi pack`?")
    _, version, _, _ = HEADER.unpack(head)
    if version != FORMAT_VERSION:
        raise DataError(f"archive {archive!r} uses pack format version {version}, but this cogumi_ray "
                        f"reads only version {FORMAT_VERSION}; unpack it with the cogumi_ray that made it")


def _parse_manifest(archive: str, doc: Any, data_end: int) -> Manifest:
    try:
        files = tuple(Entry(f["path"], int(f["size"]), str(f["sha256"]), tuple(
            Chunk(int(c["offset"]), int(c["size"]), int(c["width"]),
                  tuple((str(k), int(n)) for k, n in c["parts"])) for c in f["chunks"]))
            for f in doc["files"])
        manifest = Manifest(int(doc["version"]), int(doc["level"]), int(doc["chunk_bytes"]),
                            doc.get("dictionary"), files)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"archive {archive!r} has a malformed manifest ({e!r})") from e
    if manifest.version != FORMAT_VERSION:
        raise DataError(f"archive {archive!r}: manifest version {manifest.version} is not supported")
    rec = manifest.dictionary
    if rec is not None and not (isinstance(rec, dict) and all(
            isinstance(rec.get(k), t) for k, t in (("offset", int), ("size", int), ("sha256", str)))):
        raise DataError(f"archive {archive!r} has a malformed manifest (dictionary record {rec!r})")
    for entry in files:
        _check_path(archive, entry.path)
        _check_chunks(archive, entry, data_end)
    _check_unique(archive, [e.path for e in files])
    return manifest


def _check_path(archive: str, path: Any) -> None:
    """Entry names are relative "/" paths without "." / ".." parts: nothing lands outside dst_dir."""
    parts = path.split("/") if isinstance(path, str) else [""]
    bad = (not isinstance(path, str) or path.startswith("/") or "\\" in path or "\x00" in path
           or (len(path) > 1 and path[1] == ":") or any(p in ("", ".", "..") for p in parts))
    if bad:
        raise DataError(f"archive {archive!r} has an unsafe entry name {path!r} (absolute, or with "
                        "'..'); refusing to unpack it")


def _check_chunks(archive: str, entry: Entry, data_end: int) -> None:
    total = 0
    for c in entry.chunks:
        n_parts = c.width if c.width > 1 else 1
        stored = sum(n for _, n in c.parts)
        ok = (c.width in _WIDTHS and len(c.parts) == n_parts and 0 < c.size <= MAX_CHUNK
              and c.size % max(c.width, 1) == 0 and c.offset >= HEADER.size
              and c.offset + stored <= data_end)
        if not ok:
            raise DataError(f"archive {archive!r} is corrupted: the chunk table of {entry.path!r} is "
                            "inconsistent")
        total += c.size
    if total != entry.size:
        raise DataError(f"archive {archive!r} is corrupted: the chunks of {entry.path!r} hold {total} "
                        f"bytes, the manifest says {entry.size}")


def _check_unique(archive: str, paths: list[str]) -> None:
    seen = set(paths)
    if len(seen) != len(paths):
        raise DataError(f"archive {archive!r} names a file twice; refusing to unpack it")
    for p in paths:
        parents = ["/".join(p.split("/")[:i]) for i in range(1, p.count("/") + 1)]
        if any(q in seen for q in parents):
            raise DataError(f"archive {archive!r} has {p!r} inside a path that is also a file")
