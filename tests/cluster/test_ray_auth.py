"""Ray inside a SLURM job listens on the cluster network with token authentication
(fxdist/slurm/ray_node.py): a per-run token in the rendezvous folder, mode 600; a client
without it, or with another, is refused; the sweep itself runs; the dashboard is off.

Real 3-node local SLURM (the ``local_slurm`` fixture); the clients run in this machine's
root network namespace, which reaches the nodes over the cluster bridge as any other host
on the cluster network would.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fxdist.errors import ClusterError
from fxdist.slurm import ray_node
from fxdist.slurm.submit import submit
from fxdist.tune import status
from tests.cluster.slurm_jobs import diagnosis, job_state, poll_job, wait_state

REPO = Path(__file__).resolve().parents[2]
SWEEP = REPO / "configs/sweep/tiny.yaml"
CLUSTER = REPO / "configs/cluster/local.yaml"
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"}
pytestmark = pytest.mark.slow
STEPS = 10000  # long enough (~2 min on an idle machine) for the clients to be refused while the sweep runs

# Connects, prints the node count; any failure is a non-zero exit with Ray's message on stderr.
_CLIENT = "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); print('nodes', len(ray.nodes()))"


def _client(address: str, **auth: str) -> subprocess.Popen:
    """``ray.init(address=...)`` in a fresh process whose only Ray auth settings are ``auth``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = "/nonexistent"  # no ~/.ray/auth_token to fall back on
    return subprocess.Popen([sys.executable, "-c", _CLIENT, address], env={**env, **auth},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _outcome(proc: subprocess.Popen, timeout: float = 120) -> tuple[int | None, str, str]:
    """(exit code, or None if still trying after ``timeout`` s; stdout; stderr). A refused client
    retries, refused each time, until Ray's connect timeout (~20 s)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return None, out, err
    return proc.returncode, out, err


def _status_or_none(exp: str):
    try:
        return status(exp)
    except ClusterError:
        return None


def test_job_ray_refuses_clients_without_its_token_and_the_sweep_runs(local_slurm, tiny_shards, tmp_path):
    run = submit(SWEEP, CLUSTER, {"overrides.data.shards": str(tiny_shards), "overrides.steps": STEPS,
                                  "overrides.val_every": 200, "overrides.checkpoint_every": 200},
                 storage=str(tmp_path / "sweeps"))
    logs = Path(run.logs_dir)
    rdv = ray_node.rendezvous_dir(run.experiment, run.job_id, 0)
    poll_job("a trial reporting", lambda: any(r.step for r in _status_or_none(run.experiment) or []), 180,
             run.job_id, logs, interval=1.0)

    token = rdv / ray_node.TOKEN_FILE
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert len(token.read_text()) == 64  # 256 random bits, hex
    address = json.loads((rdv / ray_node.HEAD_FILE).read_text())["address"]
    assert not address.startswith("127."), address  # on the cluster network: reachable, so it must be shut

    # The three at once: a refused client takes Ray's whole connect timeout to give up.
    clients = {name: _client(address, **auth) for name, auth in (
        ("no token", {}), ("wrong token", {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}),
        ("the job's token", ray_node.auth_env(rdv)))}
    outcomes = {name: _outcome(proc) for name, proc in clients.items()}
    assert job_state(run.job_id) == "RUNNING", diagnosis(run.job_id, logs)  # refused by a live cluster
    for name in ("no token", "wrong token"):
        code, out, err = outcomes[name]
        assert code != 0 and "nodes" not in out, (name, code, out)
        assert "InvalidAuthToken" in err, (name, code, err[:3000])
    code, out, err = outcomes["the job's token"]
    assert code == 0 and "nodes 3" in out, err[-2000:]

    assert wait_state(run.job_id, DONE, 300, logs) == "COMPLETED", diagnosis(run.job_id, logs)
    rows = status(run.experiment)
    assert len(rows) == 3 and {r.state for r in rows} == {"TERMINATED"} and {r.step for r in rows} == {STEPS}
    assert "http server disabled" in (rdv / "logs" / "node1" / "dashboard.log").read_text()  # no dashboard port

