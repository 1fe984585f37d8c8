"""Sweep folders someone else could have written are refused before Ray unpickles them:
`fxdist resume`, `status` and `best` on a group- or world-writable folder or state file, or
one owned by another user; `--trust` lets them through."""

from __future__ import annotations

import os
import pickle
import re
import stat
from pathlib import Path

import pytest

from fxdist.cli import main
from fxdist.tune import STATE_BACKUP_DIR, best, resume, status, sweep
from fxdist.tune.state import STATE_BACKUP_FILE
from fxdist.tune.trust import UntrustedExperiment, check_trusted
from tests.tune.sweeps import tiny


class Planted:
    """A pickle whose loading creates ``marker``: what a planted ``tuner.pkl`` could do instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def fake_experiment(root: Path, marker: Path) -> Path:
    """An experiment folder as a sweep leaves it, with a planted tuner.pkl."""
    exp = root / "exp"
    (exp / STATE_BACKUP_DIR).mkdir(parents=True)
    (exp / "tuner.pkl").write_bytes(pickle.dumps(Planted(marker)))
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    (exp / STATE_BACKUP_DIR / STATE_BACKUP_FILE).write_text('{"files": {}}')
    (exp / "fxdist-sweep.json").write_text("{}")
    trial = exp / "abc_00000"
    trial.mkdir()
    (trial / "params.json").write_text("{}")
    (trial / "params.pkl").write_bytes(pickle.dumps({}))
    for path in (exp, *exp.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return exp


def add_mode(path: Path, bits: int) -> None:
    path.chmod(stat.S_IMODE(path.stat().st_mode) | bits)


@pytest.mark.parametrize("where, bits, why", [
    ("", stat.S_IWGRP, "writable by its group"),
    ("", stat.S_IWOTH, "writable by others"),
    ("tuner.pkl", stat.S_IWGRP, "writable by its group"),
    ("experiment_state-2026-01-01_00-00-00.json", stat.S_IWOTH, "writable by others"),
    (STATE_BACKUP_DIR, stat.S_IWGRP, "writable by its group"),
    (f"{STATE_BACKUP_DIR}/{STATE_BACKUP_FILE}", stat.S_IWGRP, "writable by its group"),
    ("abc_00000", stat.S_IWGRP | stat.S_IWOTH, "writable by its group and others"),
    ("abc_00000/params.pkl", stat.S_IWOTH, "writable by others"),
])
def test_a_writable_folder_or_state_file_is_refused_and_trust_passes_it(tmp_path, where, bits, why):
    exp = fake_experiment(tmp_path, tmp_path / "marker")
    check_trusted(str(exp))  # as a sweep leaves it under umask 022
    add_mode(exp / where, bits)
    with pytest.raises(UntrustedExperiment) as err:
        check_trusted(str(exp))
    message = str(err.value)
    assert message.startswith(f"{exp / where if where else exp}: it is {why} (owner ")
    assert "mode " in message and "run code as you" in message
    assert f"chmod -R go-w {exp}" in message and "--trust" in message
    check_trusted(str(exp), trust=True)
    check_trusted(f"file://{exp}", trust=True)
    with pytest.raises(UntrustedExperiment):
        check_trusted(f"file://{exp}")


def test_files_that_are_data_are_not_checked(tmp_path):
    exp = fake_experiment(tmp_path, tmp_path / "marker")
    for name in ("fxdist-sweep.json", "abc_00000/params.json"):
        add_mode(exp / name, stat.S_IWGRP | stat.S_IWOTH)
    check_trusted(str(exp))


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_state_file_owned_by_someone_else_is_refused(tmp_path):
    exp = fake_experiment(tmp_path, tmp_path / "marker")
    os.chown(exp / "tuner.pkl", 65534, 65534)
    with pytest.raises(UntrustedExperiment, match=re.escape(f"{exp / 'tuner.pkl'}: it is owned by ") + r".*uid 65534.*not by you"):
        check_trusted(str(exp))


def test_a_link_to_someone_elses_file_is_refused(tmp_path):
    exp = fake_experiment(tmp_path, tmp_path / "marker")
    elsewhere = tmp_path / "elsewhere.pkl"
    elsewhere.write_bytes(b"")
    elsewhere.chmod(0o666)
    (exp / "tuner.pkl").unlink()
    (exp / "tuner.pkl").symlink_to(elsewhere)
    with pytest.raises(UntrustedExperiment, match="what the link points at is writable by its group and others"):
        check_trusted(str(exp))
    (exp / "tuner.pkl").unlink()
    (exp / "tuner.pkl").write_bytes(b"")
    (exp / "notes.txt").symlink_to(elsewhere)  # a linked file Ray does not read
    check_trusted(str(exp))
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    (exp / "abc_00001").symlink_to(shared, target_is_directory=True)
    with pytest.raises(UntrustedExperiment, match=re.escape(f"{exp / 'abc_00001'}: what the link points at is writable")):
        check_trusted(str(exp))


@pytest.mark.parametrize("command", [["resume"], ["status"], ["best"], ["resume", "--num-cpus", "1"]])
def test_a_planted_tuner_pkl_does_not_run(tmp_path, capsys, command):
    """The CLI refuses before anything is unpickled: exit 2, one line naming the file, no marker."""
    marker = tmp_path / "marker"
    exp = fake_experiment(tmp_path, marker)
    add_mode(exp / "tuner.pkl", stat.S_IWGRP)
    assert main([*command, str(exp)]) == 2
    err = capsys.readouterr().err
    assert f"{exp / 'tuner.pkl'}: it is writable by its group" in err and "--trust" in err
    assert "Traceback" not in err
    assert not marker.exists()


def test_the_library_refuses_too(tmp_path):
    marker = tmp_path / "marker"
    exp = fake_experiment(tmp_path, marker)
    add_mode(exp, stat.S_IWOTH)
    for call in (lambda: resume(exp), lambda: status(exp), lambda: best(exp)):
        with pytest.raises(UntrustedExperiment, match="writable by others"):
            call()
    assert not marker.exists()


@pytest.mark.slow
def test_resume_of_a_real_sweep_refuses_then_trusts(ray_session, tiny_shards, tmp_path, capsys):
    """A finished sweep made group-writable: status/best/resume refuse it, --trust passes it,
    `chmod -R go-w` fixes it; a planted tuner.pkl runs only with --trust."""
    result = sweep(tiny(tiny_shards, "trust"), storage=str(tmp_path / "sweeps"))
    exp = Path(result.experiment_path)
    assert result.errors == 0
    for path in (exp, *exp.rglob("*")):
        add_mode(path, stat.S_IWGRP)

    capsys.readouterr()
    for command in (["status"], ["best", "--to", str(tmp_path / "best")], ["resume"]):
        assert main([*command, str(exp)]) == 2
        assert f"{exp}: it is writable by its group" in capsys.readouterr().err
    assert not (tmp_path / "best").exists()
    assert main(["status", str(exp), "--trust"]) == 0
    assert main(["resume", str(exp), "--trust"]) == 0
    assert {r.state for r in resume(exp, trust=True).trials} == {"TERMINATED"}

    for path in (exp, *exp.rglob("*")):
        path.chmod(stat.S_IMODE(path.stat().st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))
    assert {r.state for r in resume(exp).trials} == {"TERMINATED"}

    marker = tmp_path / "marker"
    (exp / "tuner.pkl").write_bytes(pickle.dumps(Planted(marker)))
    add_mode(exp / "tuner.pkl", stat.S_IWGRP)
    with pytest.raises(UntrustedExperiment, match=re.escape(f"{exp / 'tuner.pkl'}: it is writable by its group")):
        resume(exp)
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017  Tune gets a file object where its state should be
        resume(exp, trust=True)
    assert marker.exists()  # what --trust lets through: the check is what kept it from running
