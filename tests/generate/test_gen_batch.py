"""Ray Data batch generation: engine actors over a small dataset, and the generate stage."""

from __future__ import annotations

import io

import pytest

from cogumi_ray.data.schema import Example, arrow_schema
from cogumi_ray.errors import DataError
from cogumi_ray.generate.config import EngineConfig, GenerateConfig, GenParams


def _write_examples(path, n: int = 7) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [Example(f"ex{i}", f"What is {i} + {i + 3}? Answer with the number only.", str(2 * i + 3),
                    domain="math", difficulty="easy", source="test", metadata={"answer": 2 * i + 3})
            .to_row() for i in range(n)]
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), path)
    return str(path)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    torch.set_num_threads(1)


def _cfg(**kw) -> GenerateConfig:
    return GenerateConfig(params=GenParams(max_new_tokens=8), batch_size=3, concurrency=1,
                          num_cpus_per_actor=1, **kw)


def test_generate_stage_writes_answers_with_example_columns(ray_session, tiny_model_dir, tmp_path):
    import pyarrow.dataset as pads

    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.generate.engines import make_engine
    from cogumi_ray.generate.stage import run
    from cogumi_ray.runs import RunContext

    data = _write_examples(tmp_path / "test.parquet")
    cfg = CogumiConfig(generate=_cfg())
    ctx = RunContext(str(tmp_path / "run"))
    out = run(cfg, ctx, {"data": data, "model": tiny_model_dir})
    table = pads.dataset(out.outputs["answers"], format="parquet").to_table()
    rows = sorted(table.to_pylist(), key=lambda r: int(r["id"][2:]))
    assert [r["id"] for r in rows] == [f"ex{i}" for i in range(7)]
    for col in ("instruction", "response", "domain", "difficulty", "source", "metadata", "answer",
                "prompt_tokens", "completion_tokens", "latency_s", "finish_reason", "engine"):
        assert col in table.column_names, col
    assert {r["engine"] for r in rows} == {"hf"}
    assert all(1 <= r["completion_tokens"] <= 8 and r["prompt_tokens"] > 5 for r in rows)
    assert out.metrics["rows"] == 7
    assert out.metrics["completion_tokens"] == sum(r["completion_tokens"] for r in rows)
    # The actors' answers are the engine's greedy answers (nothing lost or reordered in Ray Data).
    eng = make_engine(EngineConfig(), tiny_model_dir)
    want = eng.generate([r["instruction"] for r in rows], GenParams(max_new_tokens=8))
    assert [r["answer"] for r in rows] == [c.text for c in want]
    assert not [p for p in (tmp_path / "run" / "generate").iterdir() if ".tmp-" in p.name]


def test_limit_and_jsonl_input(ray_session, tmp_path):
    import json

    from cogumi_ray.generate.stage import read_dataset

    path = tmp_path / "rows.jsonl"
    buf = io.StringIO()
    for i in range(5):
        buf.write(json.dumps(Example(f"j{i}", f"Say {i}.", str(i)).to_row()) + "\n")
    path.write_text(buf.getvalue())
    rows = read_dataset(str(path), limit=2).take_all()
    ids = [r["id"] for r in rows]
    assert len(ids) == 2 and set(ids) <= {f"j{i}" for i in range(5)}  # a sample of 2 rows
    assert [r["id"] for r in read_dataset(str(path), limit=2).take_all()] == ids  # seeded
    assert len(read_dataset(str(path), limit=9).take_all()) == 5
    (tmp_path / "bad.jsonl").write_text(json.dumps({"question": "no Example columns"}) + "\n")
    with pytest.raises(DataError, match=r"lacks the Example columns \['id', 'instruction'\]"):
        read_dataset(str(tmp_path / "bad.jsonl"))


def test_bad_inputs(tmp_path):
    from cogumi_ray.generate.stage import read_dataset

    with pytest.raises(DataError, match="does not exist"):
        read_dataset(str(tmp_path / "missing.parquet"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("hello")
    with pytest.raises(DataError, match="no .parquet or .jsonl"):
        read_dataset(str(tmp_path / "d"))
