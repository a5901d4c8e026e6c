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
    assert ctx.use_datasource_v2 is False  # no footer-reader actor pool per read


def test_a_local_ray_keeps_spare_idle_workers():
    from cogumi_ray.config import RayConfig
    from cogumi_ray.ray_session import local_system_config

    assert local_system_config(RayConfig(num_cpus=2)) == {"num_workers_soft_limit": 6}
    assert local_system_config(RayConfig(num_cpus=2, spare_workers=0)) == {
        "num_workers_soft_limit": 2
    }


def test_an_actor_pool_leaves_each_node_a_whole_cpu_for_its_inputs():
    from cogumi_ray.ray_session import fitting_pool_size

    assert fitting_pool_size(2, 1.0, [2.0]) == 1  # two 1-CPU actors would take the only 2 CPUs
    assert fitting_pool_size(2, 0.5, [2.0]) == 2  # 1 CPU left for the reads
    assert fitting_pool_size(4, 1.0, [8.0]) == 4  # room to spare: as asked
    # Two 1-CPU nodes: a 0.5-CPU actor on each would leave two halves and no whole CPU.
    assert fitting_pool_size(2, 0.5, [1.0, 1.0]) == 1
    assert fitting_pool_size(2, 1.0, [2.0, 2.0]) == 2
    assert fitting_pool_size(3, 1.0, [1.0]) == 1  # never below one actor
    assert fitting_pool_size(3, 0.0, [1.0]) == 3  # CPU-free actors take nothing from the reads


def test_the_pool_guard_applies_only_without_ray_data_reservations(ray_session):
    import ray.data

    from cogumi_ray.ray_session import actor_pool_size, tune_data_for_small_cluster

    cpus = ray_session.cluster_resources()["CPU"]
    ctx = ray.data.DataContext.get_current()
    before = ctx.op_resource_reservation_enabled
    try:
        ctx.op_resource_reservation_enabled = True
        assert actor_pool_size(8, cpus, "test") == 8  # Ray Data's reservations keep reads fed
        assert tune_data_for_small_cluster(int(cpus))
        assert actor_pool_size(8, cpus, "test") == 1  # each actor would take every CPU
    finally:
        ctx.op_resource_reservation_enabled = before


def test_a_local_ray_runs_serve_on_its_fast_path(ray_session):
    """Every Ray worker (Serve's proxy and replicas among them) inherits the two settings."""
    import os

    from cogumi_ray.ray_session import SERVE_FAST_PATH_ENV

    @ray_session.remote
    def worker_env() -> dict[str, str | None]:
        return {k: os.environ.get(k) for k in SERVE_FAST_PATH_ENV}

    assert ray_session.get(worker_env.remote()) == SERVE_FAST_PATH_ENV
