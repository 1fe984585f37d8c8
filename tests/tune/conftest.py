"""A small embedded Ray for each test module's in-process sweeps."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def ray_session():
    """One 2-CPU local Ray for the module (started before its first sweep, stopped after its last)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    from fxdist.tune.run import init_local_ray

    init_local_ray(2, object_store_memory=200 * 1024 * 1024, log_to_driver=False)
    yield ray
    ray.shutdown()
