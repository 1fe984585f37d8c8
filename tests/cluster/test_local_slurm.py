"""The local multi-node SLURM cluster: real slurmctld/slurmd/munged in namespaces.

Nothing is mocked. Waits are bounded polls of ``sinfo``/``scontrol`` (``sbatch --wait``
polls every ~10 s). The node-down test waits for SLURM's own detection (~15 s with
SlurmdTimeout=10).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.cluster.polling import poll

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _slurm(*args: str, env: dict | None = None, timeout: float = 60) -> str:
    proc = subprocess.run(list(args), check=False, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr}"
    return proc.stdout


def _job_field(job_id: str, field: str, env: dict | None = None) -> str:
    out = _slurm("scontrol", "show", "job", "-o", job_id, env=env)
    match = re.search(rf"\b{field}=(\S+)", out)
    assert match, f"no {field} in: {out}"
    return match.group(1)


def _diagnosis() -> str:
    """Queue and node states, for a failure message."""
    out = []
    for cmd in (["squeue", "-o", "%i %T %R %N"], ["sinfo", "-N", "-o", "%N %T %E"]):
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=30)
        out.append(proc.stdout + proc.stderr)
    return "\n".join(out)


def _poll(what: str, check, timeout: float, interval: float = 0.2):
    return poll(what, check, timeout, _diagnosis, interval)


def _leftovers(info: dict) -> list[str]:
    """Anything of a torn-down run still on the machine (netns, links, daemons, state dir)."""
    left = []
    netns = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout
    left += [line.split()[0] for line in netns.splitlines() if line.startswith(info["run_id"])]
    left += [link for link in os.listdir("/sys/class/net") if link.startswith(info["run_id"])]
    for pattern in (info["state_dir"], info["run_id"]):
        pgrep = subprocess.run(["pgrep", "-af", pattern], check=False, capture_output=True, text=True).stdout
        left += [f"process: {line}" for line in pgrep.splitlines()]
    left += [f"dir: {d}" for d in (info["state_dir"], info["munge_dir"]) if Path(d).exists()]
    return left


def test_cluster_up_with_three_idle_nodes(local_slurm):
    assert local_slurm.nodes == ["node1", "node2", "node3"]
    assert local_slurm.node_states() == {"node1": "idle", "node2": "idle", "node3": "idle"}
    info = json.loads((local_slurm.state_dir / "cluster.json").read_text())
    assert info["slurm_conf"] == os.environ["SLURM_CONF"] == str(local_slurm.slurm_conf)
    ips = [local_slurm.node_ip(n) for n in ["ctl", *local_slurm.nodes]]
    assert len(set(ips)) == 4 and all(ip.startswith(info["subnet"].rsplit(".", 1)[0] + ".") for ip in ips)
    assert len(info["bridge"]) <= 15 and Path("/sys/class/net", info["bridge"]).exists()
    out = _slurm("sinfo", "-h", "-o", "%P %D %c")
    assert out.split() == ["debug*", "3", "2"]


def test_exec_in_node_sees_its_own_hostname_and_ip(local_slurm):
    proc = local_slurm.exec_in("node2", ["sh", "-c", "hostname; hostname -i; ip -4 -o addr show eth0"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "node2"
    assert lines[1] == local_slurm.node_ip("node2")
    assert f"{local_slurm.node_ip('node2')}/24" in lines[2]


def test_srun_runs_on_every_node(local_slurm):
    out = _slurm("srun", "-N3", "-n3", "hostname")
    assert sorted(out.split()) == ["node1", "node2", "node3"]


def test_sbatch_job_writes_its_output(local_slurm, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\n#SBATCH -N1 -n1 -o {tmp_path}/out-%j.txt\necho ran on $(hostname)\n")
    job_id = _slurm("sbatch", "--parsable", str(script)).strip().split(";")[0]
    def finished() -> str | None:
        state = _job_field(job_id, "JobState")
        return state if state not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING") else None

    assert _poll("job finished", finished, 30) == "COMPLETED"
    out = tmp_path / f"out-{job_id}.txt"
    text = _poll(f"{out} written", lambda: out.exists() and out.read_text(), 10)
    assert re.fullmatch(r"ran on node[123]\n", text)


def test_submitit_two_node_job_returns_one_result_per_node(local_slurm, tmp_path):
    """submitit polls sacct, which fails without accounting: it logs "Bypassing sacct
    error ... status may be inaccurate" and still returns results (from the result files)."""
    submitit = pytest.importorskip("submitit")

    def hostname_and_rank(x: int) -> tuple[str, str, int]:
        # Nested, so cloudpickle ships it by value: the job needn't import this test module.
        import os
        import socket

        return socket.gethostname(), os.environ["SLURM_PROCID"], x * 2

    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(slurm_partition="debug", nodes=2, tasks_per_node=1, timeout_min=5)
    job = executor.submit(hostname_and_rank, 21)
    results = job.results()
    assert len(results) == 2
    assert sorted(r[1] for r in results) == ["0", "1"]
    assert [r[2] for r in results] == [42, 42]
    hosts = {r[0] for r in results}
    assert len(hosts) == 2 and hosts <= {"node1", "node2", "node3"}


def test_requeue_restarts_a_running_job(local_slurm, tmp_path):
    marker = tmp_path / "marker"
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\n#SBATCH -N1 -n1 -o {tmp_path}/out-%j.txt\n"
                      f"echo \"start $(hostname) restart=${{SLURM_RESTART_COUNT:-0}}\" >> {marker}\nsleep 120\n")
    job_id = _slurm("sbatch", "--parsable", str(script)).strip()
    try:
        _poll("first start", lambda: marker.exists() and len(marker.read_text().splitlines()) == 1, 30)
        _slurm("scontrol", "requeue", job_id)
        # Restart waits cred_expire + 1 s (10 + 1) plus a scheduling pass (bf_interval=2).
        _poll("restart after requeue", lambda: len(marker.read_text().splitlines()) == 2, 40)
        assert marker.read_text().splitlines()[1].endswith("restart=1")
        assert _job_field(job_id, "Restarts") == "1"
    finally:
        subprocess.run(["scancel", job_id], check=False, capture_output=True, timeout=30)


def test_kill_node_makes_it_not_respond(local_slurm):
    """Kills node3 (and a job step on it), waits for SLURM to notice (not responding "*"
    or DOWN, ~15 s with SlurmdTimeout=10), then restarts node3 and waits for idle, so the
    shared cluster is whole again for later tests."""
    step = subprocess.Popen(["srun", "-N1", "-n1", "-w", "node3", "sleep", "300"], env=os.environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _poll("step running on node3", lambda: local_slurm.exec_in("node3", ["pgrep", "-x", "sleep"]).returncode == 0, 20)
        killed = local_slurm.kill_node("node3")
        assert len(killed) >= 3  # unshare, tini, slurmd (+ slurmstepd, sleep)
        netns = local_slurm.netns("node3")
        assert subprocess.run(["ip", "netns", "pids", netns], check=False, capture_output=True, text=True).stdout.split() == []

        def noticed() -> str | None:
            state = local_slurm.node_states().get("node3", "")
            return state if state.endswith("*") or state.startswith("down") else None

        _poll("node3 not responding in sinfo", noticed, 45, interval=0.5)
        assert local_slurm.node_states()["node1"] in ("idle", "allocated", "mixed")
    finally:
        step.kill()
        step.wait(timeout=10)
    local_slurm.restart_node("node3")
    local_slurm.wait_idle(timeout=30)
    assert _slurm("srun", "-N1", "-w", "node3", "hostname").strip() == "node3"


def test_two_clusters_coexist_and_down_leaves_nothing(local_slurm, local_slurm_module, tmp_path):
    """One cluster via the CLI, one via the API, both 1-node, both up beside the session's."""
    state_a = tmp_path / "a"
    cli = [str(REPO / "cluster" / "local-slurm")]
    b = local_slurm_module.LocalSlurm(nodes=1, state_dir=tmp_path / "b")
    try:
        up = subprocess.run([*cli, "up", "--nodes", "1", "--state-dir", str(state_a)], check=False,
                            capture_output=True, text=True, timeout=120)
        assert up.returncode == 0, up.stderr
        assert up.stdout == f"export SLURM_CONF={state_a}/slurm.conf\n"
        b.up()
        info_a = json.loads((state_a / "cluster.json").read_text())
        info_b = dict(b.info)
        assert info_a["bridge"] != info_b["bridge"] and info_a["subnet"] != info_b["subnet"]
        env_a = {"SLURM_CONF": info_a["slurm_conf"]}
        for env in (env_a, b.env()):
            assert _slurm("srun", "-N1", "hostname", env=env).strip() == "node1"
        status = subprocess.run([*cli, "status", "--state-dir", str(state_a)], check=False, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "node1 idle" in status.stdout, status.stdout + status.stderr

        down = subprocess.run([*cli, "down", "--state-dir", str(state_a)], check=False, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr
        assert _leftovers(info_a) == []
        assert _slurm("srun", "-N1", "hostname", env=b.env()).strip() == "node1"  # B unharmed
        again = subprocess.run([*cli, "down", "--state-dir", str(state_a)], check=False, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr

        b.down()
        b.down()  # idempotent
        assert _leftovers(info_b) == []
    finally:
        b.down()
        subprocess.run([*cli, "down", "--state-dir", str(state_a)], check=False, capture_output=True, timeout=120)
    assert sorted(_slurm("srun", "-N3", "hostname").split()) == ["node1", "node2", "node3"]  # session cluster unharmed
