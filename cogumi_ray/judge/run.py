"""Judging on Ray Data: an actor pool where each actor holds one judge (API client, cache shard,
token bucket), so a large judging run spreads over every node of a cluster.

Rate limits: `judge.qps` is the total over the pool; each of the `concurrency` actors gets
qps / concurrency from its own token bucket (no coordination needed, the sum never exceeds the
limit), and keeps at most `max_in_flight` requests open.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cogumi_ray.errors import DataError
from cogumi_ray.judge.config import JudgeConfig

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

log = logging.getLogger(__name__)

# Columns every judged row gains (in this order), with their Arrow types.
OUTPUT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("verdict", "string"),
    ("score", "float64"),
    ("rationale", "string"),
    ("judge", "string"),
    ("criteria", "string"),  # JSON of the rubric points (reference grading), else null
    ("input_tokens", "int64"),
    ("output_tokens", "int64"),
    ("cost_usd", "float64"),  # the judgment's cost at list (or batch) price
    ("paid_usd", "float64"),  # what this run paid for it: 0 for replies from the cache
    ("cached", "bool"),  # every reply came from the cache: this run paid nothing for the row
    ("judge_error", "string"),  # why the row is unjudged
)


def required_columns(cfg: JudgeConfig) -> list[str]:
    cols = ["id", "instruction", cfg.answer_column]
    cols.append(cfg.other_column if cfg.mode == "pairwise" and cfg.judge != "verifier"
                else cfg.reference_column)
    return cols


def check_columns(names: list[str], cfg: JudgeConfig, source: str) -> None:
    missing = [c for c in required_columns(cfg) if c not in names]
    if missing:
        raise DataError(
            f"answers {source!r} lack the columns {missing} that judge {cfg.judge!r} "
            f"(mode {cfg.mode!r}) reads; they have {sorted(names)}. To resolve: judge the output "
            "of `cogumi generate`, or point judge.answer_column / judge.reference_column / "
            "judge.other_column at the right columns."
        )


def with_judgments(batch: pa.Table, judgments: list[Any]) -> pa.Table:
    """`batch` plus the judgment columns (replacing same-named ones, e.g. when re-judging)."""
    import pyarrow as pa

    cols = [j.columns() for j in judgments]
    for name, typ in OUTPUT_COLUMNS:
        if name in batch.column_names:
            batch = batch.drop_columns([name])
        dtype = pa.type_for_alias(typ)
        batch = batch.append_column(pa.field(name, dtype), pa.array([c[name] for c in cols], dtype))
    return batch


class JudgeWorker:
    """Ray Data callable class: built once per actor, called once per batch."""

    def __init__(self, cfg: dict[str, Any], cache_dir: str | None, actors: int) -> None:
        from cogumi_ray.judge.cache import JudgeCache
        from cogumi_ray.judge.judges import make_judge

        jc = JudgeConfig.model_validate(cfg)
        cache = JudgeCache(cache_dir) if cache_dir and jc.judge != "verifier" else None
        qps = jc.qps / actors if jc.qps else None
        self.judge = make_judge(jc, cache=cache, qps=qps)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return with_judgments(batch, self.judge.judge_rows(batch.to_pylist()))


def judge_dataset(ds: ray.data.Dataset, cfg: JudgeConfig, cache_dir: str | None) -> ray.data.Dataset:
    """The lazily judged dataset: input columns + OUTPUT_COLUMNS per row."""
    from cogumi_ray.judge.judges import make_judge
    from cogumi_ray.ray_session import actor_pool_size

    check_columns(ds.schema().names, cfg, "input")
    make_judge(cfg).close()  # fail fast on the driver: missing key env var, unpriced model
    # One block per judge batch: a map task handles one block, so a single large input file
    # would otherwise keep every actor but one idle. (Streaming split, no shuffle.)
    ds = ds.repartition(target_num_rows_per_block=cfg.batch_size)
    actors = actor_pool_size(cfg.concurrency, cfg.num_cpus_per_actor, "judge")
    return ds.map_batches(
        JudgeWorker,
        fn_constructor_kwargs={"cfg": cfg.model_dump(mode="json"), "cache_dir": cache_dir,
                               "actors": actors},
        batch_size=cfg.batch_size,
        batch_format="pyarrow",
        concurrency=actors,
        num_cpus=cfg.num_cpus_per_actor,
    )
