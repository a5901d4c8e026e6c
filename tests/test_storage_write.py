"""storage.write_through: a file appears whole or not at all, locally and on an fsspec store."""

from __future__ import annotations

import os

import fsspec
import pytest

from cogumi_ray import storage


def _writer(data: bytes, fail: bool = False):
    def write(path: str) -> int:
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
            if fail:
                raise OSError("disk full")
            f.write(data[len(data) // 2:])
        return len(data)

    return write


def test_local_write_is_renamed_into_place(tmp_path):
    out = tmp_path / "sub" / "model.gguf"
    n, size = storage.write_through(str(out), _writer(b"x" * 1000))
    assert n == size == 1000 and out.read_bytes() == b"x" * 1000
    assert os.listdir(out.parent) == ["model.gguf"]


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    out = tmp_path / "model.gguf"
    out.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"):
        storage.write_through(str(out), _writer(b"y" * 1000, fail=True))
    assert out.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.gguf"]


def test_remote_write_uploads_the_finished_file():
    uri = "memory://cogumi-test/run/adapter.gguf"
    n, size = storage.write_through(uri, _writer(b"z" * 300), "adapter.gguf")
    with fsspec.open(uri, "rb") as f:
        assert f.read() == b"z" * 300
    assert n == size == 300
