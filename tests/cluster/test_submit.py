"""`fxdist submit` on the real local SLURM cluster (fxdist/slurm/submit.py, fxdist/cli/submit.py).

Nothing is mocked: sbatch/squeue/scontrol/scancel of a 3-node slurm-wlm cluster in
namespaces, submitit, Ray started inside the job, the tiny lstm sweep. Every wait is a
bounded poll of ``scontrol show job -o ID``. No accounting here, so submitit's job state
is UNKNOWN; the tests read SLURM's state from scontrol and the results from storage.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
from pathlib import Path

import pytest

from fxdist.cli import main
from fxdist.errors import ClusterError, ConfigError
from fxdist.slurm.submit import jobs, submit
from fxdist.tune import status
from tests.cluster.slurm_jobs import diagnosis, poll_job, wait_state, worker_host

REPO = Path(__file__).resolve().parents[2]
SWEEP = str(REPO / "configs/sweep/tiny.yaml")
CLUSTER = str(REPO / "configs/cluster/local.yaml")
pytestmark = pytest.mark.slow


def _submit_cli(capsys, *args: str) -> dict[str, str]:
    """Run `fxdist submit` in-process; its printed job/experiment/logs lines as a dict."""
    assert main(["submit", SWEEP, "--cluster", CLUSTER, *args]) == 0
    out = capsys.readouterr().out
    return dict(re.findall(r"^(job|experiment|logs): (\S+)$", out, re.MULTILINE))


def _fxdist_jobs() -> set[str]:
    return {j.job_id for j in jobs()}


def test_dry_run_prints_the_sbatch_script_and_submits_nothing(local_slurm, tiny_shards, tmp_path, capsys):
    before = _fxdist_jobs()
    assert main(["submit", SWEEP, "--cluster", CLUSTER, "--dry-run", "--storage", str(tmp_path / "sweeps"),
                 "--shards", str(tiny_shards)]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#!/bin/bash")
    for line in ("#SBATCH --partition=debug", "#SBATCH --time=30", "#SBATCH --job-name=fxdist-tiny",
                 "#SBATCH --cpus-per-task=1", "#SBATCH --nodes=3",
                 "#SBATCH --ntasks-per-node=1", "#SBATCH --signal=USR2@"):
        assert line in script, f"{line!r} missing from:\n{script}"
    assert f"{tmp_path / 'sweeps' / 'tiny' / 'slurm'}/%j" in script
    assert "submitit.core._submit" in script
    assert _fxdist_jobs() == before
    assert not (tmp_path / "sweeps" / "tiny").exists()


@pytest.mark.parametrize("extra, error, words", [
    ("partitoin: debug\n", ConfigError, ["partitoin", "partition", "cpus_per_node"]),
    ("gpus_per_node: 1\n", ClusterError, ["gpus_per_node 1", "'debug'", "no GPUs"]),
    ("partition: gpu\n", ClusterError, ["'gpu' does not exist", "debug"]),
    ("cpus_per_node: 8\n", ClusterError, ["cpus_per_node 8", "at most 2"]),
])
def test_bad_cluster_yaml_is_refused_before_submitting(local_slurm, tiny_shards, tmp_path, extra, error, words):
    site = tmp_path / "site.yaml"
    key = extra.split(":")[0]
    lines = [line for line in Path(CLUSTER).read_text().splitlines() if not line.startswith(f"{key}:")]
    site.write_text("\n".join(lines) + "\n" + extra)
    before = _fxdist_jobs()
    with pytest.raises(error) as info:
        submit(SWEEP, site, {"overrides.data.shards": str(tiny_shards)}, storage=str(tmp_path / "sweeps"))
    for word in words:
        assert word in str(info.value)
    assert "site.yaml" in str(info.value)
    assert _fxdist_jobs() == before
    assert not (tmp_path / "sweeps" / "tiny").exists()


def test_submit_runs_the_sweep_to_the_end(local_slurm, tiny_shards, tmp_path, capsys):
    printed = _submit_cli(capsys, "--storage", str(tmp_path / "sweeps"), "--shards", str(tiny_shards))
    job_id, exp, logs = printed["job"], Path(printed["experiment"]), Path(printed["logs"])
    assert exp == tmp_path / "sweeps" / "tiny" and logs == exp / "slurm" / job_id
    assert main(["jobs"]) == 0
    assert re.search(rf"^{job_id}\s+fxdist-tiny\s+(PENDING|RUNNING|COMPLETING|COMPLETED)", capsys.readouterr().out, re.MULTILINE)
    state = wait_state(job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, 150, logs)
    assert state == "COMPLETED", diagnosis(job_id, logs)
    rows = status(exp)
    assert len(rows) == 3 and {r.state for r in rows} == {"TERMINATED"}
    assert {r.step for r in rows} == {20}
    assert all(re.fullmatch(r"node\d", r.hostname or "") for r in rows)
    assert len({r.hostname for r in rows}) >= 2, f"all trials on one node: {[r.hostname for r in rows]}"
    with open(logs / f"{job_id}_0_result.pkl", "rb") as f:
        kind, summary = pickle.load(f)
    assert kind == "success"
    assert summary["resumed"] is False and summary["errors"] == 0
    assert summary["trials"] == {r.trial_id: "TERMINATED" for r in rows}
    assert summary["host"] == "node1" and len(summary["ray_nodes"]) == 3  # the head on the first node, 2 workers
    for task in (1, 2):  # one Ray worker per other node, each gone once the driver was done
        with open(logs / f"{job_id}_{task}_result.pkl", "rb") as f:
            kind, worker = pickle.load(f)
        assert kind == "success" and worker["role"] == "worker" and worker["ended"] == "done"
    assert {worker_host(logs, t) for t in (0, 1, 2)} == {"node1", "node2", "node3"}


def test_requeued_job_resumes_the_same_experiment(local_slurm, tiny_shards, tmp_path, capsys):
    """One trial at a time; requeue once the first is TERMINATED in the experiment state.

    The requeued job (same id, SLURM_RESTART_COUNT=1) finds tuner.pkl and resumes: the
    finished trial is not started again, the others finish.
    """
    printed = _submit_cli(capsys, "--storage", str(tmp_path / "sweeps"), "--shards", str(tiny_shards),
                          "--set", "max_concurrent_trials=1", "--set", "overrides.steps=60")
    job_id, exp, logs = printed["job"], Path(printed["experiment"]), Path(printed["logs"])

    def one_finished():
        try:
            rows = status(exp)
        except ClusterError:  # no experiment state yet
            return None
        done = [r.trial_id for r in rows if r.state == "TERMINATED"]
        return done if 0 < len(done) < 3 else None

    finished = poll_job("a first trial TERMINATED", one_finished, 150, job_id, logs, interval=1.0)
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
    poll_job("requeued", lambda: "Restarts=1" in subprocess.run(["scontrol", "show", "job", "-o", job_id],
                                                               capture_output=True, text=True, timeout=30, check=False).stdout, 30, job_id, logs)
    state = wait_state(job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, 150, logs)
    assert state == "COMPLETED", diagnosis(job_id, logs)
    rows = status(exp)
    assert len(rows) == 3 and {r.state for r in rows} == {"TERMINATED"}, diagnosis(job_id, logs)
    assert {r.step for r in rows} == {60}
    for trial_id in finished:
        starts = (exp / trial_id / "run" / "starts.jsonl").read_text().splitlines()
        assert len(starts) == 1, f"finished trial {trial_id} was started again: {starts}"
    with open(logs / f"{job_id}_0_result.pkl", "rb") as f:
        kind, summary = pickle.load(f)
    assert kind == "success"
    assert summary["resumed"] is True and summary["restart_count"] == 1
    assert set(summary["trials"]) == {r.trial_id for r in rows}
    assert json.loads((exp / "fxdist-sweep.json").read_text())["sweep"]["name"] == "tiny"


def test_cancel_stops_a_running_job(local_slurm, tiny_shards, tmp_path, capsys):
    printed = _submit_cli(capsys, "--storage", str(tmp_path / "sweeps"), "--shards", str(tiny_shards),
                          "--set", "overrides.steps=100000")
    job_id, logs = printed["job"], Path(printed["logs"])
    wait_state(job_id, {"RUNNING"}, 60, logs)
    assert main(["cancel", job_id]) == 0
    assert f"cancelled {job_id}" in capsys.readouterr().out
    assert wait_state(job_id, {"CANCELLED", "COMPLETED", "FAILED"}, 60, logs) == "CANCELLED"
    assert job_id not in _fxdist_jobs()
    assert main(["cancel", "999999"]) == 2
    assert "999999" in capsys.readouterr().err


def test_preempted_job_checkpoints_requeues_itself_and_resumes(local_slurm, tiny_shards, tmp_path, capsys):
    """USR2 as SLURM sends it before preemption/timeout (what submitit's ``_interrupt`` does):
    submitit calls ``SweepJob.checkpoint()``, requeues the job itself, and the restart resumes."""
    printed = _submit_cli(capsys, "--storage", str(tmp_path / "sweeps"), "--shards", str(tiny_shards),
                          "--set", "max_concurrent_trials=1", "--set", "overrides.steps=60")
    job_id, exp, logs = printed["job"], Path(printed["experiment"]), Path(printed["logs"])

    def trial_started():
        try:
            return any(r.step for r in status(exp))
        except ClusterError:
            return False

    poll_job("a trial reporting", trial_started, 150, job_id, logs, interval=1.0)
    subprocess.run(["scancel", "--signal", "USR2", job_id], check=True, timeout=30)
    state = wait_state(job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, 180, logs)
    assert state == "COMPLETED", diagnosis(job_id, logs)
    err = (logs / f"{job_id}_0_log.err").read_text()
    assert "Caught signal SIGUSR2" in err and "preempted" in err, err[-3000:]
    rows = status(exp)
    assert len(rows) == 3 and {r.state for r in rows} == {"TERMINATED"}
    with open(logs / f"{job_id}_0_result.pkl", "rb") as f:
        kind, summary = pickle.load(f)
    assert kind == "success" and summary["resumed"] is True and summary["restart_count"] == 1
