"""A time budget (``max_seconds``): the schedule anneals inside it, and it counts across resumes."""

from __future__ import annotations

import dataclasses
import math

import pytest

from fxdist.checkpoint import load_checkpoint
from fxdist.train import OptimConfig, Trainer, lr_lambda

from tests.train.test_trainer import tiny_config


def test_cosine_follows_the_budget_when_it_runs_ahead_of_the_steps():
    cfg = OptimConfig(lr=1.0, schedule="cosine", min_lr_ratio=0.05)
    spent = {"fraction": 0.0}
    fn = lr_lambda(cfg, steps=1_000_000, time_progress=lambda: spent["fraction"])
    assert fn(10) == pytest.approx(1.0, abs=1e-6)  # steps say: just started
    spent["fraction"] = 0.5
    assert fn(10) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    spent["fraction"] = 1.7  # overshoot: held at the floor
    assert fn(10) == pytest.approx(0.05)
    spent["fraction"] = 0.0
    assert fn(999_999) == pytest.approx(0.05, abs=1e-6)  # and the steps still count
    assert lr_lambda(cfg, steps=100)(50) == pytest.approx(lr_lambda(cfg, steps=100, time_progress=lambda: 0.0)(50))


def test_budgeted_run_stops_annealed_and_resume_keeps_the_budget(tiny_shards, tmp_path):
    budget = 4.0
    cfg = tiny_config(tiny_shards, tmp_path / "run", steps=1_000_000, val_every=1_000_000, checkpoint_every=1_000_000,
                      max_seconds=budget)
    trainer = Trainer(cfg)
    result = trainer.run()
    assert result.stopped_early and 0 < result.step < 1_000_000
    assert budget <= trainer.elapsed() < budget + 2.0
    # one step of 1e6 is no way along the cosine; the budget is: lr ended at the floor
    floor = cfg.optim.lr * cfg.optim.min_lr_ratio
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(floor, rel=0.05)
    ckpt = load_checkpoint(result.last_checkpoint)
    assert ckpt.metadata["trained_seconds"] >= budget
    assert ckpt.step == result.step

    again = Trainer(dataclasses.replace(cfg, resume=True)).run()
    assert again.stopped_early and again.step == result.step  # nothing left of the budget

    more = Trainer(dataclasses.replace(cfg, resume=True, max_seconds=budget + 2.0))
    more_result = more.run()
    assert more_result.step > result.step
    assert budget + 2.0 <= more.elapsed() < budget + 4.0


def test_a_deadline_stops_the_run_and_anneals_it(tiny_shards, tmp_path):
    import time

    cfg = tiny_config(tiny_shards, tmp_path / "run", steps=1_000_000, val_every=1_000_000, checkpoint_every=1_000_000,
                      max_seconds=1000.0, deadline=time.time() + 3.0)
    trainer = Trainer(cfg)
    result = trainer.run()
    assert result.stopped_early and result.step > 0
    assert cfg.deadline <= time.time() < cfg.deadline + 2.0
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(cfg.optim.lr * cfg.optim.min_lr_ratio, rel=0.05)

    late = Trainer(dataclasses.replace(cfg, out_dir=str(tmp_path / "late"), deadline=time.time() - 1.0)).run()
    assert late.stopped_early and late.step == 0
