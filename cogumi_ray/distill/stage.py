"""Stage "distill" (`cogumi distill`): self-critique, teacher corrections, retraining, re-scoring.

Inputs: model (the trained base), failures (judge stage), train / val / test (curated splits).
Outputs: `dataset/` (the deduplicated distillation set, Example Parquet), `model` (the retrained
HF folder, or the input model when nothing was retrained or when the retrained one passes no more
validation rows than the base: `distill.select`) and `report.json`. Also in the stage dir:
`self_critique/` and `teacher/` (every rewrite/correction with its verdict) and `train_mix/` (the
distillation set plus the replayed training rows the retrain used).

Failures on held-out test rows are dropped first: training on them would inflate the
before/after comparison, which scores exactly that split.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage

if TYPE_CHECKING:
    import ray.data

    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.runs import RunContext, StageOutput

log = logging.getLogger(__name__)

STAGE = "distill"
REFERENCE_NOTE = ("teacher 'reference': corrections are the task suite's reference answers, not a "
                  "teacher model's; their rows are labelled source=reference_teacher")


def drop_heldout(ds: ray.data.Dataset, test: str) -> ray.data.Dataset:
    """Failures whose id and instruction are not in the held-out split (curation normalised the
    text of every split alike, so exact matches suffice)."""
    import pyarrow.dataset as pads
    from ray.data.expressions import col

    fs, p = storage.fs_and_path(test)
    fmt = "json" if p.endswith((".jsonl", ".json")) else "parquet"
    t = pads.dataset(p, filesystem=fs, format=fmt).to_table(columns=["id", "instruction"])
    if not t.num_rows:
        return ds
    ids = sorted(set(map(str, t["id"].to_pylist())))
    texts = sorted(set(map(str, t["instruction"].to_pylist())))
    return ds.filter(expr=col("id").not_in(ids) & col("instruction").not_in(texts))


def _write(ds: ray.data.Dataset, path: str, schema: Any = None) -> ray.data.Dataset:
    """Write atomically (the judge stage's writer) and read back: the materialised artifact."""
    import pyarrow as pa
    import ray.data

    from cogumi_ray.judge.stage import _write as write_parquet

    write_parquet(ds, path, schema if schema is not None else pa.schema([]))
    return ray.data.read_parquet(path)


def _columns(path: str, columns: list[str]) -> dict[str, list[Any]]:
    """A few columns of a written artifact, read on the driver (no Ray job for small tallies)."""
    import pyarrow.dataset as pads

    fs, p = storage.fs_and_path(path)
    return pads.dataset(p, filesystem=fs, format="parquet").to_table(columns=columns).to_pydict()


def critique_step(cfg: CogumiConfig, inputs: dict[str, str], failures: ray.data.Dataset,
                  out: str, m: dict[str, Any]) -> tuple[ray.data.Dataset, set[str]]:
    """Rewrites re-judged by the same judge; returns (the passing ones, their failure ids)."""
    from cogumi_ray.distill.self_critique import CRITIQUE, self_critique
    from cogumi_ray.judge.stage import cache_dir_for

    dc, jc = cfg.distill, cfg.judge
    gen = cfg.generate.model_copy(update={"engine": dc.engine or cfg.generate.engine,
                                          "params": dc.critique_params})
    path = storage.join(out, "self_critique")
    n_critique = min(m["failures"], dc.critique_limit or m["failures"])
    if n_critique < m["failures"]:  # the rest go to the teacher as usual
        failures = failures.limit(n_critique)
    m["self_critique_rows"] = n_critique
    sc = _write(self_critique(failures, gen, inputs.get("model"), jc, cache_dir_for(jc, out),
                              template=dc.critique_template, marker=dc.critique_marker), path)
    got = _columns(path, ["id", "verdict", CRITIQUE])
    ids = {str(i) for i, v in zip(got["id"], got["verdict"], strict=True) if v == "pass"}
    marker = dc.critique_marker.lower()
    m["self_critique_fixed"] = len(ids)
    # a fix rate on training-split failures (share whose critique now verifies), not an uplift
    m["self_critique_fix_rate"] = round(len(ids) / max(1, n_critique), 4)
    m["self_critique_with_marker"] = sum(marker in str(c).lower() for c in got[CRITIQUE])
    return sc.filter(expr="verdict == 'pass'"), ids


def teacher_step(cfg: CogumiConfig, remaining: ray.data.Dataset, out: str,
                 m: dict[str, Any]) -> ray.data.Dataset:
    """Teacher corrections (verified by the judge unless they are the references); the kept ones."""
    from ray.data.expressions import col

    from cogumi_ray.distill.teacher import teacher_dataset, teacher_judge_config
    from cogumi_ray.judge.run import judge_dataset
    from cogumi_ray.judge.stage import cache_dir_for

    jc, t = cfg.judge, cfg.distill.teacher
    teacher_cache = (None if t.kind == "reference"
                     else cache_dir_for(teacher_judge_config(jc, t), out))
    corrected = teacher_dataset(remaining, jc, t, teacher_cache)
    verify = t.verify and t.kind != "reference"  # a reference is right by definition
    if verify:  # materialised first: the judge reads the schema, which would run the teacher
        corrected = judge_dataset(corrected.materialize(), jc, cache_dir_for(jc, out))
    path = storage.join(out, "teacher")
    taught = _write(corrected, path)
    got = _columns(path, ["verdict"] if verify else [jc.answer_column])
    m["teacher_kept"] = (got["verdict"].count("pass") if verify
                         else sum(a is not None for a in got[jc.answer_column]))
    if t.kind != "reference":
        cost = _columns(path, ["teacher_error", "teacher_output_tokens", "teacher_cost_usd",
                               "teacher_paid_usd"])
        m["teacher_errors"] = sum(e is not None for e in cost["teacher_error"])
        m["teacher_output_tokens"] = int(sum(cost["teacher_output_tokens"]))
        m["teacher_cost_usd"] = round(sum(cost["teacher_cost_usd"]), 8)
        m["teacher_cost_usd_this_run"] = round(sum(cost["teacher_paid_usd"]), 8)
    return (taught.filter(expr="verdict == 'pass'") if verify
            else taught.filter(expr=col(jc.answer_column).is_not_null()))


def dataset_step(cfg: CogumiConfig, inputs: dict[str, str], parts: list[ray.data.Dataset],
                 paths: dict[str, str], m: dict[str, Any]) -> tuple[Any, dict[str, int]]:
    """Corrections + replayed training rows, deduplicated (+ reverse pairs), written as the
    distillation set and the training mix; returns (dedup stats, rows per part:source)."""
    from collections import Counter

    from ray.data.expressions import col

    from cogumi_ray.data.schema import COLUMNS, arrow_schema
    from cogumi_ray.distill.dataset import PART, combine, replay

    dc = cfg.distill
    if parts and (rp := replay(inputs["train"], dc.replay_fraction, cfg.run.seed)) is not None:
        parts.append(rp)
    mix, stats = combine(parts, dc.dedup, dc.reverse_template if dc.reverse_pairs else None)
    has_rows = mix.count() > 0
    _write(mix.filter(expr=col(PART) != "replay").select_columns(list(COLUMNS)),
           paths["dataset"], arrow_schema())
    _write(mix, paths["train_mix"], mix.schema().base_schema if has_rows else None)
    got = _columns(paths["train_mix"], [PART, "source"]) if has_rows else {PART: [], "source": []}
    counts = dict(Counter(f"{p}:{s}" for p, s in zip(got[PART], got["source"], strict=True)))
    m["dataset_rows"] = sum(v for k, v in counts.items() if not k.startswith("replay:"))
    m["replay_rows"] = sum(v for k, v in counts.items() if k.startswith("replay:"))
    m["dedup_dropped"] = stats.rows_in - stats.rows_out
    return stats, counts


def retrain_step(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str], mix: str,
                 out: str) -> tuple[str, dict[str, Any]]:
    """The base retrained on the mix by the training stage's Ray Train SFT; (model dir, metrics)."""
    from cogumi_ray.train.base_stage import checkpoint_root
    from cogumi_ray.train.checkpoints import export_checkpoint
    from cogumi_ray.train.trainer import SFTJob, run_sft

    tc = cfg.distill.training
    result = run_sft(SFTJob(
        name=STAGE, model_path=inputs["model"], train_path=mix, val_path=inputs.get("val"),
        cfg=tc, storage_path=checkpoint_root(tc.storage_path, out), resume=ctx.resume))
    return export_checkpoint(result.checkpoint, storage.join(out, "model")), result.metrics


def select_step(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str], retrained: str,
                m: dict[str, Any]) -> str:
    """The base or the retrained model, whichever passes more validation rows (ties: the base)."""
    from cogumi_ray.distill.evaluate import score
    from cogumi_ray.eval.score_cache import cache_dir
    from cogumi_ray.eval.stage import read_examples

    val = read_examples(inputs["val"])[: cfg.distill.eval_limit]
    cache = cache_dir(ctx.run_dir)
    base, new = (score(cfg, model, val, cache) for model in (inputs["model"], retrained))
    m.update(val_examples=len(val), val_pass_rate_base=round(base.pass_rate, 4),
             val_pass_rate_retrained=round(new.pass_rate, 4))
    m["kept"] = "retrained" if new.pass_rate > base.pass_rate else "base"
    if m["kept"] == "base":
        log.warning("distill: the retrained model passed %d/%d validation rows, the base %d: "
                    "keeping the base (distill.select: retrained exports it anyway)",
                    new.overall.passed, new.overall.total, base.overall.passed)
    return retrained if m["kept"] == "retrained" else inputs["model"]


def run(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str]) -> StageOutput:
    import json

    from ray.data.expressions import col

    from cogumi_ray.distill.dataset import as_examples
    from cogumi_ray.failures.read import read_failures
    from cogumi_ray.runs import StageOutput

    dc, jc, t = cfg.distill, cfg.judge, cfg.distill.teacher
    out = ctx.stage_dir(STAGE)
    paths = {k: storage.join(out, k) for k in ("self_critique", "teacher", "dataset", "train_mix")}
    for stale in (paths["self_critique"], paths["teacher"]):  # a re-run may not write them again
        if storage.exists(stale):
            fs, p = storage.fs_and_path(stale)
            fs.rm(p, recursive=True)
    m: dict[str, Any] = {"teacher": t.kind}

    failures = read_failures(inputs["failures"], required=[
        "id", "instruction", jc.answer_column, jc.reference_column]).materialize()
    m["failures_in"] = failures.count()
    if dc.exclude_heldout and "test" in inputs:
        failures = drop_heldout(failures, inputs["test"]).materialize()
    n = m["failures"] = failures.count()
    m["heldout_excluded"] = m["failures_in"] - n
    if m["heldout_excluded"]:
        log.warning("distill: dropped %d failures on held-out test rows; judge the train split "
                    "(generate.split=train) to distil from them", m["heldout_excluded"])
    if not n:
        log.warning("distill: no failures to distil in %s; the distillation set is empty and the "
                    "model is not retrained", inputs["failures"])

    parts: list[ray.data.Dataset] = []
    t0 = time.perf_counter()
    fixed_ids: set[str] = set()
    if n and dc.self_critique:
        fixed, fixed_ids = critique_step(cfg, inputs, failures, out, m)
        parts.append(as_examples(fixed, "self_critique", jc.answer_column))
    t1 = time.perf_counter()
    remaining = (failures.filter(expr=col("id").not_in(sorted(fixed_ids))) if fixed_ids
                 else failures)
    if t.max_rows:
        remaining = remaining.limit(t.max_rows)
    left = n - len(fixed_ids)
    m["teacher_attempted"] = 0 if t.kind == "none" else min(left, t.max_rows or left)
    if m["teacher_attempted"]:
        kept = teacher_step(cfg, remaining, out, m)
        parts.append(as_examples(kept, "teacher", jc.answer_column))
    t2 = time.perf_counter()

    stats, counts = dataset_step(cfg, inputs, parts, paths, m)
    t3 = time.perf_counter()

    model_out, train_metrics = inputs["model"], {}
    if dc.retrain and m["dataset_rows"]:
        model_out, train_metrics = retrain_step(cfg, ctx, inputs, paths["train_mix"], out)
        m.update({f"train_{k}": train_metrics.get(k)
                  for k in ("steps", "train_loss", "eval_loss", "wall_s")})
    m["retrained"] = model_out != inputs["model"]
    t4 = time.perf_counter()

    retrained = model_out
    if m["retrained"] and dc.select == "val_pass_rate" and "val" in inputs:
        model_out = select_step(cfg, ctx, inputs, retrained, m)
    t5 = time.perf_counter()

    scores: dict[str, Any] = {}
    if dc.evaluate and m["retrained"] and "test" in inputs:
        from cogumi_ray.distill.evaluate import compare, score
        from cogumi_ray.eval.score_cache import cache_dir
        from cogumi_ray.eval.stage import read_examples

        examples = read_examples(inputs["test"])[: dc.eval_limit]
        cache = cache_dir(ctx.run_dir)
        before = score(cfg, inputs["model"], examples, cache)
        after = score(cfg, retrained, examples, cache)
        exported = after if model_out == retrained else before
        # pass_rate_after/delta describe the exported model; the retrained one's own held-out
        # rate is kept beside them, so a retrain that was not kept still shows what it did
        m.update(compare(before, exported), eval_examples=len(examples),
                 retrained_pass_rate=round(after.pass_rate, 4),
                 retrained_pass_rate_delta=round(after.pass_rate - before.pass_rate, 4))
        scores = {"before": before.metrics(), "after": exported.metrics(),
                  "retrained": after.metrics()}
    m.update(seconds_self_critique=round(t1 - t0, 2), seconds_teacher=round(t2 - t1, 2),
             seconds_dataset=round(t3 - t2, 2), seconds_retrain=round(t4 - t3, 2),
             seconds_select=round(t5 - t4, 2), seconds_eval=round(time.perf_counter() - t5, 2))

    report = {"metrics": m, "rows_by_part_and_source": counts, "dedup": stats.as_metrics(),
              "training": train_metrics, "scores": scores,
              "artifacts": {k: v for k, v in paths.items() if storage.exists(v)}}
    if t.kind == "reference":
        report["note"] = REFERENCE_NOTE
    report_path = storage.join(out, "report.json")
    storage.atomic_write_text(report_path, json.dumps(report, indent=2, default=str))
    log.info("distill: %s", m)
    return StageOutput(outputs={"dataset": paths["dataset"], "train_mix": paths["train_mix"],
                                "model": model_out, "report": report_path}, metrics=m)
