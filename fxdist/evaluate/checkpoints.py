"""Which checkpoints an evaluation means: files, folders of ``best.pt``, Ray Tune experiments."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from fxdist.checkpoint import load_checkpoint
from fxdist.errors import CheckpointError


def is_tune_experiment(path: str | os.PathLike) -> bool:
    """A Ray Tune experiment folder written by ``fxdist.tune.sweep`` (it holds ``tuner.pkl``)."""
    return (Path(path) / "tuner.pkl").is_file()


def find_checkpoints(source: str | os.PathLike | Sequence[str | os.PathLike], trust: bool = False) -> list[Path]:
    """Checkpoint files named by ``source``: files as given; folders searched for ``**/best.pt``.

    A Ray Tune experiment folder gives each trial's best checkpoint, best trial first
    (``fxdist.tune.best``, which refuses a folder others can write unless ``trust``), rather
    than every checkpoint it kept.
    """
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir() and is_tune_experiment(path):
            from fxdist.tune import best

            trials = best(path, top=1_000_000, trust=trust)
            if not trials:
                raise CheckpointError(f"{path}: no trial of this Ray Tune experiment has a best checkpoint yet")
            found.extend(Path(t.checkpoint) for t in trials)
        elif path.is_dir():
            inside = sorted(path.glob("**/best.pt"))
            if not inside:
                raise CheckpointError(f"{path}: no best.pt checkpoint in this folder or below")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise CheckpointError(f"{path}: no such checkpoint file or experiment folder")
    if not found:
        raise CheckpointError("no checkpoints given")
    return found


def best_checkpoint(source: str | os.PathLike, trust: bool = False) -> Path:
    """A checkpoint file as is; for a folder, its ``**/best.pt`` with the lowest stored best val ESR.

    For a Ray Tune experiment folder: its best trial's checkpoint (``fxdist.tune.best``).
    """
    paths = find_checkpoints(source, trust=trust)
    if is_tune_experiment(source):
        return paths[0]
    if len(paths) == 1:
        return paths[0]

    def score(p: Path) -> float:
        v = load_checkpoint(p).best_val_esr
        return math.inf if v is None else float(v)

    return min(paths, key=score)



def short_labels(paths: Sequence[Path]) -> list[str]:
    """Shortest distinct trailing path parts: ``runs/best/1-a/best.pt`` -> ``1-a`` beside ``2-b``."""
    parts = [list(Path(p).with_suffix("").parts) for p in paths]
    if len(paths) > 1 and len({p[-1] for p in parts}) == 1 and all(len(p) > 1 for p in parts):
        parts = [p[:-1] for p in parts]  # every file has the same name: the folders tell them apart
    for k in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-k:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]

