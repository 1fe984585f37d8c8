"""Tune's driver state: a file cut off by a killed driver is put back, with the rest of its save, from the sweep's copy."""

from __future__ import annotations

import json
import pickle

import pytest

from fxdist.errors import ClusterError
from fxdist.tune.state import STATE_BACKUP_DIR, STATE_BACKUP_FILE, _complete, _read_backup, _restore_state_backup, _state_set, _write_backup

EXP = "experiment_state-2026-11-25_02-00-00.json"
SEARCH = "basic-variant-state-2026-11-25_02-00-00.json"


def test_a_cut_off_experiment_state_is_restored_from_the_sweeps_copy(tmp_path):
    """Ray writes experiment_state-*.json in place; a driver killed mid-write leaves it empty
    (seen once in CI in the killed-driver test). resume puts the sweep's last complete copy back."""
    old, new = tmp_path / "experiment_state-2026-11-25_01-00-00.json", tmp_path / EXP
    old.write_text('{"old": 1}')
    new.write_text('{"trial_data": [')  # cut off
    with pytest.raises(ClusterError, match=f"{new.name}: the experiment state is empty or cut off.*{STATE_BACKUP_DIR}"):
        _restore_state_backup(str(tmp_path))
    _write_backup(str(tmp_path), {EXP: b'{"trial_data": []}'})
    assert _restore_state_backup(str(tmp_path)) is True
    assert json.loads(new.read_text()) == {"trial_data": []} and old.read_text() == '{"old": 1}'
    assert _restore_state_backup(str(tmp_path)) is False  # complete now: left alone


def test_the_whole_save_is_put_back_not_only_the_cut_file(tmp_path):
    """The kill cut the experiment state while the search state already holds a later save: a
    trial the searcher handed out, unknown to the older experiment state, would hold the only
    slot of max_concurrent_trials=1 and the resumed sweep would wait for it forever. The search
    state of the same save as the restored experiment state goes back with it."""
    (tmp_path / EXP).write_text('{"trial_data": [["a"], ["b"]]')  # cut: the save with trial b
    (tmp_path / SEARCH).write_bytes(pickle.dumps({"live": ["b"]}))  # complete: the same save
    _write_backup(str(tmp_path), {EXP: b'{"trial_data": [["a"]]}', SEARCH: pickle.dumps({"live": ["a"]})})
    assert _restore_state_backup(str(tmp_path)) is True
    assert json.loads((tmp_path / EXP).read_text()) == {"trial_data": [["a"]]}
    assert pickle.loads((tmp_path / SEARCH).read_bytes()) == {"live": ["a"]}


def test_state_of_a_later_session_is_moved_aside(tmp_path):
    """A resume killed before it backed up its own first save: its files, newer by name, would
    be what Ray restores, so they go aside and the kept set is restored."""
    later_exp, later_search = "experiment_state-2026-11-25_03-00-00.json", "basic-variant-state-2026-11-25_03-00-00.json"
    (tmp_path / later_exp).write_text('{"trial_data": [')
    (tmp_path / later_search).write_bytes(pickle.dumps({"live": ["c"]}))
    _write_backup(str(tmp_path), {EXP: b'{"trial_data": []}', SEARCH: pickle.dumps({"live": []})})
    assert _restore_state_backup(str(tmp_path)) is True
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted(
        [EXP, SEARCH, f"{later_exp}.superseded", f"{later_search}.superseded"])
    assert pickle.loads((tmp_path / SEARCH).read_bytes()) == {"live": []}


def test_a_cut_off_search_state_is_restored_too(tmp_path):
    """The search algorithm's state is a pickle synced to the storage; CI once saw it empty
    after the kill, and Tune then restarted the whole sweep. resume puts the copy back."""
    state = pickle.dumps({"iterators": [1, 2, 3], "name": "basic"})
    assert _complete(state, "pickle") and not _complete(state[:-1], "pickle") and not _complete(b"", "pickle")
    assert not _complete(state[: len(state) // 2], "pickle")
    (tmp_path / EXP).write_text("{}")
    cut = tmp_path / SEARCH
    cut.write_bytes(state[:5])
    with pytest.raises(ClusterError, match=f"{cut.name}: the search state is empty or cut off"):
        _restore_state_backup(str(tmp_path))
    _write_backup(str(tmp_path), {EXP: b"{}", SEARCH: state})
    assert _restore_state_backup(str(tmp_path)) is True
    assert pickle.loads(cut.read_bytes()) == {"iterators": [1, 2, 3], "name": "basic"}


def test_only_a_whole_set_is_kept_or_read_back(tmp_path):
    """A set with a cut file is not taken; a backup file cut by a kill is no set."""
    state = pickle.dumps({"live": []})
    (tmp_path / EXP).write_text("{}")
    (tmp_path / SEARCH).write_bytes(state[:3])
    assert _state_set(str(tmp_path)) is None
    (tmp_path / SEARCH).write_bytes(state)
    assert _state_set(str(tmp_path)) == {EXP: b"{}", SEARCH: state}
    _write_backup(str(tmp_path), {EXP: b"{}", SEARCH: state})
    assert _read_backup(str(tmp_path)) == {EXP: b"{}", SEARCH: state}
    backup = tmp_path / STATE_BACKUP_DIR / STATE_BACKUP_FILE
    backup.write_bytes(backup.read_bytes()[:-10])
    assert _read_backup(str(tmp_path)) is None
