"""Sweeps on a real local Ray (2 CPUs): results and best, Ray Train workers, a killed
driver resumed, a killed trial recovered, and bad input failing fast."""

from __future__ import annotations

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
from fxdist.errors import ClusterError, ConfigError
from fxdist.tune import (
    CRASH_ENV,
    STATE_BACKUP_DIR,
    ResourcesConfig,
    _latest_checkpoint,
    _restore_state_backup,
    best,
    check_resources,
    load_sweep_config,
    resume,
    status,
    sweep,
    trial_train_config,
)

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs/sweep/tiny.yaml"


@pytest.fixture(scope="module")
def ray_session():
    """One small embedded Ray for the module's in-process sweeps."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    ray.init(address="local", num_cpus=2, object_store_memory=200 * 1024 * 1024, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def tiny(shards: Path, name: str, **overrides):
    return load_sweep_config(TINY, {"overrides.data.shards": str(shards), "name": name, **overrides})


def read_json(path: Path):
    """JSON of a file another process may be writing right now (None until it is whole)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def results(trial_dir: str | Path) -> list[dict]:
    """Tune's result rows (a half-copied last line, mid-sync, is skipped)."""
    path = Path(trial_dir, "result.json")
    lines = path.read_text().splitlines() if path.is_file() else []
    return [row for row in (read_json_line(line) for line in lines) if row is not None]


def read_json_line(line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def starts(trial_dir: str | Path) -> list[dict]:
    ckpt = _latest_checkpoint(str(trial_dir))
    return [json.loads(line) for line in Path(ckpt, "starts.jsonl").read_text().splitlines()]


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
        "space": {"steps": {"grid": [40, 400]}},
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
                if 400 in dirs and len(results(dirs[400])) >= 3:  # the long trial checkpointed 3 times (step 60)
                    break
                assert proc.poll() is None, (tmp_path / "sweep.log").read_text()[-3000:]
                assert time.monotonic() < deadline, (tmp_path / "sweep.log").read_text()[-3000:]
                time.sleep(0.2)
            time.sleep(1.5)  # let the driver save its experiment state
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    time.sleep(3)  # trial processes of the dead cluster notice their raylet is gone and exit

    short, long = dirs[40], dirs[400]
    short_rows = results(short)
    assert [r["step"] for r in short_rows] == [20, 40]  # finished before the kill
    before = results(long)
    assert before[-1]["step"] < 400
    # the sweep kept complete copies of Ray's experiment and search states, for a file cut off by the kill
    assert list((exp / STATE_BACKUP_DIR).glob("experiment_state-*.json"))
    assert list((exp / STATE_BACKUP_DIR).glob("basic-variant-state-*.json"))

    outcome = resume(exp)

    assert outcome.errors == 0
    assert {r.config["steps"]: (r.state, r.step) for r in outcome.trials} == {40: ("TERMINATED", 40), 400: ("TERMINATED", 400)}
    assert results(short) == short_rows and len(starts(short)) == 1  # not rerun
    attempts = starts(long)
    assert len(attempts) == 2 and attempts[1]["from_step"] >= 20
    after = [r for r in results(long) if r["attempt"] == 2]
    assert after and after[0]["step"] > 20  # a fresh run would report step 20 first
    assert after[0]["restored_from_step"] == attempts[1]["from_step"]


@pytest.mark.slow
def test_killed_trial_process_recovers_from_checkpoint(ray_session, tiny_shards, tmp_path, monkeypatch):
    monkeypatch.setenv(CRASH_ENV, "30")  # test-only hook: SIGKILL the trial at step 30, first attempt only
    cfg = tiny(tiny_shards, "crash", **{"overrides.steps": 40, "max_failures": 1, "space": {"optim.lr": {"grid": [0.01]}}})
    result = sweep(cfg, storage=str(tmp_path / "sweeps"))

    (row,) = result.trials
    assert row.state == "TERMINATED" and row.step == 40
    attempts = starts(row.path)
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert attempts[1]["from_step"] in (10, 20)  # its last checkpoint before the crash
    steps = [(r["attempt"], r["step"]) for r in results(row.path)]
    assert (1, 30) not in steps  # killed before reporting step 30
    assert next(s for a, s in steps if a == 2) > 10


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


# -- bad input -------------------------------------------------------------------------------


def write_sweep(tmp_path: Path, shards: Path, **changes) -> Path:
    data = yaml.safe_load(TINY.read_text())
    data["overrides"]["data.shards"] = str(shards)
    data.update(changes)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_key_in_sweep_yaml(tmp_path, tiny_shards):
    with pytest.raises(ConfigError, match="num_sample"):
        load_sweep_config(write_sweep(tmp_path, tiny_shards, num_sample=3))


def test_unknown_dotted_key_in_space(tmp_path, tiny_shards):
    with pytest.raises(ConfigError, match=r"space\.optim\.lrr.*lrr"):
        load_sweep_config(write_sweep(tmp_path, tiny_shards, space={"optim.lrr": {"choice": [0.1]}}))
    with pytest.raises(ConfigError, match=r"space\.model\.hidden_sise"):
        load_sweep_config(write_sweep(tmp_path, tiny_shards, space={"model.hidden_sise": {"choice": [8]}}))
    with pytest.raises(ConfigError, match=r"space\.model.*no preset"):
        load_sweep_config(write_sweep(tmp_path, tiny_shards, space={"model": {"choice": ["lstm-tiny", "lstm-huge"]}}))


@pytest.mark.parametrize("spec, match", [
    ({"loguniform": [0, 0.1]}, "loguniform needs 0 < lo < hi"),
    ({"uniform": [0.1, 0.01]}, "uniform needs lo < hi"),
    ({"randint": [1.5, 4]}, "randint needs integers"),
    ({"choice": []}, "non-empty list"),
    ({"normal": [0, 1]}, "unknown kind 'normal'"),
    ({"choice": [1], "grid": [2]}, "exactly one"),
])
def test_bad_space_spec(tmp_path, tiny_shards, spec, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_sweep_config(write_sweep(tmp_path, tiny_shards, space={"optim.lr": spec}))
    assert "space.optim.lr" in str(info.value)


def test_wrong_value_type_for_key(tmp_path, tiny_shards):
    """uniform samples floats; data.output_len must be an int."""
    with pytest.raises(ConfigError, match=r"space\.data\.output_len.*expected int"):
        load_sweep_config(write_sweep(tmp_path, tiny_shards, space={"data.output_len": {"uniform": [512, 1024]}}))


def test_pbt_with_ray_train_workers_is_refused(tmp_path, tiny_shards):
    with pytest.raises(ConfigError, match="pbt"):
        load_sweep_config(write_sweep(tmp_path, tiny_shards, scheduler={"kind": "pbt"}, resources={"workers": 2}))


def test_model_field_keys_expand_a_preset(tmp_path):
    base = {"model": "lstm-tiny", "data": {"shards": str(tmp_path)}}
    cfg = trial_train_config(base, {"model.hidden_size": 12, "optim.lr": 0.002}, tmp_path / "run")
    assert cfg.model["family"] == "lstm" and cfg.model["hidden_size"] == 12
    assert cfg.optim.lr == 0.002 and cfg.resume and cfg.out_dir == str(tmp_path / "run")


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


def test_no_experiment_at_path(tmp_path):
    for call in (resume, status, best):
        with pytest.raises(ClusterError, match="no Ray Tune experiment here"):
            call(tmp_path)


def test_a_cut_off_experiment_state_is_restored_from_the_sweeps_copy(tmp_path):
    """Ray writes experiment_state-*.json in place; a driver killed mid-write leaves it empty
    (seen once in CI in the killed-driver test). resume puts the sweep's last complete copy back."""
    old, new = tmp_path / "experiment_state-2026-11-25_01-00-00.json", tmp_path / "experiment_state-2026-11-25_02-00-00.json"
    old.write_text('{"old": 1}')
    new.write_text('{"trial_data": [')  # cut off
    with pytest.raises(ClusterError, match=f"{new.name}: the experiment state is empty or cut off.*{STATE_BACKUP_DIR}"):
        _restore_state_backup(str(tmp_path))
    (tmp_path / STATE_BACKUP_DIR).mkdir()
    (tmp_path / STATE_BACKUP_DIR / new.name).write_text('{"trial_data": []}')
    assert _restore_state_backup(str(tmp_path)) is True
    assert json.loads(new.read_text()) == {"trial_data": []} and old.read_text() == '{"old": 1}'
    assert _restore_state_backup(str(tmp_path)) is False  # complete now: left alone


def test_a_cut_off_search_state_is_restored_too(tmp_path):
    """The search algorithm's state is a pickle synced to the storage; CI once saw it empty
    after the kill, and Tune then restarted the whole sweep. resume puts the copy back."""
    import pickle

    from fxdist.tune import _complete

    state = pickle.dumps({"iterators": [1, 2, 3], "name": "basic"})
    assert _complete(state, "pickle") and not _complete(state[:-1], "pickle") and not _complete(b"", "pickle")
    assert not _complete(state[: len(state) // 2], "pickle")
    cut = tmp_path / "basic-variant-state-2026-11-25_03-32-48.json"
    cut.write_bytes(state[:5])
    with pytest.raises(ClusterError, match=f"{cut.name}: the search state is empty or cut off"):
        _restore_state_backup(str(tmp_path))
    (tmp_path / STATE_BACKUP_DIR).mkdir()
    (tmp_path / STATE_BACKUP_DIR / cut.name).write_bytes(state)
    assert _restore_state_backup(str(tmp_path)) is True
    assert pickle.loads(cut.read_bytes()) == {"iterators": [1, 2, 3], "name": "basic"}


def test_retarget_optimizer_applies_a_new_lr(tiny_shards, tmp_path):
    """A PBT exploit restores another trial's optimizer: the perturbed lr must win."""
    import dataclasses

    from fxdist.train import train
    from fxdist.tune import _retarget_optimizer

    base = {**yaml.safe_load((REPO / "configs/train/tiny.yaml").read_text()), "steps": 10, "val_every": 10}
    base["data"]["shards"] = str(tiny_shards)
    train(trial_train_config(base, {"optim.lr": 0.01}, tmp_path / "run", device="cpu"))
    cfg = trial_train_config(base, {"optim.lr": 0.001}, tmp_path / "run", device="cpu")
    cfg = dataclasses.replace(cfg, steps=20)
    _retarget_optimizer(tmp_path / "run" / "last.pt", cfg)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt.scheduler_state["base_lrs"] == [0.001]
    assert all(g["initial_lr"] == 0.001 for g in ckpt.optimizer_state["param_groups"])
    result = train(cfg)  # resumes at step 10 with the new rate
    assert result.step == 20
