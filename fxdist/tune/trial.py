"""One trial: the Tune function trainable that restores a run folder and calls ``train()``.

A trial's checkpoint folder holds ``last.pt``, ``best.pt``, ``config.json``,
``metrics.jsonl``, ``starts.jsonl`` (one line per start of the trial's ``train()``:
attempt, the step it started from, the host) and ``metrics.json`` (the reported metrics
plus the swept values). On start the trainable copies these into its run folder and calls
``train(resume=True)``, which continues at the same step and data position. Trials read
shards by path; nothing large goes through the object store.

Reported metrics are train()'s (step, loss, val_esr, baseline_val_esr, best_val_esr,
samples_per_second) plus worker_hostname, worker_hostnames, worker_node_ip, world_size,
attempt, restored_from_step, restore_seconds and report_seconds (how long the previous
report took).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fxdist import storage
from fxdist.config import to_dict
from fxdist.fsutil import atomic_path, write_text_atomic
from fxdist.tune.config import trial_train_config

# Files a trial checkpoint carries (besides metrics.json, written fresh each report).
RUN_FILES = ("last.pt", "best.pt", "config.json", "metrics.jsonl", "starts.jsonl")
# ``on_report(metrics, rank)`` of ``sweep``/``resume``: called in the trial process, on
# every rank, with the metrics about to be reported, before they are (tests use it to kill
# a trial at a given step). It travels to the trial processes pickled (cloudpickle).
ReportHook = Callable[[dict[str, Any], int], None]


def _trial_dirname(trial) -> str:
    return trial.trial_id


def _trial_entry(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """Tune function trainable of every fxdist trial.

    With ``workers == 1`` it runs ``train()`` itself in the trial actor (one process per
    trial) and reports ``ray.tune.report(metrics, checkpoint=...)`` after every validation.
    Tune owns the checkpoints, which gives ASHA, PBT (it clones checkpoints),
    ``keep_checkpoints``, per-trial ``max_failures`` retries and ``Tuner.restore``. The run
    folder is ``<trial working dir>/run``, kept in storage as Tune artifacts
    (``<experiment>/<trial_id>/run``). With more workers it is the driver of a Ray Train run
    (``_driver_main``).
    """
    if setup["workers"] > 1:
        _driver_main(config, setup)
        return
    import ray.tune

    ctx = ray.tune.get_context()
    try:
        working = Path(ctx.get_storage().trial_working_directory)
    except (AttributeError, RuntimeError):  # DeveloperAPI; Tune chdirs into it by default
        working = Path.cwd()
    checkpoint = ray.tune.get_checkpoint()

    def reporter(metrics: dict, ckpt_dir: Path | None) -> None:
        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(str(ckpt_dir)) if ckpt_dir else None)

    _run_trial(config, setup, working / "run", checkpoint, reporter, rank=0, trial_id=ctx.get_trial_id())


def _driver_main(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """workers > 1: run one Ray Train (V2) TorchTrainer and pass its results on to Tune.

    This is Ray 2.58's documented Train+Tune pattern (``Tuner(trainer)`` is deprecated). It
    costs a Train controller and helper actors per trial, about 25 s of start-up on 2 CPUs,
    which is why one-worker trials skip it. The driver takes no CPU (see
    ``run._trial_request``); the workers use gloo on CPU, NCCL on GPU. Rank 0 reports the
    checkpoint, every rank its metrics; Ray Train keeps the checkpoints under
    ``<trial dir>/train``. A dead worker: Ray Train restarts the group from the latest
    checkpoint. A dead driver: Tune restarts it, and the new TorchTrainer, given the same
    storage path and name, resumes from Ray Train's own snapshot.
    """
    import ray.train
    import ray.train.torch
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from fxdist.tune.loopback import torch_config

    ctx = ray.tune.get_context()
    trial_id = ctx.get_trial_id()
    try:
        trial_storage = ctx.get_storage()
        storage_path, filesystem = trial_storage.trial_fs_path, trial_storage.storage_filesystem
    except (AttributeError, RuntimeError):  # DeveloperAPI; fall back to <experiment>/<trial_id>
        filesystem, exp_fs_path = storage.resolve(setup["experiment_path"])
        storage_path = storage.join(exp_fs_path, trial_id)
    res = setup["resources"]
    per_worker = {"CPU": res["cpus_per_worker"]}
    if res["gpus_per_worker"]:
        per_worker["GPU"] = res["gpus_per_worker"]
    keep = setup["keep_checkpoints"]
    trainer = ray.train.torch.TorchTrainer(
        _worker_main,
        train_loop_config={"config": config, "setup": setup, "trial_id": trial_id},
        torch_config=torch_config(),
        scaling_config=ray.train.ScalingConfig(
            num_workers=res["workers"], use_gpu=bool(res["gpus_per_worker"]), resources_per_worker=per_worker
        ),
        run_config=ray.train.RunConfig(
            # Same (storage_path, name) on every attempt: a restarted driver resumes the run.
            name="train",
            storage_path=storage_path,
            storage_filesystem=filesystem,
            failure_config=ray.train.FailureConfig(max_failures=setup["max_failures"]),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=keep,
                checkpoint_score_attribute=setup["metric"] if keep else None,
                checkpoint_score_order=setup["mode"],
            ),
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()


def _worker_main(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker of a workers > 1 trial; torch.distributed is already set up."""
    import ray.train

    config, setup, trial_id = loop_config["config"], loop_config["setup"], loop_config["trial_id"]
    rank = ray.train.get_context().get_world_rank()
    exp_name = setup["experiment_path"].rstrip("/").rsplit("/", 1)[-1]
    run_dir = Path(tempfile.gettempdir()) / "fxdist-sweeps" / exp_name / trial_id / ("run" if rank == 0 else f"run-rank{rank}")
    device = None
    if setup["resources"]["gpus_per_worker"]:
        import ray.train.torch

        device = str(ray.train.torch.get_device())

    def reporter(metrics: dict, ckpt_dir: Path | None) -> None:
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(ckpt_dir)) if ckpt_dir else None)

    _run_trial(config, setup, run_dir, ray.train.get_checkpoint(), reporter, rank=rank, trial_id=trial_id, device=device)
    # Everything worth keeping went into the reported checkpoints; don't litter the node's /tmp.
    shutil.rmtree(run_dir, ignore_errors=True)
    for folder in (run_dir.parent, run_dir.parent.parent):
        with contextlib.suppress(OSError):  # left alone while another rank still uses it
            folder.rmdir()


def _run_trial(config, setup, run_dir: Path, checkpoint, reporter: Callable[[dict, Path | None], None], *, rank: int, trial_id: str, device: str | None = None) -> None:
    """Restore the run folder from ``checkpoint`` (or start clean), then ``train(resume=True)``."""
    import ray
    import torch

    from fxdist.train import train

    torch.set_num_threads(max(1, round(setup["resources"]["cpus_per_worker"])))
    if device is None and not setup["resources"]["gpus_per_worker"]:
        device = "cpu"
    cfg = trial_train_config(setup["base"], config, run_dir, device=device, source=f"trial {trial_id}")
    tic = time.perf_counter()
    restored_step = _prepare_run_dir(run_dir, checkpoint)
    if restored_step:
        _retarget_optimizer(run_dir / "last.pt", cfg)
    restore_seconds = time.perf_counter() - tic
    host, ip = socket.gethostname(), ray.util.get_node_ip_address()
    world = torch.distributed.get_world_size() if torch.distributed.is_available() and torch.distributed.is_initialized() else 1
    hosts = [host]
    if world > 1:  # every rank's node, for status (rank 0 reports)
        hosts = [None] * world
        torch.distributed.all_gather_object(hosts, host)
    attempt = _record_start(run_dir, restored_step, host) if rank == 0 else 0
    on_report = setup.get("on_report")
    swept = dict(config)
    last_report = [0.0, 0]  # seconds the previous report took (checkpoint copy + persist + Ray hand-off), reports made

    def report(metrics: dict, ckpt_dir: Path | None) -> None:
        metrics = {
            **metrics, "worker_hostname": host, "worker_hostnames": ",".join(hosts), "worker_node_ip": ip,
            "attempt": attempt, "world_size": world,
            "restored_from_step": restored_step, "restore_seconds": restore_seconds, "report_seconds": last_report[0],
        }
        if on_report is not None:
            on_report(metrics, rank)
        tic = time.perf_counter()
        if ckpt_dir is None:
            reporter(metrics, None)
        else:
            tmp = Path(tempfile.mkdtemp(prefix="fxdist-ckpt-"))
            try:
                _fill_checkpoint(tmp, Path(ckpt_dir), {**metrics, "trial_id": trial_id, "swept": swept})
                reporter(metrics, tmp)  # Ray copies the folder to storage before returning
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        last_report[0] = time.perf_counter() - tic
        last_report[1] += 1

    reports_before = last_report[1]
    train(cfg, report)
    if world == 1 and last_report[1] == reports_before:
        # train() reported nothing: it was restored at its last step (a driver killed right after
        # the final report, a requeue, may not have kept that row), or its time budget or
        # deadline had run out before a step. Tune refuses a trial whose last result lacks the
        # metric: report the run's last row again, or that it never validated.
        # (Not with several Ray Train workers: their reports must stay in step across ranks.)
        final = _last_metrics(run_dir)
        report(final if final is not None else {"step": restored_step, setup["metric"]: math.inf}, None)
    share = run_dir / "data-share.json"
    if share.exists():  # which shard row groups this rank streamed, kept beside the trial
        storage.write_text(storage.join(setup["experiment_path"], trial_id, "data-share", f"rank{rank}.json"), share.read_text())


def _last_metrics(run_dir: Path) -> dict | None:
    """The last row of the run's metrics.jsonl (what train() last reported), or None."""
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


def _prepare_run_dir(run_dir: Path, checkpoint) -> int:
    """Copy a checkpoint's run files into ``run_dir`` (or clear it); returns the restored step."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if checkpoint is None:
        for name in (*RUN_FILES, "metrics.json"):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tb", ignore_errors=True)
        return 0
    with checkpoint.as_directory() as src:
        src = Path(src)
        for name in RUN_FILES:
            if (src / name).is_file():
                with atomic_path(run_dir / name) as tmp:
                    shutil.copyfile(src / name, tmp)
            else:
                (run_dir / name).unlink(missing_ok=True)
        meta = src / "metrics.json"
        if meta.is_file():
            return int(json.loads(meta.read_text()).get("step", 0))
    if (run_dir / "last.pt").is_file():
        from fxdist.checkpoint import load_checkpoint

        return load_checkpoint(run_dir / "last.pt").step
    return 0


def _record_start(run_dir: Path, from_step: int, host: str) -> int:
    path = run_dir / "starts.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    attempt = len(lines) + 1
    lines.append(json.dumps({"attempt": attempt, "from_step": from_step, "hostname": host, "time": time.time()}))
    write_text_atomic(path, "\n".join(lines) + "\n")
    return attempt


def _fill_checkpoint(dest: Path, run_dir: Path, metrics: dict) -> None:
    """Hard-link (else copy) the run files into ``dest``; checkpoints are replaced atomically
    by train(), so a link is a stable snapshot."""
    for name in RUN_FILES:
        src = run_dir / name
        if not src.is_file():
            continue
        try:
            os.link(src, dest / name)
        except OSError:
            shutil.copyfile(src, dest / name)
    (dest / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))


def _retarget_optimizer(path: Path, cfg) -> None:
    """Make a restored optimizer use this trial's lr / weight decay.

    A PBT exploit hands a trial another trial's checkpoint with a perturbed config. The
    optimizer and LR-schedule state in that checkpoint still carry the old learning
    rate, so without this the perturbation would do nothing.
    """
    from fxdist.checkpoint import load_checkpoint, save_checkpoint
    from fxdist.train import lr_lambda

    ckpt = load_checkpoint(path)
    old = ckpt.train_config.get("optim", {})
    if old.get("lr") == cfg.optim.lr and old.get("weight_decay") == cfg.optim.weight_decay:
        return
    if ckpt.optimizer_state is None:
        return
    factor = lr_lambda(cfg.optim, cfg.steps)(ckpt.step)
    groups = ckpt.optimizer_state.get("param_groups", [])
    for group in groups:
        group["initial_lr"] = cfg.optim.lr
        group["lr"] = cfg.optim.lr * factor
        group["weight_decay"] = cfg.optim.weight_decay
    if ckpt.scheduler_state is not None:
        ckpt.scheduler_state["base_lrs"] = [cfg.optim.lr] * len(groups)
        ckpt.scheduler_state["_last_lr"] = [cfg.optim.lr * factor] * len(groups)
    ckpt.train_config = to_dict(cfg)
    save_checkpoint(path, ckpt)
