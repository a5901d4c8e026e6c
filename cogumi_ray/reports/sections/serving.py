"""Serving latency: shown only when a serving/benchmark stage is in the manifest. Its latency-like
metrics (latency, TTFT, percentiles, tokens/s) are listed as recorded."""

from __future__ import annotations

from cogumi_ray.reports.doc import Section, Table
from cogumi_ray.reports.fmt import num
from cogumi_ray.reports.load import RunData
from cogumi_ray.reports.sections.common import gate

STAGE_PREFIXES = ("serve", "bench", "validate")
LATENCY_HINTS = ("latency", "ttft", "p50", "p90", "p95", "p99", "_ms", "tok_s", "tokens_per_s", "rps")


def section(run: RunData) -> Section | None:
    stages = [s for s in run.manifest.stages if s.startswith(STAGE_PREFIXES)]
    if not stages:
        return None
    sec = Section("Serving latency", "serving")
    for stage in stages:
        if not gate(run, sec, stage):
            continue
        m = run.metrics(stage)
        rows = [[k, num(v)] for k, v in m.items()
                if any(h in k.lower() for h in LATENCY_HINTS) and isinstance(v, int | float)]
        if rows:
            sec.add(Table(["metric", "value"], rows, f"{stage}: latency and throughput", numeric=(1,)))
    return sec
