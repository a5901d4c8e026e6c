"""Distillation's before/after covers a domain the suite does not generate ('legal': suite
'general' tasks relabelled) and counts the held-out rows no verifier grades ('poetry')."""

from __future__ import annotations

from dataclasses import replace

from cogumi_ray.config import CogumiConfig
from cogumi_ray.data.config import SuiteConfig
from cogumi_ray.data.schema import Example
from cogumi_ray.data.suite.generator import generate_suite


def test_before_and_after_include_a_new_domain_and_count_the_unverifiable(
        tiny_model_dir, tiny_sft_model_dir, tmp_path):
    import torch

    from cogumi_ray.distill.evaluate import compare, score

    torch.set_num_threads(1)
    suite = generate_suite(SuiteConfig(examples_per_domain=3, domains=["general", "math"]))
    poetry = [Example(f"poem-{i}", f"Write a haiku about {i}.", "An old silent pond",
                      domain="poetry") for i in range(2)]
    rows = [replace(e, domain="legal") if e.domain == "general" else e for e in suite] + poetry
    cfg = CogumiConfig.model_validate({"eval": {"params": {"max_new_tokens": 8},
                                                "batch_size": 8}})
    cache = str(tmp_path / "cache")
    before = score(cfg, tiny_model_dir, rows, cache)
    after = score(cfg, tiny_sft_model_dir, rows, cache)
    assert before.by_domain["legal"].total == after.by_domain["legal"].total == 3
    m = compare(before, after)
    assert {"pass_rate_before.legal", "pass_rate_after.legal", "pass_rate_delta.legal",
            "pass_rate_delta.math"} <= set(m)
    assert m["pass_rate_delta.legal"] == round(
        after.by_domain["legal"].rate - before.by_domain["legal"].rate, 4)
    assert m["eval_unverifiable.poetry"] == 2 and "pass_rate_before.poetry" not in m
    assert before.overall.total == after.overall.total == 6
