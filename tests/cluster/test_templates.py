"""The sbatch scripts users see: `fxdist submit --dry-run` pinned by a golden file, and
jobs/ray-sweep.sbatch submitted with plain sbatch to the real 3-node local SLURM."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fxdist.slurm.submit import submit
from fxdist.tune import status
from tests.cluster.slurm_jobs import diagnosis, wait_state

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
pytestmark = pytest.mark.slow


def _normalise(script: str, storage: Path) -> str:
    """Paths that differ per machine and run become placeholders."""
    script = script.replace(str(storage), "<STORAGE>")
    return re.sub(r"\S*/python3?(\.\d+)? -u -m submitit", "<PYTHON> -u -m submitit", script)


def test_submit_dry_run_script_matches_golden_file(local_slurm, tiny_shards, tmp_path):
    """What `fxdist submit configs/sweep/tiny.yaml --cluster configs/cluster/local.yaml --dry-run`
    writes. A change here is a change users see: update the golden file on purpose
    (FXDIST_UPDATE_GOLDEN=1)."""
    result = submit(REPO / "configs/sweep/tiny.yaml", REPO / "configs/cluster/local.yaml",
                    {"overrides.data.shards": str(tiny_shards)}, dry_run=True, storage=str(tmp_path / "sweeps"))
    got = _normalise(result.script, tmp_path / "sweeps")
    golden = GOLDEN / "submit-local-tiny.sbatch"
    if os.environ.get("FXDIST_UPDATE_GOLDEN"):
        golden.write_text(got)
    assert got == golden.read_text()


def test_ray_sweep_template_runs_a_sweep_over_three_nodes(local_slurm, tiny_shards, tmp_path):
    """jobs/ray-sweep.sbatch as its header says to run it (1 CPU per node, as the local site)."""
    storage = tmp_path / "sweeps"
    env = {**os.environ, "SWEEP": str(REPO / "configs/sweep/tiny.yaml"), "STORAGE": str(storage),
           "FXDIST": str(Path(sys.executable).parent / "fxdist"), "SWEEP_ARGS": f"--shards {tiny_shards}"}
    out = subprocess.run(["sbatch", "--parsable", "--cpus-per-task=1", "--export=ALL", str(REPO / "jobs/ray-sweep.sbatch")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30, check=True).stdout
    job_id = out.strip().split(";")[0]
    log = tmp_path / f"fxdist-sweep-{job_id}.out"
    state = wait_state(job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, 240)
    assert state == "COMPLETED", diagnosis(job_id) + (log.read_text()[-4000:] if log.exists() else "")
    text = log.read_text()
    assert re.search(r"Ray cluster at [\d.]+:\d+ on node1 node2 node3", text), text[-3000:]
    rows = status(storage / "tiny")
    assert len(rows) == 3 and {r.state for r in rows} == {"TERMINATED"}
    assert len({r.hostname for r in rows}) >= 2, [r.hostname for r in rows]
    assert text.count("stopped (done)") == 2  # both workers left when the driver was done
