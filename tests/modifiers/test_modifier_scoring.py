"""Modifier scoring: uplift on the own domain, cost elsewhere, flags, and per-row verdicts."""

from __future__ import annotations

import pyarrow.parquet as pq

from cogumi_ray.config import CogumiConfig
from cogumi_ray.data.config import SuiteConfig
from cogumi_ray.eval.scores import ItemResult, Tally
from cogumi_ray.eval.suite import SuiteScore
from cogumi_ray.modifiers.scoring import BASE, OptionRows, score_adapter, uplift, write_rows


def _score(passed: dict[str, list[bool]]) -> SuiteScore:
    items = [ItemResult("suite", f"{d}-{i}", p, "", "", {"domain": d, "difficulty": "easy"})
             for d, ps in passed.items() for i, p in enumerate(ps)]
    total = Tally(sum(it.passed for it in items), len(items))
    return SuiteScore(total, {}, {}, items)


def test_uplift_and_cost_in_percentage_points():
    base = _score({"code": [True, False, False, False], "math": [True, True]})
    adapter = _score({"code": [True, True, True, False], "math": [True, False]})
    u = uplift("code", base, adapter, min_uplift_pp=10)
    assert (u.own_base, u.own_adapter, u.own_rows) == (0.25, 0.75, 4)
    assert u.uplift_pp == 50.0 and u.other_delta_pp == -50.0 and u.beats_base
    m = u.metrics()
    assert m["code_uplift_pp"] == 50.0 and m["code_other_domains_delta_pp"] == -50.0
    # the same adapter against a demanding bar, and one that only ties, are flagged
    assert not uplift("code", base, adapter, min_uplift_pp=60).beats_base
    assert not uplift("code", base, base, min_uplift_pp=0).beats_base


def test_useless_adapter_is_flagged_and_rows_are_kept(tiny_sft_model_dir, tmp_path):
    """An untrained LoRA (B = 0) changes no answer: zero uplift, so it is flagged."""
    from peft import get_peft_model

    from cogumi_ray.data.suite import generate_suite
    from cogumi_ray.eval.stage import score_model
    from cogumi_ray.models.load import load_model_and_tokenizer
    from cogumi_ray.train.config import LoraSpec
    from cogumi_ray.train.lora import lora_config

    model, _ = load_model_and_tokenizer(tiny_sft_model_dir)
    adapter_dir = str(tmp_path / "useless")
    get_peft_model(model, lora_config(LoraSpec(rank=4))).save_pretrained(adapter_dir)
    examples = generate_suite(SuiteConfig(examples_per_domain=3, domains=["math", "general"]))
    cfg = CogumiConfig.model_validate({"eval": {"params": {"max_new_tokens": 24}}})
    base = score_model(cfg, tiny_sft_model_dir, examples)
    scores = score_adapter(cfg, tiny_sft_model_dir, adapter_dir, {"test": examples, "val": []})
    assert set(scores) == {"test"}  # an empty split is skipped
    assert [it.answer for it in scores["test"].items] == [it.answer for it in base.items]
    u = uplift("math", base, scores["test"], min_uplift_pp=0)
    assert u.uplift_pp == 0 and not u.beats_base
    path = str(tmp_path / "scores.parquet")
    write_rows(path, [OptionRows(BASE, "test", base), OptionRows("math", "test", scores["test"])])
    table = pq.read_table(path).to_pylist()
    assert len(table) == 2 * len(examples)
    assert {r["option"] for r in table} == {BASE, "math"}
    assert {r["domain"] for r in table} == {"math", "general"}
