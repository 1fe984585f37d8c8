"""configs/cluster/gpu-example.yaml: the sbatch script a GPU site's dry run writes, pinned by a golden file.

No SLURM needed: ``sinfo`` is answered by a stand-in listing the GPU partition the example
names, so the site checks run against it and submitit only renders the script.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fxdist.errors import ClusterError
from fxdist.slurm import submit as submit_module
from fxdist.slurm.submit import Partition, load_cluster_config, submit
from tests.cluster.test_templates import _normalise

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "configs" / "cluster" / "gpu-example.yaml"
GOLDEN = Path(__file__).parent / "golden" / "submit-gpu-example.sbatch"


@pytest.fixture
def gpu_partition(monkeypatch):
    """A cluster with a default CPU partition and a 'gpu' one: 4 nodes of 64 CPUs and 8 GPUs."""
    parts = {"cpu": Partition("cpu", True, 8, 64, 0), "gpu": Partition("gpu", False, 4, 64, 8)}
    monkeypatch.setattr(submit_module.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(submit_module, "partitions", lambda: parts)
    return parts


def test_gpu_site_dry_run_script_matches_golden_file(gpu_partition, tiny_shards, tmp_path):
    """`fxdist submit configs/sweep/gpu-packing.yaml --cluster configs/cluster/gpu-example.yaml --dry-run`.
    Update the golden file on purpose with FXDIST_UPDATE_GOLDEN=1."""
    result = submit(REPO / "configs/sweep/gpu-packing.yaml", SITE, {"overrides.data.shards": str(tiny_shards)},
                    dry_run=True, storage=str(tmp_path / "sweeps"))
    got = _normalise(result.script, tmp_path / "sweeps")
    if os.environ.get("FXDIST_UPDATE_GOLDEN"):
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text()
    assert "#SBATCH --gpus-per-node=4" in got and "CUDA_VISIBLE_DEVICES" in got


def test_gpu_site_is_refused_where_the_partition_has_fewer_gpus(gpu_partition, monkeypatch):
    gpu_partition["gpu"].gpus = 2
    with pytest.raises(ClusterError, match="gpus_per_node 4 but partition 'gpu' has at most 2 per node"):
        submit_module.check_cluster(load_cluster_config(SITE), source=str(SITE))


def test_ray_takes_its_gpu_ids_from_cuda_visible_devices(monkeypatch):
    """What the site's comment relies on, without a GPU: a Ray node started under SLURM's
    CUDA_VISIBLE_DEVICES=3,5 hands out GPUs 3 and 5, and fractions of one share its id."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from fxdist.tune.run import init_local_ray

    init_local_ray(2, num_gpus=2, object_store_memory=100 * 1024 * 1024, log_to_driver=False)
    try:
        @ray.remote(num_gpus=1, num_cpus=0)
        def whole():
            return os.environ.get("CUDA_VISIBLE_DEVICES")

        @ray.remote(num_gpus=0.25, num_cpus=0)
        def quarter():
            return os.environ.get("CUDA_VISIBLE_DEVICES")

        assert set(ray.get([whole.remote(), whole.remote()])) <= {"3", "5"}
        assert set(ray.get([quarter.remote() for _ in range(4)])) <= {"3", "5"}
    finally:
        ray.shutdown()
