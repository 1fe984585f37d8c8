"""fxdist/slurm/submit.py without SLURM: the site schema and the sinfo GRES parsing.

The SLURM side (submit, requeue, cancel against sbatch/squeue) is in tests/cluster/test_submit.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fxdist.errors import ConfigError
from fxdist.slurm.submit import ClusterConfig, _gres_gpus, load_cluster_config

REPO = Path(__file__).resolve().parents[2]


def test_shipped_local_site_loads():
    cfg = load_cluster_config(REPO / "configs/cluster/local.yaml")
    assert cfg == ClusterConfig(partition="debug", nodes=3, cpus_per_node=1, gpus_per_node=0, mem_gb=1,
                                time_min=30, max_timeouts=3, account=None, qos=None, sbatch_extra={}, setup=[],
                                python=None, survive_node_failure=True)


@pytest.mark.parametrize("text, words", [
    ("partiton: debug\n", ["partiton", "partition", "sbatch_extra"]),
    ("nodes: 0\n", ["nodes must be >= 1", "0"]),
    ("max_timeouts: -1\n", ["max_timeouts", "-1"]),
    ("time_min: 0\n", ["time_min", "0"]),
    ("gpus_per_node: two\n", ["gpus_per_node"]),
    ("setup: echo hi\n", ["setup"]),
])
def test_bad_site_yaml_names_the_problem(tmp_path, text, words):
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_cluster_config(path)
    assert "site.yaml" in str(info.value)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("gres, gpus", [
    ("(null)", 0), ("gpu:4", 4), ("gpu:a100:8(S:0-1)", 8), ("shard:8,gpu:h100:2", 2), ("gpu", 1), ("mps:100", 0),
])
def test_gres_gpus(gres, gpus):
    assert _gres_gpus(gres) == gpus
