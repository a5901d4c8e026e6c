"""The compress stage scores its variants through the run's score cache: the dense HF variant is
the stage's input model, which eval_base (or distill) scored on the same rows already."""

from __future__ import annotations

import torch

from cogumi_ray.compress.variants import Variant, engine_config, score
from cogumi_ray.config import CogumiConfig
from cogumi_ray.data.config import SuiteConfig
from cogumi_ray.eval import score_cache
from cogumi_ray.eval.config import EvalConfig
from cogumi_ray.eval.stage import score_model
from cogumi_ray.generate.config import GenParams


def test_dense_variant_reads_eval_base_score_and_gguf_scores_are_cached(tiny_model_dir, tmp_path,
                                                                       monkeypatch):
    from cogumi_ray.data.suite.generator import generate_suite

    torch.set_num_threads(1)
    rows = generate_suite(SuiteConfig(examples_per_domain=2, domains=["general", "math"]))
    cfg = CogumiConfig(eval=EvalConfig(params=GenParams(max_new_tokens=8), batch_size=4))
    cache = str(tmp_path / "cache")
    first = score_model(cfg, tiny_model_dir, rows, cache=cache)  # what eval_base leaves behind
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    dense = Variant("dense/hf", "dense", "hf", tiny_model_dir)

    def no_engine(*_a, **_k):
        raise AssertionError("the dense variant was answered again instead of read from the cache")

    monkeypatch.setattr("cogumi_ray.generate.engines.make_engine", no_engine)
    score(dense, cfg, rows, cache)
    # same model files, rows, engine and decoding: no new entry, the same verdicts
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == entries
    assert dense.extra["passed"] == first.overall.passed
    assert dense.extra["total"] == first.overall.total == len(rows)
    assert dense.pass_rate == round(first.pass_rate, 4)
    # a GGUF variant is keyed by the llama.cpp engine, not the HF one
    hf_key = score_cache.key(tiny_model_dir, rows, engine_config("hf", tiny_model_dir),
                             cfg.eval.params, cfg.eval.batch_size)
    gguf_key = score_cache.key(tiny_model_dir, rows, engine_config("gguf", tiny_model_dir),
                               cfg.eval.params, cfg.eval.batch_size)
    assert hf_key and gguf_key and hf_key != gguf_key
