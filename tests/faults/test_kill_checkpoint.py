"""SIGKILL during a checkpoint save: ``last.pt`` / ``best.pt`` are always a complete earlier
checkpoint (written beside and renamed), never half a file, and ``--resume`` completes."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fxdist.checkpoint import load_checkpoint
from tests.faults.killing import REPO, fxdist, kill_when

pytestmark = pytest.mark.slow
STEPS = 60


def _temps(out: Path) -> set[Path]:
    return set(out.glob(".last.pt.*")) | set(out.glob(".best.pt.*"))


def _saves_started(out: Path, count: int):
    """True once ``count`` new temp checkpoints have appeared in ``out`` (the kill then lands inside a save)."""
    before, seen = _temps(out), set()

    def check() -> bool:
        seen.update(_temps(out) - before)
        return len(seen) >= count

    return check


def _step(path: Path) -> int | None:
    """The step of a complete checkpoint at ``path``; None if there is none. A half-written file fails here."""
    return load_checkpoint(path).step if path.exists() else None


def test_train_killed_while_saving_resumes_from_a_complete_checkpoint(tiny_shards, tmp_path):
    out = tmp_path / "run"
    train = ["train", str(REPO / "configs/train/tiny.yaml"), "--shards", str(tiny_shards), "--out", str(out),
             "--set", f"steps={STEPS}", "--set", "checkpoint_every=1", "--set", "val_every=1", "--set", "log_every=1"]
    last_step, kills = 0, 0
    for nth_save in (1, 2, 5, 9):
        resume = ["--resume"] if (out / "last.pt").exists() else ["--overwrite"]
        run = kill_when([*train, *resume], _saves_started(out, nth_save), timeout=90)
        assert run.killed or run.returncode == 0, run.log[-3000:]
        kills += run.killed
        step = _step(out / "last.pt")  # loads, or there is none yet
        _step(out / "best.pt")
        if step is not None:
            assert step >= last_step, f"last.pt went back from step {last_step} to {step}"
            last_step = step
    assert kills >= 3, "the runs finished before the kills"
    done = fxdist(*train, "--resume" if (out / "last.pt").exists() else "--overwrite", timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert _step(out / "last.pt") == STEPS and _step(out / "best.pt") is not None


_SAVE_LOOP = """
import sys, torch
from fxdist.checkpoint import Checkpoint, save_checkpoint
path = sys.argv[1]
state = {"w": torch.randn(1024, 1024)}  # 4 MiB: most of the time is spent inside a save
for step in range(1, 10**9):
    save_checkpoint(path, Checkpoint(model_config={"family": "lstm"}, model_state=state, sample_rate=16000,
                                     receptive_field=1, step=step))
    if step == 1:
        print("saving", flush=True)
"""


def test_a_loop_of_saves_killed_at_random_times_always_leaves_a_complete_file(tmp_path):
    path = tmp_path / "last.pt"
    rng = random.Random(0)
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", _SAVE_LOOP, str(path)], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline() == "saving\n"
            time.sleep(rng.uniform(0.01, 0.4))
        finally:
            proc.kill()
            proc.wait(10)
        assert load_checkpoint(path).step >= 1  # a complete checkpoint, whatever the kill cut
    # A kill inside a save leaves its temp file (never read back): the kills did land mid-save.
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert leftovers and all(name.startswith(".last.pt.") for name in leftovers), leftovers
