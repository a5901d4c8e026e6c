"""Paths that may be local or fsspec URIs (s3://, gs://), atomic writes, and content hashes."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import fsspec


def fs_and_path(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Split a path or URI into its filesystem and the path within it."""
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(str(uri))
    return fs, path


def join(base: str, *parts: str) -> str:
    """Join path components, keeping a URI scheme intact."""
    out = str(base).rstrip("/")
    for p in parts:
        out = f"{out}/{str(p).strip('/')}"
    return out


def is_local(uri: str) -> bool:
    return "://" not in str(uri) or str(uri).startswith("file://")


def local_path(uri: str) -> str:
    """The OS path of a local path or file:// URI (libraries like HF need plain paths)."""
    s = str(uri)
    return s[len("file://"):] if s.startswith("file://") else s


def absolute(uri: str) -> str:
    """A local relative path made absolute (Ray workers run in other directories); URIs as given."""
    import os

    s = str(uri)
    return s if "://" in s else os.path.abspath(s)


def exists(uri: str) -> bool:
    fs, path = fs_and_path(uri)
    return fs.exists(path)


def makedirs(uri: str) -> None:
    fs, path = fs_and_path(uri)
    fs.makedirs(path, exist_ok=True)


def atomic_write_bytes(uri: str, data: bytes) -> None:
    """Write to a temporary sibling then rename, so readers never see a half-written file."""
    fs, path = fs_and_path(uri)
    parent = path.rsplit("/", 1)[0] if "/" in path else "."
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(tmp, "wb") as f:
        f.write(data)
    if is_local(uri):
        os.replace(tmp, path)  # atomic on POSIX
    else:
        fs.mv(tmp, path)  # object stores: the final key appears at once on upload


T = TypeVar("T")


def write_through(uri: str, write: Callable[[str], T], name: str = "file") -> tuple[T, int]:
    """Have `write(local_path)` produce the file at `uri` whole or not at all: locally a temp
    sibling renamed into place, remotely a local temp file uploaded once. Returns what `write`
    returned and the file's size."""
    import tempfile

    if is_local(uri):
        final = local_path(uri)
        os.makedirs(os.path.dirname(os.path.abspath(final)), exist_ok=True)
        tmp = f"{final}.tmp-{os.getpid()}"
        try:
            out = write(tmp)
            os.replace(tmp, final)  # readers never see a half-written file
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return out, os.path.getsize(final)
    with tempfile.TemporaryDirectory() as d:
        tmp = os.path.join(d, name)
        out = write(tmp)
        size = os.path.getsize(tmp)
        fs, remote = fs_and_path(uri)
        fs.put(tmp, remote)
    return out, size


def atomic_write_text(uri: str, text: str) -> None:
    atomic_write_bytes(uri, text.encode("utf-8"))


def atomic_write_json(uri: str, obj: Any) -> None:
    atomic_write_text(uri, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(uri: str) -> Any:
    fs, path = fs_and_path(uri)
    with fs.open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def content_hash(uri: str) -> str:
    """Hash of a file, or of a directory tree (relative names + contents), by streaming blake2b.

    Files over FULL_HASH_LIMIT are fingerprinted by size and sampled windows (see below).
    """
    fs, path = fs_and_path(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"cannot hash {uri!r}: it does not exist")
    h = hashlib.blake2b(digest_size=16)
    if fs.isdir(path):
        files = sorted(p for p in fs.find(path) if not fs.isdir(p))
        for p in files:
            rel = p[len(path.rstrip("/")) + 1:]
            if rel.split("/")[-1].startswith(".") or ".tmp-" in rel:
                continue  # hidden and temporary files are not content
            h.update(rel.encode())
            _hash_file(fs, p, h)
    else:
        _hash_file(fs, path, h)
    return h.hexdigest()


# Files above this size are fingerprinted (size + three 4 MiB windows) instead of read in full:
# re-hashing a 16 GB checkpoint on object storage at every pipeline step would cost minutes.
FULL_HASH_LIMIT = 256 << 20
_WINDOW = 4 << 20


def _hash_file(fs: fsspec.AbstractFileSystem, path: str, h: Any) -> None:
    size = fs.size(path)
    with fs.open(path, "rb") as f:
        if size is None or size <= FULL_HASH_LIMIT:
            while chunk := f.read(1 << 20):
                h.update(chunk)
            return
        h.update(f"size={size}".encode())
        for offset in (0, size // 2, size - _WINDOW):
            f.seek(offset)
            h.update(f.read(_WINDOW))


def hash_object(obj: Any) -> str:
    """Stable hash of a JSON-serialisable object (configs)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=16).hexdigest()
