"""Compression benchmark: the compress stage's size/quality table of a run, and the lossless packer
against plain zstd -19 (and zipnn when installed) on the same files, in one run.

    .venv/bin/python benchmarks/compress.py --run runs/demo --out bench-compress.json

Files: the run's final base as saved (fp32 safetensors) and cast to bf16 and fp16 (the dtypes
real checkpoints ship in), its f16 GGUF and K-quant GGUFs from the compress stage, and one LoRA
adapter. Per file and codec: ratio, compression MB/s, decompression MB/s (one thread, what one
core does), all on this machine in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _cast(src: str, dtype: str, out_dir: str) -> str:
    import torch
    from safetensors.torch import load_file, save_file

    tensors = {k: v.to(getattr(torch, dtype)) for k, v in load_file(src).items()}
    path = os.path.join(out_dir, f"model-{dtype}.safetensors")
    save_file(tensors, path)
    return path


def _zstd(path: str, level: int) -> dict[str, Any]:
    import zstandard

    data = Path(path).read_bytes()
    t0 = time.perf_counter()
    comp = zstandard.ZstdCompressor(level=level, threads=-1).compress(data)
    t1 = time.perf_counter()
    back = zstandard.ZstdDecompressor().decompress(comp, max_output_size=len(data))
    t2 = time.perf_counter()
    assert back == data
    return {"ratio": len(data) / len(comp), "pack_mb_s": len(data) / 1e6 / (t1 - t0),
            "unpack_mb_s": len(data) / 1e6 / (t2 - t1)}


def _cogumi(path: str, level: int, work: str) -> dict[str, Any]:
    from cogumi_ray.compress.pack import pack, unpack

    archive = os.path.join(work, Path(path).name + ".cogz")
    p = pack(path, archive, level=level)
    u = unpack(archive, os.path.join(work, "out-" + Path(path).name), threads=1)
    return {"ratio": p.ratio, "pack_mb_s": p.mb_per_s, "unpack_mb_s": u.mb_per_s}


def _zipnn(path: str) -> dict[str, Any] | None:
    try:
        from zipnn import ZipNN
    except ImportError:
        return None
    data = bytearray(Path(path).read_bytes())  # zipnn 0.5.4 mutates its input for bf16/fp32
    z = ZipNN(input_format="byte")
    t0 = time.perf_counter()
    comp = z.compress(bytes(data))
    t1 = time.perf_counter()
    z.decompress(comp)
    t2 = time.perf_counter()
    return {"ratio": len(data) / len(comp), "pack_mb_s": len(data) / 1e6 / (t1 - t0),
            "unpack_mb_s": len(data) / 1e6 / (t2 - t1)}


def files_of(run: Path, work: str) -> dict[str, str]:
    manifest = json.loads((run / "manifest.json").read_text())
    outputs = {name: s.get("outputs", {}) for name, s in manifest.get("stages", {}).items()}
    base = outputs.get("distill", {}).get("model") or outputs.get("train_base", {}).get("model")
    out: dict[str, str] = {}
    if base:
        st = os.path.join(base, "model.safetensors")
        out["base fp32 safetensors"] = st
        out["base bf16 safetensors"] = _cast(st, "bfloat16", work)
        out["base fp16 safetensors"] = _cast(st, "float16", work)
    gguf_dir = run / "compress" / "gguf"
    for name in ("dense-f16", "dense-Q5_K_M", "dense-Q4_K_M"):
        if (gguf_dir / f"{name}.gguf").exists():
            out[f"GGUF {name}"] = str(gguf_dir / f"{name}.gguf")
    adapters = run / "modifiers" / "adapters"
    if adapters.is_dir():
        for d in sorted(adapters.iterdir()):
            if (d / "adapter_model.safetensors").exists():
                out[f"LoRA adapter {d.name}"] = str(d / "adapter_model.safetensors")
                break
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="runs/demo")
    ap.add_argument("--level", type=int, default=19)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    run = Path(args.run)
    results: dict[str, Any] = {"run": str(run), "level": args.level, "files": {}}
    report = run / "compress" / "report.json"
    if report.exists():
        results["stage"] = json.loads(report.read_text())["variants"]
    with tempfile.TemporaryDirectory(prefix="cogumi-bench-compress-") as work:
        for label, path in files_of(run, work).items():
            row: dict[str, Any] = {"bytes": os.path.getsize(path)}
            row["cogumi"] = _cogumi(path, args.level, work)
            row["zstd"] = _zstd(path, args.level)
            if (z := _zipnn(path)) is not None:
                row["zipnn"] = z
            row["x_zstd_ratio"] = row["cogumi"]["ratio"] / row["zstd"]["ratio"]
            results["files"][label] = row
            print(f"{label}: cogumi {row['cogumi']['ratio']:.3f}x "
                  f"({row['cogumi']['unpack_mb_s']:.0f} MB/s unpack), "
                  f"zstd -{args.level} {row['zstd']['ratio']:.3f}x", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results["files"], indent=2))
    return results


if __name__ == "__main__":
    main()
