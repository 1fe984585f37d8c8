"""One trial: a trial process killed mid-run restarts from its checkpoint; a restored
optimizer takes the trial's own learning rate."""

from __future__ import annotations

import pytest
import yaml

from fxdist.checkpoint import load_checkpoint
from fxdist.tune import sweep, trial_train_config
from tests.tune.sweeps import REPO, kill_first_attempt_at, results, starts, tiny


@pytest.mark.slow
def test_killed_trial_process_recovers_from_checkpoint(ray_session, tiny_shards, tmp_path):
    cfg = tiny(tiny_shards, "crash", **{"overrides.steps": 40, "max_failures": 1, "space": {"optim.lr": {"grid": [0.01]}}})
    # SIGKILL the trial at step 30, first attempt only
    result = sweep(cfg, storage=str(tmp_path / "sweeps"), on_report=kill_first_attempt_at(30))

    (row,) = result.trials
    assert row.state == "TERMINATED" and row.step == 40
    attempts = starts(row.path)
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert attempts[1]["from_step"] in (10, 20)  # its last checkpoint before the crash
    steps = [(r["attempt"], r["step"]) for r in results(row.path)]
    assert (1, 30) not in steps  # killed before reporting step 30
    assert next(s for a, s in steps if a == 2) > 10


def test_retarget_optimizer_applies_a_new_lr(tiny_shards, tmp_path):
    """A PBT exploit restores another trial's optimizer: the perturbed lr must win."""
    import dataclasses

    from fxdist.train import train
    from fxdist.tune.trial import _retarget_optimizer

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
