"""Connecting to Ray: a local instance for the embedded default, an existing cluster otherwise."""

from __future__ import annotations

import logging
import os

from cogumi_ray.config import RayConfig

log = logging.getLogger(__name__)


# Aggregators hold shuffled blocks and barely compute until the final reduce.
SHUFFLE_AGGREGATOR_CPUS = 0.01
# Rows a node buffers before a shuffle partitions them. Ray Data's 1 GiB default holds back the
# shuffle until most of a small run's map output exists, so the two stages barely overlap: with
# 16 MiB, dedup's sketch + band shuffle on 100K rows took 11.5 s instead of 22.4 s on 2 cores.
SHUFFLE_BATCH_BYTES = 16 * 1024 * 1024


def tune_data_for_small_cluster(max_cpus: int) -> bool:
    """On a small Ray, stop Ray Data from reserving per-operator CPU slices, and let shuffles
    start on small batches of their input.

    With 2 CPUs the default reservations (a share per operator, and up to 25% of the CPUs for
    hash-shuffle aggregators) leave one core idle while the MinHash map waits for its slice;
    Parquet reads go through the reader without an actor pool.
    Returns whether the current process's DataContext was changed.
    """
    import ray
    import ray.data

    cpus = int(ray.cluster_resources().get("CPU", 0))
    if not max_cpus or cpus > max_cpus:
        return False
    ctx = ray.data.DataContext.get_current()
    ctx.op_resource_reservation_enabled = False
    ctx.hash_shuffle_operator_actor_num_cpus_override = SHUFFLE_AGGREGATOR_CPUS
    ctx.shuffle_input_batch_bytes = SHUFFLE_BATCH_BYTES
    # Parquet through the V1 reader: V2 lists files on a pool of 32 footer-reader actors that it
    # starts and kills on every read_parquet, ~2 s per read on 2 cores (0.3 s with V1 for the
    # demo's 29.5K-row train split) and paid by every stage that reads a split.
    ctx.use_datasource_v2 = False
    return True


def fitting_pool_size(requested: int, cpus_per_actor: float, node_cpus: list[float]) -> int:
    """Largest actor pool <= `requested` that still leaves the tasks feeding it a whole CPU.

    Without per-operator reservations (the small-cluster tuning), Ray Data hands CPUs to
    whichever operator asks first: a pool that takes every CPU, or that leaves each node only a
    fraction of one, starves the read/map tasks it consumes and the dataset never finishes. So
    one whole CPU per node stays out of the pool (one in all on a single node).
    """
    if cpus_per_actor <= 0 or not node_cpus:
        return requested
    spare = float(len(node_cpus))
    fits = int((sum(node_cpus) - spare) // cpus_per_actor + 1e-9)
    return max(1, min(requested, fits))


def actor_pool_size(requested: int, cpus_per_actor: float, what: str) -> int:
    """`fitting_pool_size` on the connected Ray when the small-cluster tuning is on (Ray Data's
    own reservations otherwise keep the inputs fed); logs when it trims the pool."""
    import ray
    import ray.data

    if not ray.is_initialized() or ray.data.DataContext.get_current().op_resource_reservation_enabled:
        return requested
    node_cpus = [float(n["Resources"].get("CPU", 0)) for n in ray.nodes()
                 if n.get("Alive") and n["Resources"].get("CPU", 0) > 0]
    size = fitting_pool_size(requested, cpus_per_actor, node_cpus)
    if size < requested:
        log.warning("%s: %d actors x %g CPU would leave no whole CPU for the tasks that feed "
                    "them on %s CPUs; using %d", what, requested, cpus_per_actor,
                    "+".join(f"{c:g}" for c in node_cpus), size)
    return size


# Two of Ray Serve's throughput-optimized settings, read at import by every Serve process (the
# HTTP proxy included, which is why they go in the environment Ray's workers inherit). Every
# blocking call in cogumi's deployments already runs in a thread, so user code may share the
# replica's event loop.
SERVE_FAST_PATH_ENV: dict[str, str] = {
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
}


def local_system_config(cfg: RayConfig) -> dict:
    """Ray system settings for a local Ray this process starts (a cluster sets its own)."""
    cpus = cfg.num_cpus or os.cpu_count() or 1
    return {"num_workers_soft_limit": cpus + cfg.spare_workers}


def init_ray(cfg: RayConfig, env_vars: dict[str, str] | None = None) -> None:
    """Start or join Ray once per process; later calls are no-ops. `env_vars` reach the workers
    of a cluster through the job's runtime_env (a local Ray's workers inherit this process's)."""
    import ray

    if ray.is_initialized():
        return
    # Quiet Ray's own progress/log chatter on small local runs; the CLI prints its own summary.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    from cogumi_ray import run_log

    run_log.quiet_libraries()  # before ray.init: it logs its start-up lines
    kwargs: dict = {"ignore_reinit_error": True, "log_to_driver": True}
    if cfg.address:
        kwargs["address"] = cfg.address
        if env_vars:
            kwargs["runtime_env"] = {"env_vars": dict(env_vars)}
    else:
        kwargs["include_dashboard"] = cfg.include_dashboard
        if cfg.num_cpus:
            kwargs["num_cpus"] = cfg.num_cpus
        if cfg.object_store_memory_mb:
            kwargs["object_store_memory"] = cfg.object_store_memory_mb * 1024 * 1024
        kwargs["_system_config"] = local_system_config(cfg)
        if cfg.serve_fast_path:  # before ray.init: the raylet and its workers copy this env
            for key, value in SERVE_FAST_PATH_ENV.items():
                os.environ.setdefault(key, value)
    ctx = ray.init(**kwargs)
    run_log.quiet_libraries()
    url = getattr(ctx, "dashboard_url", None)
    log.info("ray: %s%s", ray.cluster_resources(), f"; dashboard http://{url}" if url else "")
    if tune_data_for_small_cluster(cfg.small_cluster_cpus):
        log.info("ray data: small cluster, operators share all CPUs")
