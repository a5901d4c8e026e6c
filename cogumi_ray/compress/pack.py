"""Lossless packing of model files (HF folders, PEFT adapters, GGUF) into one verified archive.

`pack` streams each file in chunks (see `planes` for the codecs, `archive` for the format) through
a thread pool (zstd releases the GIL) with about one chunk in flight per thread, so memory stays at
a few chunks whatever the file size. `unpack` restores all files or none: each is written to a
temporary name and renamed only once every file matched the SHA-256 recorded at packing time.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cogumi_ray.compress.archive import (
    MAX_CHUNK,
    Chunk,
    Entry,
    Manifest,
    manifest_json,
    read_manifest,
    write_header,
    write_tail,
)
from cogumi_ray.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["PackReport", "UnpackReport", "pack", "read_manifest", "train_dictionary", "unpack", "verify"]

DEFAULT_CHUNK_MB = 8  # holds zstd -19's whole 8 MiB window; larger chunks only cost memory


@dataclass
class FileReport:
    path: str
    size: int  # original bytes
    stored: int  # bytes of its chunks in the archive
    codec: str

    @property
    def ratio(self) -> float:
        return self.size / self.stored if self.stored else 1.0


@dataclass
class PackReport:
    archive: str
    in_bytes: int  # original bytes packed
    out_bytes: int  # archive bytes, header and manifest included
    seconds: float
    level: int
    threads: int
    files: list[FileReport] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.in_bytes / self.out_bytes

    @property
    def mb_per_s(self) -> float:
        """Original megabytes (1e6 bytes) packed per second."""
        return self.in_bytes / 1e6 / max(self.seconds, 1e-9)


@dataclass
class UnpackReport:
    archive: str
    dst_dir: str | None  # None: verified only, nothing written
    in_bytes: int  # archive bytes
    out_bytes: int  # original bytes restored
    seconds: float
    threads: int
    files: list[FileReport] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.out_bytes / self.in_bytes

    @property
    def mb_per_s(self) -> float:
        """Original megabytes (1e6 bytes) restored per second."""
        return self.out_bytes / 1e6 / max(self.seconds, 1e-9)


# -- pack ------------------------------------------------------------------------------------------


def pack(src: str, dst: str, *, level: int = 19, threads: int = 0,
         dictionary: bytes | str | None = None, chunk_mb: int = DEFAULT_CHUNK_MB) -> PackReport:
    """Pack the file or folder `src` into the archive file `dst` (written whole, or not at all).

    level: zstd level 1..22 (byte planes from level 16 use zstd's optimal parser with small
    tables: the ratio of -19 at ~15x its speed, see `planes`); threads: 0 = one per CPU;
    dictionary: a zstd dictionary (bytes or a file path, see `train_dictionary`) for the plain-zstd
    chunks, stored in the archive; chunk_mb: chunk size (memory is about threads x 3 chunks).
    """
    import zstandard

    if not 1 <= level <= zstandard.MAX_COMPRESSION_LEVEL:
        raise DataError(f"zstd level {level} is out of range; use 1..{zstandard.MAX_COMPRESSION_LEVEL}")
    if not 1 <= chunk_mb <= MAX_CHUNK // 2**20:
        raise DataError(f"chunk_mb {chunk_mb} is out of range; use 1..{MAX_CHUNK // 2**20}")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise DataError(f"the archive {dst!r} would overwrite its own source; choose another path")
    t0 = time.perf_counter()
    tmp = f"{dst}.tmp-{os.getpid()}"
    sources = _sources(src, skip={os.path.abspath(dst), os.path.abspath(tmp)})
    zdict = _dictionary_bytes(dictionary)
    n = _threads(threads)
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    try:
        with open(tmp, "wb") as out:
            entries = _write_archive(out, sources, level, n, zdict, chunk_mb * 2**20)
        os.replace(tmp, dst)  # readers never see a half-written archive
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    files = [FileReport(e.path, e.size, e.stored, e.codec) for e in entries]
    report = PackReport(dst, sum(e.size for e in entries), os.path.getsize(dst),
                        time.perf_counter() - t0, level, n, files)
    log.info("packed %d file(s), %.1f MB -> %.1f MB (%.3fx) in %.1fs (%.0f MB/s) -> %s", len(files),
             report.in_bytes / 1e6, report.out_bytes / 1e6, report.ratio, report.seconds,
             report.mb_per_s, dst)
    return report


def _sources(src: str, skip: set[str]) -> list[tuple[str, str]]:
    """[(archive path, file path)]: a file packs under its own name, a folder's files relative to it."""
    if os.path.isfile(src):
        return [(os.path.basename(src), src)]
    if not os.path.isdir(src):
        raise DataError(f"{src!r} does not exist; pass a model folder, an adapter folder or a file")
    out = []
    for root, dirs, names in os.walk(src):
        dirs.sort()  # deterministic archives: same folder, same bytes
        for name in sorted(names):
            path = os.path.join(root, name)
            if os.path.abspath(path) in skip or not os.path.isfile(path):
                continue  # the archive being written, sockets, dangling links
            out.append((os.path.relpath(path, src).replace(os.sep, "/"), path))
    if not out:
        raise DataError(f"{src!r} holds no files to pack")
    return out


def _dictionary_bytes(dictionary: bytes | str | None) -> bytes | None:
    if dictionary is None or isinstance(dictionary, bytes):
        return dictionary or None
    try:
        with open(dictionary, "rb") as fh:
            return fh.read()
    except OSError as e:
        raise DataError(f"zstd dictionary {dictionary!r} cannot be read ({e})") from e


def _threads(threads: int) -> int:
    return threads if threads > 0 else os.cpu_count() or 1


def _write_archive(out: Any, sources: list[tuple[str, str]], level: int, n: int,
                   zdict_bytes: bytes | None, chunk_bytes: int) -> list[Entry]:
    from concurrent.futures import ThreadPoolExecutor

    import zstandard

    write_header(out)
    zdict, dict_record = None, None
    if zdict_bytes:
        dict_record = {"offset": out.tell(), "size": len(zdict_bytes),
                       "sha256": hashlib.sha256(zdict_bytes).hexdigest()}
        out.write(zdict_bytes)
        zdict = zstandard.ZstdCompressionDict(zdict_bytes)
    with ThreadPoolExecutor(n, thread_name_prefix="pack") as pool:
        entries = [_pack_file(out, pool, n, rel, path, level, zdict, chunk_bytes)
                   for rel, path in sources]
    write_tail(out, manifest_json(level, chunk_bytes, dict_record, entries))
    return entries


def _pack_file(out: Any, pool: Any, n: int, rel: str, path: str, level: int, zdict: Any,
               chunk_bytes: int) -> Entry:
    from cogumi_ray.compress.planes import encode, file_layout, split

    size = os.path.getsize(path)
    sha = hashlib.sha256()
    chunks: list[Chunk] = []
    pending: deque[tuple[Any, Any]] = deque()
    with open(path, "rb") as fh:
        for seg in split(file_layout(path, size), chunk_bytes):  # contiguous from byte 0
            data = fh.read(seg.size)
            if len(data) != seg.size:
                raise DataError(f"{path!r} shrank while being packed; pack it again")
            sha.update(data)
            pending.append((seg, pool.submit(encode, data, seg.width, level, zdict)))
            while len(pending) > n + 2:  # bounded memory: about one chunk in flight per thread
                chunks.append(_store(out, *pending.popleft()))
        if fh.read(1):
            raise DataError(f"{path!r} grew while being packed; pack it again")
    while pending:
        chunks.append(_store(out, *pending.popleft()))
    return Entry(rel, size, sha.hexdigest(), tuple(chunks))


def _store(out: Any, seg: Any, future: Any) -> Chunk:
    parts = future.result()
    offset = out.tell()
    for _, blob in parts:
        out.write(blob)
    return Chunk(offset, seg.size, seg.width, tuple((kind, len(blob)) for kind, blob in parts))


def train_dictionary(paths: list[str], *, size: int = 112_640, sample_bytes: int = 16_384,
                     max_samples: int = 4_000) -> bytes:
    """A zstd dictionary trained on pieces of `paths` (pays off for many small, similar files)."""
    import zstandard

    samples: list[bytes] = []
    per_file = max(1, max_samples // max(len(paths), 1))
    for path in paths:
        n = os.path.getsize(path)
        step = max(sample_bytes, n // per_file)
        with open(path, "rb") as fh:
            for start in range(0, n, step):
                fh.seek(start)
                samples.append(fh.read(sample_bytes))
    try:
        return zstandard.train_dictionary(size, samples).as_bytes()
    except zstandard.ZstdError as e:
        raise DataError(f"cannot train a zstd dictionary on {len(samples)} samples ({e}); "
                        "give more or larger files, or a smaller size") from e


# -- read, verify, unpack --------------------------------------------------------------------------

def verify(archive: str, *, threads: int = 0) -> UnpackReport:
    """Decompress every file and check its SHA-256 without writing anything."""
    t0 = time.perf_counter()
    manifest = read_manifest(archive)
    n = _threads(threads)
    _decode_all(archive, manifest, n, lambda entry: contextlib.nullcontext(_discard))
    return _unpack_report(archive, None, manifest, time.perf_counter() - t0, n)


def _discard(_: Any) -> None:
    return None


def unpack(archive: str, dst_dir: str, *, threads: int = 0) -> UnpackReport:
    """Restore every file of `archive` under `dst_dir`, all or nothing.

    Each file is written to a temporary name next to its destination; only when every file's
    SHA-256 matches are they renamed into place. On any error the temporary files (and folders
    this call created) are removed, so a damaged archive leaves no partial output.
    """
    t0 = time.perf_counter()
    manifest = read_manifest(archive)
    n = _threads(threads)
    targets = {e.path: _target(archive, dst_dir, e.path) for e in manifest.files}
    staged: list[tuple[str, str]] = []
    made: list[str] = []
    done = False

    @contextlib.contextmanager
    def writer(entry: Entry) -> Iterator[Callable[[Any], Any]]:
        final = targets[entry.path]
        tmp = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.unpack-{os.getpid()}")
        staged.append((tmp, final))
        with open(tmp, "wb") as out:
            yield out.write

    try:
        made = _make_dirs(list(targets.values()))
        _decode_all(archive, manifest, n, writer)
        for tmp, final in staged:
            os.replace(tmp, final)
        done = True
    finally:
        if not done:
            _clean(staged, made)
    return _unpack_report(archive, dst_dir, manifest, time.perf_counter() - t0, n)


def _target(archive: str, dst_dir: str, path: str) -> str:
    final = os.path.join(dst_dir, *path.split("/"))
    root = os.path.realpath(dst_dir)
    if not os.path.realpath(final).startswith(root + os.sep):  # e.g. a symlinked folder in dst_dir
        raise DataError(f"archive {archive!r}: entry {path!r} would be written outside {dst_dir!r}")
    return final


def _make_dirs(paths: list[str]) -> list[str]:
    """Create the parent folders of `paths`; return those created, parents first."""
    made: list[str] = []
    for d in sorted({os.path.dirname(os.path.abspath(p)) for p in paths}):
        missing = []
        while not os.path.isdir(d):
            missing.append(d)
            d = os.path.dirname(d)
        for m in reversed(missing):
            os.mkdir(m)
            made.append(m)
    return made


def _clean(staged: list[tuple[str, str]], made: list[str]) -> None:
    for tmp, _ in staged:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
    for d in reversed(made):
        with contextlib.suppress(OSError):
            os.rmdir(d)


def _decode_all(archive: str, manifest: Manifest, n: int,
                writer: Callable[[Entry], contextlib.AbstractContextManager[Callable[[Any], Any]]]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with open(archive, "rb") as fh, ThreadPoolExecutor(n, thread_name_prefix="unpack") as pool:
        zdict = _load_dictionary(archive, fh, manifest)
        for entry in manifest.files:
            with writer(entry) as sink:
                _restore(archive, fh, pool, n, entry, zdict, sink)


def _load_dictionary(archive: str, fh: Any, manifest: Manifest) -> Any:
    import zstandard

    rec = manifest.dictionary
    if not rec:
        return None
    fh.seek(int(rec["offset"]))
    data = fh.read(int(rec["size"]))
    if hashlib.sha256(data).hexdigest() != rec["sha256"]:
        raise DataError(f"archive {archive!r} is corrupted: its zstd dictionary does not match its SHA-256")
    return zstandard.ZstdCompressionDict(data)


def _restore(archive: str, fh: Any, pool: Any, n: int, entry: Entry, zdict: Any,
             sink: Callable[[Any], Any]) -> None:
    sha = hashlib.sha256()
    pending: deque[Any] = deque()

    def drain() -> int:
        buf = pending.popleft().result()
        sha.update(buf)
        sink(buf)
        return len(buf)

    total = 0
    for i, chunk in enumerate(entry.chunks):
        fh.seek(chunk.offset)
        parts = [(kind, fh.read(size)) for kind, size in chunk.parts]
        where = f"archive {archive!r} is corrupted: chunk {i} of {entry.path!r}"
        pending.append(pool.submit(_decode_chunk, parts, chunk, zdict, where))
        while len(pending) > n + 2:
            total += drain()
    while pending:
        total += drain()
    if total != entry.size or sha.hexdigest() != entry.sha256:
        raise DataError(f"archive {archive!r} is corrupted: {entry.path!r} does not match the SHA-256 "
                        "recorded when it was packed; re-create or re-copy the archive")


def _decode_chunk(parts: list[tuple[str, bytes]], chunk: Chunk, zdict: Any, where: str) -> Any:
    from cogumi_ray.compress.planes import decode

    try:
        return decode(parts, chunk.width, chunk.size, zdict)
    except ValueError as e:
        raise DataError(f"{where}: {e}") from e


def _unpack_report(archive: str, dst_dir: str | None, manifest: Manifest, seconds: float,
                   n: int) -> UnpackReport:
    files = [FileReport(e.path, e.size, e.stored, e.codec) for e in manifest.files]
    report = UnpackReport(archive, dst_dir, os.path.getsize(archive), sum(f.size for f in files),
                          seconds, n, files)
    log.info("%s %d file(s), %.1f MB in %.1fs (%.0f MB/s) from %s",
             "unpacked" if dst_dir else "verified", len(files), report.out_bytes / 1e6, seconds,
             report.mb_per_s, archive)
    return report
