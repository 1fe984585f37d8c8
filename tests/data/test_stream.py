"""Tests for fxdist.data.stream: exact epochs over ranks x workers, window content,
sequential lanes, determinism, resume, memory bound, guards."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from fxdist.data.shards import ShardConfig, write_shards
from fxdist.data.stream import StreamConfig, WindowDataset, WindowSpec, iter_tracks
from fxdist.errors import ShardError
from tests.datasets import noise_pairs

SR = 8000
EFFECT = "dist"
R = 256
CFG = ShardConfig(row_samples=R, rows_per_group=4, rows_per_shard=12, val_fraction=0.0, test_fraction=0.0)
LENGTHS = [3000, 1100, 100, 7000, 2500, 900, 4097, 1500]




@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stream")
    tracks = noise_pairs(tmp / "data", LENGTHS)
    write_shards(tmp / "data", tmp / "shards", EFFECT, CFG)
    return tmp / "shards", tracks


def expected_window_ids(tracks, L: int, align_end: bool = True) -> set[tuple[str, int]]:
    """Output spans tile each row's valid samples; align_end adds a last window per row."""
    ids = set()
    for tid, (x, _) in tracks.items():
        for row0 in range(0, len(x), R):
            length = min(R, len(x) - row0)
            ids |= {(tid, row0 + o) for o in range(0, length - L + 1, L)}
            if align_end and length % L and length >= L:
                ids.add((tid, row0 + length - L))
    return ids


def collect(ds, num_workers: int, batch_size: int = 8):
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers)
    out = []
    for batch in loader:
        out.append(list(zip(batch["track_id"], batch["offset"].tolist())))
    return out


def test_every_window_once_across_ranks_and_workers(shards):
    dest, tracks = shards
    spec = WindowSpec(receptive_field=300, output_len=100)
    cfg = StreamConfig(shuffle_windows=16, equalize=False, seed=1)
    got = []
    for rank in range(2):
        ds = WindowDataset(dest, "train", spec, cfg, rank=rank, world_size=2, with_ids=True)
        got += [i for b in collect(ds, num_workers=2) for i in b]
    counts = Counter(got)
    assert max(counts.values()) == 1
    assert set(counts) == expected_window_ids(tracks, 100)


def test_equalized_ranks_get_same_batches(shards):
    dest, tracks = shards
    spec = WindowSpec(receptive_field=1, output_len=64)
    cfg = StreamConfig(shuffle_windows=32, equalize=True)
    got, nbatches = [], []
    for rank in range(2):
        ds = WindowDataset(dest, "train", spec, cfg, rank=rank, world_size=2, with_ids=True, batch_size=8)
        batches = collect(ds, num_workers=2)
        nbatches.append(len(batches))
        assert len(batches) == ds.batches_per_epoch(num_workers=2)
        got += [i for b in batches for i in b]
    assert nbatches[0] == nbatches[1]
    expected = expected_window_ids(tracks, 64)
    assert len(got) == len(set(got)) and set(got) <= expected
    assert len(expected) - len(got) < 4  # at most slots - 1 windows dropped


def test_window_content_matches_source(shards):
    """History crosses rows, row groups and shards; before a track's start it is zero."""
    dest, tracks = shards
    for rf, L in ((700, 50), (1, 256), (2, 1)):
        spec = WindowSpec(receptive_field=rf, output_len=L)
        ds = WindowDataset(dest, "train", spec, StreamConfig(shuffle_windows=4), with_ids=True)
        n = 0
        for item in ds:
            x, y = tracks[item["track_id"]]
            o = item["offset"]
            padded = np.concatenate([np.zeros(rf - 1, np.float32), x])
            assert item["x"].shape == (1, rf - 1 + L) and item["y"].shape == (1, L)
            np.testing.assert_array_equal(item["x"][0].numpy(), padded[o : o + rf - 1 + L])
            np.testing.assert_array_equal(item["y"][0].numpy(), y[o : o + L])
            n += 1
            if rf == 2 and n > 500:
                break
        assert n > 0


def test_same_seed_epoch_same_order_other_epoch_differs(shards):
    dest, _ = shards
    spec = WindowSpec(receptive_field=10, output_len=64)

    def order(epoch, seed=0):
        ds = WindowDataset(dest, "train", spec, StreamConfig(seed=seed, shuffle_windows=16), epoch=epoch, with_ids=True)
        return [(d["track_id"], d["offset"]) for d in ds]

    a = order(0)
    assert a == order(0)
    assert a != order(1) and sorted(a) == sorted(order(1))
    assert a != order(0, seed=1)
    ds = WindowDataset(dest, "train", spec, StreamConfig(shuffle_windows=16), with_ids=True)
    ds.set_epoch(1)
    assert [(d["track_id"], d["offset"]) for d in ds] == order(1)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_random_mode(shards, num_workers):
    dest, _ = shards
    spec = WindowSpec(receptive_field=40, output_len=64)
    cfg = StreamConfig(shuffle_windows=16, seed=3)
    full = collect(WindowDataset(dest, "train", spec, cfg, epoch=2, with_ids=True, batch_size=8), num_workers)
    for k in (1, 5, len(full) - 1):
        rest = collect(
            WindowDataset(dest, "train", spec, cfg, epoch=2, start_batch=k, with_ids=True, batch_size=8), num_workers
        )
        assert rest == full[k:]
    ds = WindowDataset(dest, "train", spec, cfg, with_ids=True, batch_size=8)
    ds.load_state_dict(WindowDataset(dest, "train", spec, cfg, epoch=2, batch_size=8).state_dict(3))
    assert collect(ds, num_workers) == full[3:]


def sequential(dest, rank=0, world=1, **kw):
    cfg = StreamConfig(mode="sequential", run_seconds=5 * 64 / SR, seed=2, pool_runs=kw.pop("pool_runs", 0))
    return WindowDataset(
        dest,
        "train",
        WindowSpec(kw.pop("rf", 1), 64),
        cfg,
        batch_size=3,
        rank=rank,
        world_size=world,
        with_ids=True,
        **kw,
    )


def lane_batches(ds, num_workers):
    return list(DataLoader(ds, batch_size=None, num_workers=num_workers))


def test_sequential_lanes_contiguous_resets_and_exact(shards):
    dest, tracks = shards
    chunks, per_rank = [], []
    for rank in range(2):
        ds = sequential(dest, rank, 2, rf=30)
        batches = lane_batches(ds, num_workers=2)
        per_rank.append(len(batches))
        assert len(batches) == ds.batches_per_epoch(num_workers=2)
        # batches alternate between workers: split them back into each worker's stream
        for w in range(2):
            prev = [None] * 3
            for b in batches[w::2]:
                assert b["x"].shape == (3, 1, 29 + 64) and b["y"].shape == (3, 1, 64)
                for lane in range(3):
                    if not b["valid"][lane]:
                        assert not b["reset"][lane]
                        prev[lane] = None
                        continue
                    tid, off = b["track_id"][lane], int(b["offset"][lane])
                    x, y = tracks[tid]
                    padded = np.concatenate([np.zeros(29, np.float32), x])
                    np.testing.assert_array_equal(b["x"][lane, 0].numpy(), padded[off : off + 93])
                    np.testing.assert_array_equal(b["y"][lane, 0].numpy(), y[off : off + 64])
                    if not b["reset"][lane]:
                        assert prev[lane] == (tid, off - 64)  # continues its run
                    prev[lane] = (tid, off)
                    chunks.append((tid, off))
    assert per_rank[0] == per_rank[1]
    counts = Counter(chunks)
    assert max(counts.values()) == 1
    assert set(counts) == expected_chunk_ids(dest, 64)


def expected_chunk_ids(dest: Path, L: int) -> set[tuple[str, int]]:
    """Chunks tile each (row group, track) segment from its first sample, read from the files."""
    ids = set()
    for path in sorted(dest.glob("train/part-*.parquet")):
        pf = pq.ParquetFile(str(path))
        for g in range(pf.num_row_groups):
            t = pf.read_row_group(g, columns=["track_id", "offset", "length"]).to_pylist()
            segs: dict[str, list[int]] = {}
            for row in t:
                s = segs.setdefault(row["track_id"], [row["offset"], 0])
                s[1] += row["length"]
            for tid, (start, n) in segs.items():
                ids |= {(tid, start + k * L) for k in range(n // L)}
    return ids


def test_sequential_runs_have_run_length_and_reset(shards):
    dest, _ = shards
    batches = lane_batches(sequential(dest), 0)
    run_len = {lane: 0 for lane in range(3)}
    for b in batches:
        for lane in range(3):
            if b["reset"][lane]:
                run_len[lane] = 0
            if b["valid"][lane]:
                run_len[lane] += 1
                assert run_len[lane] <= 5  # runs last run_seconds = 5 chunks
    assert sum(bool(b["reset"].any()) for b in batches) > 3


def test_resume_sequential(shards):
    dest, _ = shards
    full = lane_batches(sequential(dest, 1, 2), 2)
    for k in (1, 4, len(full) - 2):
        rest = lane_batches(sequential(dest, 1, 2, start_batch=k), 2)
        assert len(rest) == len(full) - k
        for a, b in zip(rest, full[k:]):
            assert (
                torch.equal(a["x"], b["x"])
                and torch.equal(a["reset"], b["reset"])
                and torch.equal(a["valid"], b["valid"])
            )


def test_memory_bound_independent_of_shard_count(tmp_path):
    tracks = noise_pairs(tmp_path / "data", [2000] * 10, seed=4)
    total_audio = sum(x.nbytes + y.nbytes for x, y in tracks.values())
    spec = WindowSpec(receptive_field=100, output_len=32)
    bounds = {}
    for per_shard in (4, 40):
        dest = tmp_path / f"s{per_shard}"
        cfg = ShardConfig(
            row_samples=R, rows_per_group=4, rows_per_shard=per_shard, val_fraction=0.0, test_fraction=0.0
        )
        m = write_shards(tmp_path / "data", dest, EFFECT, cfg)
        n_shards = len(m.splits["train"].shards)
        for mode in ("random", "sequential"):
            ds = WindowDataset(dest, "train", spec, StreamConfig(mode=mode, shuffle_windows=64), batch_size=4)
            bounds.setdefault(mode, set()).add(ds.memory_bound_bytes())
            assert len(pickle.dumps(ds)) < total_audio / 10  # no audio held by the dataset object
            assert not any(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in vars(ds).values())
            assert sum(1 for _ in ds) > 0
        assert n_shards in (20, 2)
    assert all(len(b) == 1 for b in bounds.values())
    assert bounds["random"] == {4 * R * 2 * 4 + 99 * 4 + 65 * (99 + 64) * 4}


def test_sample_rate_guard(shards):
    dest, _ = shards
    with pytest.raises(ShardError, match=r"manifest\.json: shards are at 8000 Hz but 48000 Hz"):
        WindowDataset(dest, "train", WindowSpec(1, 8), expected_sample_rate=48000)
    with pytest.raises(ShardError, match="48000 Hz"):
        next(iter_tracks(dest, "train", expected_sample_rate=48000))


def test_iter_tracks_whole_tracks_in_order(shards):
    dest, tracks = shards
    got = list(iter_tracks(dest, "train"))
    assert [t for t, _, _ in got] == sorted(tracks)
    for tid, clean, proc in got:
        assert clean.dtype == np.float32
        np.testing.assert_array_equal(clean, tracks[tid][0])
        np.testing.assert_array_equal(proc, tracks[tid][1])


def test_stream_detects_corrupted_shard(tmp_path):
    noise_pairs(tmp_path / "data", [3000, 2000], seed=6)
    m = write_shards(tmp_path / "data", tmp_path / "s", EFFECT, CFG)
    path = tmp_path / "s" / m.splits["train"].shards[0].path
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    ds = WindowDataset(tmp_path / "s", "train", WindowSpec(1, 64), StreamConfig(verify="crc"))
    with pytest.raises(ShardError, match=str(m.splits["train"].shards[0].path)):
        list(ds)
    ds = WindowDataset(tmp_path / "s", "train", WindowSpec(1, 64), StreamConfig(verify="sha256"))
    with pytest.raises(ShardError, match="sha256 mismatch"):
        list(ds)


@pytest.fixture
def group_reads(monkeypatch) -> list[tuple[str, int]]:
    """Spy (not a mock): every real row-group read, as (shard path, group), in order."""
    from fxdist.data import shards as shards_mod

    reads = []
    real = shards_mod.ShardSet.read_group
    monkeypatch.setattr(
        shards_mod.ShardSet, "read_group", lambda self, s, g, c: reads.append((s.path, g)) or real(self, s, g, c)
    )
    return reads


def test_resume_skips_reading_consumed_row_groups(shards, group_reads):
    """A late resume reads few row groups."""
    dest, _ = shards
    reads = group_reads
    spec = WindowSpec(receptive_field=1, output_len=64)
    cfg = StreamConfig(shuffle_windows=8)
    full = collect(WindowDataset(dest, "train", spec, cfg, with_ids=True, batch_size=8), 0)
    n_full = len(reads)
    reads.clear()
    rest = collect(WindowDataset(dest, "train", spec, cfg, with_ids=True, batch_size=8, start_batch=len(full) - 2), 0)
    assert rest == full[-2:]
    assert 0 < len(reads) < n_full / 2


def test_empty_split_yields_nothing(tmp_path):
    noise_pairs(tmp_path / "data", [1000, 1200], seed=7)
    write_shards(tmp_path / "data", tmp_path / "s", EFFECT, CFG)  # 2 tracks, no val/test fractions
    assert list(iter_tracks(tmp_path / "s", "test")) == []
    for mode in ("random", "sequential"):
        ds = WindowDataset(tmp_path / "s", "test", WindowSpec(5, 64), StreamConfig(mode=mode), batch_size=2)
        assert list(ds) == []


def test_make_loader_matches_dataset(shards):
    from fxdist.data.stream import make_loader, open_manifest

    dest, _ = shards
    m = open_manifest(dest)
    kw = {"receptive_field": 20, "output_len": 64, "batch_size": 4, "seed": 1, "epoch": 1}
    loader = make_loader(m, "train", mode="random", shuffle_windows=8, with_ids=True, **kw)
    batches = [list(zip(b["track_id"], b["offset"].tolist())) for b in loader]
    ds = WindowDataset(m, "train", WindowSpec(20, 64), StreamConfig(seed=1, shuffle_windows=8), epoch=1, with_ids=True)
    assert [i for b in batches for i in b] == [(d["track_id"], d["offset"]) for d in ds]
    assert batches[3:] == [
        list(zip(b["track_id"], b["offset"].tolist()))
        for b in make_loader(m, "train", mode="random", shuffle_windows=8, with_ids=True, start_batch=3, **kw)
    ]
    seq = list(make_loader(m, "train", mode="sequential", run_seconds=0.05, **kw))
    assert seq[0]["x"].shape == (4, 1, 19 + 64) and set(seq[0]) == {"x", "y", "reset", "valid"}


@pytest.mark.parametrize("mode", ["random", "sequential"])
def test_share_is_what_each_rank_reads_and_ranks_are_disjoint(shards, group_reads, mode):
    """Each rank reads exactly its ``share()`` (real row-group reads); the shares cover the
    split; only a row group on the rank boundary (random mode: its windows are split) is in both."""
    dest, _ = shards
    reads = group_reads
    spec = WindowSpec(receptive_field=1, output_len=64)
    cfg = StreamConfig(mode=mode, shuffle_windows=8, run_seconds=0.05, equalize=False)
    shares = []
    for rank in range(2):
        ds = WindowDataset(dest, "train", spec, cfg, batch_size=2, rank=rank, world_size=2)
        reads.clear()
        batches = list(DataLoader(ds, batch_size=2 if mode == "random" else None))
        assert batches, f"rank {rank} got no batch"
        share = ds.share()
        assert set(reads) == set(share), f"rank {rank} read {sorted(set(reads))}, share says {share}"
        shares.append(set(share))
    assert shares[0] and shares[1]
    assert len(shares[0] & shares[1]) <= (1 if mode == "random" else 0)
    everything = set(WindowDataset(dest, "train", spec, cfg, batch_size=2, rank=0, world_size=1).share())
    assert shares[0] | shares[1] == everything
