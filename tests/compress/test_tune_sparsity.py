"""Ray Tune picks a compression recipe: trials really prune and quantise, the choice is the
smallest feasible one, and the stage config then carries it."""

from __future__ import annotations

import json

import pytest

from cogumi_ray.compress.config import CompressConfig
from cogumi_ray.tune.sparsity import apply_recipe


def test_apply_recipe_sets_sparsity_and_puts_the_kquant_first():
    cc = apply_recipe(CompressConfig(), {"attention": 0.3, "mlp": 0.5, "embeddings": 0.0,
                                         "kquant": "Q4_K_M"})
    assert (cc.prune.sparsity.attention, cc.prune.sparsity.mlp) == (0.3, 0.5)
    assert cc.prune.sparsity.embeddings == 0.0
    assert cc.kquants == ["Q4_K_M", "Q5_K_M"]


@pytest.mark.slow  # four real trials (prune + GGUF + K-quant + perplexity) on Ray Tune
def test_tune_picks_the_smallest_feasible_recipe(ray_session, tiny_sft_model_dir, tmp_path):
    from testkit import tiny_pairs

    from cogumi_ray.tune.sparsity import tune_sparsity

    rows = [{"instruction": a, "response": b} for a, b in tiny_pairs(40)]
    cc = CompressConfig.model_validate({"max_ppl_increase": 0.10, "tune": {
        "enabled": True, "num_samples": 4, "attention": [0.0, 0.5], "mlp": [0.0, 0.7],
        "embeddings": [0.0], "kquants": ["Q8_0"], "calibration_rows": 8, "ppl_rows": 10}})
    res = tune_sparsity(cc, tiny_sft_model_dir, rows, rows[20:], str(tmp_path))
    assert len(res.table) == 4 and res.reference_ppl > 1
    feasible = [r for r in res.table if r["feasible"]]
    if feasible:
        best = min(feasible, key=lambda r: (r["packed_mb"], r["ppl"]))
        assert res.recipe == {k: best[k] for k in ("attention", "mlp", "embeddings", "kquant")}
    # pruning shrinks the GGUF by nothing (zeros are stored), perplexity moves with it
    dense = [r for r in res.table if r["attention"] == 0 and r["mlp"] == 0]
    pruned = [r for r in res.table if r["mlp"] == 0.7]
    if dense and pruned:
        assert pruned[0]["ppl"] > dense[0]["ppl"]
        assert pruned[0]["size_mb"] == dense[0]["size_mb"]
    saved = json.loads((tmp_path / "tune_recipe.json").read_text())
    assert saved == res.recipe
