"""Tests for fxdist.data.manifest: what a written manifest records, and verify / readers
refusing a corrupted shard or a dest without a manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fxdist.data.manifest import read_manifest, verify
from fxdist.data.shards import ShardConfig, iter_rows, write_shards
from fxdist.data.stream import WindowDataset, WindowSpec
from fxdist.errors import ShardError
from tests.datasets import noise_pairs

SR = 8000
EFFECT = "dist"
SMALL = {"row_samples": 256, "rows_per_group": 4, "rows_per_shard": 12}
LENGTHS = [3000, 1100, 256, 7000, 2500, 900, 4097]


@pytest.fixture
def dataset(tmp_path):
    tracks = noise_pairs(tmp_path / "data", LENGTHS)
    return tmp_path / "data", tracks


def test_manifest_contents_and_checksums(dataset, tmp_path):
    root, tracks = dataset
    dest = tmp_path / "s"
    m = write_shards(root, dest, EFFECT, ShardConfig(**SMALL), effect_config={"drive": 3.0})
    data = json.loads((dest / "manifest.json").read_text())
    assert data["schema_version"] == 1 and data["sample_rate"] == SR and data["row_samples"] == 256
    assert data["effect_id"] == EFFECT and data["effect_config"] == {"drive": 3.0}
    assert data["shard_config"]["rows_per_group"] == 4 and data["fxdist_version"] and data["created"]
    assert read_manifest(dest).splits == m.splits
    all_tracks = []
    for name, split in data["splits"].items():
        all_tracks += split["tracks"]
        assert split["track_samples"] == [len(tracks[t][0]) for t in split["tracks"]]
        assert split["rows"] == sum(-(-n // 256) for n in split["track_samples"])
        assert split["seconds"] == pytest.approx(sum(split["track_samples"]) / SR)
        first = 0
        for k, shard in enumerate(split["shards"]):
            path = dest / shard["path"]
            assert shard["path"] == f"{name}/part-{k:05d}.parquet"
            assert shard["bytes"] == path.stat().st_size
            assert shard["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
            meta = pq.ParquetFile(str(path)).metadata
            assert (meta.num_rows, meta.num_row_groups) == (shard["rows"], shard["row_groups"])
            assert shard["first_row"] == first
            first += shard["rows"]
    assert sorted(all_tracks) == sorted(tracks) and len(set(all_tracks)) == len(tracks)
    assert all(data["splits"][s]["tracks"] for s in ("train", "validation", "test"))
    report = verify(dest)
    assert report.shards == sum(len(s.shards) for s in m.splits.values())


def _flip_byte(path: Path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x40
    path.write_bytes(bytes(data))


def test_corrupted_shard_detected(dataset, tmp_path):
    root, _ = dataset
    dest = tmp_path / "s"
    m = write_shards(root, dest, EFFECT, ShardConfig(**SMALL, compression="none"))
    shard = m.splits["train"].shards[1]
    _flip_byte(dest / shard.path, 0.3)
    with pytest.raises(ShardError) as err:
        verify(dest)
    msg = str(err.value)
    assert shard.path in msg and shard.sha256 in msg and "sha256 mismatch" in msg
    actual = hashlib.sha256((dest / shard.path).read_bytes()).hexdigest()
    assert actual in msg
    # readers see the page CRC fail, naming the shard
    with pytest.raises(ShardError, match=shard.path):
        list(iter_rows(dest, "train"))


def test_dest_without_manifest_refused(tmp_path):
    (tmp_path / "s" / "train").mkdir(parents=True)
    with pytest.raises(ShardError, match=r"no manifest at .*incomplete or not a shard set"):
        read_manifest(tmp_path / "s")
    with pytest.raises(ShardError, match="no manifest"):
        WindowDataset(tmp_path / "s", "train", WindowSpec(1, 8))
    with pytest.raises(ShardError, match="no manifest"):
        verify(tmp_path / "s")


@pytest.mark.parametrize("bad", ["../outside.parquet", "/etc/passwd", "train/../../x.parquet", "~/x.parquet", "validation/part-0.parquet"])
def test_manifest_naming_a_shard_outside_its_split_is_refused(dataset, tmp_path, bad):
    root, _ = dataset
    dest = tmp_path / "s"
    write_shards(root, dest, EFFECT, ShardConfig(**SMALL))
    data = json.loads((dest / "manifest.json").read_text())
    data["splits"]["train"]["shards"][0]["path"] = bad
    (dest / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ShardError, match=rf"shard path {bad!r} of split 'train' is not inside the set's train/ folder"):
        read_manifest(dest)


def test_verify_refuses_a_manifest_without_rows(dataset, tmp_path):
    root, _ = dataset
    dest = tmp_path / "s"
    write_shards(root, dest, EFFECT, ShardConfig(**SMALL))
    data = json.loads((dest / "manifest.json").read_text())
    data["splits"] = {}
    (dest / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ShardError, match=r"lists no rows in any split \(splits: none\)"):
        verify(dest)
