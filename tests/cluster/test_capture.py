"""`fxdist capture --cluster`: the candidates' sweep as one job on the real 3-node local SLURM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fxdist.checkpoint import load_checkpoint
from fxdist.cli import main
from tests.datasets import recorded_pairs

REPO = Path(__file__).resolve().parents[2]
CLUSTER = str(REPO / "configs/cluster/local.yaml")
pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_capture_sweeps_its_candidates_as_a_slurm_job(local_slurm, tmp_path, capsys):
    pairs = recorded_pairs(tmp_path)
    out = tmp_path / "cap"
    code = main(["capture", str(pairs), "--out", str(out), "--budget", "60", "--cluster", CLUSTER,
                 "--candidates", "lstm,wh"])
    printed = capsys.readouterr().out
    assert code == 0, printed[-3000:]
    assert "on 3 core(s)" in printed  # the allocation's CPUs: 3 nodes x 1
    result = json.loads((out / "capture.json").read_text())
    exp = out / "work" / "1" / "sweeps" / "capture"
    assert list((exp / "slurm").iterdir()), "no SLURM job folder"
    hosts = {json.loads(p.read_text()).get("worker_hostname") for p in exp.glob("*/checkpoint_*/metrics.json")}
    assert hosts and all(h and h.startswith("node") for h in hosts), hosts  # trained on the cluster's nodes
    assert result["chosen"] in ("lstm", "wh")
    assert load_checkpoint(out / "best.pt").model_config["family"] == result["chosen"]
