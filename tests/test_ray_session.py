"""Starting a local Ray: the small-cluster Ray Data tuning and the spare idle workers."""

from __future__ import annotations


def test_small_cluster_tuning_lets_operators_share_cpus(ray_session):
    import ray.data

    from cogumi_ray.ray_session import (
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
    from cogumi_ray.config import RayConfig
    from cogumi_ray.ray_session import local_system_config

    assert local_system_config(RayConfig(num_cpus=2)) == {"num_workers_soft_limit": 6}
    assert local_system_config(RayConfig(num_cpus=2, spare_workers=0)) == {
        "num_workers_soft_limit": 2
    }
