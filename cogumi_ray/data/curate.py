"""`cogumi data curate`: read -> normalise -> filter -> deduplicate -> stratified split, on Ray Data.

Plan (each step a named Ray Data operator, visible in the dashboard and the CLI progress bars):
  FlatMap(read_piece)                          stream file pieces, quarantine unreadable rows
  MapBatches(LengthFilter/LanguageFilter/PIIFilter)   mark drops, scrub PII, count (fused)
  -- materialize once: the annotated rows feed the tally, the quarantine file and the kept rows --
  MapBatches(tally_batch)                      drop reasons + filter counters, summed on the driver
  groupby(id).count() + MapBatches(DisambiguateIds)   make ids unique (dedup keys on them)
  dedup (cogumi_ray.data.dedup)                exact hash + MinHash LSH near duplicates
  groupby(domain, difficulty) -> MapBatches(assign_split)   train/val/test, Parquet per split

Outputs in the stage dir: train/ val/ test/ (Parquet, Example schema), quarantine.jsonl,
report.json (rows in/out per filter, drop reasons, PII kinds, duplicates with sample clusters,
per-split domain/difficulty counts). Every input row is accounted for:
rows_in = quarantined + filtered + duplicates + rows_out."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage
from cogumi_ray.data.rows import DETAIL, DROP, FILE, LINE, QUARANTINE, RAW
from cogumi_ray.data.schema import COLUMNS
from cogumi_ray.errors import DataError

if TYPE_CHECKING:
    import ray.data

    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.runs import RunContext, StageOutput

log = logging.getLogger(__name__)


def write_quarantine(ds: ray.data.Dataset, uri: str, scrub_pii: bool) -> int:
    """Quarantined rows, sorted by file and line, as one JSONL file; returns how many."""
    from ray.data.expressions import col

    from cogumi_ray.data.filters.pii import scrub

    bad = ds.filter(expr=col(DROP).str.starts_with(f"{QUARANTINE}:"))
    # Sorted on the driver: quarantined rows are few, and a distributed sort costs seconds.
    rows = sorted(
        bad.select_columns([FILE, LINE, DROP, DETAIL, RAW]).iter_rows(),
        key=lambda r: (r[FILE], r[LINE]),
    )
    lines = []
    for row in rows:
        raw = scrub(row[RAW])[0] if scrub_pii else row[RAW]  # bad lines can hold PII too
        lines.append(json.dumps({
            "source_file": row[FILE], "line": row[LINE],
            "reason": row[DROP].split(":", 1)[1], "detail": row[DETAIL], "raw": raw,
        }, ensure_ascii=False))
    storage.atomic_write_text(uri, "".join(f"{line}\n" for line in lines))
    return len(lines)


def _source_paths(inputs: dict[str, str]) -> list[str]:
    # source0, source1, ... in numeric order (source10 after source9).
    def order(key: str) -> tuple[int, str]:
        digits = key.removeprefix("source")
        return (int(digits), key) if digits.isdigit() else (1 << 30, key)

    if not inputs:
        raise DataError("curate got no inputs; set curate.inputs or pass --input PATH")
    return [inputs[k] for k in sorted(inputs, key=order)]


def run(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str]) -> StageOutput:
    from ray.data.expressions import col

    from cogumi_ray.data import report as rep
    from cogumi_ray.data.dedup import dedup
    from cogumi_ray.data.filters import build_filters
    from cogumi_ray.data.ids import unique_ids
    from cogumi_ray.data.readers import read_examples
    from cogumi_ray.data.split import SPLITS, assign_splits, write_splits
    from cogumi_ray.runs import StageOutput

    ccfg = cfg.curate
    out_dir = ctx.stage_dir("curate")
    paths = _source_paths(inputs)
    filters = build_filters(ccfg)

    annotated = read_examples(paths)
    for f in filters:
        annotated = annotated.map_batches(f, batch_format="pyarrow")
    annotated = annotated.materialize()  # spills to disk when large; read once, used 3x

    drops, stats = rep.tally(annotated)
    if not drops:
        raise DataError(f"inputs {paths} hold no rows (every file is empty); check curate.inputs")
    quarantine_path = storage.join(out_dir, "quarantine.jsonl")
    n_quarantined = write_quarantine(annotated, quarantine_path, scrub_pii=ccfg.pii != "keep")

    rows_kept = drops.get("", 0)
    kept, ids_renamed = unique_ids(annotated.filter(expr=col(DROP) == ""), rows_kept)
    deduped, dedup_stats = dedup(kept.select_columns(list(COLUMNS)), ccfg.dedup)
    assigned = assign_splits(deduped, ccfg.split).materialize()
    dirs = {name: storage.join(out_dir, name) for name in SPLITS}
    write_splits(assigned, dirs)
    splits = rep.strata_counts(assigned)
    novelty = _heldout_novelty(dirs)

    rows_in = sum(drops.values())
    rows_out = sum(s["rows"] for s in splits.values())
    filter_rows = rep.filter_table([f.name for f in filters], drops, stats)
    filtered = sum(sum(f["dropped"].values()) for f in filter_rows)
    pii = next((f["counts"] for f in filter_rows if f["filter"] == "pii"), {})
    report = {
        "inputs": paths,
        "balance": {
            "rows_in": rows_in, "quarantined": n_quarantined, "filtered": filtered,
            "duplicates": rows_kept - rows_out, "rows_out": rows_out,
        },
        "quarantine_reasons": rep.quarantine_reasons(drops),
        "filters": filter_rows,
        "pii": {k: v for k, v in pii.items() if k != "rows_with_pii"},
        "pii_rows": pii.get("rows_with_pii", 0),
        "pii_mode": ccfg.pii,
        "ids_renamed": ids_renamed,
        "dedup": dataclasses.asdict(dedup_stats),
        "splits": splits,
        "heldout_novelty": novelty,
    }
    summary = rep.summary_line(report)
    report["summary"] = summary
    report_path = storage.join(out_dir, "report.json")
    storage.atomic_write_json(report_path, report)
    log.info("curate: %s", summary)

    # The run table shows a stage's first scalar metrics in key order: these names sort so that
    # the headline (duplicates, filtered, quarantined, rows_in, rows_out, summary) comes first.
    metrics: dict[str, Any] = {
        **report["balance"],
        "summary": summary,
        **{split: splits[split]["rows"] for split in SPLITS},
        "pii": report["pii"],
        "test_max_jaccard_to_train": novelty["test"]["max_jaccard"],
        "duplicate_kinds": {
            "exact": dedup_stats.exact_dropped, "near": dedup_stats.near_dropped,
            "near_clusters": dedup_stats.clusters, "ids_renamed": ids_renamed,
        },
    }
    return StageOutput(
        outputs={**dirs, "quarantine": quarantine_path, "report": report_path}, metrics=metrics
    )


def _heldout_novelty(dirs: dict[str, str]) -> dict[str, Any]:
    """For val and test: the largest char-3-gram Jaccard of any of their rows with a train row."""
    import pyarrow.dataset as pads

    from cogumi_ray.data.novelty import heldout_novelty

    def rows(split: str) -> list[tuple[str, str]]:
        fs, p = storage.fs_and_path(dirs[split])
        t = pads.dataset(p, filesystem=fs, format="parquet").to_table(
            columns=["id", "instruction", "response"]).to_pydict()
        return [(i, f"{a}\n{b}") for i, a, b in zip(t["id"], t["instruction"], t["response"],
                                                    strict=True)]

    train = rows("train")
    out = {s: dataclasses.asdict(heldout_novelty(train, rows(s))) for s in ("val", "test")}
    log.info("curate: held-out rows' closest training row: test max Jaccard %.3f, val %.3f",
             out["test"]["max_jaccard"], out["val"]["max_jaccard"])
    return out
