"""Ray Tune over the compression recipe: per-group sparsity and the K-quant type.

Each trial prunes the base with the candidate sparsity (llm-compressor one-shot, no recovery:
the search ranks recipes, recovery only narrows the gap afterwards), exports the GGUF, quantises
it, packs it losslessly, and reports its sizes and the perplexity of validation responses.
Objective: the smallest packed file (the only size sparsity changes; ties: lower perplexity)
whose perplexity stays within `compress.max_ppl_increase` of the dense base (infeasible
trials score their size plus a penalty, so the search still orders them). The results table and
the chosen recipe are written to the stage dir; the stage then compresses with that recipe.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from cogumi_ray import storage
from cogumi_ray.compress.config import CompressConfig, PruneConfig, SparsityConfig

log = logging.getLogger(__name__)
_PENALTY_MB = 1e6  # added to an infeasible trial's size: worse than any feasible one


@dataclass
class TuneResult:
    recipe: dict[str, Any]  # attention, mlp, embeddings, kquant
    table: list[dict[str, Any]]
    reference_ppl: float


def gguf_size_and_ppl(model_dir: str, qtype: str, seqs: list[tuple[list[int], int]],
                      work: str, pack_level: int) -> tuple[int, int, float]:
    """(GGUF bytes, losslessly packed bytes, perplexity). The packed size is what sparsity can
    change: a K-quant file stores a pruned zero in as many bits as any other weight."""
    from cogumi_ray.compress.pack import pack
    from cogumi_ray.compress.perplexity import gguf_perplexity
    from cogumi_ray.compress.quantize import quantize_gguf
    from cogumi_ray.export.gguf_export import export_gguf

    f16 = export_gguf(model_dir, os.path.join(work, "f16.gguf"), outtype="f16").path
    q = quantize_gguf(f16, os.path.join(work, f"{qtype}.gguf"), qtype)
    packed = pack(q.dst, os.path.join(work, "q.cogz"), level=pack_level, threads=1)
    return q.out_bytes, packed.out_bytes, gguf_perplexity(q.dst, seqs, n_threads=1)


def trial(config: dict[str, Any], *, model: str, rows: list[dict[str, Any]],
          seqs: list[tuple[list[int], int]], ref_ppl: float, max_ppl_increase: float,
          method: str, pack_level: int) -> None:
    """One Ray Tune trial (runs in a Ray worker with one CPU)."""
    import torch
    from ray import tune

    from cogumi_ray.compress.prune import prune_model

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="cogumi-tune-") as work:
        sparsity = SparsityConfig(attention=config["attention"], mlp=config["mlp"],
                                  embeddings=config["embeddings"])
        src = model
        if sparsity.attention or sparsity.mlp or sparsity.embeddings:
            src = os.path.join(work, "pruned")
            prune_model(model, src, rows, PruneConfig(method=method, sparsity=sparsity,
                                                      recover=False))
        size, packed, ppl = gguf_size_and_ppl(src, config["kquant"], seqs, work, pack_level)
    increase = ppl / ref_ppl - 1
    feasible = increase <= max_ppl_increase
    packed_mb = packed / 2**20
    tune.report({"size_mb": size / 2**20, "packed_mb": packed_mb, "ppl": ppl,
                 "ppl_increase": increase, "feasible": feasible,
                 "score": packed_mb + (0 if feasible else _PENALTY_MB)})


def tune_sparsity(cc: CompressConfig, model: str, calib: list[dict[str, Any]],
                  val_rows: list[dict[str, Any]], out: str) -> TuneResult:
    """Search the recipe space of `cc.tune` on Ray Tune; write `tune_results.json` and
    `tune_recipe.json` to `out` and return them."""
    from ray import tune

    from cogumi_ray.compress.perplexity import hf_perplexity, response_tokens
    from cogumi_ray.models.load import load_tokenizer

    t = cc.tune
    model = storage.absolute(model)  # trials run in their own working directories
    seqs = response_tokens(load_tokenizer(model), val_rows[: t.ppl_rows], max_len=512)
    ref_ppl = hf_perplexity(model, seqs)
    space = {"attention": tune.choice(t.attention), "mlp": tune.choice(t.mlp),
             "embeddings": tune.choice(t.embeddings), "kquant": tune.choice(t.kquants)}
    fn = tune.with_resources(tune.with_parameters(
        trial, model=model, rows=calib[: t.calibration_rows], seqs=seqs, ref_ppl=ref_ppl,
        max_ppl_increase=cc.max_ppl_increase, method=cc.prune.method,
        pack_level=cc.pack_level), {"cpu": 1})
    tuner = tune.Tuner(
        fn, param_space=space,
        tune_config=tune.TuneConfig(metric="score", mode="min", num_samples=t.num_samples,
                                    max_concurrent_trials=t.max_concurrent),
        run_config=tune.RunConfig(name="sparsity", storage_path=os.path.abspath(
            storage.local_path(storage.join(out, "tune"))), verbose=0),
    )
    results = tuner.fit()
    errors = [str(r.error) for r in results if r.error]
    table = [{**r.config, **{k: r.metrics.get(k) for k in
                             ("size_mb", "packed_mb", "ppl", "ppl_increase", "feasible")}}
             for r in results if not r.error]
    if not table:
        from cogumi_ray.errors import ModelError

        raise ModelError(f"every sparsity trial failed; first error: {errors[:1]}")
    # Smallest packed file; among equal sizes the lower perplexity.
    best = min(table, key=lambda r: (r["packed_mb"] + (0 if r["feasible"] else _PENALTY_MB),
                                     r["ppl"]))
    recipe = {k: best[k] for k in ("attention", "mlp", "embeddings", "kquant")}
    storage.atomic_write_json(storage.join(out, "tune_results.json"),
                              {"reference_ppl": ref_ppl, "trials": table, "errors": errors})
    storage.atomic_write_json(storage.join(out, "tune_recipe.json"), recipe)
    log.info("tune: chose %s (%.2f MB packed, ppl +%.1f%%, feasible %s) from %d trials", recipe,
             best["packed_mb"], best["ppl_increase"] * 100, best["feasible"], len(table))
    return TuneResult(recipe, table, ref_ppl)


def apply_recipe(cc: CompressConfig, recipe: dict[str, Any]) -> CompressConfig:
    """The compress config with the tuned sparsity and K-quant (listed first)."""
    prune = cc.prune.model_copy(update={"sparsity": SparsityConfig(
        attention=recipe["attention"], mlp=recipe["mlp"], embeddings=recipe["embeddings"])})
    kquants = [recipe["kquant"], *[q for q in cc.kquants if q.upper() != recipe["kquant"].upper()]]
    return cc.model_copy(update={"prune": prune, "kquants": kquants})

