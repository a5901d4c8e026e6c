"""Chunk codecs for lossless packing: byte planes for float tensors (the ZipNN idea), zstd for the rest.

The bytes of a float are not alike: in bf16 weights the high byte (sign + 7 exponent bits) takes a
few dozen values while the low byte (mantissa) is close to random. zstd on interleaved bytes sees one
mixed alphabet; split into planes, the exponent plane shrinks ~3x and the mantissa plane, which no
entropy coder can shrink, is stored as is (which also makes packing and unpacking it nearly free).

A file's layout (which byte ranges hold float tensors) is read from its safetensors or GGUF header;
it is only a hint: any file packs losslessly, a header that cannot be parsed just means plain zstd.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

SAFETENSORS_WIDTHS = {"F16": 2, "BF16": 2, "F32": 4}  # dtype -> bytes per element, byte-planed
RAW, ZSTD = "r", "z"  # how a part is stored
_MAX_HEADER = 100 * 2**20  # safetensors caps its JSON header at 100 MB
_PROBE = 64 * 2**10  # sample size for the incompressibility probe
_INCOMPRESSIBLE = 0.97  # a plane that zstd -1 cannot shrink below this is stored raw
# From level 16 zstd switches to its optimal parser, which is what wins on exponent planes; the deep
# match search that makes -19 slow finds nothing there (no long repeats). Planes at those levels get
# the parser with small tables: measured the same ratio as -19 at ~15x the speed.
_OPTIMAL_FROM = 16
_PLANE_PARAMS = {"window_log": 20, "chain_log": 12, "hash_log": 12, "search_log": 1, "min_match": 5,
                 "target_length": 16}


@dataclass(frozen=True)
class Segment:
    """Bytes [start, end) of a file; width > 1: elements of that many bytes, packed as byte planes."""

    start: int
    end: int
    width: int = 0

    @property
    def size(self) -> int:
        return self.end - self.start


def file_layout(path: str, size: int) -> list[Segment]:
    """Segments covering the whole file in order (float tensors byte-planed, the rest plain)."""
    spans = None
    if path.endswith(".safetensors"):
        spans = _safetensors_spans(path, size)
    elif path.endswith(".gguf"):
        spans = _gguf_spans(path)
    return _cover(spans or [], size)


def _safetensors_spans(path: str, size: int) -> list[Segment] | None:
    # format: 8-byte little-endian header length, JSON {name: {dtype, shape, data_offsets}}, data
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return None
        n = int.from_bytes(head, "little")
        if n > min(size - 8, _MAX_HEADER):
            return None
        try:
            meta = json.loads(fh.read(n))
        except (ValueError, UnicodeDecodeError):
            return None
    if not isinstance(meta, dict):
        return None
    base, spans = 8 + n, []
    for name, info in meta.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in info["data_offsets"])
            width = SAFETENSORS_WIDTHS.get(info["dtype"], 0)
        except (KeyError, TypeError, ValueError):
            return None
        spans.append(Segment(base + begin, base + end, width))
    return spans


def _gguf_spans(path: str) -> list[Segment] | None:
    from gguf import GGMLQuantizationType, GGUFReader

    widths = {GGMLQuantizationType.F16: 2, GGMLQuantizationType.BF16: 2, GGMLQuantizationType.F32: 4}
    try:
        reader = GGUFReader(path)
    except Exception as e:  # any parse failure only means "no layout hint"
        log.debug("%s: not parsed as GGUF (%s); plain zstd", path, e)
        return None
    return [Segment(int(t.data_offset), int(t.data_offset) + int(t.n_bytes), widths.get(t.tensor_type, 0))
            for t in reader.tensors]


def _cover(spans: list[Segment], size: int) -> list[Segment]:
    """Sorted, gap-filled, merged segments; spans that overlap or overflow make the file plain."""
    spans = sorted((s for s in spans if s.size > 0), key=lambda s: (s.start, s.end))
    out: list[Segment] = []
    pos = 0
    for s in spans:
        if s.start < pos or s.end > size:
            log.debug("inconsistent tensor offsets; plain zstd for the whole file")
            return [Segment(0, size)] if size else []
        if s.start > pos:
            out.append(Segment(pos, s.start))
        width = s.width if s.size % max(s.width, 1) == 0 else 0
        out.append(Segment(s.start, s.end, width))
        pos = s.end
    if pos < size:
        out.append(Segment(pos, size))
    return _merge(out)


def _merge(segments: list[Segment]) -> list[Segment]:
    # neighbouring tensors of one width form one stream: fewer, larger chunks compress better
    merged: list[Segment] = []
    for s in segments:
        if merged and merged[-1].width == s.width and merged[-1].end == s.start:
            merged[-1] = Segment(merged[-1].start, s.end, s.width)
        else:
            merged.append(s)
    return merged


def split(segments: list[Segment], chunk_bytes: int) -> list[Segment]:
    """Cut segments into chunks of at most chunk_bytes (a multiple of 4, so planes stay aligned)."""
    chunk_bytes -= chunk_bytes % 4
    return [Segment(start, min(start + chunk_bytes, s.end), s.width)
            for s in segments for start in range(s.start, s.end, chunk_bytes)]


_local = threading.local()  # zstd (de)compressors are not thread-safe: one set per thread


def _compressor(level: int, zdict: Any) -> Any:
    import zstandard

    cache = _local.__dict__.setdefault("compressors", {})
    key = (level, id(zdict))
    if key not in cache:  # the entry holds zdict too, so its id cannot be reused while cached
        cache[key] = zdict, zstandard.ZstdCompressor(level=level, dict_data=zdict,
                                                     write_checksum=True, write_content_size=True)
    return cache[key][1]


def _plane_compressor(level: int) -> Any:
    import zstandard

    if level < _OPTIMAL_FROM:
        return _compressor(level, None)
    cache = _local.__dict__.setdefault("compressors", {})
    if "planes" not in cache:
        params = zstandard.ZstdCompressionParameters(
            strategy=zstandard.STRATEGY_BTOPT, write_checksum=1, write_content_size=1, **_PLANE_PARAMS)
        cache["planes"] = None, zstandard.ZstdCompressor(compression_params=params)
    return cache["planes"][1]


def _decompressor(zdict: Any) -> Any:
    import zstandard

    cache = _local.__dict__.setdefault("decompressors", {})
    if id(zdict) not in cache:
        cache[id(zdict)] = zdict, zstandard.ZstdDecompressor(dict_data=zdict)
    return cache[id(zdict)][1]


def planes_of(data: bytes | memoryview, width: int) -> list[Any]:
    """[plane 0, ..., plane width-1]: byte j of every element (little-endian: plane 0 = lowest)."""
    import numpy as np

    elems = np.frombuffer(data, np.uint8).reshape(-1, width)  # (n_elements, width), a view
    return [np.ascontiguousarray(elems[:, j]) for j in range(width)]


def encode(data: bytes, width: int, level: int, zdict: Any = None) -> list[tuple[str, bytes]]:
    """One chunk -> its stored parts [(RAW|ZSTD, bytes)]: one per byte plane, or one for plain."""
    if width <= 1:
        return [_squeeze(data, _compressor(level, zdict), probe=False)]
    return [_squeeze(plane, _plane_compressor(level), probe=True) for plane in planes_of(data, width)]


def _squeeze(buf: Any, compressor: Any, probe: bool) -> tuple[str, bytes]:
    view = memoryview(buf)
    if probe and len(view) > _PROBE:
        mid = (len(view) - _PROBE) // 2
        sample = view[mid: mid + _PROBE]
        if len(_compressor(1, None).compress(sample)) > _INCOMPRESSIBLE * _PROBE:
            return RAW, bytes(view)  # a mantissa plane: a high level would spend minutes to save ~1%
    packed = compressor.compress(view)
    return (ZSTD, packed) if len(packed) < len(view) else (RAW, bytes(view))


def decode(parts: list[tuple[str, bytes]], width: int, size: int, zdict: Any = None) -> Any:
    """Stored parts -> the chunk's `size` original bytes (a bytes-like object); ValueError if damaged."""
    import numpy as np

    if width <= 1:
        if len(parts) != 1:
            raise ValueError(f"a plain chunk has 1 part, found {len(parts)}")
        return _unsqueeze(*parts[0], size, zdict)
    if len(parts) != width or size % width:
        raise ValueError(f"a {width}-byte-plane chunk of {size} bytes cannot have {len(parts)} parts")
    n = size // width
    out = np.empty((n, width), np.uint8)
    for j, (kind, blob) in enumerate(parts):
        out[:, j] = np.frombuffer(_unsqueeze(kind, blob, n, None), np.uint8)
    return out.reshape(-1)


def _unsqueeze(kind: str, blob: bytes, size: int, zdict: Any) -> bytes:
    import zstandard

    if kind == RAW:
        if len(blob) != size:
            raise ValueError(f"stored part has {len(blob)} bytes, expected {size}")
        return blob
    if kind != ZSTD:
        raise ValueError(f"unknown part kind {kind!r}")
    try:
        declared = zstandard.frame_content_size(blob)
        if declared != size:  # checked first: a damaged header must not make us allocate gigabytes
            raise ValueError(f"zstd frame declares {declared} bytes, expected {size}")
        out = _decompressor(zdict).decompress(blob)
    except zstandard.ZstdError as e:
        raise ValueError(f"zstd frame does not decompress ({e})") from e
    if len(out) != size:
        raise ValueError(f"zstd frame gave {len(out)} bytes, expected {size}")
    return out
