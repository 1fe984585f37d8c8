"""Tests for fxdist.storage: local paths and file:// URIs resolve, join, read, write and list
the same files; writes are atomic; a shard set round-trips through a file:// URI."""

from __future__ import annotations

import os
import re

import numpy as np
import pyarrow.fs as pafs
import pytest

from fxdist import storage
from fxdist.errors import ClusterError, ShardError
from tests.datasets import noise_pairs


@pytest.fixture(params=["path", "uri"])
def location(request, tmp_path):
    """The same folder given as a local path or as a file:// URI (with a space in its name)."""
    folder = tmp_path / "a folder"
    return folder, (str(folder) if request.param == "path" else folder.as_uri())


def test_resolve_local_path_and_file_uri(tmp_path, monkeypatch):
    fs, path = storage.resolve((tmp_path / "x").as_uri() + "/")
    assert isinstance(fs, pafs.LocalFileSystem) and path == str(tmp_path / "x")
    monkeypatch.chdir(tmp_path)
    assert storage.resolve("rel/dir/")[1] == str(tmp_path / "rel" / "dir")
    assert storage.resolve("~/x")[1] == os.path.join(os.path.expanduser("~"), "x")


def test_resolve_bad_uri_names_it_with_the_callers_error():
    with pytest.raises(ClusterError, match=r"storage nosuch://x: cannot open its filesystem"):
        storage.resolve("nosuch://x")
    with pytest.raises(ShardError, match=r"shard set nosuch://x: cannot open its filesystem"):
        storage.resolve("nosuch://x", error=ShardError, what="shard set")


def test_join_keeps_the_scheme():
    assert storage.join("s3://bucket/prefix/", "exp", "file.json") == "s3://bucket/prefix/exp/file.json"
    assert storage.join("/tmp/a", "b") == "/tmp/a/b"
    assert storage.normalise("file:///tmp/a/") == "file:///tmp/a"


def test_write_read_exists_list(location):
    folder, base = location
    target = storage.join(base, "sub", "f.txt")
    assert not storage.exists(target) and storage.read_bytes(target) is None
    storage.write_text(target, "héllo")
    assert (folder / "sub" / "f.txt").read_text() == "héllo"
    assert storage.exists(target) and storage.read_text(target) == "héllo"
    assert not storage.exists(storage.join(base, "sub"))  # a folder is not a file
    storage.write_bytes(storage.join(base, "sub", "bad.bin"), b"\xff\xfe")
    assert storage.read_text(storage.join(base, "sub", "bad.bin")) is None  # not UTF-8
    (folder / "sub" / "d").mkdir()
    assert storage.list_names(storage.join(base, "sub")) == ["bad.bin", "f.txt"]
    assert storage.list_names(storage.join(base, "sub"), folders=True) == ["d"]
    assert storage.list_names(storage.join(base, "missing")) == []


def test_writes_are_atomic_and_leave_no_temp_files(location, monkeypatch):
    folder, base = location
    target = storage.join(base, "state.json")
    storage.write_text(target, "old")

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    # a write that fails half way leaves the old file whole and no temp file beside it
    monkeypatch.setattr("pathlib.Path.write_bytes", broken)
    with pytest.raises(OSError, match="disk full"):
        storage.write_text(target, "new")
    monkeypatch.undo()
    assert storage.read_text(target) == "old"
    assert os.listdir(folder) == ["state.json"]

    fs, path = storage.resolve(base)
    storage.write_atomic(fs, storage.join(path, "m.json"), b"{}")
    assert sorted(os.listdir(folder)) == ["m.json", "state.json"]
    assert re.fullmatch(r"\.m\.json\.tmp-[0-9a-f]{12}", os.path.basename(storage.temp_name(storage.join(path, "m.json"))))


def test_copy_out_and_sha256(location, tmp_path):
    folder, base = location
    storage.write_bytes(storage.join(base, "best.pt"), b"weights" * 1000)
    storage.copy_out(storage.join(base, "best.pt"), tmp_path / "out" / "best.pt")
    assert (tmp_path / "out" / "best.pt").read_bytes() == b"weights" * 1000
    with pytest.raises(FileNotFoundError):
        storage.copy_out(storage.join(base, "missing.pt"), tmp_path / "out" / "missing.pt")
    assert not (tmp_path / "out" / "missing.pt").exists()
    fs, path = storage.resolve(storage.join(base, "best.pt"))
    import hashlib

    assert storage.sha256(fs, path) == hashlib.sha256(b"weights" * 1000).hexdigest()


def test_check_storage(tmp_path):
    assert storage.check_storage(str(tmp_path / "new")) == str(tmp_path / "new")
    assert (tmp_path / "new").is_dir() and os.listdir(tmp_path / "new") == []  # the probe is gone
    assert storage.check_storage((tmp_path / "u").as_uri() + "/") == str(tmp_path / "u")  # a local fs: its path
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ClusterError, match=re.escape(f"storage {blocker}/sweeps is not writable")):
        storage.check_storage(str(blocker / "sweeps"))


def test_shard_set_at_a_file_uri(tmp_path):
    from fxdist.data.manifest import verify
    from fxdist.data.shards import ShardConfig, read_track, write_shards
    from fxdist.data.stream import StreamConfig, WindowDataset, WindowSpec

    tracks = noise_pairs(tmp_path / "data", [3000, 1100, 256, 7000, 2500, 900, 4097])
    uri = (tmp_path / "uri shards").as_uri()
    assert uri.startswith("file://")
    m = write_shards(tmp_path / "data", uri, "dist", ShardConfig(row_samples=256, rows_per_group=4, rows_per_shard=12))
    assert (tmp_path / "uri shards" / "manifest.json").exists()
    verify(uri)
    tid = m.splits["validation"].tracks[0]
    np.testing.assert_array_equal(read_track(uri, "validation", tid)[1], tracks[tid][1])
    ds = WindowDataset(uri, "validation", WindowSpec(33, 64), StreamConfig(shuffle_windows=8))
    assert sum(1 for _ in ds) > 0
