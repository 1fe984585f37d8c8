"""Tune's driver state: a file cut off by a killed driver is put back from the sweep's copy."""

from __future__ import annotations

import json

import pytest

from fxdist.errors import ClusterError
from fxdist.tune.state import STATE_BACKUP_DIR, _complete, _restore_state_backup


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
