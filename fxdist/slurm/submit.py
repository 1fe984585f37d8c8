"""Submit a sweep to SLURM: one submitit job that starts Ray in its allocation and runs the sweep;
the site schema, the checks against ``sinfo``, and listing and cancelling fxdist jobs.

``submit(sweep_yaml, cluster_yaml)`` checks the site description (``configs/cluster/<site>.yaml``,
a ``ClusterConfig``) against ``sinfo``, then submits a ``SweepJob`` through submitit: one task
per node. Task 0 starts a Ray head on the first node, the others join it as workers
(``fxdist.slurm.ray_node``: free ports and temp dirs per job, so jobs can share nodes), and task 0
calls ``fxdist.tune.sweep``, or ``fxdist.tune.resume`` when the experiment already exists: a
requeued job (``scontrol requeue``, preemption, or submitit's own requeue on timeout)
restarts the Ray cluster and continues the same experiment without rerunning finished trials.

Without SLURM accounting (no ``sacct``), submitit's ``job.state`` is ``UNKNOWN``: use ``jobs()``
(squeue) or ``scontrol show job`` for the state; results are in the job's log folder.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fxdist.config import from_dict, load_yaml
from fxdist.errors import ClusterError
from fxdist.slurm.sbatch import sbatch_script

JOB_PREFIX = "fxdist-"


@dataclass
class ClusterConfig:
    """A SLURM site: what one sweep job asks for, and how its batch script sets up the environment."""

    partition: str | None = None  # None: the site's default partition
    nodes: int = 1
    cpus_per_node: int = 1
    gpus_per_node: int = 0
    mem_gb: float | None = None  # None: the partition's default
    time_min: int = 60
    # Times the job may hit its time limit and requeue itself (submitit), resuming each time.
    max_timeouts: int = 3
    account: str | None = None
    qos: str | None = None
    # Extra ``#SBATCH --key=value`` lines (e.g. {constraint: a100, exclusive: true}).
    sbatch_extra: dict[str, Any] = field(default_factory=dict)
    # Shell lines run in the batch script before the job starts (module load, source venv ...).
    setup: list[str] = field(default_factory=list)
    # The Python that runs the job on the node (default: the one submitting).
    python: str | None = None
    # Keep the job running when one of its nodes fails (sbatch and srun --no-kill): Ray
    # retries the lost node's trials on the others, from their checkpoints. False: SLURM
    # ends the job (and requeues it, where the site allows) when any node fails.
    survive_node_failure: bool = True

    def __post_init__(self):
        if self.nodes < 1:
            raise ValueError(f"nodes must be >= 1, got {self.nodes}")
        if self.cpus_per_node < 1:
            raise ValueError(f"cpus_per_node must be >= 1, got {self.cpus_per_node}")
        if self.gpus_per_node < 0:
            raise ValueError(f"gpus_per_node must be >= 0, got {self.gpus_per_node}")
        if self.mem_gb is not None and self.mem_gb <= 0:
            raise ValueError(f"mem_gb must be > 0 or null, got {self.mem_gb}")
        if self.max_timeouts < 0:
            raise ValueError(f"max_timeouts must be >= 0, got {self.max_timeouts}")
        if self.time_min < 1:
            raise ValueError(f"time_min must be >= 1, got {self.time_min}")


def load_cluster_config(path: str | Path) -> ClusterConfig:
    """Load a site YAML strictly (unknown keys raise ConfigError naming the allowed ones)."""
    return from_dict(ClusterConfig, load_yaml(path) or {}, source=str(path))


# -- checks against the live cluster ---------------------------------------------------------


@dataclass
class Partition:
    name: str
    default: bool
    nodes: int
    max_cpus: int  # the most CPUs one node of it has
    gpus: int  # the most GPUs (gres gpu) one node of it has


def _run(cmd: list[str], timeout: float = 30) -> str:
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClusterError(f"{' '.join(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _gres_gpus(gres: str) -> int:
    """GPUs per node in a sinfo %G field such as ``gpu:a100:4(S:0-1),shard:8`` or ``(null)``."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu":
            total += int(parts[-1]) if parts[-1].isdigit() else 1
    return total


def partitions() -> dict[str, Partition]:
    """The cluster's partitions from ``sinfo -h -o "%P %G %D %c"`` (one line per node configuration)."""
    out: dict[str, Partition] = {}
    for line in _run(["sinfo", "-h", "-o", "%P %G %D %c"]).splitlines():
        fields = line.split()
        if len(fields) != 4:
            continue
        name, gres, count, cpus = fields
        default = name.endswith("*")
        name = name.rstrip("*")
        part = out.setdefault(name, Partition(name, default, 0, 0, 0))
        part.nodes += int(count)
        part.max_cpus = max(part.max_cpus, int(cpus.rstrip("+")))
        part.gpus = max(part.gpus, _gres_gpus(gres))
    return out


def check_cluster(cfg: ClusterConfig, source: str = "<cluster>") -> None:
    """Refuse a request the cluster cannot run: unknown partition, GPUs where there are none,
    more nodes or CPUs per node than the partition has. Skipped where ``sinfo`` is missing."""
    if shutil.which("sinfo") is None:
        return
    parts = partitions()
    if not parts:
        raise ClusterError(f"{source}: sinfo lists no partition")
    if cfg.partition is None:
        part = next((p for p in parts.values() if p.default), None)
        if part is None:
            raise ClusterError(f"{source}: partition is null but the cluster has no default; use one of {', '.join(parts)}")
    elif cfg.partition not in parts:
        raise ClusterError(f"{source}: partition {cfg.partition!r} does not exist; the cluster has {', '.join(sorted(parts))}")
    else:
        part = parts[cfg.partition]
    if cfg.gpus_per_node > part.gpus:
        raise ClusterError(
            f"{source}: gpus_per_node {cfg.gpus_per_node} but partition {part.name!r} has "
            f"{'no GPUs' if part.gpus == 0 else f'at most {part.gpus} per node'}"
        )
    if cfg.nodes > part.nodes:
        raise ClusterError(f"{source}: nodes {cfg.nodes} but partition {part.name!r} has {part.nodes}")
    if cfg.cpus_per_node > part.max_cpus:
        raise ClusterError(f"{source}: cpus_per_node {cfg.cpus_per_node} but partition {part.name!r} nodes have at most {part.max_cpus}")


# -- the job -----------------------------------------------------------------------------------


def _checkpointable():
    import submitit

    return submitit.helpers.Checkpointable


class SweepJob(_checkpointable()):
    """What runs in the allocation, once per node (one submitit task per node).

    Task 0 starts the Ray head on the first node, waits for the other nodes' workers, then
    runs the sweep (or resumes it) and tells the workers it is done; every other task joins
    its node to that cluster and stays until then (``fxdist.slurm.ray_node``). A Checkpointable:
    on timeout or preemption submitit calls ``checkpoint()`` in task 0, which resubmits this
    same object; SLURM restarts every task and ``__call__`` finds and resumes the experiment.
    """

    def __init__(self, sweep_cfg, experiment: str, num_cpus: int, num_gpus: int = 0, nodes: int = 1,
                 join_timeout: float = 180.0):
        self.sweep_cfg = sweep_cfg
        self.experiment = experiment
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.nodes = nodes
        self.join_timeout = join_timeout

    def __call__(self) -> dict[str, Any]:
        from fxdist.slurm import ray_node

        job_id = os.environ.get("SLURM_JOB_ID", str(os.getpid()))
        restart = os.environ.get("SLURM_RESTART_COUNT", "0")
        rank = int(os.environ.get("SLURM_PROCID", "0"))
        rdv = ray_node.rendezvous_dir(self.experiment, job_id, restart)
        node_args = {"job_id": job_id, "restart": restart, "num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                     "timeout": self.join_timeout}
        if rank != 0:
            return ray_node.serve_worker(rdv, **node_args)
        head = ray_node.start_head(rdv, **node_args)
        try:
            return self._drive(head, rdv, int(restart))
        finally:
            ray_node.mark_done(rdv)
            head.stop()
            head.keep_logs(rdv / "logs" / socket.gethostname())

    def _drive(self, head, rdv: Path, restart: int) -> dict[str, Any]:
        """Task 0: connect to the head, wait for every node, sweep or resume."""
        import ray

        from fxdist.slurm import ray_node
        from fxdist.tune import has_experiment, resume, sweep

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray_node.use_token(rdv)
        ray.init(address=head.address, log_to_driver=True)
        try:
            node_ips = ray_node.wait_for_nodes(self.nodes, self.join_timeout, rdv)
            print(f"fxdist: Ray cluster of {len(node_ips)} node(s): {', '.join(node_ips)}", flush=True)
            resumed = has_experiment(self.experiment)
            if resumed:
                result = resume(self.experiment)
            else:
                result = sweep(self.sweep_cfg, storage=str(Path(self.experiment).parent))
        finally:
            ray.shutdown()
        return {
            "experiment": result.experiment_path,
            "resumed": resumed,
            "restart_count": restart,
            "host": socket.gethostname(),
            "ray_nodes": node_ips,
            "ray_address": head.address,
            "trials": {r.trial_id: r.state for r in result.trials},
            "trial_hosts": {r.trial_id: r.hostname for r in result.trials},
            "errors": result.errors,
            "best": None if result.best is None else {"trial_id": result.best.trial_id, "best_val_esr": result.best.best_val_esr},
        }


# -- submit, list, cancel ------------------------------------------------------------------------


@dataclass
class SubmitResult:
    job_id: str | None  # None for a dry run
    experiment: str
    logs_dir: str  # submitit's folder for this job: stdout/stderr, pickles of the call and result
    script: str  # the sbatch script


def make_executor(cluster: ClusterConfig, job_name: str, folder: str):
    """A submitit executor asking SLURM for what ``cluster`` describes: ``cluster.nodes`` nodes,
    one task per node, logs in ``folder`` (``%j``: the job id)."""
    import submitit

    kwargs: dict[str, Any] = {"slurm_max_num_timeout": cluster.max_timeouts}
    if cluster.python:
        kwargs["slurm_python"] = cluster.python
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm", **kwargs)
    params: dict[str, Any] = {
        "name": job_name,
        "nodes": cluster.nodes,
        "tasks_per_node": 1,
        "cpus_per_task": cluster.cpus_per_node,
        "timeout_min": cluster.time_min,
        # submitit's USR2 warning before the time limit, so checkpoint() can requeue.
        "slurm_signal_delay_s": min(90, max(10, cluster.time_min * 60 // 10)),
    }
    if cluster.partition:
        params["slurm_partition"] = cluster.partition
    if cluster.gpus_per_node:
        params["gpus_per_node"] = cluster.gpus_per_node
    if cluster.mem_gb is not None:
        params["mem_gb"] = cluster.mem_gb
    if cluster.account:
        params["slurm_account"] = cluster.account
    if cluster.qos:
        params["slurm_qos"] = cluster.qos
    if cluster.setup:
        params["slurm_setup"] = list(cluster.setup)
    extra = dict(cluster.sbatch_extra)
    if cluster.survive_node_failure and cluster.nodes > 1:
        extra.setdefault("no_kill", True)
        params["slurm_srun_args"] = ["--no-kill"]
    if extra:
        params["slurm_additional_parameters"] = extra
    ex.update_parameters(**params)
    return ex


def submit(sweep_yaml: str | Path, cluster_yaml: str | Path, overrides: dict[str, Any] | None = None,
           dry_run: bool = False, storage: str | None = None) -> SubmitResult:
    """Submit ``sweep_yaml`` as one SLURM job described by ``cluster_yaml``.

    Everything is checked before anything is submitted: the sweep config (as ``fxdist
    sweep`` does), the site config (strict keys) and the request against ``sinfo``. The
    experiment goes to ``<storage or the sweep's storage>/<name>``, which must be on a
    filesystem the nodes share; submitit's logs to ``<experiment>/slurm/<job id>``.
    ``dry_run`` returns the sbatch script and submits nothing.
    """
    from fxdist.tune import check_resources, experiment_path, load_sweep_config

    cfg = load_sweep_config(sweep_yaml, overrides)
    cluster = load_cluster_config(cluster_yaml)
    if storage:
        cfg.storage = storage
    if "://" not in cfg.storage:
        cfg.storage = os.path.abspath(os.path.expanduser(cfg.storage))
    exp = experiment_path(cfg)
    check_cluster(cluster, source=str(cluster_yaml))
    # Can one trial fit the allocation? (Ray gets cpus_per_node CPUs and gpus_per_node GPUs on each node.)
    node = {"CPU": float(cluster.cpus_per_node), "GPU": float(cluster.gpus_per_node)}
    check_resources(cfg.resources, {k: v * cluster.nodes for k, v in node.items()}, [node] * cluster.nodes)
    folder = f"{exp}/slurm/%j"
    ex = make_executor(cluster, f"{JOB_PREFIX}{cfg.name}", folder)
    script = sbatch_script(ex)
    if dry_run:
        return SubmitResult(None, exp, folder, script)
    try:
        job = ex.submit(SweepJob(cfg, exp, cluster.cpus_per_node, cluster.gpus_per_node, cluster.nodes))
    except Exception as exc:  # submitit raises FailedJobError/FailedSubmissionError/CalledProcessError
        raise ClusterError(f"sbatch refused the job: {exc}") from exc
    return SubmitResult(str(job.job_id), exp, folder.replace("%j", str(job.job_id)), script)


@dataclass
class JobInfo:
    job_id: str
    name: str
    state: str
    elapsed: str
    time_limit: str
    where: str  # node list when running, else the reason it waits


def jobs(user: str | None = None) -> list[JobInfo]:
    """The user's queued and running fxdist jobs (``squeue``; names start with ``fxdist-``)."""
    import getpass

    user = user or getpass.getuser()
    out = _run(["squeue", "-h", "-u", user, "-o", "%i|%j|%T|%M|%l|%R"])
    rows = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 6 and parts[1].startswith(JOB_PREFIX):
            rows.append(JobInfo(*parts))
    return rows


def cancel(job_id: str) -> None:
    """Cancel a job (``scancel``); ClusterError if SLURM does not know it."""
    if not re.fullmatch(r"[0-9]+(_[0-9]+)?", str(job_id)):
        raise ClusterError(f"job id {job_id!r} is not a SLURM job id (digits, or ARRAY_TASK)")
    out = _run(["scontrol", "show", "job", "-o", str(job_id)])
    if "JobId=" not in out:
        raise ClusterError(f"job {job_id}: SLURM does not know it")
    _run(["scancel", str(job_id)])

