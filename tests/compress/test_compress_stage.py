"""The compress stage on the tiny model: pruning really prunes (per tensor, lm_head untouched),
recovery keeps the masks, every K-quant matrix has its type, each variant is measured, and the
AWQ checkpoint reloads and generates. Plus the pure parts (patterns, checks, config) fast."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cogumi_ray.compress.config import PruneConfig
from cogumi_ray.compress.prune import PruneReport, check, group_of
from cogumi_ray.errors import ModelError


@pytest.mark.parametrize("name,group", [
    ("model.layers.0.self_attn.q_proj.weight", "attention"),
    ("model.layers.11.self_attn.o_proj.weight", "attention"),
    ("model.layers.1.mlp.down_proj.weight", "mlp"),
    ("model.embed_tokens.weight", "embeddings"),
    ("lm_head.weight", None),
    ("model.layers.0.input_layernorm.weight", None),
    ("model.norm.weight", None),
])
def test_layer_groups_match_what_they_should(name, group):
    assert group_of(name) == group


def test_a_group_short_of_its_target_is_an_error():
    r = PruneReport("sparsegpt", {"attention": 0.6, "mlp": 0.7, "embeddings": 0.5},
                    {"model.layers.0.self_attn.q_proj.weight": 0.6,
                     "model.layers.0.mlp.up_proj.weight": 0.2,
                     "model.embed_tokens.weight": 0.0})
    with pytest.raises(ModelError, match=r"mlp.up_proj.weight: 0.200 < 0.70"):
        check(r, tied=True)  # tied embeddings stay dense: not an error
    with pytest.raises(ModelError, match="embed_tokens"):
        check(r, tied=False)


@pytest.mark.parametrize("bad", ["2-4", "4:2", "a:b", "2"])
def test_mask_structure_is_validated(bad):
    with pytest.raises(ValueError, match="mask_structure"):
        PruneConfig(mask_structure=bad)
    assert PruneConfig(mask_structure="2:4").mask_structure == "2:4"


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    from cogumi_ray.data.config import SuiteConfig
    from cogumi_ray.data.schema import arrow_schema
    from cogumi_ray.data.suite import generate_suite

    out = tmp_path_factory.mktemp("compress_data")
    rows = [e.to_row() for e in generate_suite(SuiteConfig(examples_per_domain=40))]
    paths = {}
    for name, part in (("train", rows[::3]), ("val", rows[1::3]), ("test", rows[2::3])):
        paths[name] = str(out / f"{name}.parquet")
        pq.write_table(pa.Table.from_pylist(part, schema=arrow_schema()), paths[name])
    return paths


@pytest.mark.slow  # pruning + a Ray Train recovery + 8 measured variants: ~2-3 min on 2 cores
def test_compress_stage_end_to_end(ray_session, tiny_sft_model_dir, splits, tmp_path):
    import torch
    from gguf import GGUFReader
    from safetensors.torch import load_file

    from cogumi_ray.compress.stage import run
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.runs import RunContext

    cfg = CogumiConfig.model_validate({"compress": {
        "prune": {"calibration_rows": 16, "replay_rows": 32,
                  "recovery": {"max_steps": 4, "save_steps": 4, "eval_steps": 4,
                               "per_device_batch_size": 4, "max_seq_len": 128}},
        "eval_limit": 10, "ppl_rows": 6, "pack_level": 3, "awq": {"enabled": "off"}}})
    out = run(cfg, RunContext(str(tmp_path / "run")), {
        "model": tiny_sft_model_dir, "train": splits["train"], "val": splits["val"],
        "test": splits["test"]})
    m = out.metrics
    stage_dir = tmp_path / "run" / "compress"

    # pruning: every targeted tensor at its sparsity, lm_head dense, recorded per tensor
    sparsity = json.loads((stage_dir / "sparsity.json").read_text())
    assert all(v >= 0.59 for k, v in sparsity.items() if "self_attn" in k)
    assert all(v >= 0.69 for k, v in sparsity.items() if ".mlp." in k)
    assert sparsity["model.embed_tokens.weight"] >= 0.49
    assert not any(k.startswith("lm_head") for k in sparsity)
    pruned = load_file(str(stage_dir / "pruned" / "model.safetensors"))
    recovered = load_file(str(stage_dir / "recovered" / "model.safetensors"))
    assert (pruned["lm_head.weight"] != 0).float().mean() > 0.99
    # recovery moved the kept weights but every pruned weight stayed zero
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(pruned[q], recovered[q])
    assert int(((pruned[q] == 0) & (recovered[q] != 0)).sum()) == 0
    assert m["recovery_mask_violations"] == 0 and m["recovery_masked_tensors"] >= 14

    # K-quants: every 2-D weight really has a K-quant type
    for branch in ("dense", "pruned"):
        for qtype, allowed in (("Q5_K_M", {"Q5_K", "Q6_K"}), ("Q4_K_M", {"Q4_K", "Q6_K"})):
            reader = GGUFReader(str(stage_dir / "gguf" / f"{branch}-{qtype}.gguf"))
            mats = [t for t in reader.tensors if len(t.shape) == 2]
            assert mats and {t.tensor_type.name for t in mats} <= allowed, qtype

    variants = {v["name"]: v for v in json.loads((stage_dir / "variants.json").read_text())}
    assert set(variants) == {"dense/hf", "pruned/hf", "dense/F16", "dense/Q5_K_M", "dense/Q4_K_M",
                             "pruned/F16", "pruned/Q5_K_M", "pruned/Q4_K_M"}
    for v in variants.values():
        assert v["size_bytes"] > 0 and v["perplexity"] > 1 and v["packed_bytes"] > 0
        if v["kind"] == "gguf":
            assert v["gen_tok_s"] > 0 and v["prompt_tok_s"] > 0
        if not v["name"].endswith("/F16"):
            assert 0 <= v["pass_rate"] <= 1 and v["extra"]["total"] == 10
    assert variants["dense/Q4_K_M"]["size_bytes"] < variants["dense/Q5_K_M"]["size_bytes"] \
        < variants["dense/F16"]["size_bytes"] < variants["dense/hf"]["size_bytes"]
    assert variants["pruned/hf"]["packed_bytes"] < variants["pruned/hf"]["size_bytes"]
    assert os.path.exists(out.outputs["gguf"]) and m["chosen"] in variants
    # the manifest carries the same table: every variant, per-domain pass rates where scored
    table = {r["name"]: r for r in m["variants"]}
    assert set(table) == set(variants)
    assert table["pruned/Q4_K_M"]["pass_rate_by_domain"] == variants["pruned/Q4_K_M"]["per_domain"]
    assert table["dense/Q4_K_M"]["gen_tok_s"] == variants["dense/Q4_K_M"]["gen_tok_s"]
    json.dumps(m)
    assert (stage_dir / "size_vs_quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # calibration of the served GGUF's confidence on validation rows
    from cogumi_ray.compress.calibration import Calibrator

    cal = Calibrator.load(out.outputs["calibrator"])
    assert cal.kind in ("temperature", "platt") and m["calibration_rows"] >= 30
    assert (stage_dir / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert 0 <= m["calibration_raw_ece"] <= 1


@pytest.mark.slow  # llm-compressor's AWQ grid search on CPU
def test_awq_checkpoint_reloads_and_generates_on_cpu(tiny_sft_model_dir, splits, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from cogumi_ray.compress.awq import awq_quantize
    from cogumi_ray.compress.config import AWQConfig
    from cogumi_ray.eval.stage import read_examples

    rows = [e.to_row() for e in read_examples(splits["train"])[:8]]
    out = awq_quantize(tiny_sft_model_dir, str(tmp_path / "awq"), rows, AWQConfig(enabled="on"))
    with open(os.path.join(out, "config.json")) as f:
        qcfg = json.load(f)["quantization_config"]
    assert qcfg["quant_method"] == "compressed-tensors"
    assert qcfg["config_groups"]["group_0"]["weights"]["num_bits"] == 4
    model = AutoModelForCausalLM.from_pretrained(out)
    ids = model.generate(torch.tensor([[0, 5, 6, 7]]), max_new_tokens=6, do_sample=False)
    assert ids.shape[1] > 4
    dense = sum(os.path.getsize(os.path.join(tiny_sft_model_dir, f))
                for f in os.listdir(tiny_sft_model_dir) if f.endswith(".safetensors"))
    packed = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)
                 if f.endswith(".safetensors"))
    assert packed < dense / 2  # int4 weights packed, embeddings and lm_head kept
