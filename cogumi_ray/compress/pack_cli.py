"""`cogumi pack` and `cogumi unpack`: argparse glue over `cogumi_ray.compress.pack`.

Handlers return an exit code and raise `CogumiError` subclasses for `cogumi`'s main to print.
Only the standard library is imported here, so `cogumi --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from cogumi_ray.errors import DataError


def add_cli(sub: argparse._SubParsersAction) -> None:
    """Add the `pack` and `unpack` sub-commands to `cogumi`'s sub-parsers."""
    p = sub.add_parser("pack", help="losslessly pack a model folder, adapter folder or GGUF file",
                       description="Pack SRC into one archive: byte planes + zstd for f16/bf16/f32 "
                       "tensors, zstd for everything else; every file's SHA-256 is recorded.")
    p.add_argument("src", metavar="SRC", help="file or folder to pack")
    p.add_argument("-o", "--output", required=True, metavar="ARCHIVE", help="archive file to write")
    p.add_argument("--level", type=int, default=19, help="zstd level 1..22 (default: 19)")
    p.add_argument("--threads", type=int, default=0, help="worker threads (default: 0 = one per CPU)")
    p.add_argument("--chunk-mb", type=int, default=8, help="chunk size in MiB (default: 8)")
    p.add_argument("--dictionary", default=None, metavar="FILE",
                   help="zstd dictionary for the plain-zstd chunks (stored in the archive)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=cmd_pack)

    u = sub.add_parser("unpack", help="restore an archive made by `cogumi pack`, checking every file",
                       description="Restore ARCHIVE into DIR. Files are renamed into place only once "
                       "all of them match their SHA-256, so a damaged archive leaves nothing behind.")
    u.add_argument("archive", metavar="ARCHIVE", help="archive made by `cogumi pack`")
    u.add_argument("-o", "--output", default=None, metavar="DIR",
                   help="folder to restore into (required unless --verify)")
    u.add_argument("--verify", action="store_true", help="only check every file, write nothing")
    u.add_argument("--threads", type=int, default=0, help="worker threads (default: 0 = one per CPU)")
    u.add_argument("--json", action="store_true", help="print the report as JSON")
    u.set_defaults(handler=cmd_unpack)


def cmd_pack(args: argparse.Namespace) -> int:
    from cogumi_ray.compress.pack import pack

    try:
        report = pack(args.src, args.output, level=args.level, threads=args.threads,
                      dictionary=args.dictionary, chunk_mb=args.chunk_mb)
    except OSError as e:  # disk full, permissions: say which operation failed, without a traceback
        raise DataError(f"packing {args.src!r} into {args.output!r} failed: {e}") from e
    _print(report, args.json, report.in_bytes, report.out_bytes,
           f"level {report.level}, {report.threads} threads -> {report.archive}")
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    from cogumi_ray.compress.pack import unpack, verify

    if not args.verify and not args.output:
        raise DataError("unpack needs -o DIR (the folder to restore into), or --verify to only check")
    try:
        if args.verify:
            report = verify(args.archive, threads=args.threads)
        else:
            report = unpack(args.archive, args.output, threads=args.threads)
    except OSError as e:
        raise DataError(f"unpacking {args.archive!r} failed: {e}") from e
    _print(report, args.json, report.out_bytes, report.in_bytes, f"{report.threads} threads, "
           + ("all files verified" if report.dst_dir is None else f"-> {report.dst_dir}"))
    return 0


def _print(report: Any, as_json: bool, raw: int, packed: int, tail: str) -> None:
    if as_json:
        print(json.dumps({**asdict(report), "ratio": report.ratio, "mb_per_s": report.mb_per_s},
                         indent=2))
        return
    print(f"{'file':<48} {'MB':>10} {'stored MB':>10} {'ratio':>7}  codec")
    for f in report.files:
        print(f"{f.path:<48} {f.size / 1e6:>10.2f} {f.stored / 1e6:>10.2f} {f.ratio:>7.3f}  {f.codec}")
    print(f"total: {raw / 1e6:.2f} MB original, {packed / 1e6:.2f} MB archive ({report.ratio:.3f}x), "
          f"{report.seconds:.2f} s, {report.mb_per_s:.0f} MB/s; {tail}")
