"""SIGKILL `fxdist sweep` as its driver writes the experiment state, then resume.

Ray writes ``experiment_state-*.json`` in place (no temp file + rename), so a kill inside that
write leaves it cut off; the sweep keeps the last complete set of its state files
(``fxdist.tune.state``) and resume puts the whole set back: the cut file alone, from an older
save than the search state beside it, leaves the resume waiting forever for a trial. The kill
is timed to a state write; the newest state file is then cut in half as such a kill leaves
it, whether or not this kill landed inside the write itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fxdist.tune import status
from fxdist.tune.state import STATE_BACKUP_DIR, STATE_BACKUP_FILE
from tests.faults.killing import REPO, fxdist, kill_when

pytestmark = pytest.mark.slow


def _rows(trial_dir: Path) -> int:
    path = trial_dir / "result.json"
    return len(path.read_text().splitlines()) if path.is_file() else 0


@pytest.mark.timeout(360)
def test_driver_killed_at_a_state_write_resumes(tiny_shards, tmp_path):
    sweep = tmp_path / "state.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "state", "train": str(REPO / "configs/train/tiny.yaml"),
        "overrides": {"data.shards": str(tiny_shards), "val_every": 20, "checkpoint_every": 20},
        "space": {"steps": {"grid": [40, 300]}}, "max_concurrent_trials": 1,
        "scheduler": {"kind": "fifo"}, "keep_checkpoints": 2, "verbose": 0,
    }))
    exp = tmp_path / "sweeps" / "state"
    seen: dict[str, tuple[int, int]] = {}

    def newest_state() -> Path | None:
        files = sorted(exp.glob("experiment_state-*.json"))
        return files[-1] if files else None

    def at_a_state_write() -> bool:
        """True the moment the driver rewrites its state, once the long trial has checkpointed
        twice and the sweep holds a backup copy."""
        long = [p.parent for p in exp.glob("*/params.json") if '"steps": 300' in p.read_text()]
        if not long or _rows(long[0]) < 2 or not (exp / STATE_BACKUP_DIR / STATE_BACKUP_FILE).is_file():
            return False
        state = newest_state()
        st = state.stat()
        mark = (st.st_mtime_ns, st.st_size)
        first = seen.setdefault(state.name, mark)
        return mark != first

    run = kill_when(["sweep", str(sweep), "--storage", str(tmp_path / "sweeps"), "--num-cpus", "2"],
                    at_a_state_write, timeout=150, cwd=tmp_path)
    assert run.killed, run.log[-3000:]
    state = newest_state()
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2])  # what a kill inside Ray's in-place write leaves

    done = fxdist("resume", str(exp), "--num-cpus", "2", cwd=tmp_path, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "was cut off; restored the last complete copy" in done.stdout + done.stderr
    json.loads(state.read_text())  # whole again
    rows = status(exp)
    assert sorted((r.config["steps"], r.state, r.step) for r in rows) == [(40, "TERMINATED", 40), (300, "TERMINATED", 300)]
