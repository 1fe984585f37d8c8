"""Sweeps on a real local Ray (2 CPUs): results and best, Ray Train workers, a killed
driver resumed, PBT, and impossible resources or storage failing fast."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fxdist.checkpoint import load_checkpoint, load_model
from fxdist.errors import ClusterError
from fxdist.tune import ResourcesConfig, best, check_resources, resume, status, sweep
from fxdist.tune.results import _latest_checkpoint
from fxdist.tune.state import _read_backup
from tests.tune.sweeps import REPO, read_json, results, starts, tiny, write_sweep


# -- a whole sweep ---------------------------------------------------------------------------


@pytest.mark.slow
def test_sweep_completes_and_best_is_lowest(ray_session, tiny_shards, tmp_path, capsys):
    cfg = tiny(tiny_shards, "lr")
    result = sweep(cfg, storage=str(tmp_path / "sweeps"))

    assert result.errors == 0 and len(result.trials) == 3
    assert sorted(r.config["optim.lr"] for r in result.trials) == [0.0003, 0.003, 0.03]
    for row in result.trials:
        assert row.state == "TERMINATED" and row.step == 20
        assert row.hostname == socket.gethostname()
        # the run folder (metrics.jsonl, tb logs) lives in the trial's storage
        assert (Path(row.path) / "run" / "metrics.jsonl").is_file()
        assert [r["step"] for r in results(row.path)] == [10, 20]

    rows = status(result.experiment_path)
    lowest = min(rows, key=lambda r: r.best_val_esr)
    picked = best(result.experiment_path, top=3, to=tmp_path / "best")
    assert [b.rank for b in picked] == [1, 2, 3]
    assert picked[0].trial_id == lowest.trial_id == result.best.trial_id
    assert picked[0].best_val_esr == pytest.approx(lowest.best_val_esr)
    assert [b.best_val_esr for b in picked] == sorted(b.best_val_esr for b in picked)
    folder = tmp_path / "best" / f"1-{lowest.trial_id}"
    assert Path(picked[0].checkpoint) == folder / "best.pt"
    _model, ckpt = load_model(folder / "best.pt")
    assert ckpt.best_val_esr == pytest.approx(lowest.best_val_esr) and ckpt.sample_rate == 16000
    meta = json.loads((folder / "metrics.json").read_text())
    assert meta["swept"] == lowest.config and meta["trial_id"] == lowest.trial_id
    assert json.loads((folder / "config.json").read_text())["optim"]["lr"] == lowest.config["optim.lr"]

    # the same name again is refused, not mixed into the finished experiment
    with pytest.raises(ClusterError, match="already holds an experiment"):
        sweep(cfg, storage=str(tmp_path / "sweeps"))

    from fxdist.cli import main

    capsys.readouterr()
    assert main(["status", result.experiment_path]) == 0
    table = capsys.readouterr().out
    assert "optim.lr" in table and lowest.trial_id in table.splitlines()[1]
    assert main(["best", result.experiment_path, "--top", "2", "--to", str(tmp_path / "cli-best")]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "cli-best" / f"1-{lowest.trial_id}" / "best.pt") in out


@pytest.mark.slow
def test_ray_train_trial_with_two_gloo_workers(ray_session, tiny_shards, tmp_path):
    """workers=2 x 1 CPU fills the 2-CPU cluster: the trial driver itself holds no CPU."""
    cfg = tiny(tiny_shards, "ddp", **{"resources.workers": 2, "space": {"optim.lr": {"grid": [0.01]}}})
    result = sweep(cfg, storage=str(tmp_path / "sweeps"))

    (row,) = result.trials
    assert row.state == "TERMINATED" and row.step == 20, row
    reported = results(row.path)
    assert [r["step"] for r in reported] == [10, 20]
    assert all(r["world_size"] == 2 for r in reported)  # train() saw torch.distributed with 2 ranks
    ckpt = _latest_checkpoint(row.path)
    assert "/train/checkpoint_" in ckpt  # kept by Ray Train inside the trial's storage
    (top,) = best(result.experiment_path, to=tmp_path / "best")
    assert load_checkpoint(top.checkpoint).step == 20


# -- fault tolerance -------------------------------------------------------------------------


@pytest.mark.slow
def test_killed_driver_resumes_unfinished_trials_only(ray_session, tiny_shards, tmp_path):
    """SIGKILL `fxdist sweep` (its own Ray) while the 2nd of 2 sequential trials trains, then resume."""
    sweep_yaml = tmp_path / "kill.yaml"
    sweep_yaml.write_text(yaml.safe_dump({
        "name": "kill",
        "train": str(REPO / "configs/train/tiny.yaml"),
        "overrides": {"data.shards": str(tiny_shards), "val_every": 20, "checkpoint_every": 20},
        "space": {"steps": {"grid": [40, 2000]}},
        "max_concurrent_trials": 1,
        "scheduler": {"kind": "fifo"},
        "keep_checkpoints": 2,
        "verbose": 0,
    }))
    storage = tmp_path / "sweeps"
    exp = storage / "kill"
    # TUNE_GLOBAL_CHECKPOINT_S=1: the driver writes its experiment state every second.
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", TUNE_GLOBAL_CHECKPOINT_S="1")

    def trial_dirs() -> dict[int, Path]:
        found = {}
        for params in exp.glob("*/params.json"):
            if (data := read_json(params)) is not None:
                found[data["steps"]] = params.parent
        return found

    with open(tmp_path / "sweep.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fxdist", "sweep", str(sweep_yaml), "--storage", str(storage), "--num-cpus", "2"],
            env=env, cwd=tmp_path, start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 150
        try:
            while True:
                dirs = trial_dirs()
                if 2000 in dirs and len(results(dirs[2000])) >= 3:  # the long trial checkpointed 3 times (step 60)
                    break
                assert proc.poll() is None, (tmp_path / "sweep.log").read_text()[-3000:]
                assert time.monotonic() < deadline, (tmp_path / "sweep.log").read_text()[-3000:]
                time.sleep(0.2)
            time.sleep(1.5)  # let the driver save its experiment state
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    time.sleep(3)  # trial processes of the dead cluster notice their raylet is gone and exit

    short, long = dirs[40], dirs[2000]
    short_rows = results(short)
    assert [r["step"] for r in short_rows] == [20, 40]  # finished before the kill
    before = results(long)
    assert before[-1]["step"] < 2000
    # the sweep kept a complete set of Ray's experiment and search states, for a file cut off by the kill
    kept = _read_backup(str(exp))
    assert kept is not None
    assert fnmatch.filter(kept, "experiment_state-*.json") and fnmatch.filter(kept, "basic-variant-state-*.json")

    outcome = resume(exp)

    assert outcome.errors == 0
    assert {r.config["steps"]: (r.state, r.step) for r in outcome.trials} == {40: ("TERMINATED", 40), 2000: ("TERMINATED", 2000)}
    assert results(short) == short_rows and len(starts(short)) == 1  # not rerun
    attempts = starts(long)
    assert len(attempts) == 2 and attempts[1]["from_step"] >= 20
    after = [r for r in results(long) if r["attempt"] == 2]
    assert after and after[0]["step"] > 20  # a fresh run would report step 20 first
    assert after[0]["restored_from_step"] == attempts[1]["from_step"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Consider boosting PBT performance")
def test_pbt_clones_the_better_trial_and_continues(ray_session, tiny_shards, tmp_path):
    """2 trials, synchronous perturbation at step 20: the worse one restarts from the better one's
    checkpoint with a perturbed lr, which its optimizer then uses."""
    cfg = tiny(tiny_shards, "pbt", **{
        "overrides.steps": 30, "num_samples": 2,
        "space": {"optim.lr": {"loguniform": [0.0001, 0.03]}},
        "scheduler": {"kind": "pbt", "perturbation_interval": 20, "quantile_fraction": 0.5, "synch": True},
    })
    result = sweep(cfg, storage=str(tmp_path / "sweeps"))

    assert result.errors == 0
    assert all(r.state == "TERMINATED" and r.step == 30 for r in result.trials)
    a, b = (starts(r.path) for r in result.trials)
    assert a[0] == b[0]  # one run's history now starts with the other's: it was cloned at step 20
    assert a[-1]["from_step"] == b[-1]["from_step"] == 20
    for row in result.trials:  # each optimizer runs at the trial's own (for the clone: perturbed) lr
        last = load_checkpoint(Path(_latest_checkpoint(row.path)) / "last.pt")
        assert last.step == 30
        assert last.scheduler_state["base_lrs"] == [pytest.approx(row.config["optim.lr"])]
        assert last.optimizer_state["param_groups"][0]["initial_lr"] == pytest.approx(row.config["optim.lr"])
        assert len(list(Path(row.path).glob("checkpoint_*"))) <= 3  # pruned after the sweep: best 2 + latest


# -- the local Ray listens on loopback only ------------------------------------------------

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def listening(pids) -> dict[str, set]:
    """{process name: {(ip, port), ...}} of the TCP sockets these processes listen on."""
    import psutil

    found: dict[str, set] = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            conns = [c for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
            found.setdefault(proc.name(), set()).update((c.laddr.ip, c.laddr.port) for c in conns)
        except psutil.Error:
            continue  # ended between the listing and the look
    return found


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_local_sweep_listens_on_loopback_only(tiny_shards, tmp_path, workers):
    """`fxdist sweep` with its own local Ray: every socket its process tree listens on
    (driver, GCS, raylet, agents, trial workers, with 2 workers their torch rendezvous
    store) is on loopback, polled while trials run."""
    import psutil

    changes = {} if workers == 1 else {"space": {"optim.lr": {"grid": [0.003]}}, "resources": {"workers": 2, "cpus_per_worker": 1}}
    sweep_yaml = write_sweep(tmp_path, tiny_shards, **changes)
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    with open(tmp_path / "sweep.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fxdist", "sweep", str(sweep_yaml), "--storage", str(tmp_path / "sweeps"), "--num-cpus", "2"],
            env=env, cwd=tmp_path, start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
        )
        seen: dict[str, set] = {}
        try:
            root = psutil.Process(proc.pid)
            while proc.poll() is None:
                try:
                    pids = [proc.pid, *(c.pid for c in root.children(recursive=True))]
                except psutil.Error:
                    break
                for name, addrs in listening(pids).items():
                    seen.setdefault(name, set()).update(addrs)
                time.sleep(0.2)
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    assert {"gcs_server", "raylet"} <= set(seen), seen
    assert any(name.startswith("ray::") and name != "ray::IDLE" for name in seen), seen  # a trial ran while polled
    if workers == 2:
        assert any(name.startswith("ray::RayTrainWorker") for name in seen), seen
    exposed = {name: sorted(a for a in addrs if a[0] not in LOOPBACK) for name, addrs in seen.items()}
    assert not any(exposed.values()), f"listening beyond loopback: {exposed}"


# -- bad resources ---------------------------------------------------------------------------


def test_impossible_resources_fail_fast(ray_session, tiny_shards, tmp_path):
    cfg = tiny(tiny_shards, "big", **{"resources.workers": 3})
    started = time.monotonic()
    with pytest.raises(ClusterError, match=r"trial needs 3 CPUs .* cluster has 2"):
        sweep(cfg, storage=str(tmp_path / "sweeps"))
    assert time.monotonic() - started < 30
    assert not (tmp_path / "sweeps" / "big" / "tuner.pkl").exists()
    with pytest.raises(ClusterError, match="GPUs"):
        check_resources(ResourcesConfig(gpus_per_worker=1), cluster={"CPU": 2.0}, nodes=[{"CPU": 2.0}])
    with pytest.raises(ClusterError, match="largest node has 2"):
        check_resources(ResourcesConfig(workers=2, cpus_per_worker=3), cluster={"CPU": 8.0}, nodes=[{"CPU": 2.0}] * 4)


def test_unwritable_storage(tiny_shards, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ClusterError, match=re.escape(f"storage {blocker}/sweeps is not writable")):
        sweep(tiny(tiny_shards, "x"), storage=str(blocker / "sweeps"))


@pytest.mark.slow
def test_a_trial_out_of_time_before_its_first_step_ends_the_sweep_cleanly(ray_session, tiny_shards, tmp_path):
    """A trial whose deadline has passed when it starts reports that it never validated (Tune
    refuses a last result without the metric) and the others run as usual."""
    variants = [{"optim.lr": 0.003}, {"optim.lr": 0.03, "deadline": time.time() - 1.0}]
    cfg = tiny(tiny_shards, "late", space={"variant": {"grid": variants}})
    result = sweep(cfg, storage=str(tmp_path / "sweeps"))
    assert result.errors == 0
    rows = {r.config["variant"]["optim.lr"]: r for r in status(result.experiment_path)}
    assert rows[0.003].state == rows[0.03].state == "TERMINATED"
    assert rows[0.003].step == 20 and rows[0.03].val_esr == float("inf")
    assert [b.config["variant"]["optim.lr"] for b in best(result.experiment_path, top=5)] == [0.003]
