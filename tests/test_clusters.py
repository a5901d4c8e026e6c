"""The `ray up` YAMLs must pass Ray's own autoscaler schema (what `ray up` checks first)."""

from pathlib import Path

import pytest
import yaml

CLUSTERS = sorted((Path(__file__).resolve().parents[1] / "clusters").glob("*.yaml"))


def _validate(cfg: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(cfg))


@pytest.mark.parametrize("path", CLUSTERS, ids=lambda p: p.name)
def test_cluster_yaml_passes_ray_schema(path):
    cfg = yaml.safe_load(path.read_text())
    _validate(cfg)
    workers = {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}
    assert any("H100" in str(v.get("resources")) for v in workers.values())
    assert any("cogumi_ray" in c for c in cfg["setup_commands"])


def test_schema_check_rejects_a_typo():
    cfg = yaml.safe_load(CLUSTERS[0].read_text())
    cfg["available_node_types"]["head"]["node_confg"] = cfg["available_node_types"]["head"].pop("node_config")
    with pytest.raises(Exception):  # noqa: B017 - Ray raises jsonschema/ValueError variants
        _validate(cfg)


def test_there_are_cluster_files():
    assert {p.name for p in CLUSTERS} >= {"aws-h100.yaml", "gcp-h100.yaml"}
