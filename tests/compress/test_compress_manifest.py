"""The compress stage's manifest metrics carry the per-variant table (size, packed size,
perplexity, pass rate overall and per domain, tokens/s), and the run report still renders a run
whose manifest has it."""

from __future__ import annotations

import json
from pathlib import Path

from cogumi_ray.compress.stage import choose, flat_metrics, manifest_table
from cogumi_ray.compress.variants import Variant
from cogumi_ray.config import CogumiConfig


def _variants() -> list[Variant]:
    return [
        Variant("dense/hf", "dense", "hf", "/m", size_bytes=10 * 2**20, packed_bytes=9 * 2**20,
                perplexity=1.68, pass_rate=0.4, per_domain={"code": 0.3, "math": 0.5},
                extra={"passed": 4, "total": 10}),
        Variant("dense/F16", "dense", "gguf", "/f16", size_bytes=5 * 2**20,
                packed_bytes=4 * 2**20, perplexity=1.68, prompt_tok_s=900.0, gen_tok_s=300.0),
        Variant("pruned/Q4_K_M", "pruned", "gguf", "/q4", size_bytes=2 * 2**20,
                packed_bytes=2**20, perplexity=1.7, pass_rate=0.39,
                per_domain={"code": 0.3, "math": 0.48}, prompt_tok_s=1500.0, gen_tok_s=600.0,
                extra={"passed": 4, "total": 10}),
    ]


def test_manifest_table_has_every_column_per_variant():
    vs = _variants()
    choose(CogumiConfig(), vs)  # adds the budget columns to the GGUFs it can judge
    table = {r["name"]: r for r in manifest_table(vs)}
    assert list(table) == ["dense/hf", "dense/F16", "pruned/Q4_K_M"]
    q4 = table["pruned/Q4_K_M"]
    assert (q4["size_mb"], q4["packed_mb"], q4["ppl"], q4["pass_rate"]) == (2.0, 1.0, 1.7, 0.39)
    assert q4["pass_rate_by_domain"] == {"code": 0.3, "math": 0.48}
    assert (q4["prompt_tok_s"], q4["gen_tok_s"]) == (1500.0, 600.0)
    assert q4["drop_pp"] == 1.0 and q4["within_budget"] is True
    assert table["dense/F16"]["pass_rate"] is None and table["dense/hf"]["gen_tok_s"] is None
    flat = flat_metrics(vs)
    assert flat["pruned_q4_k_m.pass_rate.math"] == 0.48 and flat["dense_hf.pass_rate.code"] == 0.3
    json.dumps(table)  # manifest-serialisable


def test_run_report_renders_a_compress_manifest_with_the_table(tmp_path):
    from cogumi_ray.reports import build_report
    from cogumi_ray.runs import RunContext, StageOutput

    vs = _variants()
    ctx = RunContext(str(tmp_path / "run"), name="t")

    def stage() -> StageOutput:
        d = Path(ctx.stage_dir("compress"))
        (d / "variants.json").write_text(json.dumps([v.row() for v in vs]))
        return StageOutput({}, {**flat_metrics(vs), "variants": manifest_table(vs),
                                "chosen": "pruned/Q4_K_M"})

    ctx.run_stage("compress", stage, config={"stage": "compress"})
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["compress"]["metrics"]["variants"][2]["name"] == "pruned/Q4_K_M"
    html_path, md_path = build_report(ctx.run_dir)
    for text in (Path(html_path).read_text(), Path(md_path).read_text()):
        assert "pruned/Q4_K_M" in text and "2.000 MiB" in text
