"""Ray Tune picks a compression recipe: distinct recipes (the grid when it fits), trials really
prune and quantise, ASHA stops trials already over the quality budget after pruning, the choice is
the smallest feasible one (perplexity and, when set, pass-rate budget), and the stage config then
carries it."""

from __future__ import annotations

import json

import pytest

from cogumi_ray.compress.config import CompressConfig
from cogumi_ray.tune.sparsity import Budget, apply_recipe, pick, recipes


def test_apply_recipe_sets_sparsity_and_puts_the_kquant_first():
    cc = apply_recipe(CompressConfig(), {"attention": 0.3, "mlp": 0.5, "embeddings": 0.0,
                                         "kquant": "Q4_K_M"})
    assert (cc.prune.sparsity.attention, cc.prune.sparsity.mlp) == (0.3, 0.5)
    assert cc.prune.sparsity.embeddings == 0.0
    assert cc.kquants == ["Q4_K_M", "Q5_K_M"]


def test_recipes_are_distinct_the_whole_grid_when_it_fits():
    t = CompressConfig().tune.model_copy(update={"num_samples": 8})  # 4 x 4 x 2 x 2 = 64 recipes
    some = recipes(t, seed=1)
    assert len(some) == 8 and len({tuple(r.values()) for r in some}) == 8
    assert some == recipes(t, seed=1) and some != recipes(t, seed=2)
    small = t.model_copy(update={"attention": [0.0, 0.5], "mlp": [0.5], "embeddings": [0.0],
                                 "kquants": ["Q4_K_M", "Q4_K_M"]})
    assert recipes(small, seed=1) == [
        {"attention": 0.0, "mlp": 0.5, "embeddings": 0.0, "kquant": "Q4_K_M"},
        {"attention": 0.5, "mlp": 0.5, "embeddings": 0.0, "kquant": "Q4_K_M"}]


def test_budget_excess_and_the_pick():
    ppl_only, both = Budget(0.03), Budget(0.03, max_drop_pp=2.0)
    assert ppl_only.excess(0.02) == 0 and ppl_only.excess(0.05, drop_pp=50) == pytest.approx(0.02)
    assert both.excess(0.02, drop_pp=2.0) == 0
    assert both.excess(0.02, drop_pp=7.0) == pytest.approx(0.05)  # 5 points over, as a fraction

    def row(mb, ppl, excess, finished=True):
        return {"attention": mb, "mlp": 0, "embeddings": 0, "kquant": "Q4_K_M", "packed_mb": mb,
                "ppl": ppl, "excess": excess, "finished": finished,
                "feasible": finished and excess == 0}

    table = [row(3.0, 1.5, 0), row(2.0, 1.6, 0), row(2.0, 1.55, 0), row(1.0, 2.0, 0.2),
             row(0.5, 1.0, 0, finished=False)]
    assert pick(table)["ppl"] == 1.55  # smallest feasible, then lower perplexity
    closest = pick([row(1.0, 2.0, 0.2), row(2.0, 1.7, 0.1)])  # none feasible: the closest
    assert closest["packed_mb"] == 2.0


@pytest.mark.slow  # four real trials (prune + GGUF + K-quant + perplexity + pass rate) on Ray Tune
def test_tune_picks_the_smallest_feasible_recipe(ray_session, tiny_sft_model_dir, tmp_path):
    from testkit import tiny_pairs

    from cogumi_ray.data.config import SuiteConfig
    from cogumi_ray.data.schema import Example
    from cogumi_ray.data.suite import generate_suite
    from cogumi_ray.tune.sparsity import tune_sparsity

    # Perplexity on rows like the tiny model's training data (suite rows are noise to it); the
    # pass rate on all 16 rows, of which the 6 suite rows carry verifiers and are scored.
    pairs = [Example(id=f"p{i}", instruction=a, response=b, domain="math").to_row()
             for i, (a, b) in enumerate(tiny_pairs(40))]
    suite = [e.to_row() for e in generate_suite(SuiteConfig(examples_per_domain=2))][:6]
    # A tight perplexity budget: attention 50% stays within it on this model (ppl -0.2%), MLP 70%
    # does not (+0.5..0.8%), so ASHA has trials over budget after pruning to stop.
    cc = CompressConfig.model_validate({"max_ppl_increase": 0.001, "pack_level": 3, "tune": {
        "enabled": True, "num_samples": 4, "attention": [0.0, 0.5], "mlp": [0.0, 0.7],
        "embeddings": [0.0], "kquants": ["Q8_0"], "calibration_rows": 8, "ppl_rows": 10,
        "max_drop_pp": 100.0, "pass_rows": 16}})
    res = tune_sparsity(cc, tiny_sft_model_dir, pairs[:20], pairs[20:30] + suite, str(tmp_path),
                        eval_params={"max_new_tokens": 32})
    assert len(res.table) == 4 and res.reference_ppl > 1  # the whole 2 x 2 grid, once each
    assert len({(r["attention"], r["mlp"]) for r in res.table}) == 4
    assert 0 <= res.reference_pass_rate <= 1
    for r in res.table:
        if r["finished"]:  # every rung ran: pass rate scored on the K-quant
            assert r["rung"] == "pass_rate" and 0 <= r["pass_rate"] <= 1 and r["packed_mb"] > 0
        else:  # ASHA stopped it after pruning: only a trial already over budget is stopped
            assert r["rung"] == "prune" and r["excess"] > 0 and r["packed_mb"] is None
    assert any(not r["finished"] for r in res.table)
    # the smallest feasible recipe: attention pruned, MLP dense
    assert res.recipe == {"attention": 0.5, "mlp": 0.0, "embeddings": 0.0, "kquant": "Q8_0"}
    dense = next(r for r in res.table if r["attention"] == 0 and r["mlp"] == 0)
    chosen = next(r for r in res.table if r["attention"] == 0.5 and r["mlp"] == 0)
    assert dense["feasible"] and chosen["feasible"]
    # pruning shrinks the GGUF by nothing (zeros are stored), only the packed file
    assert chosen["size_mb"] == dense["size_mb"] and chosen["packed_mb"] < dense["packed_mb"]
    assert all(r["ppl"] > dense["ppl"] for r in res.table if r["mlp"] == 0.7)
    saved = json.loads((tmp_path / "tune_recipe.json").read_text())
    assert saved == res.recipe
