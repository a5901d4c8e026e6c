"""A domain the suite does not generate is scored by eval: each row by the verifier that fits it,
under its own domain; rows no verifier fits are counted per domain, not dropped silently.

'legal' here is suite 'general' tasks relabelled, so the general verifier grades them; 'poetry'
rows carry no verifier data.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cogumi_ray.data.config import SuiteConfig
from cogumi_ray.data.schema import Example
from cogumi_ray.eval.suite import score_suite
from cogumi_ray.eval.verifiers import as_graded, unverifiable, verifier_domain
from cogumi_ray.generate.engines import Completion


class _TableEngine:
    name = "table"

    def __init__(self, table: dict[str, str]) -> None:
        self.table, self.asked = table, []

    def generate(self, prompts, params):
        self.asked += prompts
        return [Completion(self.table.get(p, ""), 1, 1, 0.0, "stop") for p in prompts]

    def close(self) -> None:
        pass


def poetry(n: int) -> list[Example]:
    return [Example(f"poem-{i}", f"Write a haiku about the number {i}.", "An old silent pond",
                    domain="poetry") for i in range(n)]


@pytest.fixture(scope="module")
def rows() -> list[Example]:
    """4 'legal' (relabelled general), 3 math, 3 unverifiable 'poetry' rows."""
    from cogumi_ray.data.suite.generator import generate_suite

    suite = generate_suite(SuiteConfig(examples_per_domain=4, domains=["general", "math"]))
    legal = [replace(e, domain="legal") for e in suite if e.domain == "general"]
    math = [e for e in suite if e.domain == "math"][:3]
    return [*legal, *math, *poetry(3)]


def test_each_row_is_graded_by_the_verifier_its_metadata_fits():
    ex = Example("1", "Spell cat backwards.", "tac", domain="legal", metadata={"expected": "tac"})
    assert verifier_domain(ex) == "general"
    assert verifier_domain(replace(ex, domain="general")) == "general"  # suite rows: their own
    assert verifier_domain(replace(ex, metadata={"answer": 4})) == "math"
    assert verifier_domain(replace(ex, metadata={"tests": "assert f() == 1"})) == "code"
    assert verifier_domain(replace(ex, metadata={"answer": 4, "verifier": "math"})) == "math"
    # a named verifier whose data the row lacks does not fall back to another
    assert verifier_domain(replace(ex, metadata={"expected": "tac", "verifier": "math"})) is None
    # a suite row is graded by its own domain's verifier or not at all, as before
    assert verifier_domain(replace(ex, domain="general", metadata={"answer": 4})) is None
    assert verifier_domain(poetry(1)[0]) is None
    assert as_graded(ex).domain == "general" and as_graded(poetry(1)[0]) is None
    suite_row = replace(ex, domain="general")
    assert as_graded(suite_row) is suite_row  # unchanged
    assert unverifiable([ex, *poetry(2), replace(ex, domain="z", metadata={})]) == {
        "poetry": 2, "z": 1}


def test_score_suite_reports_a_new_domain_and_counts_the_unverifiable(rows):
    engine = _TableEngine({e.instruction: e.response for e in rows})
    score = score_suite(engine, rows)
    assert {d: (t.passed, t.total) for d, t in score.by_domain.items()} == {
        "legal": (4, 4), "math": (3, 3)}
    assert score.unverifiable == {"poetry": 3}
    assert len(engine.asked) == 7  # rows no verifier grades are not answered
    m = score.metrics()
    assert m["pass_rate.legal"] == 1.0 and m["total.legal"] == 4 and m["total"] == 7
    assert m["unverifiable"] == 3 and m["unverifiable.poetry"] == 3
    # suite rows only: no unverifiable keys in the metrics
    assert "unverifiable" not in score_suite(engine, rows[4:7]).metrics()


def test_eval_base_scores_a_new_domain_and_caches_it_under_a_key_of_its_own(
        rows, tiny_model_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.data.schema import arrow_schema
    from cogumi_ray.eval import score_cache
    from cogumi_ray.eval.config import EvalConfig
    from cogumi_ray.eval.stage import engine_config, run_base, score_model
    from cogumi_ray.generate.config import GenParams
    from cogumi_ray.runs import RunContext

    torch.set_num_threads(1)
    test = tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pylist([e.to_row() for e in rows], schema=arrow_schema()), test)
    cfg = CogumiConfig(eval=EvalConfig(params=GenParams(max_new_tokens=8), batch_size=10))
    ctx = RunContext(str(tmp_path / "run"))
    out = run_base(cfg, ctx, {"test": str(test), "model": tiny_model_dir})
    m = out.metrics
    assert m["total"] == 7 and m["total.legal"] == 4 and m["total.math"] == 3
    assert 0 <= m["pass_rate.legal"] <= 1 and "pass_rate.poetry" not in m
    assert m["unverifiable"] == 3 and m["unverifiable.poetry"] == 3
    items = pq.read_table(out.outputs["items"]).to_pylist()
    assert sorted(json.loads(i["group"])["domain"] for i in items) == ["legal"] * 4 + ["math"] * 3

    # a set with a new domain's rows is cached under a key of its own (entries written before
    # such rows were graded lack them); a set of suite rows keeps its key
    cache = score_cache.cache_dir(ctx.run_dir)
    plain = score_cache.key(tiny_model_dir, rows, engine_config(cfg), cfg.eval.params, 10)
    (entry,) = (tmp_path / "run" / "cache" / "scores").iterdir()
    assert entry.name != f"{plain}.parquet"
    again = score_model(cfg, tiny_model_dir, rows, cache=cache)  # read from the cache
    assert again.unverifiable == {"poetry": 3} and again.metrics() == m
    score_model(cfg, tiny_model_dir, rows[4:7], cache=cache)
    suite_key = score_cache.key(tiny_model_dir, rows[4:7], engine_config(cfg), cfg.eval.params, 10)
    assert (tmp_path / "run" / "cache" / "scores" / f"{suite_key}.parquet").is_file()
