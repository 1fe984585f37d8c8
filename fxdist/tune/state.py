"""Keeping Tune's driver state restorable (checked against Ray 2.58).

A driver killed at the wrong moment can leave state that ``Tuner.restore`` cannot use: a
state file cut off mid-write, or an experiment state that points at a checkpoint Tune had
already deleted. ``sweep`` backs up each complete set of state files while it runs;
``resume`` puts the last set back and recreates missing checkpoints before it restores.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import logging
from pathlib import Path

from fxdist import storage
from fxdist.errors import ClusterError

STATE_BACKUP_DIR = ".fxdist-state"  # in the experiment folder
STATE_BACKUP_FILE = "driver-state.json"  # in STATE_BACKUP_DIR: Ray's state files of one save, written at once
# Ray's driver state in the experiment folder, as (file pattern, format, what it is); the
# ``*`` is the driver's session (its start time), and Ray restores each from the newest file
# of its pattern. A driver killed while it writes or syncs one leaves it empty or cut off:
# Tune then cannot restore the run (a cut search state makes it restart the whole sweep).
STATE_FILES = (
    ("experiment_state-*.json", "json", "experiment state"),
    ("basic-variant-state-*.json", "pickle", "search state"),
    ("search_gen_state-*.json", "pickle", "search state"),
    ("searcher-state-*.pkl", "pickle", "searcher state"),
    ("callback-states-*.pkl", "pickle", "callback state"),
)
EXPERIMENT_STATE = STATE_FILES[0][0]


def _newest_state_file(exp: str, pattern: str = EXPERIMENT_STATE) -> str | None:
    """Name of the newest file matching ``pattern`` in ``exp`` (by name, as Ray picks it)."""
    names = fnmatch.filter(storage.list_names(exp), pattern)
    return max(names) if names else None


def _session(name: str, pattern: str) -> str:
    """The driver session in a state file's name: the part ``*`` stands for in ``pattern``."""
    head, tail = pattern.split("*")
    return name[len(head):len(name) - len(tail)]


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


def _state_set(folder: str) -> dict[str, bytes] | None:
    """The newest file of each of Ray's state patterns in ``folder``, by name; None unless
    there is an experiment state and every file reads as complete."""
    files = {}
    for pattern, fmt, _what in STATE_FILES:
        name = _newest_state_file(folder, pattern)
        if name is None:
            continue
        data = storage.read_bytes(storage.join(folder, name))
        if not _complete(data, fmt):
            return None
        files[name] = data
    return files if any(fnmatch.fnmatch(name, EXPERIMENT_STATE) for name in files) else None


def _write_backup(exp: str, files: dict[str, bytes]) -> None:
    """Keep ``files`` (one save of Ray's state) as one file, so a kill leaves the old set or the new one."""
    text = json.dumps({"files": {name: base64.b64encode(data).decode() for name, data in sorted(files.items())}})
    storage.write_text(storage.join(exp, STATE_BACKUP_DIR, STATE_BACKUP_FILE), text)


def _read_backup(exp: str) -> dict[str, bytes] | None:
    """The state files ``_write_backup`` kept, or None when there is no whole set."""
    text = storage.read_text(storage.join(exp, STATE_BACKUP_DIR, STATE_BACKUP_FILE))
    try:
        files = {name: base64.b64decode(data, validate=True) for name, data in json.loads(text or "")["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):  # missing, cut or not ours
        return None
    for name, data in files.items():
        fmt = next((fmt for pattern, fmt, _what in STATE_FILES if fnmatch.fnmatch(name, pattern)), None)
        if fmt is None or not _complete(data, fmt):
            return None
    return files if any(fnmatch.fnmatch(name, EXPERIMENT_STATE) for name in files) else None


def _state_backup_callback(exp: str):
    """A Tune callback that keeps the last complete set of Ray's driver state files
    (``STATE_FILES``) in ``<exp>/.fxdist-state/driver-state.json``, taken after each save.

    Ray saves all of them into the driver's staging folder in one go, before it calls the
    callbacks, then copies them to the experiment folder in place, one after another, in a
    background thread. A driver killed during that copy leaves one file cut off and the
    others from either that save or the one before. Only a whole set is a state Tune can go
    on from: an experiment state put back from an older save than the search state lacks
    trials the searcher already handed out, and with ``max_concurrent_trials`` those hold
    their slots forever, so the resumed sweep waits for a trial that never comes. So the
    callback copies the set from the staging folder (from the experiment folder where the
    trials do not name one), and ``_restore_state_backup`` puts the whole set back.
    """
    from ray.tune import Callback

    class _StateBackup(Callback):
        def __init__(self):
            self.last_seen: tuple | None = None

        def on_step_end(self, iteration: int, trials: list, **info) -> None:
            self._backup(trials)

        def on_experiment_end(self, trials: list, **info) -> None:
            self._backup(trials)  # after the final save

        def _backup(self, trials: list) -> None:
            folder = getattr(trials[0], "local_experiment_path", None) if trials else None
            folder = folder or exp
            name = _newest_state_file(folder)
            if name is None:
                return
            fs, path = storage.resolve(storage.join(folder, name))
            info = fs.get_file_info(path)
            seen = (name, info.mtime_ns, info.size)
            if seen == self.last_seen:
                return
            files = _state_set(folder)
            if files is not None:
                _write_backup(exp, files)
                self.last_seen = seen

    return _StateBackup()


def _cut_state_file(exp: str) -> tuple[str, str] | None:
    """(name, what it is) of the first of Ray's newest state files in ``exp`` that is empty or cut off."""
    for pattern, fmt, what in STATE_FILES:
        name = _newest_state_file(exp, pattern)
        if name is not None and not _complete(storage.read_bytes(storage.join(exp, name)), fmt):
            return name, what
    return None


def _move_aside(exp: str, name: str) -> None:
    """Rename a state file to ``<name>.superseded``: kept for a post-mortem, no longer restored by Ray."""
    fs, path = storage.resolve(storage.join(exp, name))
    fs.move(path, f"{path}.superseded")


def _restore_state_backup(exp: str) -> bool:
    """If the newest copy of any of Ray's driver state files is empty or cut off (a driver
    killed while Ray wrote it), put back the whole last set the sweep kept; state files of
    later sessions, and a cut file the set does not replace, are moved aside so that Ray
    restores that set. Returns whether it restored; ClusterError names the cut file when
    there is no complete set."""
    cut = _cut_state_file(exp)
    if cut is None:
        return False
    name, what = cut
    files = _read_backup(exp)
    if files is None:
        raise ClusterError(
            f"{storage.join(exp, name)}: the {what} is empty or cut off (the driver was killed while writing "
            f"it) and there is no complete copy in {storage.join(exp, STATE_BACKUP_DIR, STATE_BACKUP_FILE)}"
        )
    session = _session(next(n for n in files if fnmatch.fnmatch(n, EXPERIMENT_STATE)), EXPERIMENT_STATE)
    for pattern, _fmt, _what in STATE_FILES:
        for other in fnmatch.filter(storage.list_names(exp), pattern):
            if _session(other, pattern) > session or (other == name and name not in files):
                _move_aside(exp, other)
    for saved, data in files.items():
        storage.write_bytes(storage.join(exp, saved), data)
    logging.getLogger(__name__).warning(
        "%s was cut off; restored the last complete copy of the driver state (%s) from %s",
        name, ", ".join(sorted(files)), STATE_BACKUP_DIR)
    return True


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
