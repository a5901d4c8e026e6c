"""The curation stats report: where every input row went, and what each step did.

Everything here is computed from the data itself (Ray Data aggregations over the annotated rows),
so the numbers add up by construction and hold on any cluster:
rows_in = quarantined + dropped by filters + duplicates removed + rows_out.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from cogumi_ray.data.rows import DROP, QUARANTINE, STATS, sum_stats
from cogumi_ray.data.split import SPLIT, SPLITS

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data


def tally_batch(batch: pa.Table) -> pa.Table:
    """map_batches UDF: one summary row per batch (drop-reason counts + summed filter stats)."""
    import json

    import pyarrow as pa

    drops = Counter(batch.column(DROP).to_pylist())
    stats = sum_stats(batch.column(STATS).to_pylist())
    return pa.table({"drops": [json.dumps(drops)], "stats": [json.dumps(stats)]})


def tally(ds: ray.data.Dataset) -> tuple[Counter, Counter]:
    """(rows per `_drop` value, summed filter counters) over an annotated dataset."""
    import json

    drops: Counter = Counter()
    stats: Counter = Counter()
    for row in ds.map_batches(tally_batch, batch_format="pyarrow", batch_size=None).iter_rows():
        drops.update(json.loads(row["drops"]))
        stats.update(json.loads(row["stats"]))
    return drops, stats


def count_strata_batch(batch: pa.Table) -> pa.Table:
    """map_batches UDF: rows per (split, domain, difficulty) in one batch, as one JSON row."""
    import json

    import pyarrow as pa

    keys = zip(*(batch.column(c).to_pylist() for c in (SPLIT, "domain", "difficulty")), strict=True)
    counts = Counter("\x1f".join(k) for k in keys)
    return pa.table({"counts": [json.dumps(counts)]})


def strata_counts(ds: ray.data.Dataset) -> dict[str, dict[str, Any]]:
    """Per split: total rows and counts by domain, by difficulty and by domain/difficulty."""
    import json

    # A map + driver-side sum of one small row per batch: no shuffle, unlike groupby().count().
    totals: Counter = Counter()
    for row in ds.map_batches(count_strata_batch, batch_format="pyarrow", batch_size=None).iter_rows():
        totals.update(json.loads(row["counts"]))
    out: dict[str, dict[str, Any]] = {
        s: {"rows": 0, "by_domain": Counter(), "by_difficulty": Counter(), "by_stratum": Counter()}
        for s in SPLITS
    }
    for key, n in totals.items():
        split, domain, difficulty = key.split("\x1f")
        part = out[split]
        part["rows"] += n
        part["by_domain"][domain] += n
        part["by_difficulty"][difficulty] += n
        part["by_stratum"][f"{domain}/{difficulty}"] += n
    return {s: {k: dict(sorted(v.items())) if isinstance(v, Counter) else v for k, v in part.items()}
            for s, part in out.items()}


def filter_table(filter_names: list[str], drops: Counter, stats: Counter) -> list[dict[str, Any]]:
    """Rows in/out, drop reasons, counters and seconds per filter, in the order they ran."""
    table = []
    for name in filter_names:
        prefix = f"{name}."
        mine = {k[len(prefix):]: v for k, v in stats.items() if k.startswith(prefix)}
        reasons = {k.split(":", 1)[1]: v for k, v in drops.items() if k.startswith(f"{name}:")}
        rows_in = int(mine.pop("in", 0))
        seconds = float(mine.pop("seconds", 0.0))
        extra = {k: int(v) for k, v in mine.items() if not k.startswith("dropped_")}
        table.append({
            "filter": name, "rows_in": rows_in, "rows_out": rows_in - sum(reasons.values()),
            "dropped": dict(sorted(reasons.items())), "counts": dict(sorted(extra.items())),
            "seconds": round(seconds, 3),
        })
    return table


def quarantine_reasons(drops: Counter) -> dict[str, int]:
    prefix = f"{QUARANTINE}:"
    return dict(sorted((k[len(prefix):], v) for k, v in drops.items() if k.startswith(prefix)))


def summary_line(report: dict[str, Any]) -> str:
    b = report["balance"]
    s = report["splits"]
    per_filter = ", ".join(
        f"{f['filter']} {f['rows_in'] - f['rows_out']}" for f in report["filters"]
    )
    pii = ", ".join(f"{k} {v}" for k, v in report["pii"].items())
    return (
        f"{b['rows_in']} read -> {b['rows_out']} kept (train {s['train']['rows']}, "
        f"val {s['val']['rows']}, test {s['test']['rows']}); quarantined {b['quarantined']}; "
        f"filtered {b['filtered']} ({per_filter or 'no filters'}); duplicates {b['duplicates']}; "
        f"PII {report['pii_mode']} in {report['pii_rows']} rows ({pii or 'none'})"
    )
