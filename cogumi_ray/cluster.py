"""Connecting to Ray: a local instance for the embedded default, an existing cluster otherwise."""

from __future__ import annotations

import logging
import os

from cogumi_ray.config import RayConfig

log = logging.getLogger(__name__)


def init_ray(cfg: RayConfig) -> None:
    """Start or join Ray once per process; later calls are no-ops."""
    import ray

    if ray.is_initialized():
        return
    # Quiet Ray's own progress/log chatter on small local runs; the CLI prints its own summary.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs: dict = {"ignore_reinit_error": True, "log_to_driver": True}
    if cfg.address:
        kwargs["address"] = cfg.address
    else:
        kwargs["include_dashboard"] = cfg.include_dashboard
        if cfg.num_cpus:
            kwargs["num_cpus"] = cfg.num_cpus
        if cfg.object_store_memory_mb:
            kwargs["object_store_memory"] = cfg.object_store_memory_mb * 1024 * 1024
    ctx = ray.init(**kwargs)
    url = getattr(ctx, "dashboard_url", None)
    log.info("ray: %s%s", ray.cluster_resources(), f"; dashboard http://{url}" if url else "")
