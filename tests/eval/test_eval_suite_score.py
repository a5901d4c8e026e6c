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


def test_score_cache_reuses_a_greedy_score_and_only_for_the_same_inputs(
        examples, tiny_model_dir, tmp_path):
    import shutil

    import torch

    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.eval.config import EvalConfig
    from cogumi_ray.eval.scores import items_from_parquet, items_parquet
    from cogumi_ray.eval.stage import score_model
    from cogumi_ray.generate.config import GenParams

    torch.set_num_threads(1)
    cache = str(tmp_path / "cache")
    rows = examples[:10]
    cfg = CogumiConfig(eval=EvalConfig(params=GenParams(max_new_tokens=8), batch_size=10))
    first = score_model(cfg, tiny_model_dir, rows, cache=cache)
    (entry,) = (tmp_path / "cache").iterdir()
    # plant a verdict the model did not earn: a second call that reads the cache returns it
    items = items_from_parquet(entry.read_bytes())
    items[0].passed, items[0].reason = not items[0].passed, "planted"
    entry.write_bytes(items_parquet(items))
    again = score_model(cfg, tiny_model_dir, rows, cache=cache)
    assert again.items[0].reason == "planted"
    assert [i.answer for i in again.items] == [i.answer for i in first.items]
    assert again.overall.passed == first.overall.passed + (1 if items[0].passed else -1)

    # other rows, other decoding, other weights: each is scored afresh, not read
    score_model(cfg, tiny_model_dir, rows[:5], cache=cache)
    longer = cfg.model_copy(update={"eval": cfg.eval.model_copy(
        update={"params": GenParams(max_new_tokens=9)})})
    score_model(longer, tiny_model_dir, rows, cache=cache)
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other)
    (other / "README.md").write_text("a copy with one more file: other content")
    assert score_model(cfg, str(other), rows, cache=cache).items[0].reason != "planted"
    assert len(list((tmp_path / "cache").iterdir())) == 4

    # sampled answers are never cached; a broken entry is scored again, with a warning
    sampled = cfg.model_copy(update={"eval": cfg.eval.model_copy(
        update={"params": GenParams(max_new_tokens=8, temperature=0.7)})})
    score_model(sampled, tiny_model_dir, rows, cache=cache)
    assert len(list((tmp_path / "cache").iterdir())) == 4
    entry.write_bytes(b"not parquet")
    redone = score_model(cfg, tiny_model_dir, rows, cache=cache)
    assert [i.reason for i in redone.items] == [i.reason for i in first.items]


class _WaitingEngine(_TableEngine):
    """Answers each batch only once the previous batch's first code answer has been graded: a
    scorer that grades after generating everything never gets past the second batch."""

    def __init__(self, table: dict[str, str], graded) -> None:
        super().__init__(table)
        self.graded, self.calls = graded, 0

    def generate(self, prompts, params):
        if self.calls and not self.graded.wait(timeout=30):
            raise AssertionError("batch 1 was not graded while batch 2 was being generated")
        self.calls += 1
        return super().generate(prompts, params)


def test_batches_are_graded_while_the_next_generates(examples, monkeypatch):
    import importlib
    import threading

    verify = importlib.import_module("cogumi_ray.data.suite.verify")
    graded = threading.Event()
    real = verify.verify_many

    def verify_and_signal(rows, answers):
        out = real(rows, answers)
        graded.set()
        return out

    monkeypatch.setattr(verify, "verify_many", verify_and_signal)
    table = {e.instruction: e.response for e in examples[::2]}
    engine = _WaitingEngine(table, graded)
    score = score_suite(engine, examples, batch_size=8, workers=2)
    after = grade_suite(examples, [table.get(e.instruction, "") for e in examples])
    assert engine.calls == 4  # 30 rows in batches of 8
    # same verdicts, in the rows' order, as grading every answer afterwards
    assert [(i.id, i.passed, i.reason) for i in score.items] == \
        [(i.id, i.passed, i.reason) for i in after.items]
    assert score.overall.passed == 15
