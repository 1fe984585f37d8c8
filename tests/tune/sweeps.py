"""Helpers for the sweep tests: the tiny sweep config, Tune's result rows, a trial's starts,
and a fault injector for trials."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import yaml

from fxdist.tune import load_sweep_config
from fxdist.tune.results import _latest_checkpoint

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs/sweep/tiny.yaml"


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


def write_sweep(tmp_path: Path, shards: Path, **changes) -> Path:
    data = yaml.safe_load(TINY.read_text())
    data["overrides"]["data.shards"] = str(shards)
    data.update(changes)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def kill_first_attempt_at(step: int):
    """An ``on_report`` hook for ``sweep``: a trial that started without a checkpoint SIGKILLs
    its own process (rank 0) the first time it reports a step >= ``step``, before it reports it.

    A closure, so it pickles by value into the trial processes (they need not import tests).
    """

    def hook(metrics: dict, rank: int) -> None:
        if rank == 0 and metrics["restored_from_step"] == 0 and metrics["step"] >= step:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook
