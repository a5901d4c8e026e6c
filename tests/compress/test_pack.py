"""Lossless packing: bit-identical round trips, byte planes that pay, damaged archives refused cleanly."""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from cogumi_ray.compress import archive as A
from cogumi_ray.compress.pack import pack, read_manifest, train_dictionary, unpack, verify
from cogumi_ray.errors import DataError


def _weights(shape: tuple[int, ...], dtype: str, seed: int = 0):
    """Trained-looking weights: normal(0, 0.02) has the exponent spread of real checkpoints."""
    import torch

    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=g) * 0.02
    if dtype == "int8":
        return torch.randint(-128, 128, shape, generator=g, dtype=torch.int8)
    return w.to(getattr(torch, dtype))


def _safetensors(path, tensors: dict) -> str:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"format": "pt"})
    return str(path)


def _read(path) -> bytes:
    return Path(path).read_bytes()


def _files(root) -> dict[str, bytes]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, root)] = _read(full)
    return out


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "int8"])
def test_safetensors_round_trip_is_bit_identical(tmp_path, dtype):
    import torch

    tensors = {"layer.weight": _weights((384, 256), dtype), "ids": _weights((100,), "int8", 2)}
    if dtype == "int8":  # integer-only file: no byte planes anywhere
        tensors["pos"] = torch.arange(300, dtype=torch.int64)
    else:
        tensors["norm.weight"] = _weights((256,), "float32", 1)
    src = _safetensors(tmp_path / "model.safetensors", tensors)
    rep = pack(src, str(tmp_path / "a.cgp"), level=3, threads=2)
    assert rep.files[0].codec == ("zstd" if dtype == "int8" else "planes+zstd")
    assert rep.in_bytes == os.path.getsize(src) and rep.out_bytes == os.path.getsize(tmp_path / "a.cgp")
    back = unpack(str(tmp_path / "a.cgp"), str(tmp_path / "out"), threads=2)
    assert _read(tmp_path / "out" / "model.safetensors") == _read(src)
    assert back.out_bytes == rep.in_bytes and back.files[0].path == "model.safetensors"
    assert set(os.listdir(tmp_path / "out")) == {"model.safetensors"}  # no temp files left


def _model_folder(root) -> str:
    """A HF-like folder: weights in two dtypes, configs, a tokenizer, an empty file, nested files."""
    os.makedirs(root / "adapter" / "deeper")
    _safetensors(root / "model.safetensors", {"w": _weights((512, 256), "bfloat16")})
    _safetensors(root / "adapter" / "adapter_model.safetensors",
                 {"lora_A": _weights((8, 256), "float32"), "lora_B": _weights((256, 8), "float16")})
    (root / "config.json").write_text(json.dumps({"hidden_size": 256, "model_type": "llama"}))
    (root / "tokenizer.json").write_text(json.dumps({"vocab": {f"t{i}": i for i in range(2000)}}))
    (root / "adapter" / "deeper" / "notes.bin").write_bytes(os.urandom(3000))
    (root / "empty.txt").write_bytes(b"")
    (root / "broken.safetensors").write_bytes(b"\xff" * 8 + b"not json")  # falls back to plain zstd
    return str(root)


def test_folder_round_trip_with_nested_and_empty_files(tmp_path):
    src = _model_folder(tmp_path / "model")
    rep = pack(src, str(tmp_path / "model.cgp"), level=3, threads=2)
    assert sorted(f.path for f in rep.files) == sorted(p.replace(os.sep, "/") for p in _files(src))
    assert rep.in_bytes == sum(len(b) for b in _files(src).values())
    assert verify(str(tmp_path / "model.cgp"), threads=1).out_bytes == rep.in_bytes
    unpack(str(tmp_path / "model.cgp"), str(tmp_path / "out"), threads=1)
    assert _files(tmp_path / "out") == _files(src)


def test_gguf_and_plain_files_pack_alone(tmp_path):
    import gguf

    path = str(tmp_path / "tiny.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tensor("w16", np.random.default_rng(0).normal(0, 0.02, (64, 256)).astype(np.float16))
    writer.add_tensor("w32", np.random.default_rng(1).normal(0, 0.02, (256,)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    rep = pack(path, str(tmp_path / "g.cgp"), level=3, threads=1)
    assert rep.files[0].codec == "planes+zstd"  # its f16/f32 tensors were found in the GGUF header
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 1000)
    assert pack(str(text), str(tmp_path / "t.cgp"), level=3).files[0].codec == "zstd"
    for arch, orig in (("g.cgp", path), ("t.cgp", str(text))):
        unpack(str(tmp_path / arch), str(tmp_path / "out"))
        name = os.path.basename(orig)
        assert _read(tmp_path / "out" / name) == _read(orig)


def test_empty_file_and_many_chunks(tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    pack(str(empty), str(tmp_path / "e.cgp"))
    unpack(str(tmp_path / "e.cgp"), str(tmp_path / "out"))
    assert (tmp_path / "out" / "empty.bin").read_bytes() == b""
    # 3 MiB of bf16 in 1 MiB chunks over 3 threads: order and alignment must survive
    big = _safetensors(tmp_path / "big.safetensors", {"w": _weights((1536, 1024), "bfloat16")})
    pack(big, str(tmp_path / "b.cgp"), level=3, threads=3, chunk_mb=1)
    assert len(read_manifest(str(tmp_path / "b.cgp")).files[0].chunks) >= 4
    unpack(str(tmp_path / "b.cgp"), str(tmp_path / "out"), threads=3)
    assert (tmp_path / "out" / "big.safetensors").read_bytes() == _read(big)


def test_byte_planes_beat_plain_zstd_on_bf16(tmp_path):
    import zstandard

    src = _safetensors(tmp_path / "w.safetensors", {"w": _weights((2048, 512), "bfloat16")})
    rep = pack(src, str(tmp_path / "w.cgp"), level=3, threads=2)
    raw = _read(src)
    plain = len(raw) / len(zstandard.ZstdCompressor(level=3).compress(raw))
    print(f"bf16 normal(0, 0.02): byte planes {rep.ratio:.3f}x, plain zstd -3 {plain:.3f}x")
    assert rep.ratio > 1.2
    assert rep.ratio > 1.05 * plain  # fails if the planes were not split (plain zstd gives ~1.28x)


def test_dictionary_is_stored_and_used(tmp_path):
    docs = []
    for i in range(40):
        p = tmp_path / f"cfg{i}.json"
        p.write_text(json.dumps({"model_type": "llama", "layer": i, "hidden_size": 256 * (i % 4 + 1),
                                 "rope": {"theta": 10000.0 * i}, "names": [f"blk.{i}.attn_q"] * 5}))
        docs.append(str(p))
    zdict = train_dictionary(docs, size=4096, sample_bytes=256)
    (tmp_path / "d.dict").write_bytes(zdict)
    target = tmp_path / "one.json"
    target.write_bytes(_read(docs[3]))
    rep = pack(str(target), str(tmp_path / "d.cgp"), level=3, dictionary=str(tmp_path / "d.dict"))
    assert read_manifest(str(tmp_path / "d.cgp")).dictionary["size"] == len(zdict)
    assert rep.files[0].stored < len(target.read_bytes())  # too small for zstd without a dictionary
    unpack(str(tmp_path / "d.cgp"), str(tmp_path / "out"))
    assert (tmp_path / "out" / "one.json").read_bytes() == target.read_bytes()


# -- damaged archives: a clear error naming the archive, and no output left behind ---------------


@pytest.fixture
def archive(tmp_path) -> str:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a_config.json").write_text('{"a": 1}' * 50)  # restored before the weights
    _safetensors(tmp_path / "src" / "z_model.safetensors", {"w": _weights((1024, 512), "bfloat16")})
    return pack(str(tmp_path / "src"), str(tmp_path / "src.cgp"), level=3).archive


def _rejected(archive: str, dst, match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        unpack(archive, str(dst))
    assert os.path.basename(archive) in str(info.value)
    assert not os.path.exists(dst) or os.listdir(dst) == []


def _rewrite(archive: str, data: bytes) -> str:
    with open(archive, "wb") as fh:
        fh.write(data)
    return archive


@pytest.mark.parametrize("where", [0.5, 0.75])
def test_corrupted_byte_is_detected(archive, tmp_path, where):
    data = bytearray(_read(archive))
    data[int(len(data) * where)] ^= 0x40  # inside the weights' chunks (raw or zstd parts)
    _rewrite(archive, bytes(data))
    _rejected(archive, tmp_path / "out", "corrupted")
    os.makedirs(tmp_path / "existing")
    _rejected(archive, tmp_path / "existing", "corrupted")  # an existing folder stays empty
    with pytest.raises(DataError, match="corrupted"):
        verify(archive)


@pytest.mark.parametrize("keep", [0.5, 0.99, 12, 5, 0])
def test_truncated_archive_is_detected(archive, tmp_path, keep):
    data = _read(archive)
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    _rejected(_rewrite(archive, data[:n]), tmp_path / "out", "truncated")


def test_wrong_magic_and_version(archive, tmp_path):
    data = _read(archive)
    _rejected(_rewrite(archive, b"PK\x03\x04" + data[4:]), tmp_path / "out", "not a cogumi pack archive")
    bumped = data[:8] + (99).to_bytes(2, "little") + data[10:]
    _rejected(_rewrite(archive, bumped), tmp_path / "out", "format version 99.*reads only version 1")


def _with_manifest(archive: str, edit) -> str:
    """Rewrite the archive's manifest through `edit` (hash and footer recomputed: a crafted file)."""
    import zstandard

    data = _read(archive)
    offset, length, _, _ = A.FOOTER.unpack(data[-A.FOOTER.size:])
    doc = json.loads(zstandard.ZstdDecompressor().decompress(data[offset: offset + length]))
    edit(doc)
    out = io.BytesIO()
    out.write(data[:offset])
    A.write_tail(out, doc)
    return _rewrite(archive, out.getvalue())


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil.txt", "a/../../evil.txt", "a//b", "./x"])
def test_path_traversal_is_refused(archive, tmp_path, name):
    def rename(doc):
        doc["files"][0]["path"] = name

    _rejected(_with_manifest(archive, rename), tmp_path / "out", "unsafe entry name")
    assert not (tmp_path / "evil.txt").exists()


def test_inconsistent_manifest_is_refused(archive, tmp_path):
    def dup(doc):
        doc["files"][1]["path"] = doc["files"][0]["path"]

    _rejected(_with_manifest(archive, dup), tmp_path / "out", "names a file twice")

    def grow(doc):
        doc["files"][1]["chunks"][0]["size"] = 2**40

    _rejected(_with_manifest(archive, grow), tmp_path / "out", "chunk table")


def test_bad_options(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(DataError, match="level 0"):
        pack(str(tmp_path / "f"), str(tmp_path / "a.cgp"), level=0)
    with pytest.raises(DataError, match="does not exist"):
        pack(str(tmp_path / "missing"), str(tmp_path / "a.cgp"))
    with pytest.raises(DataError, match="overwrite its own source"):
        pack(str(tmp_path / "f"), str(tmp_path / "f"))
    assert not (tmp_path / "a.cgp").exists()


def test_cli_pack_unpack_verify(tmp_path, capsys):
    from cogumi_ray.compress.pack_cli import add_cli

    parser = argparse.ArgumentParser(prog="cogumi")
    add_cli(parser.add_subparsers(dest="cmd", required=True))
    src = _model_folder(tmp_path / "model")

    def run(*argv: str) -> int:
        args = parser.parse_args(list(argv))
        return args.handler(args)

    arch = str(tmp_path / "m.cgp")
    assert run("pack", src, "-o", arch, "--level", "3", "--threads", "2") == 0
    assert "planes+zstd" in capsys.readouterr().out
    assert run("unpack", arch, "--verify", "--json") == 0
    assert json.loads(capsys.readouterr().out)["dst_dir"] is None
    assert run("unpack", arch, "-o", str(tmp_path / "out")) == 0
    assert _files(tmp_path / "out") == _files(src)
    with pytest.raises(DataError, match="-o DIR"):
        run("unpack", arch)
