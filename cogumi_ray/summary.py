"""The run summary printed after `cogumi demo` / `cogumi pipeline run`: one row per stage in
pipeline order, then the headline results (the base's pass rates, distillation, final eval)."""

from __future__ import annotations

from typing import Any

from cogumi_ray import storage
from cogumi_ray.errors import RunError


def fmt_metrics(metrics: dict, limit: int = 6) -> str:
    """The stage's headline metrics: scalars only, plain keys before dotted breakdowns."""
    parts = []
    for k in sorted(metrics, key=lambda k: "." in k):
        v = metrics[k]
        if isinstance(v, bool | int | str):
            parts.append(f"{k}={v}")
        elif isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
        if len(parts) == limit:
            break
    return ", ".join(parts)


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, int | float) else "-"


def _results(stages: dict[str, dict]) -> list[str]:
    """Headline numbers of the finished stages that have them."""
    from cogumi_ray.data.config import DOMAINS

    done = {k: v["metrics"] for k, v in stages.items() if v.get("status") == "done"}
    lines = []
    if (m := done.get("eval_base")) and "pass_rate" in m:
        pre = (f"; before SFT {_pct(m['pre_sft.pass_rate'])} ({m['pre_sft.passed']}/{m['pre_sft.total']})"
               if "pre_sft.pass_rate" in m else "")
        lines.append(f"  base on held-out suite: {_pct(m['pass_rate'])} ({m['passed']}/{m['total']}){pre}")
        doms = [f"{d} {_pct(m[f'pass_rate.{d}'])}" for d in DOMAINS if f"pass_rate.{d}" in m]
        levels = [f"{d} {_pct(m[f'pass_rate.{d}'])}" for d in ("easy", "medium", "hard")
                  if f"pass_rate.{d}" in m]
        lines.append(f"    by domain: {', '.join(doms)}; by difficulty: {', '.join(levels)}")
    if (m := done.get("distill")) and "pass_rate_before" in m:
        lines.append(
            f"  distill (teacher {m.get('teacher')}): {_pct(m['pass_rate_before'])} -> "
            f"{_pct(m['pass_rate_after'])} ({100 * m['pass_rate_delta']:+.1f} pp); self-critique "
            # of the failures it rewrote (distill.critique_limit), not of all of them
            f"fixed {m.get('self_critique_fixed', 0)}/"
            f"{m.get('self_critique_rows', m.get('failures', 0))} of {m.get('failures', 0)} failures")
        if m.get("kept") == "base":
            lines.append(
                f"    kept the base: the retrained model passed {_pct(m['val_pass_rate_retrained'])}"
                f" of validation rows vs {_pct(m['val_pass_rate_base'])}"
                + (f" ({_pct(m['retrained_pass_rate'])} held-out)"
                   if "retrained_pass_rate" in m else ""))
    if m := done.get("eval"):
        parts = [f"{b} {_pct(m[b])} ({m[f'{b}.passed']}/{m[f'{b}.total']})"
                 for b in ("suite", "humaneval", "gsm8k") if b in m and f"{b}.total" in m]
        if parts:
            lines.append(f"  final eval: {', '.join(parts)}")
    if (m := done.get("modifiers")) and m.get("domains"):
        lines.append(f"  modifiers: LoRA adapters for {', '.join(m['domains'])}")
    return ["results", *lines] if lines else []


def summary_lines(run_dir: str) -> list[str]:
    from cogumi_ray.pipeline import STAGES

    path = storage.join(run_dir, "manifest.json")
    if not storage.exists(path):
        raise RunError(f"no run at {run_dir} (no manifest.json)")
    manifest = storage.read_json(path)
    order = {s.name: i for i, s in enumerate(STAGES)}
    stages = dict(sorted(manifest["stages"].items(), key=lambda kv: order.get(kv[0], len(order))))
    lines = [f"run {manifest['run']} at {run_dir}"]
    for name, rec in stages.items():
        secs = f"{rec['seconds']:.1f}s" if rec.get("seconds") is not None else "-"
        lines.append(f"  {name:<14} {rec['status']:<8} {secs:>9}  {fmt_metrics(rec['metrics'])}")
        for out, p in rec["outputs"].items():
            lines.append(f"  {'':<14} -> {out}: {p}")
        if rec.get("error"):
            lines.append(f"  {'':<14} !! {rec['error']}")
    return lines + _results(stages)


def print_summary(run_dir: str) -> None:
    print("\n".join(summary_lines(run_dir)))

