"""Pipeline stages of the harness.

- `eval` (`cogumi eval`): the configured engine over HumanEval, GSM8K and the held-out suite;
  report.json + items.parquet; unmet quality gates fail the stage (the CLI exits 2).
- `eval_base`: the trained base's pass rates on the held-out suite split (per domain, per
  difficulty), the number later stages (distillation, modifiers) have to beat. Every domain's
  rows count, a new domain's too, each graded by the suite verifier that fits it; rows no
  verifier fits are counted per domain (`unverifiable.<domain>`), not scored.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from cogumi_ray import storage
from cogumi_ray.errors import EvalError

if TYPE_CHECKING:
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.data.schema import Example
    from cogumi_ray.eval.scores import ItemResult
    from cogumi_ray.eval.suite import SuiteScore
    from cogumi_ray.generate.config import EngineConfig
    from cogumi_ray.runs import RunContext, StageOutput

log = logging.getLogger(__name__)


def read_examples(path: str) -> list[Example]:
    """Examples from a Parquet file/dir or a JSONL file."""
    import pyarrow.dataset as pads

    from cogumi_ray.data.schema import Example

    fs, p = storage.fs_and_path(path)
    if not fs.exists(p):
        raise EvalError(f"examples file {path!r} does not exist")
    try:
        if p.endswith((".jsonl", ".json")):
            with fs.open(p, "rt", encoding="utf-8") as f:
                rows = [json.loads(line) for line in f if line.strip()]
        else:
            rows = pads.dataset(p, filesystem=fs, format="parquet").to_table().to_pylist()
        return [Example.from_row(r) for r in rows]
    except (KeyError, ValueError, OSError) as e:
        raise EvalError(f"cannot read Examples from {path!r}: {type(e).__name__}: {e}") from None


def engine_config(cfg: CogumiConfig) -> EngineConfig:
    return cfg.eval.engine or cfg.generate.engine


def write_items(path: str, items: list[ItemResult]) -> None:
    from cogumi_ray.eval.scores import items_parquet

    storage.atomic_write_bytes(path, items_parquet(items))


def run(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str]) -> StageOutput:
    from cogumi_ray.eval import score_cache
    from cogumi_ray.eval.gates import enforce_gates, failed_gates
    from cogumi_ray.eval.harness import evaluate, suite_rows
    from cogumi_ray.eval.scores import BenchmarkScore
    from cogumi_ray.generate.engines import make_engine
    from cogumi_ray.runs import StageOutput

    suite = read_examples(inputs["test"]) if "test" in inputs else None
    done = {}
    if suite and "suite" in cfg.eval.benchmarks and inputs.get("model"):
        # through score_model: earlier stages usually scored this model on these rows already
        scored = score_model(cfg, inputs["model"], suite_rows(cfg.eval, suite),
                             cache=score_cache.cache_dir(ctx.run_dir))
        done["suite"] = BenchmarkScore.from_items("suite", scored.items)
    engine = make_engine(engine_config(cfg), inputs.get("model"))
    try:
        report = evaluate(engine, cfg.eval, suite, done)
    finally:
        engine.close()
    out_dir = ctx.stage_dir("eval")
    scores = report.flat_scores()
    failed = failed_gates(scores, cfg.eval.gates)
    summary = {"scores": report.as_dict(), "gates": cfg.eval.gates, "failed_gates": failed}
    storage.atomic_write_json(storage.join(out_dir, "report.json"), summary)
    write_items(storage.join(out_dir, "items.parquet"), report.items())
    enforce_gates(scores, cfg.eval.gates)  # after writing, so a failed run is still inspectable
    metrics: dict[str, float | int] = {k: round(v, 4) for k, v in scores.items()}
    for name, s in report.scores.items():
        metrics[f"{name}.passed"], metrics[f"{name}.total"] = s.overall.passed, s.overall.total
    return StageOutput(
        outputs={"report": storage.join(out_dir, "report.json"),
                 "items": storage.join(out_dir, "items.parquet")},
        metrics=metrics,
    )


def score_model(cfg: CogumiConfig, model: str | None, examples: list[Example],
                engine: EngineConfig | None = None, cache: str | None = None) -> SuiteScore:
    """The suite score of `model` on `examples` with `engine` (default: the eval engine) and
    the eval section's decoding: every row a suite verifier fits, under its own domain (a new
    domain's rows included, see `eval.verifiers`); the rest counted in `unverifiable`. With
    `cache` (a directory, see `score_cache`), a greedy score already computed for the same model
    files, rows, engine and decoding is read, not redone."""
    from dataclasses import replace

    from cogumi_ray.eval import score_cache
    from cogumi_ray.eval.suite import score_suite
    from cogumi_ray.eval.verifiers import borrows_verifier, unverifiable
    from cogumi_ray.generate.engines import make_engine

    engine = engine or engine_config(cfg)
    key = (score_cache.key(model, examples, engine, cfg.eval.params, cfg.eval.batch_size)
           if cache and cfg.eval.cache_scores else None)
    if key and any(borrows_verifier(ex) for ex in examples):
        # Rows of a domain the suite does not make used to be left out of the score; a set that
        # holds some gets a key of its own, so an entry written before they were graded cannot
        # stand for them. Sets of suite rows only keep their key (and their cached scores).
        key = storage.hash_object({"key": key, "grading": "verifier fitting each row"})
    if key and (hit := score_cache.load(cache, key)) is not None:
        log.info("suite score of %s on %d rows: cached (%s)", model, len(examples), key[:12])
        return replace(hit, unverifiable=unverifiable(examples))  # the entry holds graded rows
    eng = make_engine(engine, model)
    try:
        score = score_suite(eng, examples, params=cfg.eval.params,
                            batch_size=cfg.eval.batch_size, workers=cfg.eval.exec_workers)
    finally:
        eng.close()
    if key:
        score_cache.save(cache, key, score)
    return score


def run_base(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str]) -> StageOutput:
    from cogumi_ray.eval import score_cache
    from cogumi_ray.runs import StageOutput

    examples = read_examples(inputs["test"])
    if "suite" in cfg.eval.limit:
        examples = examples[: cfg.eval.limit["suite"]]
    cache = score_cache.cache_dir(ctx.run_dir)
    score = score_model(cfg, inputs.get("model"), examples, cache=cache)
    out_dir = ctx.stage_dir("eval_base")
    metrics = score.metrics()
    if "pre_sft" in inputs and (n := cfg.eval.pre_sft_sample):
        # the model before SFT on an evenly spread sample: the reference the base must beat
        pre = score_model(cfg, inputs["pre_sft"], examples[:: max(1, len(examples) // n)][:n],
                          cache=cache)
        log.info("eval_base: before SFT %.3f (%d/%d)", pre.pass_rate, pre.overall.passed,
                 pre.overall.total)
        metrics.update({"pre_sft.pass_rate": round(pre.pass_rate, 4),
                        "pre_sft.passed": pre.overall.passed, "pre_sft.total": pre.overall.total})
    storage.atomic_write_json(storage.join(out_dir, "score.json"), metrics)
    write_items(storage.join(out_dir, "items.parquet"), score.items)
    log.info("eval_base: pass rate %.3f (%d/%d)", score.pass_rate, score.overall.passed,
             score.overall.total)
    return StageOutput(
        outputs={"score": storage.join(out_dir, "score.json"),
                 "items": storage.join(out_dir, "items.parquet")},
        metrics=metrics,
    )
