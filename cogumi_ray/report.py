"""The run summary printed after `cogumi demo` / `cogumi pipeline run`: one row per stage."""

from __future__ import annotations

import json

from cogumi_ray import storage
from cogumi_ray.errors import RunError


def _fmt_metrics(metrics: dict, limit: int = 6) -> str:
    """The stage's headline metrics: scalars only, the first `limit` of them."""
    parts = []
    for k, v in metrics.items():
        if isinstance(v, bool | int | str):
            parts.append(f"{k}={v}")
        elif isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
        if len(parts) == limit:
            break
    return ", ".join(parts)


def summary_lines(run_dir: str) -> list[str]:
    path = storage.join(run_dir, "manifest.json")
    if not storage.exists(path):
        raise RunError(f"no run at {run_dir} (no manifest.json)")
    manifest = storage.read_json(path)
    lines = [f"run {manifest['run']} at {run_dir}"]
    for name, rec in manifest["stages"].items():
        secs = f"{rec['seconds']:.1f}s" if rec.get("seconds") is not None else "-"
        lines.append(f"  {name:<14} {rec['status']:<8} {secs:>9}  {_fmt_metrics(rec['metrics'])}")
        for out, p in rec["outputs"].items():
            lines.append(f"  {'':<14} -> {out}: {p}")
        if rec.get("error"):
            lines.append(f"  {'':<14} !! {rec['error']}")
    return lines


def print_summary(run_dir: str) -> None:
    print("\n".join(summary_lines(run_dir)))


def metrics_json(run_dir: str) -> str:
    manifest = storage.read_json(storage.join(run_dir, "manifest.json"))
    return json.dumps({k: v["metrics"] for k, v in manifest["stages"].items()}, indent=2)
