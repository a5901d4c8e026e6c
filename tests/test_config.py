from pathlib import Path

import pytest

from cogumi_ray.config import CogumiConfig, load_config
from cogumi_ray.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_embedded_default_is_valid_and_demo_yaml_loads():
    cfg = load_config(REPO / "configs" / "demo.yaml")
    assert cfg.run.name == "demo"
    assert isinstance(cfg, CogumiConfig)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    load_config(path)  # a renamed key must not silently break a shipped config


def test_cluster_config_wires_the_gpu_paths():
    cfg = load_config(REPO / "configs" / "llama31-8b.yaml")
    assert cfg.train.backend == "deepspeed" and cfg.train.deepspeed.zero_stage == 3
    assert cfg.train.use_gpu and cfg.generate.engine.kind == "vllm"
    assert [cfg.modifiers.spec(d).rank for d in ("code", "reasoning", "automation")] == [128, 112, 96]
    assert cfg.model.source.startswith("s3://") and cfg.ray.address == "auto"


def test_cluster_config_sets_the_later_stages_explicitly():
    # The 8B config states the original system's values itself: a default changed for the tiny
    # demo must not silently change the full-size run.
    cfg = load_config(REPO / "configs" / "llama31-8b.yaml")
    cc = cfg.compress
    assert {"prune", "awq", "kquants"} <= cc.model_fields_set
    assert cc.prune.sparsity.model_fields_set == {"attention", "mlp", "embeddings"}
    assert (cc.prune.sparsity.attention, cc.prune.sparsity.mlp, cc.prune.sparsity.embeddings) == (
        0.6, 0.7, 0.5)
    assert cc.prune.calibration_rows >= 256 and cc.prune.max_seq_len >= 1024
    assert cc.awq.enabled == "on" and cc.awq.scheme == "W4A16"
    assert cc.kquants == ["Q5_K_M", "Q4_K_M"]
    assert set(cfg.modifiers.adapters) == {"code", "reasoning", "automation"}
    assert {d: s.rank for d, s in cfg.modifiers.adapters.items()} == {
        "code": 128, "reasoning": 112, "automation": 96}
    pc = cfg.route.policy
    assert {"kind", "steps", "thresholds"} <= pc.model_fields_set
    assert pc.kind == "progressive" and pc.thresholds == [0.85, 0.75, 0.65]
    assert cfg.judge.batch and cfg.judge.judge == "anthropic" and cfg.distill.teacher.batch
    sv = cfg.serve
    assert sv.backend == "hf" and sv.hf.device == "cuda" and sv.port == 8000
    assert sv.generator.num_gpus == 1 and sv.generator.autoscaling is not None
    assert sv.api_key_env == "COGUMI_API_KEYS" and not sv.api_keys  # a variable's name, no keys
    # base, adapters and policy stay unset so `cogumi serve` takes them from the finished run
    assert not {"base", "adapters", "policy"} & sv.model_fields_set


def test_unknown_key_names_key_and_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("curate:\n  dedup:\n    threshhold: 0.8\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "curate.dedup.threshhold" in msg and "unknown key" in msg


def test_wrong_type_is_reported(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("suite:\n  examples_per_domain: many\n")
    with pytest.raises(ConfigError, match="suite.examples_per_domain"):
        load_config(p)


def test_invalid_yaml_and_missing_file(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)


def test_overrides_apply_and_validate():
    cfg = load_config(None, {"run.name": "x", "curate.dedup.threshold": 0.9})
    assert cfg.run.name == "x" and cfg.curate.dedup.threshold == 0.9
    with pytest.raises(ConfigError, match="bands\\*rows"):
        load_config(None, {"curate.dedup.bands": 10})


def test_override_keeps_the_sections_other_defaults(tmp_path):
    # `--set train.max_steps=10` must not drop the embedded default's training budget, nor a
    # nested section's factory defaults.
    cfg = load_config(None, {"train.max_steps": 10, "compress.prune.recovery.max_steps": 3})
    assert cfg.train.max_steps == 10
    assert cfg.train.max_minutes == load_config(None).train.max_minutes is not None
    default_recovery = load_config(None).compress.prune.recovery
    assert cfg.compress.prune.recovery.max_steps == 3
    assert cfg.compress.prune.recovery.learning_rate == default_recovery.learning_rate
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochs: 3\n")
    cfg = load_config(p, {"train.max_steps": 5})
    assert (cfg.train.epochs, cfg.train.max_steps) == (3, 5)
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_config(p, {"train.max_steps": "lots"})
