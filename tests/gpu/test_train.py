"""Training on the GPU: every family, bf16 autocast against fp32, a few hundred steps on tiny shards.

Tolerance: the two validation ESRs (whole validation tracks, rendered in fp32) differ by at
most ``ABS_TOL + REL_TOL * max(esr)``: bf16 changes the rounding of every forward and so the
path the optimiser takes, not where a few hundred steps get to.
"""

from __future__ import annotations

import math

import pytest

from fxdist.train import Trainer

from tests.gpu.conftest import FAMILY_PRESETS, family_config

pytestmark = pytest.mark.gpu

STEPS = 300
ABS_TOL, REL_TOL = 0.02, 0.3
# Families that learn the distortion on the tiny shards in STEPS (the CPU test's
# tests/train/test_trainer.py::test_each_family_learns_on_tiny_shards): their ESR must drop.
LEARNERS = ("cnn", "fcn", "lstm", "wavenet", "tcn")


def run(family: str, shards, out, amp: bool) -> tuple[float, float]:
    """(untrained validation ESR, best validation ESR after STEPS) on the GPU."""
    trainer = Trainer(family_config(family, shards, out, device="cuda", amp=amp, steps=STEPS))
    assert trainer.device.type == "cuda" and next(trainer.model.parameters()).is_cuda
    before, _ = trainer.validate()
    try:
        result = trainer.run()
    finally:
        trainer.close()
    assert result.step == STEPS
    return before, result.best_val_esr


@pytest.mark.parametrize("family", sorted(FAMILY_PRESETS))
def test_bf16_and_fp32_training_reach_the_same_esr(tiny_shards, tmp_path, family):
    before, fp32 = run(family, tiny_shards, tmp_path / "fp32", amp=False)
    _, bf16 = run(family, tiny_shards, tmp_path / "bf16", amp=True)
    assert math.isfinite(fp32) and math.isfinite(bf16), (family, fp32, bf16)
    assert abs(bf16 - fp32) <= ABS_TOL + REL_TOL * max(bf16, fp32), (family, {"fp32": fp32, "bf16": bf16})
    if family in LEARNERS:
        assert fp32 < before and bf16 < before, (family, {"untrained": before, "fp32": fp32, "bf16": bf16})


@pytest.mark.parametrize("family", ["fir", "chorus", "wh"])
def test_a_family_fit_runs_on_the_gpu(tiny_shards, tmp_path, family):
    """``fit: true`` with the model on the GPU (the tracks are numpy on the host)."""
    import dataclasses

    cfg = dataclasses.replace(family_config(family, tiny_shards, tmp_path, device="cuda", amp=True, steps=20), fit=True)
    trainer = Trainer(cfg)
    try:
        result = trainer.run()
    finally:
        trainer.close()
    fit = result.history[0]
    assert fit["fit"] and math.isfinite(fit["val_esr"]), fit
    assert result.best_val_esr <= fit["val_esr"]
