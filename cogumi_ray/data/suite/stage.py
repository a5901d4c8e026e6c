"""Pipeline stage "suite" (`cogumi data generate`): write the raw, messy task suite.

Outputs: `raw` (a directory of `<format>.jsonl` files, curation's default input) and `stats`
(suite_stats.json: counts per planted kind and the location of every malformed line).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cogumi_ray import storage
from cogumi_ray.runs import StageOutput

if TYPE_CHECKING:
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.runs import RunContext

log = logging.getLogger(__name__)


def run(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str]) -> StageOutput:
    from cogumi_ray.data.suite.raw import write_raw_suite

    stage_dir = ctx.stage_dir("suite")
    raw_dir = storage.join(stage_dir, "raw")
    _clear_jsonl(raw_dir)  # a re-run with fewer formats must not leave stale files behind
    stats = write_raw_suite(cfg.suite, raw_dir)
    stats_path = storage.join(stage_dir, "suite_stats.json")
    storage.atomic_write_json(stats_path, stats)
    log.info("suite: %d clean rows, %d lines written (%d malformed) to %s",
             stats["clean_rows"], stats["rows_written"], stats["malformed_lines"], raw_dir)
    metrics = {k: stats[k] for k in ("clean_rows", "rows_written", "planted_rows", "pii_rows",
                                     "malformed_lines")}
    metrics["clean_per_domain"] = stats["clean_per_domain"]
    metrics["planted"] = stats["planted_detail"]
    return StageOutput(outputs={"raw": raw_dir, "stats": stats_path}, metrics=metrics)


def _clear_jsonl(raw_dir: str) -> None:
    fs, path = storage.fs_and_path(raw_dir)
    if fs.exists(path):
        for p in fs.ls(path, detail=False):
            if str(p).endswith(".jsonl"):
                fs.rm(p)
