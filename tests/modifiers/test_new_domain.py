"""A domain the task suite does not generate is config plus data: it trains, scores and exports.

'legal' here is suite 'general' tasks relabelled, so the general verifier still grades them;
'poetry' rows carry no verifier data, so they are counted, not scored.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from testkit import FAST_TRAIN

from cogumi_ray.config import CogumiConfig
from cogumi_ray.data.config import SuiteConfig
from cogumi_ray.data.schema import Example, arrow_schema
from cogumi_ray.modifiers.scoring import scorable


def _write(path: Path, rows: list[Example]) -> str:
    pq.write_table(pa.Table.from_pylist([r.to_row() for r in rows], schema=arrow_schema()), path)
    return str(path)


def _poetry(n: int) -> list[Example]:
    return [Example(f"poem-{i}", f"Write a haiku about the number {i}.", "An old silent pond",
                    domain="poetry") for i in range(n)]


def test_scorable_keeps_rows_as_read_and_counts_the_unverifiable():
    legal = Example("l1", "Spell cat backwards.", "tac", domain="legal",
                    metadata={"expected": "tac"})
    suite = Example("g1", "Spell dog backwards.", "god", domain="general",
                    metadata={"expected": "god"})
    test = [legal, suite, *_poetry(2)]
    sc = scorable({"test": test, "val": _poetry(1)})
    assert set(sc.splits) == {"test"}  # no verifiable validation row: that split is dropped
    # rows unchanged (no relabelling): the split's score is the run's score cache entry for them
    assert sc.splits["test"] is test and sc.unverifiable == {"poetry": 3}


@pytest.fixture(scope="module")
def new_domain_data(tmp_path_factory) -> dict[str, object]:
    """Train: 16 'legal' + 8 'math' rows; test: 4 'legal', 3 'math', 3 unverifiable 'poetry'."""
    from cogumi_ray.data.suite import generate_suite

    out = tmp_path_factory.mktemp("new_domain")
    rows = generate_suite(SuiteConfig(examples_per_domain=20, domains=["general", "math"]))
    general = [replace(e, domain="legal") for e in rows if e.domain == "general"]
    math = [e for e in rows if e.domain == "math"]
    test = [*general[16:], *math[8:11], *_poetry(3)]
    return {"train": _write(out / "train.parquet", general[:16] + math[:8]),
            "test": _write(out / "test.parquet", test), "test_rows": test}


def test_a_new_domain_trains_scores_exports_and_is_served(
    ray_session, tiny_model_dir, new_domain_data, tmp_path
):
    from cogumi_ray.modifiers.stage import run
    from cogumi_ray.route.config import RouterConfig
    from cogumi_ray.route.labels import build_labels, read_scores
    from cogumi_ray.runs import RunContext, StageOutput
    from cogumi_ray.serve.from_run import serve_config_for_run
    from cogumi_ray.serve.policy import make_policy

    cfg = CogumiConfig.model_validate({
        "run": {"root": str(tmp_path), "name": "r"},
        "modifiers": {
            "domains": ["legal"], "min_examples": 8, "data": new_domain_data["train"],
            "adapters": {"legal": {"rank": 4, "target_modules": ["q_proj", "v_proj"]}},
            "training": {**FAST_TRAIN, "max_steps": 2},
        },
        "eval": {"params": {"max_new_tokens": 8}},
    })
    ctx = RunContext(cfg.run_dir)
    inputs = {"model": tiny_model_dir, "train": new_domain_data["train"],
              "test": new_domain_data["test"]}
    out = ctx.run_stage("modifiers", lambda: run(cfg, ctx, inputs), cfg.modifiers)

    adapters = out.outputs["adapters"]
    assert Path(adapters, "legal", "adapter_config.json").is_file()
    assert out.outputs["legal_adapter_gguf"] == os.path.join(adapters, "legal.gguf")
    assert os.path.getsize(out.outputs["legal_adapter_gguf"]) > 0
    # per-row verdicts under the row's own domain, for the base and the new adapter
    scores = pq.read_table(out.outputs["scores"]).to_pylist()
    legal = [r for r in scores if r["domain"] == "legal"]
    assert len(legal) == 2 * 4 and {r["option"] for r in legal} == {"base", "legal"}
    assert {r["domain"] for r in scores} == {"legal", "math"}  # poetry: counted, not scored
    m = ctx.manifest.stages["modifiers"].metrics
    assert m["domains"] == ["legal"] and m["legal_scored_rows"] == 4
    assert isinstance(m["legal_uplift_pp"], float) and "legal_beats_base" in m
    assert m["unverifiable_rows"] == {"poetry": 3} and "unscored" not in m
    assert m["legal_train_rows"] == 16

    # the router's options and serve's models come from the run: no domain list to extend
    labels = build_labels(read_scores(out.outputs["scores"]), "test",
                          new_domain_data["test_rows"], RouterConfig())
    assert labels.options == ["base", "legal"] and "legal" in labels.domains
    ctx.run_stage("export_gguf", lambda: StageOutput({"gguf": out.outputs["legal_adapter_gguf"]},
                                                     {}), {"fake": True})
    serve = serve_config_for_run(cfg)
    assert serve.adapters == {"legal": out.outputs["legal_adapter_gguf"]}
    policy = make_policy(serve)
    assert "cogumi:legal" in policy.models()
    assert policy.decide([{"role": "user", "content": "hi"}], "cogumi:legal").option == "legal"
