"""fxdist/slurm/ray_node.py without SLURM: the per-run token, and Ray's daemons ignoring the
warning signal. The same on the real 3-node cluster: tests/cluster/test_ray_auth.py and
tests/cluster/test_submit.py (preemption)."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fxdist.errors import ClusterError
from fxdist.slurm import ray_node


def test_token_is_fresh_per_run_and_readable_only_by_the_user(tmp_path):
    path = ray_node.write_token(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text()) == 64
    assert ray_node.auth_env(tmp_path) == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}
    first = path.read_text()
    assert ray_node.write_token(tmp_path).read_text() != first
    assert [p.name for p in tmp_path.iterdir()] == [ray_node.TOKEN_FILE]  # no temp file left


def test_token_others_may_read_is_refused(tmp_path):
    path = ray_node.write_token(tmp_path)
    path.chmod(0o644)
    with pytest.raises(ClusterError, match="644, readable by others"):
        ray_node.auth_env(tmp_path)
    path.unlink()
    with pytest.raises(ClusterError, match="no Ray token"):
        ray_node.auth_env(tmp_path)


def test_start_args_run_ray_start_with_warning_signals_ignored():
    args = ray_node.start_args(head=True, ip="127.0.0.1", job_id="7", num_cpus=1, num_gpus=0, temp_dir="/tmp/x")
    sep = args.index("--")
    assert args[sep + 1:sep + 5] == [sys.executable, "-m", "ray.scripts.scripts", "start"]
    assert str(int(signal.SIGUSR2)) in args[:sep]
    assert "--include-dashboard=false" in args


def test_a_grandchild_of_the_wrapper_survives_usr2(tmp_path):
    """The disposition is inherited across fork and exec: what ``ray start`` spawns (raylet,
    GCS, workers) ignores USR2 too. A plain child dies of it."""
    pid_file = tmp_path / "grandchild"
    child = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
             f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    wrapped = subprocess.Popen([*ray_node._ignoring_warning_signals(), sys.executable, "-c", child])
    plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 20
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline, "grandchild not started"
            time.sleep(0.05)
        grandchild = int(pid_file.read_text())
        for pid in (wrapped.pid, grandchild, plain.pid):
            os.kill(pid, signal.SIGUSR2)
        assert plain.wait(10) == -signal.SIGUSR2
        time.sleep(0.5)
        assert wrapped.poll() is None
        os.kill(grandchild, 0)  # still there
    finally:
        for proc in (wrapped, plain):
            proc.kill()
            proc.wait(10)
        if pid_file.exists() and pid_file.read_text():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


@pytest.mark.slow
def test_local_head_survives_usr2_and_refuses_a_client_without_the_token(tmp_path):
    """A real head on this machine: USR2 to every Ray process leaves them all running; a client
    without the token is refused, one with it connects."""
    rdv = tmp_path / "rdv"
    node = ray_node.start_head(rdv, job_id=str(os.getpid()), restart=0, num_cpus=1)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token to fall back on
        code = "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); print('nodes', len(ray.nodes()))"
        refused = subprocess.run([sys.executable, "-c", code, node.address], env=env, capture_output=True, text=True, timeout=90)
        assert refused.returncode != 0 and "InvalidAuthToken" in refused.stderr, refused.stderr[-2000:]
        admitted = subprocess.run([sys.executable, "-c", code, node.address], env={**env, **ray_node.auth_env(rdv)},
                                  capture_output=True, text=True, timeout=90)
        assert admitted.returncode == 0 and "nodes 1" in admitted.stdout, admitted.stderr[-2000:]

        pids = subprocess.run(["pgrep", "-g", str(node.process.pid)], capture_output=True, text=True).stdout.split()
        assert len(pids) >= 3  # ray start, gcs_server, raylet, ...
        for pid in pids:
            os.kill(int(pid), signal.SIGUSR2)
        time.sleep(3)
        assert node.alive()
        assert [p for p in pids if not Path(f"/proc/{p}").exists()] == []
    finally:
        node.stop()
        node.keep_logs(rdv / "logs")


def test_use_token_takes_effect_after_ray_was_imported(tmp_path):
    """Ray caches RAY_AUTH_MODE at import; a SLURM task has imported Ray (unpickling the job) before
    the head writes the token."""
    code = ("import ray, sys; from pathlib import Path; from fxdist.slurm import ray_node;"
            "from ray._raylet import get_authentication_mode, AuthenticationMode;"
            "rdv = Path(sys.argv[1]); ray_node.write_token(rdv); ray_node.use_token(rdv);"
            "print(get_authentication_mode() == AuthenticationMode.TOKEN)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr[-2000:]


def test_sigterm_to_the_task_kills_its_ray_at_once_then_runs_the_previous_handler(tmp_path):
    """SLURM's SIGTERM (requeue, cancel): Ray would drain for 30 s and outlive the step; the
    task kills its Ray process group at once, then submitit's handler (here a stand-in) runs."""
    code = (
        "import os, signal, subprocess, sys, time; from pathlib import Path; from fxdist.slurm import ray_node\n"
        "seen = []\n"
        "signal.signal(signal.SIGTERM, lambda *a: seen.append('previous'))\n"
        "proc = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
        "ray_node._track(ray_node.RayNode(proc, 'x:1', sys.argv[1], Path(sys.argv[1]) / 'log'))\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "print(proc.wait(10), seen)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == f"{-signal.SIGKILL} ['previous']", out.stderr[-2000:]
