"""Fractional GPUs per trial (configs/sweep/gpu-packing.yaml): the resource request Ray gets.

No GPU needed: these check what fxdist asks Ray for, not what Ray does with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fxdist.tune.config import ResourcesConfig, load_sweep_config
from fxdist.tune.run import _trial_request

REPO = Path(__file__).resolve().parents[2]
PACKING = REPO / "configs" / "sweep" / "gpu-packing.yaml"


def test_gpu_packing_sweep_asks_a_quarter_gpu_per_trial(tiny_shards):
    cfg = load_sweep_config(PACKING, {"overrides.data.shards": str(tiny_shards)})
    assert cfg.resources == ResourcesConfig(workers=1, cpus_per_worker=1.0, gpus_per_worker=0.25)
    assert _trial_request(cfg.resources) == {"cpu": 1.0, "gpu": 0.25}


@pytest.mark.parametrize("share", [1.0, 0.5, 0.25, 0.125])
def test_fractional_gpu_reaches_tune_as_one_bundle(tiny_shards, share):
    """The request as Tune schedules it: one bundle {CPU: 1, GPU: share} per trial."""
    from ray import tune

    cfg = load_sweep_config(PACKING, {"overrides.data.shards": str(tiny_shards), "resources.gpus_per_worker": share})
    trainable = tune.with_resources(lambda config: None, _trial_request(cfg.resources))
    assert trainable._resources.bundles == [{"CPU": 1.0, "GPU": share}]


def test_fractional_gpu_workers_of_a_multi_worker_trial():
    """workers > 1: Ray Train's ScalingConfig takes the same per-worker share (fxdist.tune.trial)."""
    import ray.train

    res = ResourcesConfig(workers=2, cpus_per_worker=1, gpus_per_worker=0.125)
    per_worker = {"CPU": res.cpus_per_worker, "GPU": res.gpus_per_worker}
    scaling = ray.train.ScalingConfig(num_workers=res.workers, use_gpu=True, resources_per_worker=per_worker)
    assert scaling.total_resources == {"CPU": 2.0, "GPU": 0.25}
    assert _trial_request(res) == {"cpu": 0, "memory": 1}  # the driver holds no GPU


def test_negative_gpu_share_is_refused():
    with pytest.raises(ValueError, match="gpus_per_worker must be >= 0"):
        ResourcesConfig(gpus_per_worker=-0.25)
