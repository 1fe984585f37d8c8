"""Keeping Tune's driver state restorable (checked against Ray 2.58).

A driver killed at the wrong moment can leave state that ``Tuner.restore`` cannot use: a
state file cut off mid-write, or an experiment state that points at a checkpoint Tune had
already deleted. ``sweep`` backs up complete state files while it runs; ``resume`` puts
them back and recreates missing checkpoints before it restores.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import time
from pathlib import Path

from fxdist import storage
from fxdist.errors import ClusterError

STATE_BACKUP_DIR = ".fxdist-state"  # in the experiment folder: the last complete driver state
STATE_BACKUP_EVERY_S = 5.0
# Ray's driver state in the experiment folder, as (file pattern, format, what it is); Ray
# restores each from the newest file of its pattern. A driver killed while it writes or
# syncs one leaves it empty or cut off: Tune then cannot restore the run (a cut search
# state makes it restart the whole sweep from scratch).
STATE_FILES = (
    ("experiment_state-*.json", "json", "experiment state"),
    ("basic-variant-state-*.json", "pickle", "search state"),
    ("search_gen_state-*.json", "pickle", "search state"),
    ("searcher-state-*.pkl", "pickle", "searcher state"),
    ("callback-states-*.pkl", "pickle", "callback state"),
)


def _newest_state_file(exp: str, pattern: str = "experiment_state-*.json") -> str | None:
    """Name of the newest file matching ``pattern`` in ``exp`` (by name, as Ray picks it)."""
    names = fnmatch.filter(storage.list_names(exp), pattern)
    return max(names) if names else None


def _complete(data: bytes | None, fmt: str) -> bool:
    """Whether ``data`` is a whole JSON document or a whole pickle (scanned to its STOP
    opcode without building any object)."""
    if not data:
        return False
    if fmt == "json":
        try:
            json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
        return True
    import pickletools

    try:
        last = None
        for last, _arg, _pos in pickletools.genops(data):
            pass
    except Exception:  # noqa: BLE001  (genops raises ValueError, EOFError, ... on a cut stream)
        return False
    return last is not None and last.name == "STOP"


def _state_backup_callback(exp: str):
    """A Tune callback that copies each of Ray's driver state files (``STATE_FILES``) to
    ``<exp>/.fxdist-state/`` each time it has changed and reads as complete (checked every
    ``STATE_BACKUP_EVERY_S`` at most).

    Ray writes some in place and syncs all of them to the storage without temp file +
    rename, so a driver killed at the wrong moment leaves an empty or cut file that
    ``Tuner.restore`` cannot read; ``resume`` then puts these copies back
    (``_restore_state_backup``).
    """
    from ray.tune import Callback

    class _StateBackup(Callback):
        def __init__(self):
            self.last_check = -math.inf
            self.last_data: dict[str, bytes] = {}

        def on_step_end(self, iteration: int, trials: list, **info) -> None:
            now = time.monotonic()
            if now - self.last_check < STATE_BACKUP_EVERY_S:
                return
            self.last_check = now
            for pattern, fmt, _what in STATE_FILES:
                name = _newest_state_file(exp, pattern)
                data = storage.read_bytes(storage.join(exp, name)) if name else None
                if data is not None and data != self.last_data.get(pattern) and _complete(data, fmt):
                    storage.write_bytes(storage.join(exp, STATE_BACKUP_DIR, name), data)
                    self.last_data[pattern] = data

    return _StateBackup()


def _restore_state_backup(exp: str) -> bool:
    """For each of Ray's driver state files whose newest copy is empty or cut off (a driver
    killed while Ray wrote it), put back the last complete copy the sweep saved. Returns
    whether it restored any; ClusterError names a cut file that has no complete copy."""
    restored = False
    for pattern, fmt, what in STATE_FILES:
        name = _newest_state_file(exp, pattern)
        if name is None or _complete(storage.read_bytes(storage.join(exp, name)), fmt):
            continue
        backup = storage.read_bytes(storage.join(exp, STATE_BACKUP_DIR, name))
        if not _complete(backup, fmt):
            raise ClusterError(
                f"{storage.join(exp, name)}: the {what} is empty or cut off (the driver was killed while writing "
                f"it) and there is no complete copy in {storage.join(exp, STATE_BACKUP_DIR)}"
            )
        storage.write_bytes(storage.join(exp, name), backup)
        logging.getLogger(__name__).warning("%s was cut off; restored the last complete copy from %s", name, STATE_BACKUP_DIR)
        restored = True
    return restored


def _repair_missing_checkpoints(exp: str) -> list[str]:
    """Work around stale references to deleted checkpoints (seen with Ray 2.58).

    Tune keeps the best K checkpoints by score plus the latest one. When a new
    checkpoint arrives, it deletes the previous latest unless that one is among the best
    K. But the experiment state on disk is written only every ~10 s, or after K
    checkpoints. So a driver killed in between leaves a state that points at a deleted
    folder, and ``Tuner.restore`` then fails that trial ("does not exist on storage
    anymore"). Each unfinished trial whose referenced latest checkpoint is gone gets the
    folder back, filled with the trial's newest surviving checkpoint (newer, never
    older). ``train`` resumes from the step stored inside it. Returns the recreated
    folders.
    """
    import pyarrow.fs as pafs

    from fxdist.tune.results import _latest_checkpoint, _trials  # results -> trust -> state

    repaired = []
    for trial in _trials(exp, trust=True):  # resume checked the folder first
        if trial.status == "TERMINATED":
            continue
        try:
            latest = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
            ckpt = latest.checkpoint if latest is not None else None
        except AttributeError:  # another Ray's internals: nothing to repair with
            continue
        if ckpt is None or ckpt.filesystem.get_file_info(ckpt.path).type != pafs.FileType.NotFound:
            continue
        newest = _latest_checkpoint(storage.join(exp, Path(trial.path).name))
        if newest is None:
            continue
        storage.copy_tree(newest, ckpt.filesystem, ckpt.path)
        repaired.append(ckpt.path)
    return repaired
