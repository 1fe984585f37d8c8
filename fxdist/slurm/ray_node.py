"""A Ray cluster inside a SLURM allocation: the head on the job's first node, one worker per other node.

Used by ``fxdist.slurm.submit.SweepJob`` (one submitit task per node) and by ``fxdist ray-node``
(``jobs/ray-sweep.sbatch``). The nodes meet through a rendezvous folder on the shared
filesystem, one per (job, restart), so a requeued job never reads the previous run's
address::

    <experiment>/slurm/<job id>/ray-<restart>/ray-token   this run's Ray token, mode 0600, written by the head
    <experiment>/slurm/<job id>/ray-<restart>/head.json   written by the head once it listens
    <experiment>/slurm/<job id>/ray-<restart>/done        written by the driver when it is finished

Ray listens on the cluster network here, so it runs with token authentication
(``RAY_AUTH_MODE=token``): the head draws a random token per job run and every node and the
driver read it from ``ray-token`` (``RAY_AUTH_TOKEN_PATH``); a client without it is refused.
The dashboard is off. Ray's daemons start with SIGUSR2 ignored (inherited across exec):
SLURM sends that warning signal before a time limit or preemption to every process of the
step, and only submitit's handler in the task should act on it.

Two jobs may share nodes (``--cpus-per-task`` below a node's size), so nothing here uses a
fixed port: every port Ray opens on a node is picked free on that node, and worker
processes get a port range derived from the job id. Ray's temp dir is per (job, restart,
node) in the node's ``/tmp``: Ray's Unix socket paths must stay under ~100 characters and
should not live on a network filesystem. Its logs are copied to the rendezvous folder when
the node stops. Nothing here calls ``ray stop``: it stops every Ray process the caller can
see, other jobs' included; each node stops its own ``ray start --block`` process group.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fxdist.errors import ClusterError
from fxdist.fsutil import write_text_atomic

HEAD_FILE = "head.json"
DONE_FILE = "done"
TOKEN_FILE = "ray-token"
# Signals SLURM sends the whole step as a warning (submitit's --signal=USR2@N); Ray's daemons ignore them.
WARNING_SIGNALS = (signal.SIGUSR2,)
WORKER_PORTS = 200  # ports per job for Ray's worker processes
_WORKER_PORT_BASE = 20000
_WORKER_PORT_SLOTS = 150  # 20000-49999


def node_ip() -> str:
    """This node's address as its hosts file / DNS gives it (Ray alone may pick 127.0.0.1)."""
    host = socket.gethostname()
    try:
        ip = socket.gethostbyname(host)
    except OSError as exc:
        raise ClusterError(f"cannot resolve this node's hostname {host!r}: {exc}") from exc
    if ip.startswith("127."):
        # Debian maps the hostname to 127.0.1.1; another node cannot reach that.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outgoing interface
                ip = s.getsockname()[0]
            except OSError:
                pass
    return ip


def free_port(ip: str) -> int:
    """A TCP port nothing listens on at ``ip`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def worker_port_range(job_id: str) -> tuple[int, int]:
    """This job's ports for Ray worker processes: ``WORKER_PORTS`` ports chosen by the job id,
    so two jobs on one node (different ids) draw from different ranges."""
    digits = "".join(ch for ch in str(job_id) if ch.isdigit()) or "0"
    lo = _WORKER_PORT_BASE + (int(digits) % _WORKER_PORT_SLOTS) * WORKER_PORTS
    return lo, lo + WORKER_PORTS - 1


def rendezvous_dir(experiment: str | Path, job_id: str, restart: int | str) -> Path:
    return Path(experiment) / "slurm" / str(job_id) / f"ray-{restart}"


def write_token(rdv: Path) -> Path:
    """Draw this job run's Ray token (256 random bits) into ``rdv/ray-token``, readable only by
    the user (0600); written beside and renamed, so a reader never sees half a token."""
    path = Path(rdv).absolute() / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, secrets.token_hex(32).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def auth_env(rdv: Path) -> dict[str, str]:
    """The environment that makes Ray (``ray start``, ``ray.init``) use this job run's token.

    Refuses a token file that others may read or write: the token is the whole door."""
    path = Path(rdv).absolute() / TOKEN_FILE
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ClusterError(f"{path}: no Ray token ({exc.strerror}); the head writes it before head.json") from exc
    if mode & 0o077:
        raise ClusterError(f"{path}: Ray token is mode {mode & 0o777:o}, readable by others; it must be 600")
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}


def use_token(rdv: Path) -> None:
    """Point this process's Ray client at the job run's token (before ``ray.init``)."""
    os.environ.update(auth_env(rdv))
    os.environ.pop("RAY_AUTH_TOKEN", None)  # it would take precedence over the file
    if "ray._raylet" in sys.modules:
        # Ray reads RAY_AUTH_MODE into its config when it is imported and caches the token once
        # loaded (Ray 2.58): reread both, as Ray's own auth tests do.
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def temp_dir_for(job_id: str, restart: int | str) -> str:
    """Ray's temp dir on this node for this (job, restart): short, node-local, never reused."""
    return f"/tmp/fxdist-ray-{job_id}-{restart}-{socket.gethostname()}"


def start_args(*, head: bool, ip: str, job_id: str, num_cpus: int, num_gpus: int, temp_dir: str,
               address: str | None = None) -> list[str]:
    """The ``ray start`` command line for one node of the job (every port picked free on ``ip``)."""
    lo, hi = worker_port_range(job_id)
    args = [
        *_ignoring_warning_signals(), sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--disable-usage-stats",
        f"--node-ip-address={ip}", f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}", f"--temp-dir={temp_dir}",
        f"--node-manager-port={free_port(ip)}", f"--object-manager-port={free_port(ip)}",
        f"--dashboard-agent-listen-port={free_port(ip)}", f"--dashboard-agent-grpc-port={free_port(ip)}",
        f"--metrics-export-port={free_port(ip)}", f"--runtime-env-agent-port={free_port(ip)}",
        f"--min-worker-port={lo}", f"--max-worker-port={hi}",
    ]
    if head:
        args += ["--head", f"--port={free_port(ip)}", f"--ray-client-server-port={free_port(ip)}", "--include-dashboard=false"]
    else:
        if not address:
            raise ValueError("a worker needs the head's address")
        args.append(f"--address={address}")
    return args


# Run as ``python -c _EXEC_IGNORING <signal numbers> -- <command>``: ignore the signals, exec the command.
_EXEC_IGNORING = (
    "import os, signal, sys\n"
    "sep = sys.argv.index('--')\n"
    "for n in sys.argv[1:sep]: signal.signal(int(n), signal.SIG_IGN)\n"
    "os.execv(sys.argv[sep + 1], sys.argv[sep + 1:])\n"
)


def _ignoring_warning_signals() -> list[str]:
    """A prefix that starts a command with ``WARNING_SIGNALS`` ignored; the disposition is
    inherited across fork and exec by every process it starts (raylet, GCS, Ray workers)."""
    return [sys.executable, "-c", _EXEC_IGNORING, *(str(int(s)) for s in WARNING_SIGNALS), "--"]


@dataclass
class RayNode:
    """One ``ray start --block`` process (group) of this job on this node."""

    process: subprocess.Popen
    address: str  # the head's GCS address, ip:port
    temp_dir: str
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the group (``ray start --block`` stops its own processes), SIGKILL after ``timeout``."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        _signal_group(self.process.pid, signal.SIGKILL)  # anything of the group still left
        if self in _LIVE:
            _LIVE.remove(self)

    def keep_logs(self, dest: Path) -> None:
        """Copy Ray's logs of this node to ``dest`` (best effort), then remove the temp dir."""
        logs = Path(self.temp_dir) / "session_latest" / "logs"
        try:
            if logs.is_dir():
                shutil.copytree(logs, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.sock", "events"))
        except OSError as exc:
            print(f"fxdist: could not copy Ray logs {logs} -> {dest}: {exc}", file=sys.stderr, flush=True)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


# This process's running Ray nodes, SIGKILLed at once when SLURM ends the step (``_on_sigterm``).
_LIVE: list[RayNode] = []
_previous_sigterm = None


def _track(node: RayNode) -> RayNode:
    """Kill ``node``'s process group at once when this task gets SIGTERM.

    SLURM ends a step (requeue, cancel, time limit) with SIGTERM to its processes and SIGKILL
    after KillWait, but only to those it still tracks. Ray drains for up to 30 s on SIGTERM and
    its daemons can outlive the step: they would still run, and train, beside the requeued job.
    The previous handler (submitit's, which carries on) runs after."""
    global _previous_sigterm
    if not _LIVE and signal.getsignal(signal.SIGTERM) is not _on_sigterm:
        try:
            _previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread: the caller stops the node itself
            pass
    _LIVE.append(node)
    return node


def _on_sigterm(signum, frame) -> None:
    for node in list(_LIVE):
        _signal_group(node.process.pid, signal.SIGKILL)
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    elif previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _spawn(args: list[str], log_path: Path, rdv: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **auth_env(rdv)}
    env.pop("RAY_AUTH_TOKEN", None)
    with open(log_path, "ab") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)


def _wait_listening(ip: str, port: int, proc: subprocess.Popen, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"ray start --head exited with {proc.returncode} on {socket.gethostname()}; log {log_path}:\n{_tail(log_path)}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            if s.connect_ex((ip, port)) == 0:
                return
        time.sleep(0.2)
    raise ClusterError(f"the Ray head on {socket.gethostname()} did not listen on {ip}:{port} within {timeout:g} s; log {log_path}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_head(rdv: Path, *, job_id: str, restart: int | str, num_cpus: int, num_gpus: int = 0,
               timeout: float = 120.0) -> RayNode:
    """Start this job's Ray head on this node, with a fresh token, and publish its address in ``rdv/head.json``."""
    ip = node_ip()
    write_token(rdv)
    temp_dir = temp_dir_for(job_id, restart)
    args = start_args(head=True, ip=ip, job_id=job_id, num_cpus=num_cpus, num_gpus=num_gpus, temp_dir=temp_dir)
    port = int(next(a for a in args if a.startswith("--port=")).split("=", 1)[1])
    log_path = rdv / f"ray-start-{socket.gethostname()}.log"
    shutil.rmtree(temp_dir, ignore_errors=True)  # a dead earlier run's of this (job, restart)
    proc = _spawn(args, log_path, rdv)
    node = _track(RayNode(proc, f"{ip}:{port}", temp_dir, log_path))
    try:
        _wait_listening(ip, port, proc, timeout, log_path)
    except ClusterError:
        node.stop()
        raise
    write_text_atomic(rdv / HEAD_FILE, json.dumps({"address": node.address, "host": socket.gethostname(), "pid": proc.pid}))
    print(f"fxdist: Ray head {node.address} on {socket.gethostname()} (temp dir {temp_dir})", flush=True)
    return node


def read_head(rdv: Path, timeout: float = 120.0, *, stop_if=None) -> str:
    """The head's address from ``rdv/head.json``, waiting up to ``timeout`` seconds for it."""
    deadline = time.monotonic() + timeout
    path = rdv / HEAD_FILE
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())["address"]
        if stop_if is not None and stop_if():
            raise ClusterError(f"{path}: gave up waiting for the head (the job is finishing)")
        time.sleep(0.3)
    raise ClusterError(f"{path}: no Ray head address after {timeout:g} s; is the job's first task running? (see its log)")


def start_worker(rdv: Path, *, job_id: str, restart: int | str, num_cpus: int, num_gpus: int = 0,
                 timeout: float = 120.0) -> RayNode:
    """Join this node to the job's Ray cluster as a worker."""
    address = read_head(rdv, timeout, stop_if=lambda: (rdv / DONE_FILE).exists())
    ip = node_ip()
    temp_dir = temp_dir_for(job_id, restart)
    args = start_args(head=False, ip=ip, job_id=job_id, num_cpus=num_cpus, num_gpus=num_gpus, temp_dir=temp_dir, address=address)
    log_path = rdv / f"ray-start-{socket.gethostname()}.log"
    shutil.rmtree(temp_dir, ignore_errors=True)  # a dead earlier run's of this (job, restart)
    node = _track(RayNode(_spawn(args, log_path, rdv), address, temp_dir, log_path))
    print(f"fxdist: Ray worker on {socket.gethostname()} ({ip}) joining {address}", flush=True)
    return node


def serve_worker(rdv: Path, *, job_id: str, restart: int | str, num_cpus: int, num_gpus: int = 0,
                 timeout: float = 120.0, poll: float = 0.5) -> dict:
    """A worker node's whole life: join, stay until the driver writes ``done`` (or Ray exits), stop."""
    node = start_worker(rdv, job_id=job_id, restart=restart, num_cpus=num_cpus, num_gpus=num_gpus, timeout=timeout)
    return {"role": "worker", "host": socket.gethostname(), "ended": stay_until_done(node, rdv, poll)}


def stay_until_done(node: RayNode, rdv: Path, poll: float = 0.5) -> str:
    """Keep ``node`` until the driver writes ``rdv/done`` (or Ray exits), then stop it and keep its
    logs; says which ended it."""
    try:
        while node.alive() and not (rdv / DONE_FILE).exists():
            time.sleep(poll)
        return "done" if (rdv / DONE_FILE).exists() else f"ray exited with {node.process.returncode}"
    finally:
        node.stop()
        node.keep_logs(rdv / "logs" / socket.gethostname())


def mark_done(rdv: Path) -> None:
    write_text_atomic(rdv / DONE_FILE, f"{time.time()}\n")


def wait_for_nodes(count: int, timeout: float = 120.0, rdv: Path | None = None) -> list[str]:
    """Block until the connected Ray cluster has ``count`` live nodes; their IPs."""
    import ray

    deadline = time.monotonic() + timeout
    while True:
        alive = sorted(n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive"))
        if len(alive) >= count:
            return alive
        if time.monotonic() >= deadline:
            logs = f"; worker logs in {rdv}" if rdv else ""
            raise ClusterError(f"Ray has {len(alive)} of {count} nodes after {timeout:g} s (joined: {', '.join(alive) or 'none'}){logs}")
        time.sleep(0.5)
