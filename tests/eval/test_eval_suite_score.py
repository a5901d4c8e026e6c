"""Suite scoring: reference answers pass everywhere, silence nowhere; eval_base on the tiny model."""

from __future__ import annotations

import json

import pytest

from cogumi_ray.data.config import DOMAINS, SuiteConfig
from cogumi_ray.data.schema import Example
from cogumi_ray.errors import EvalError
from cogumi_ray.eval.suite import grade_suite, score_suite
from cogumi_ray.generate.engines import Completion


class _TableEngine:
    name = "table"

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    def generate(self, prompts, params):
        return [Completion(self.table.get(p, ""), 1, 1, 0.0, "stop") for p in prompts]

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    from cogumi_ray.data.suite.generator import generate_suite

    return generate_suite(SuiteConfig(examples_per_domain=6))


def test_reference_answers_pass_every_domain_and_difficulty(examples):
    score = score_suite(_TableEngine({e.instruction: e.response for e in examples}), examples)
    assert score.overall.passed == score.overall.total == len(examples)
    assert set(score.by_domain) == set(DOMAINS)
    assert {t.rate for t in score.by_domain.values()} == {1.0}
    assert {t.total for t in score.by_difficulty.values()} == {10}  # 30 rotated over 3 levels
    m = score.metrics()
    assert m["pass_rate"] == 1.0 and m["total"] == 30 and m["total.code"] == 6


def test_silence_and_partial_credit(examples):
    silent = score_suite(_TableEngine({}), examples)
    assert silent.pass_rate == 0.0 and silent.overall.total == 30
    math_only = {e.instruction: e.response for e in examples if e.domain == "math"}
    part = score_suite(_TableEngine(math_only), examples)
    assert part.by_domain["math"].rate == 1.0
    assert part.by_domain["code"].rate == 0.0
    assert part.overall.passed == 6
    assert part.metrics()["pass_rate.math"] == 1.0


def test_rows_without_verifier_data(examples):
    foreign = Example("x1", "Tell me a story.", "Once...", domain="general")
    score = grade_suite([*examples[:3], foreign], ["a", "b", "c", "d"])
    assert score.overall.total == 3  # the foreign row is not scored
    with pytest.raises(EvalError, match="no example carries verifier data"):
        grade_suite([foreign], ["d"])
    with pytest.raises(EvalError, match="2 examples but 1 answers"):
        grade_suite(examples[:2], ["a"])


def test_eval_base_stage_on_the_tiny_model(examples, tiny_model_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.data.schema import arrow_schema
    from cogumi_ray.eval.config import EvalConfig
    from cogumi_ray.eval.stage import run_base
    from cogumi_ray.generate.config import GenParams
    from cogumi_ray.runs import RunContext

    torch.set_num_threads(1)
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    pq.write_table(pa.Table.from_pylist([e.to_row() for e in examples], schema=arrow_schema()),
                   test_dir / "part-0.parquet")
    cfg = CogumiConfig(eval=EvalConfig(params=GenParams(max_new_tokens=12), batch_size=15,
                                       pre_sft_sample=7))
    out = run_base(cfg, RunContext(str(tmp_path / "run")),
                   {"test": str(test_dir), "model": tiny_model_dir, "pre_sft": tiny_model_dir})
    m = out.metrics
    assert m["total"] == 30 and 0 <= m["passed"] <= 30
    # the reference score of the model before SFT, on an evenly spread sample
    assert m["pre_sft.total"] == 7 and 0 <= m["pre_sft.passed"] <= 7
    assert {f"pass_rate.{d}" for d in DOMAINS} <= set(m)
    with open(out.outputs["score"]) as f:
        assert json.load(f) == m
    items = pq.read_table(out.outputs["items"]).to_pylist()
    assert len(items) == 30 and {json.loads(i["group"])["domain"] for i in items} == set(DOMAINS)
