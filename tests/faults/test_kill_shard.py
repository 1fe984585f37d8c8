"""SIGKILL `fxdist data shard` while it re-shards over an existing set: the old set still
verifies (the new one is written beside it and swapped in at the end), and a rerun completes."""

from __future__ import annotations

import json

import pytest

from fxdist.cli import main
from tests.datasets import make_dataset
from tests.faults.killing import fxdist, kill_when

pytestmark = pytest.mark.slow
NEW = ["--set", "row_samples=4000", "--set", "rows_per_group=2", "--set", "rows_per_shard=4",
       "--set", "val_fraction=0.2", "--set", "test_fraction=0.2"]


def test_killed_reshard_leaves_the_old_set_and_a_rerun_completes(tmp_path, capsys):
    dest = make_dataset(tmp_path / "data", tracks=8)  # rows_per_shard=16
    root, old = dest.parents[1], (dest / "manifest.json").read_bytes()
    args = ["data", "shard", str(root), "--effect", "distortion", "--dest", str(dest), *NEW]

    def stages() -> set:
        return set(dest.parent.glob(f".{dest.name}.writing-*"))

    interrupted = 0
    for delay in (0.0, 0.05, 0.2, 0.5):
        before = stages()  # a killed run leaves its stage folder behind; wait for this run's own
        run = kill_when(args, lambda: bool(stages() - before), delay=delay)
        assert main(["data", "verify", str(dest)]) == 0, capsys.readouterr()
        manifest = (dest / "manifest.json").read_bytes()
        if run.killed and manifest == old:
            interrupted += 1
        else:  # it finished (or swapped) before the kill landed: the new set, complete
            assert json.loads(manifest)["shard_config"]["rows_per_shard"] == 4, run.log[-2000:]
            break
    print(f"kills during the write: {interrupted}")
    assert interrupted >= 1, "no kill landed while the new set was being written"

    done = fxdist(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert main(["data", "verify", str(dest)]) == 0
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["shard_config"]["rows_per_shard"] == 4
    assert all(s["rows"] <= 4 for split in manifest["splits"].values() for s in split["shards"])
