"""Stage "model": tiny build from curated Parquet, and checking a given HF folder."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from testkit import tiny_pairs

from cogumi_ray.config import CogumiConfig
from cogumi_ray.data.schema import Example, arrow_schema
from cogumi_ray.errors import DataError, ModelError
from cogumi_ray.models.stage import run
from cogumi_ray.runs import RunContext


def _curated(tmp_path) -> str:
    rows = [Example(id=str(i), instruction=ins, response=resp).to_row()
            for i, (ins, resp) in enumerate(tiny_pairs(120))]
    out = tmp_path / "train"
    out.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), out / "part-0.parquet")
    return str(out)


def test_stage_builds_tiny_from_curated_parquet(tmp_path):
    from cogumi_ray.models.load import load_model_and_tokenizer

    cfg = CogumiConfig.model_validate({"model": {"tiny": {"num_hidden_layers": 1}}})
    ctx = RunContext(str(tmp_path / "run"))
    out = run(cfg, ctx, {"train": _curated(tmp_path)})
    model, tok = load_model_and_tokenizer(out.outputs["model"])
    assert out.metrics["params"] == sum(p.numel() for p in model.parameters())
    assert out.metrics["tokenizer_texts"] == 240 and out.metrics["vocab_size"] == len(tok)
    assert out.metrics["k_quant_ready"] is True


def test_stage_rejects_bad_inputs(tmp_path):
    ctx = RunContext(str(tmp_path / "run"))
    cfg = CogumiConfig()
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(pa.table({"text": ["a"]}), bad / "x.parquet")
    with pytest.raises(DataError, match="lacks columns"):
        run(cfg, ctx, {"train": str(bad)})
    with pytest.raises(DataError, match="cannot read"):
        run(cfg, ctx, {"train": str(tmp_path / "missing")})
    with pytest.raises(ModelError, match="needs input 'train'"):
        run(cfg, ctx, {})


def test_stage_checks_a_given_folder(tmp_path, tiny_model_dir):
    ctx = RunContext(str(tmp_path / "run"))
    out = run(CogumiConfig.model_validate({"model": {"source": tiny_model_dir}}), ctx, {})
    assert out.outputs == {"model": tiny_model_dir}
    assert out.metrics["architecture"] == "LlamaForCausalLM" and out.metrics["has_chat_template"]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="config.json"):
        run(CogumiConfig.model_validate({"model": {"source": str(tmp_path / "junk")}}), ctx, {})


def test_stage_checks_a_uri_folder_without_fetching_weights(tmp_path, tiny_model_dir):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.put(tiny_model_dir + "/", "/stage-check/tiny/", recursive=True)
    try:
        ctx = RunContext(str(tmp_path / "run"))
        src = "memory://stage-check/tiny"
        out = run(CogumiConfig.model_validate({"model": {"source": src}}), ctx, {})
        assert out.outputs == {"model": src} and out.metrics["vocab_size"] > 256
    finally:
        fs.rm("/stage-check", recursive=True)
