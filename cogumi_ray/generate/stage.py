"""`cogumi generate`: answer a dataset split with a model, on Ray Data, to Parquet.

Output: `answers/` (a Parquet dataset) with every Example column plus answer, prompt_tokens,
completion_tokens, latency_s, finish_reason and engine. It is written to a temporary sibling and
renamed, so a half-written answer set never looks finished.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage
from cogumi_ray.errors import DataError

if TYPE_CHECKING:
    import ray.data

    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.runs import RunContext, StageOutput

log = logging.getLogger(__name__)


def read_dataset(path: str, limit: int | None = None) -> ray.data.Dataset:
    """Example rows from a Parquet file/dir or JSONL file/dir, as a Ray Dataset."""
    import ray.data

    fs, p = storage.fs_and_path(path)
    if not fs.exists(p):
        raise DataError(f"dataset {path!r} does not exist")
    files = list(fs.find(p)) if fs.isdir(p) else [p]
    if any(f.endswith(".parquet") for f in files):
        ds = ray.data.read_parquet(path)
    elif any(f.endswith((".jsonl", ".json")) for f in files):
        ds = ray.data.read_json(path)
    else:
        raise DataError(f"dataset {path!r} holds no .parquet or .jsonl files")
    missing = {"id", "instruction"} - set(ds.schema().names)
    if missing:
        raise DataError(f"dataset {path!r} lacks the Example columns {sorted(missing)}")
    if not limit:
        return ds
    n = ds.count()  # Parquet: from the footers
    if n <= limit:
        return ds
    # A seeded sample rather than the first rows: a split is written stratum by stratum, so its
    # head would be a few domains only.
    return ds.random_shuffle(seed=0).limit(limit)


def _move(src: str, dst: str) -> None:
    import os
    import shutil

    if storage.is_local(dst):
        shutil.rmtree(storage.local_path(dst), ignore_errors=True)
        os.replace(storage.local_path(src), storage.local_path(dst))
    else:
        fs, s = storage.fs_and_path(src)
        _, d = storage.fs_and_path(dst)
        if fs.exists(d):
            fs.rm(d, recursive=True)
        fs.mv(s, d, recursive=True)


def summarize(path: str) -> dict[str, Any]:
    """Headline numbers of an answers dataset (reads only the numeric columns)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    fs, p = storage.fs_and_path(path)
    table = pads.dataset(p, filesystem=fs, format="parquet").to_table(
        columns=["prompt_tokens", "completion_tokens", "latency_s", "finish_reason"]
    )
    n = table.num_rows
    if n == 0:
        return {"rows": 0}
    reasons = pc.value_counts(table["finish_reason"]).to_pylist()
    return {
        "rows": n,
        "prompt_tokens": int(pc.sum(table["prompt_tokens"]).as_py()),
        "completion_tokens": int(pc.sum(table["completion_tokens"]).as_py()),
        "mean_latency_s": round(float(pc.mean(table["latency_s"]).as_py()), 4),
        "finish_reasons": {r["values"]: r["counts"] for r in reasons},
    }


def run(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str]) -> StageOutput:
    from cogumi_ray.generate.batch import generate_dataset
    from cogumi_ray.runs import StageOutput

    g = cfg.generate
    ds = read_dataset(inputs["data"], g.limit)
    out = storage.join(ctx.stage_dir("generate"), "answers")
    tmp = f"{out}.tmp-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    generate_dataset(ds, g, inputs.get("model")).write_parquet(tmp)
    seconds = time.perf_counter() - t0
    _move(tmp, out)
    metrics = summarize(out)
    metrics["engine"] = g.engine.kind
    metrics["seconds"] = round(seconds, 2)
    if metrics["rows"]:  # wall time includes starting the actors and loading the model
        metrics["wall_completion_tokens_per_s"] = round(metrics["completion_tokens"] / seconds, 1)
    log.info("generate: %s", metrics)
    return StageOutput(outputs={"answers": out}, metrics=metrics)
