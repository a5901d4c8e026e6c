"""`cogumi judge`: judge a model's answers (the generate stage's output) on Ray Data.

Outputs, each a Parquet dataset written to a temporary sibling and renamed when complete:
- `judgments/`: every input column plus verdict, score, rationale, judge, criteria, tokens,
  cost_usd, paid_usd, cached and judge_error (see run.OUTPUT_COLUMNS);
- `failures/`: the rows judged "fail", with their rationale (input to failure analysis).

Resuming: every judge reply is cached as it arrives (cache.py), so re-running an interrupted or
failed judging stage replays what was already paid for and calls the API only for the rest.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage
from cogumi_ray.errors import JudgeError

if TYPE_CHECKING:
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.judge.config import JudgeConfig
    from cogumi_ray.runs import RunContext, StageOutput

log = logging.getLogger(__name__)
# Judge batches are small (one block each); files of this many rows keep a large run's output
# to hundreds of files, not tens of thousands.
_ROWS_PER_FILE = 20_000


def cache_dir_for(cfg: JudgeConfig, stage_dir: str) -> str | None:
    """Where replies are cached; None when caching is off or pointless (verifier)."""
    if not cfg.cache or cfg.judge == "verifier":
        return None
    path = cfg.cache_dir or storage.join(stage_dir, "cache")
    if not storage.is_local(path):
        raise JudgeError(
            f"judge cache dir {path!r} is not a POSIX path (the cache is SQLite). To resolve: set "
            "judge.cache_dir to a local or shared (NFS/EFS/Lustre) directory, or judge.cache=false."
        )
    return os.path.abspath(storage.local_path(path))


def _replace_dir(src: str, dst: str) -> None:
    if storage.is_local(dst):
        shutil.rmtree(storage.local_path(dst), ignore_errors=True)
        os.replace(storage.local_path(src), storage.local_path(dst))
        return
    fs, s = storage.fs_and_path(src)
    _, d = storage.fs_and_path(dst)
    if fs.exists(d):
        fs.rm(d, recursive=True)
    fs.mv(s, d, recursive=True)


def _write(ds: Any, out: str, schema: Any) -> None:
    """Write `ds` as Parquet to `out` atomically; an empty result still leaves a readable file."""
    import pyarrow.parquet as pq

    tmp = f"{out}.tmp-{uuid.uuid4().hex[:8]}"
    ds.write_parquet(tmp, min_rows_per_file=_ROWS_PER_FILE)
    fs, p = storage.fs_and_path(tmp)
    if not fs.exists(p) or not any(f.endswith(".parquet") for f in fs.find(p)):
        fs.makedirs(p, exist_ok=True)
        with fs.open(f"{p}/empty.parquet", "wb") as f:
            pq.write_table(schema.empty_table(), f)
    _replace_dir(tmp, out)


def extract_failures(judgments: str, out: str) -> int:
    """Stream the rows judged "fail" into `out` (one Parquet file, atomically); returns the count.
    A filtered scan reads only what it needs, so one process keeps up even for large runs."""
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    fs, p = storage.fs_and_path(judgments)
    data = pads.dataset(p, filesystem=fs, format="parquet")
    tmp = f"{out}.tmp-{uuid.uuid4().hex[:8]}"
    ofs, op = storage.fs_and_path(tmp)
    ofs.makedirs(op, exist_ok=True)
    n = 0
    with ofs.open(f"{op}/failures.parquet", "wb") as f, pq.ParquetWriter(f, data.schema) as w:
        for batch in data.to_batches(filter=pads.field("verdict") == "fail"):
            if batch.num_rows:
                w.write_batch(batch)
                n += batch.num_rows
    _replace_dir(tmp, out)
    return n


def summarize(path: str) -> dict[str, Any]:
    """Headline numbers: verdict counts, pass rate overall and per domain, tokens, cost.
    Columnar (pyarrow compute), so a 640K-row run is summarised without Python objects per row."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    fs, p = storage.fs_and_path(path)
    data = pads.dataset(p, filesystem=fs, format="parquet")
    cols = [c for c in ("domain", "verdict", "score", "judge", "input_tokens", "output_tokens",
                        "cost_usd", "paid_usd", "cached") if c in data.schema.names]
    t = data.to_table(columns=cols)
    n = t.num_rows
    counts = {r["values"]: r["counts"] for r in pc.value_counts(t["verdict"]).to_pylist()}
    passed, unjudged = counts.get("pass", 0), counts.get("unjudged", 0)
    judged = n - unjudged

    def total(col: str) -> float:
        return pc.sum(t[col]).as_py() or 0

    m: dict[str, Any] = {
        "rows": n, "passed": passed, "failed": counts.get("fail", 0), "ties": counts.get("tie", 0),
        "unjudged": unjudged,
        "pass_rate": round(passed / judged, 4) if judged else None,
        "input_tokens": int(total("input_tokens")), "output_tokens": int(total("output_tokens")),
        "cost_usd": round(float(total("cost_usd")), 10),
        "cost_usd_this_run": round(float(total("paid_usd")), 10),
        "cached_rows": int(pc.sum(t["cached"].cast(pa.int64())).as_py() or 0),
        "judge": t["judge"][0].as_py() if n else None,
    }
    mean = pc.mean(t["score"]).as_py()  # nulls (unjudged, verifier) are skipped
    if mean is not None:
        m["mean_score"] = round(mean, 3)
    if "domain" in cols and judged:
        scored = t.filter(pc.not_equal(t["verdict"], "unjudged"))
        scored = scored.append_column("is_pass", pc.equal(scored["verdict"], "pass").cast(pa.int64()))
        for r in scored.group_by("domain").aggregate([("is_pass", "mean")]).to_pylist():
            m[f"pass_rate.{r['domain']}"] = round(r["is_pass_mean"], 4)
    return m


def run(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str]) -> StageOutput:
    import pyarrow as pa

    from cogumi_ray.generate.stage import read_dataset
    from cogumi_ray.judge.cache import compact
    from cogumi_ray.judge.run import OUTPUT_COLUMNS, judge_dataset
    from cogumi_ray.runs import StageOutput

    jc = cfg.judge
    stage_dir = ctx.stage_dir("judge")
    cache_dir = cache_dir_for(jc, stage_dir)
    judgments = storage.join(stage_dir, "judgments")
    failures = storage.join(stage_dir, "failures")

    ds = read_dataset(inputs["answers"])
    judged = judge_dataset(ds, jc, cache_dir)
    # Schema for an empty output: the input's plus the judgment columns.
    in_schema = ds.schema().base_schema
    out_schema = pa.schema(
        [f for f in in_schema if f.name not in dict(OUTPUT_COLUMNS)]
        + [pa.field(n, pa.type_for_alias(t)) for n, t in OUTPUT_COLUMNS]
    )
    _write(judged, judgments, out_schema)
    n_failures = extract_failures(judgments, failures)
    if cache_dir:
        compact(cache_dir)

    metrics = summarize(judgments)
    metrics["failure_rows"] = n_failures
    if metrics["unjudged"]:
        log.warning("judge: %d rows unjudged (see the judge_error column)", metrics["unjudged"])
    log.info("judge: %s", metrics)
    return StageOutput(outputs={"judgments": judgments, "failures": failures}, metrics=metrics)
