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


def test_small_cluster_tuning_lets_operators_share_cpus(ray_session):
    import ray.data

    from cogumi_ray.cluster import (
        SHUFFLE_AGGREGATOR_CPUS,
        SHUFFLE_BATCH_BYTES,
        tune_data_for_small_cluster,
    )

    cpus = int(ray_session.cluster_resources()["CPU"])
    assert not tune_data_for_small_cluster(0)  # switched off
    assert not tune_data_for_small_cluster(cpus - 1)  # a bigger cluster keeps Ray's defaults
    assert tune_data_for_small_cluster(cpus)
    ctx = ray.data.DataContext.get_current()
    assert ctx.op_resource_reservation_enabled is False
    assert ctx.hash_shuffle_operator_actor_num_cpus_override == SHUFFLE_AGGREGATOR_CPUS
    assert ctx.shuffle_input_batch_bytes == SHUFFLE_BATCH_BYTES


def test_a_local_ray_keeps_spare_idle_workers():
    from cogumi_ray.cluster import local_system_config
    from cogumi_ray.config import RayConfig

    assert local_system_config(RayConfig(num_cpus=2)) == {"num_workers_soft_limit": 6}
    assert local_system_config(RayConfig(num_cpus=2, spare_workers=0)) == {
        "num_workers_soft_limit": 2
    }
