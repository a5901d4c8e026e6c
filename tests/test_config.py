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
