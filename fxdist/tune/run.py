"""Running a sweep: ``sweep`` starts a Ray Tune experiment whose trials are fxdist training
runs, ``resume`` continues a killed or errored one. Checked against Ray 2.58 (Ray Train V2)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fxdist.config import apply_overrides, to_dict
from fxdist.errors import ClusterError
from fxdist.storage import check_storage, delete_dir, join, list_names, normalise, read_text, write_text
from fxdist.tune.config import ResourcesConfig, SweepConfig, _param_space, _pbt_mutation_keys, _domain, _Plan, plan_trials
from fxdist.tune.results import SPEC_FILE, SweepResult, _load_spec, _require_experiment, _summary, has_experiment, status
from fxdist.tune.state import _repair_missing_checkpoints, _restore_state_backup, _state_backup_callback
from fxdist.tune.trial import ReportHook, _trial_dirname, _trial_entry
from fxdist.tune.trust import check_trusted


def _scheduler(cfg: SweepConfig, plan: _Plan):
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        PopulationBasedTraining,
    )

    s = cfg.scheduler
    by_steps = s.time_unit == "steps"
    time_attr = "step" if by_steps else "training_iteration"
    if s.kind == "fifo":
        return FIFOScheduler()
    if s.kind == "asha":
        max_t = s.max_t or (plan.max_steps if by_steps else math.ceil(plan.max_steps / plan.val_every))
        grace = s.grace_period or (plan.val_every if by_steps else 1)
        return ASHAScheduler(time_attr=time_attr, max_t=max_t, grace_period=min(grace, max_t), reduction_factor=s.reduction_factor)
    interval = s.perturbation_interval or (2 * plan.val_every if by_steps else 2)
    mutations = {key: _domain(cfg.space[key]) for key in _pbt_mutation_keys(cfg)}
    return PopulationBasedTraining(
        time_attr=time_attr,
        perturbation_interval=interval,
        hyperparam_mutations=mutations,
        quantile_fraction=s.quantile_fraction,
        resample_probability=s.resample_probability,
        synch=s.synch,
    )


# Ray's single-machine mode: the node's address is 127.0.0.1 instead of the machine's
# network address (read by ray._private.ray_constants at import, in every Ray process).
_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def init_local_ray(num_cpus: int | None = None, **kwargs: Any) -> None:
    """Start a new embedded Ray (never some other process's cluster) that listens on 127.0.0.1 only.

    Ray binds its GCS, raylet, worker and agent servers to loopback only when the node's
    address is 127.0.0.1; by default it takes the machine's network address, and
    ``ray.init`` turns a loopback ``_node_ip_address`` back into it unless the single-machine
    mode is on. So the mode is switched on while this node starts (the daemons and workers
    it spawns inherit it) and switched back after, for later joins of real clusters. The
    dashboard stays off. ``kwargs`` go to ``ray.init`` (``object_store_memory``, ...).
    """
    import ray
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(_SINGLE_MACHINE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_SINGLE_MACHINE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **kwargs)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(_SINGLE_MACHINE_ENV, None)
        else:
            os.environ[_SINGLE_MACHINE_ENV] = saved_env


@contextlib.contextmanager
def _ray_session(address: str | None, num_cpus: int | None) -> Iterator[None]:
    """Use the Ray already initialised in this process, else join ``address`` or start a
    loopback-only local one (``init_local_ray``), and stop it after."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Tune warns when a trial checkpoints keep_checkpoints times within 5 s; fxdist
    # checkpoints at every validation, which tiny runs do several times a second.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray

    if ray.is_initialized():
        yield
        return
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            init_local_ray(num_cpus)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
        raise ClusterError(f"cannot start or reach Ray at {address or 'local'}: {exc}") from exc
    session = None if address else _session_dir()
    try:
        yield
    except BaseException:
        session = None  # a failed sweep keeps Ray's logs for the post-mortem
        raise
    finally:
        ray.shutdown()
        if session is not None:
            _remove_session(session)


def _session_dir() -> Path | None:
    """The folder of the local Ray session this process started (logs, sockets, spilled objects)."""
    try:
        from ray._private import worker

        return Path(worker._global_node.get_session_dir_path())
    except (AttributeError, ImportError):  # another Ray layout: leave its folder to Ray
        return None


def _remove_session(session: Path) -> None:
    """Delete a finished local session's folder, and Ray's ``session_latest`` link if it points there."""
    import shutil

    latest = session.parent / "session_latest"
    if latest.is_symlink() and Path(os.readlink(latest)).name == session.name:
        latest.unlink(missing_ok=True)
    shutil.rmtree(session, ignore_errors=True)
    with contextlib.suppress(OSError):
        session.parent.rmdir()  # Ray's temp root, when no other session lives there


def _trial_request(res: ResourcesConfig) -> dict[str, float]:
    """What Tune reserves for the trial actor itself.

    With one worker the actor is the worker. With more it is a Ray Train driver that only
    waits on its TorchTrainer: it asks for 1 byte of ``memory`` (Tune refuses an empty
    request), so a 2-worker x 1-CPU trial fits a 2-CPU cluster.
    """
    if res.workers == 1:
        return {"cpu": res.cpus_per_worker, "gpu": res.gpus_per_worker}
    return {"cpu": 0, "memory": 1}


def check_resources(res: ResourcesConfig, cluster: dict[str, float] | None = None, nodes: list[dict] | None = None) -> None:
    """ClusterError if one trial needs more CPUs/GPUs than the Ray cluster has (in total, or per node per worker).

    The trial driver adds nothing: with one worker the trial actor is the worker, with
    more it is a driver that holds no CPU.
    """
    import ray

    cluster = cluster if cluster is not None else ray.cluster_resources()
    if nodes is None:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for kind, per in (("CPU", res.cpus_per_worker), ("GPU", res.gpus_per_worker)):
        need = res.workers * per
        have = float(cluster.get(kind, 0.0))
        if need > have + 1e-9:
            raise ClusterError(
                f"trial needs {need:g} {kind}s ({res.workers} worker(s) x {per:g}, trial driver +0) "
                f"but the cluster has {have:g} in total; lower resources.workers or "
                f"resources.{kind.lower()}s_per_worker, or add nodes"
            )
        biggest = max((float(n.get(kind, 0.0)) for n in nodes), default=have)
        if per > biggest + 1e-9:
            raise ClusterError(
                f"one worker needs {per:g} {kind}s but the largest node has {biggest:g}; "
                f"lower resources.{kind.lower()}s_per_worker"
            )


def _auto_concurrency(cfg: SweepConfig) -> int | None:
    """Trials that take no CPU themselves (workers > 1) must be capped, or Tune starts them all."""
    import ray

    if cfg.max_concurrent_trials is not None:
        return cfg.max_concurrent_trials
    if cfg.resources.workers == 1:
        return None
    total = ray.cluster_resources()
    res = cfg.resources
    fits = int(float(total.get("CPU", 0)) // (res.workers * res.cpus_per_worker) + 1e-9)
    if res.gpus_per_worker:
        fits = min(fits, int(float(total.get("GPU", 0)) // (res.workers * res.gpus_per_worker) + 1e-9))
    return max(1, fits)


def _setup(cfg: SweepConfig, plan: _Plan, exp: str, on_report: ReportHook | None) -> dict[str, Any]:
    return {
        "base": plan.base,
        "workers": cfg.resources.workers,
        "resources": to_dict(cfg.resources),
        "max_failures": cfg.max_failures,
        "keep_checkpoints": cfg.keep_checkpoints,
        "metric": cfg.metric,
        "mode": cfg.mode,
        "experiment_path": exp,
        "on_report": on_report,
    }


def _trainable(cfg: SweepConfig, plan: _Plan, exp: str, on_report: ReportHook | None):
    from ray import tune

    fn = tune.with_parameters(_trial_entry, setup=_setup(cfg, plan, exp, on_report))
    return tune.with_resources(fn, _trial_request(cfg.resources))


def _check_v2(cfg: SweepConfig) -> None:
    if cfg.resources.workers > 1 and os.environ.get("RAY_TRAIN_V2_ENABLED", "1").lower() in ("0", "false"):
        raise ClusterError("resources.workers > 1 needs Ray Train V2; unset RAY_TRAIN_V2_ENABLED=0")


def sweep(
    cfg: SweepConfig,
    address: str | None = None,
    storage: str | None = None,
    *,
    num_cpus: int | None = None,
    on_report: ReportHook | None = None,
) -> SweepResult:
    """Run the sweep to the end and summarise it.

    Ray: the one already initialised in this process, else ``address`` (``"auto"``,
    ``"ray://host:10001"``, ``"host:6379"``), else a new local instance with
    ``num_cpus`` (default: all cores), shut down afterwards. The experiment goes to
    ``<storage or cfg.storage>/<cfg.name>``; a folder that already holds one raises
    ClusterError (continue it with ``resume``). ``on_report(metrics, rank)``, if given, runs
    in each trial process before each report (``fxdist.tune.trial.ReportHook``).
    """
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    started = time.perf_counter()
    plan = plan_trials(cfg, source=f"sweep {cfg.name}")
    _check_v2(cfg)
    storage = check_storage(storage or cfg.storage)
    exp = join(storage, cfg.name)
    if has_experiment(exp):
        raise ClusterError(f"{exp} already holds an experiment; continue it with `fxdist resume {exp}` or set another name")
    with _ray_session(address, num_cpus):
        check_resources(cfg.resources)
        write_text(join(exp, SPEC_FILE), json.dumps({"sweep": to_dict(cfg), "base": plan.base}, indent=2))
        # PBT hands a trial another trial's latest checkpoint at any time, so Tune must not
        # delete any while it runs; keep_checkpoints is applied when the sweep ends.
        keep = None if cfg.scheduler.kind == "pbt" else cfg.keep_checkpoints
        tuner = tune.Tuner(
            _trainable(cfg, plan, exp, on_report),
            param_space=_param_space(cfg),
            tune_config=tune.TuneConfig(
                metric=cfg.metric,
                mode=cfg.mode,
                num_samples=cfg.num_samples,
                scheduler=_scheduler(cfg, plan),
                search_alg=BasicVariantGenerator(max_concurrent=_auto_concurrency(cfg) or 0, random_state=cfg.seed),
                time_budget_s=cfg.time_budget_s,
                trial_dirname_creator=_trial_dirname,
                # Reused function-trainable actors mixed up trials under PBT (Ray 2.58), so every
                # (re)start gets a new process (about 2 s per PBT perturbation on a small machine).
                reuse_actors=False,
            ),
            run_config=tune.RunConfig(
                name=cfg.name,
                storage_path=storage,
                failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=keep,
                    checkpoint_score_attribute=cfg.metric if keep else None,
                    checkpoint_score_order=cfg.mode,
                ),
                sync_config=tune.SyncConfig(sync_artifacts=True),
                verbose=cfg.verbose,
                callbacks=[_state_backup_callback(exp)],
            ),
        )
        _fit(tuner)
    _prune_after_pbt(exp, cfg)
    return _summary(exp, started)


def _prune_after_pbt(exp: str, cfg: SweepConfig) -> None:
    """After a PBT sweep, keep each finished trial's best ``keep_checkpoints`` checkpoints plus its latest.

    PBT clones another trial's latest checkpoint at any moment, so Tune must delete none
    while the sweep runs.
    """
    if cfg.scheduler.kind != "pbt" or cfg.keep_checkpoints is None:
        return
    for row in status(exp, trust=True):  # the sweep that just ran wrote it, or resume checked it
        if row.state != "TERMINATED":
            continue  # a later resume may still need any of them
        names = [n for n in list_names(row.path, folders=True) if n.startswith("checkpoint_")]
        scored = []
        for name in names[:-1]:
            meta = json.loads(read_text(join(row.path, name, "metrics.json")) or "{}")
            value = meta.get(cfg.metric)
            scored.append((math.inf if value is None else float(value), name))
        for _, name in sorted(scored)[cfg.keep_checkpoints:]:
            delete_dir(join(row.path, name))


def _fit(tuner) -> None:
    from ray.tune import TuneError

    try:
        tuner.fit()
    except TuneError as exc:
        raise ClusterError(f"the sweep stopped: {exc}") from exc


def resume(
    experiment_path: str | Path,
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    on_report: ReportHook | None = None,
    trust: bool = False,
    train_overrides: dict[str, Any] | None = None,
) -> SweepResult:
    """Continue a killed or errored sweep: unfinished and errored trials go on from their
    latest checkpoint; finished trials are not rerun. ``on_report`` as for ``sweep``;
    ``train_overrides``: dotted training keys changed for the trials that go on (a new
    ``deadline``); keys that change the weights would not fit their checkpoints.

    ``Tuner.restore`` unpickles the folder's state, so a folder (or state file) not owned
    by the user or writable by group or others is refused first unless ``trust``
    (``fxdist.tune.trust``). Before the restore it puts back cut-off driver state files
    and recreates checkpoints the state still points at (``fxdist.tune.state``).
    """
    from ray import tune

    started = time.perf_counter()
    exp = normalise(experiment_path)
    _require_experiment(exp)
    check_trusted(exp, trust)
    cfg, base = _load_spec(exp)
    _check_v2(cfg)
    if train_overrides:
        base = apply_overrides(base, train_overrides)
    plan = _Plan(base=base, max_steps=0, val_every=0)
    _restore_state_backup(exp)
    _repair_missing_checkpoints(exp)
    with _ray_session(address, num_cpus):
        check_resources(cfg.resources)
        tuner = tune.Tuner.restore(
            exp,
            trainable=_trainable(cfg, plan, exp, on_report),
            resume_unfinished=True,
            resume_errored=True,
            restart_errored=False,
        )
        _fit(tuner)
    _prune_after_pbt(exp, cfg)
    return _summary(exp, started)
