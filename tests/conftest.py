"""Shared fixtures: one local Ray per test session, and torch kept to the machine's cores."""

from __future__ import annotations

import os

import pytest

# Tests must never reach a model hub; everything they load is built or shipped by the project.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")


@pytest.fixture(scope="session")
def ray_session():
    """Start Ray once for the whole session (starting it costs seconds)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=max(2, os.cpu_count() or 2),
            include_dashboard=False,
            object_store_memory=512 * 1024 * 1024,
            log_to_driver=False,
        )
    yield ray
    ray.shutdown()
