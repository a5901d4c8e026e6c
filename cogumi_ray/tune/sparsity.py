"""Ray Tune over the compression recipe: per-group sparsity and the K-quant type.

Objective: the smallest losslessly packed GGUF (the only size sparsity changes; ties: lower
perplexity) whose quality drop from the dense base stays within budget on validation rows:
perplexity within `compress.max_ppl_increase`, and, when `compress.tune.max_drop_pp` is set,
suite pass rate within that many points (both, as the stage's own choice of GGUF applies both).

Search: distinct recipes through Ray Tune's BasicVariantGenerator (the whole grid when it has at
most `num_samples` recipes, else a seeded random subset of it: `tune.choice` sampling repeats
recipes, and a repeat is a wasted trial on 2 cores). Model-based searchers (Optuna, HyperOpt)
need packages the project does not depend on; the space is a few discrete choices anyway.

Scheduling: each trial reports at up to three rungs, cheapest first: the pruned model's
perplexity (f32), then the K-quant GGUF's perplexity and sizes, then its pass rate. ASHA stops a
trial whose quality excess over the budget (0 = within) is worse than the median of the trials
that reached that rung before it, so a recipe that already breaks the budget after pruning is
not exported, quantised, packed and scored. A trial within budget scores 0 and is never stopped.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import tempfile
from dataclasses import dataclass
from typing import Any

from cogumi_ray import storage
from cogumi_ray.compress.config import CompressConfig, PruneConfig, SparsityConfig

log = logging.getLogger(__name__)
RECIPE_KEYS = ("attention", "mlp", "embeddings", "kquant")
COLUMNS = ("rung", "finished", "size_mb", "packed_mb", "ppl", "ppl_increase", "pass_rate", "drop_pp",
           "excess")


@dataclass
class TuneResult:
    recipe: dict[str, Any]  # attention, mlp, embeddings, kquant
    table: list[dict[str, Any]]
    reference_ppl: float
    reference_pass_rate: float | None = None


@dataclass(frozen=True)
class Budget:
    """The quality a recipe may lose against the dense base."""

    max_ppl_increase: float  # relative
    max_drop_pp: float | None = None  # pass-rate points; None = perplexity only

    def excess(self, ppl_increase: float, drop_pp: float | None = None) -> float:
        """How far past the budget (0 = within it), perplexity and pass rate as fractions."""
        over = max(0.0, ppl_increase - self.max_ppl_increase)
        if self.max_drop_pp is not None and drop_pp is not None:
            over += max(0.0, drop_pp - self.max_drop_pp) / 100
        return over


def recipes(t: Any, seed: int) -> list[dict[str, Any]]:
    """The distinct recipes to try: the whole grid of `t`'s choices, or `t.num_samples` of them."""
    choices = (t.attention, t.mlp, t.embeddings, t.kquants)
    grid = [dict(zip(RECIPE_KEYS, r, strict=True))
            for r in itertools.product(*(sorted(set(c)) for c in choices))]
    if len(grid) <= t.num_samples:
        return grid
    return random.Random(seed).sample(grid, t.num_samples)


def quantized(model_dir: str, qtype: str, work: str, pack_level: int, cpus: int
              ) -> tuple[str, int, int]:
    """(K-quant GGUF path, its bytes, losslessly packed bytes). The packed size is what sparsity
    can change: a K-quant file stores a pruned zero in as many bits as any other weight."""
    from cogumi_ray.compress.pack import pack
    from cogumi_ray.compress.quantize import quantize_gguf
    from cogumi_ray.export.gguf_export import export_gguf

    f16 = export_gguf(model_dir, os.path.join(work, "f16.gguf"), outtype="f16").path
    q = quantize_gguf(f16, os.path.join(work, f"{qtype}.gguf"), qtype, threads=cpus)
    packed = pack(q.dst, os.path.join(work, "q.cogz"), level=pack_level, threads=cpus)
    return q.dst, q.out_bytes, packed.out_bytes


def pass_rate(kind: str, path: str, rows: list[dict[str, Any]], gen: dict[str, Any],
              batch_size: int, cpus: int | None = None) -> float:
    """Suite pass rate of a model ("hf" folder or "gguf" file) on validation Example rows."""
    from cogumi_ray.compress.variants import engine_for
    from cogumi_ray.data.schema import Example
    from cogumi_ray.eval.suite import score_suite
    from cogumi_ray.generate.config import GenParams

    engine = engine_for(kind, path, threads=cpus)
    try:
        return score_suite(engine, [Example.from_row(r) for r in rows],
                           params=GenParams.model_validate(gen), batch_size=batch_size,
                           workers=cpus or 2).pass_rate
    finally:
        engine.close()


def trial(config: dict[str, Any], *, model: str, rows: list[dict[str, Any]],
          seqs: list[tuple[list[int], int]], ref_ppl: float, budget: Budget,
          ref_pass: float | None, pass_rows: list[dict[str, Any]], gen: dict[str, Any],
          batch_size: int, method: str, pack_level: int, cpus: int) -> None:
    """One Ray Tune trial (a Ray worker with `cpus` CPUs); reports once per rung."""
    import torch
    from ray import tune

    from cogumi_ray.compress.perplexity import gguf_perplexity, hf_perplexity
    from cogumi_ray.compress.prune import prune_model

    torch.set_num_threads(cpus)
    out: dict[str, Any] = {"finished": False}

    def report(rung: str, ppl: float, **more: Any) -> None:
        out.update(rung=rung, ppl=ppl, ppl_increase=ppl / ref_ppl - 1, **more)
        out["excess"] = budget.excess(out["ppl_increase"], out.get("drop_pp"))
        tune.report(dict(out))

    with tempfile.TemporaryDirectory(prefix="cogumi-tune-") as work:
        sparsity = SparsityConfig(attention=config["attention"], mlp=config["mlp"],
                                  embeddings=config["embeddings"])
        src = model
        if sparsity.attention or sparsity.mlp or sparsity.embeddings:
            src = os.path.join(work, "pruned")
            prune_model(model, src, rows, PruneConfig(method=method, sparsity=sparsity,
                                                      recover=False))
        report("prune", hf_perplexity(src, seqs) if src != model else ref_ppl)
        gguf, size, packed = quantized(src, config["kquant"], work, pack_level, cpus)
        final = ref_pass is None
        report("quantize", gguf_perplexity(gguf, seqs, n_threads=cpus), size_mb=size / 2**20,
               packed_mb=packed / 2**20, finished=final)
        if not final:
            rate = pass_rate("gguf", gguf, pass_rows, gen, batch_size, cpus)
            report("pass_rate", out["ppl"], pass_rate=rate, drop_pp=(ref_pass - rate) * 100,
                   finished=True)


def pick(table: list[dict[str, Any]]) -> dict[str, Any]:
    """The smallest packed feasible recipe (ties: lower perplexity); with none feasible, the
    finished one closest to the budget."""
    from cogumi_ray.errors import ModelError

    done = [r for r in table if r["finished"]]
    if not done:
        raise ModelError("no sparsity trial finished: each was stopped or failed")
    feasible = [r for r in done if r["feasible"]]
    if feasible:
        return min(feasible, key=lambda r: (r["packed_mb"], r["ppl"]))
    best = min(done, key=lambda r: (r["excess"], r["packed_mb"]))
    log.warning("tune: no recipe stays within the quality budget; the closest is %s",
                {k: best[k] for k in RECIPE_KEYS})
    return best


def tune_sparsity(cc: CompressConfig, model: str, calib: list[dict[str, Any]],
                  val_rows: list[dict[str, Any]], out: str, *, seed: int = 0,
                  eval_params: dict[str, Any] | None = None, eval_batch_size: int = 16
                  ) -> TuneResult:
    """Search the recipe space of `cc.tune` on Ray Tune; write `tune_results.json` and
    `tune_recipe.json` to `out` and return them. `val_rows` are validation Example rows: the
    first `ppl_rows` give the perplexity, the first `pass_rows` the pass rate (when
    `cc.tune.max_drop_pp` is set)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from cogumi_ray.compress.perplexity import hf_perplexity, response_tokens
    from cogumi_ray.generate.config import GenParams
    from cogumi_ray.models.load import load_tokenizer

    t = cc.tune
    model = storage.absolute(model)  # trials run in their own working directories
    seqs = response_tokens(load_tokenizer(model), val_rows[: t.ppl_rows], max_len=512)
    ref_ppl = hf_perplexity(model, seqs)
    budget = Budget(cc.max_ppl_increase, t.max_drop_pp)
    gen = (GenParams.model_validate(eval_params) if eval_params else GenParams()).model_dump()
    pass_rows, ref_pass = val_rows[: t.pass_rows], None
    if t.max_drop_pp is not None:
        ref_pass = pass_rate("hf", model, pass_rows, gen, eval_batch_size)
    todo = recipes(t, seed)
    space = {k: tune.choice(sorted({r[k] for r in todo})) for k in RECIPE_KEYS}
    fn = tune.with_resources(tune.with_parameters(
        trial, model=model, rows=calib[: t.calibration_rows], seqs=seqs, ref_ppl=ref_ppl,
        budget=budget, ref_pass=ref_pass, pass_rows=pass_rows, gen=gen,
        batch_size=eval_batch_size, method=cc.prune.method, pack_level=cc.pack_level,
        cpus=t.cpus_per_trial), {"cpu": t.cpus_per_trial})
    rungs = 2 if ref_pass is None else 3
    tuner = tune.Tuner(
        fn, param_space=space,
        tune_config=tune.TuneConfig(
            num_samples=len(todo),  # the generator limits concurrency (Tune's own limit
            # applies to Searchers only)
            search_alg=BasicVariantGenerator(points_to_evaluate=todo,
                                             max_concurrent=t.max_concurrent),
            scheduler=ASHAScheduler(metric="excess", mode="min", max_t=rungs, grace_period=1,
                                    reduction_factor=2)),
        run_config=tune.RunConfig(name="sparsity", storage_path=os.path.abspath(
            storage.local_path(storage.join(out, "tune"))), verbose=0),
    )
    results = tuner.fit()
    errors = [str(r.error) for r in results if r.error]
    table = []
    for r in results:
        if r.error or not r.metrics:
            continue
        row = {**{k: r.config[k] for k in RECIPE_KEYS}, **{k: r.metrics.get(k) for k in COLUMNS}}
        row["feasible"] = bool(row["finished"]) and row["excess"] == 0
        table.append(row)
    if not table:
        from cogumi_ray.errors import ModelError

        raise ModelError(f"every sparsity trial failed; first error: {errors[:1]}")
    best = pick(table)
    recipe = {k: best[k] for k in RECIPE_KEYS}
    storage.atomic_write_json(storage.join(out, "tune_results.json"), {
        "reference_ppl": ref_ppl, "reference_pass_rate": ref_pass, "trials": table,
        "errors": errors})
    storage.atomic_write_json(storage.join(out, "tune_recipe.json"), recipe)
    log.info("tune: chose %s (%.2f MB packed, ppl +%.1f%%, feasible %s) from %d trials, %d "
             "stopped early", recipe, best["packed_mb"], best["ppl_increase"] * 100,
             best["feasible"], len(table), sum(not r["finished"] for r in table))
    return TuneResult(recipe, table, ref_ppl, ref_pass)


def apply_recipe(cc: CompressConfig, recipe: dict[str, Any]) -> CompressConfig:
    """The compress config with the tuned sparsity and K-quant (listed first)."""
    prune = cc.prune.model_copy(update={"sparsity": SparsityConfig(
        attention=recipe["attention"], mlp=recipe["mlp"], embeddings=recipe["embeddings"])})
    kquants = [recipe["kquant"], *[q for q in cc.kquants if q.upper() != recipe["kquant"].upper()]]
    return cc.model_copy(update={"prune": prune, "kquants": kquants})
