"""Tests for fxdist.data.shards: bit-exact round trips, splits, atomic reruns, bad inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from fxdist.audio import read_audio
from fxdist.data.manifest import read_manifest, verify
from fxdist.data.shards import (
    ShardConfig,
    assign_splits,
    iter_rows,
    pack_shards,
    read_track,
    write_shards,
)
from fxdist.data.stream import StreamConfig, WindowDataset, WindowSpec, iter_tracks
from fxdist.errors import DataError, ShardError
from tests.datasets import noise_pairs

SR = 8000
EFFECT = "dist"
SMALL = {"row_samples": 256, "rows_per_group": 4, "rows_per_shard": 12}
LENGTHS = [3000, 1100, 256, 7000, 2500, 900, 4097]  # 7000 samples = 28 rows: spans shards


@pytest.fixture
def dataset(tmp_path):
    tracks = noise_pairs(tmp_path / "data", LENGTHS)
    return tmp_path / "data", tracks


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_round_trip_bit_exact(dataset, tmp_path, compression):
    root, tracks = dataset
    dest = tmp_path / "shards"
    m = write_shards(root, dest, EFFECT, ShardConfig(**SMALL, compression=compression))
    seen = []
    for split, info in m.splits.items():
        for tid in info.tracks:
            clean, proc = read_track(dest, split, tid)
            assert clean.dtype == np.float32 and clean.shape == tracks[tid][0].shape
            np.testing.assert_array_equal(clean, tracks[tid][0])
            np.testing.assert_array_equal(proc, tracks[tid][1])
            seen.append(tid)
        for tid, clean, proc in iter_tracks(dest, split):
            np.testing.assert_array_equal(clean, tracks[tid][0])
            np.testing.assert_array_equal(proc, tracks[tid][1])
    assert sorted(seen) == sorted(tracks)
    # rows: consecutive, last one partial with zero padding on disk
    rows = list(iter_rows(dest, "train"))
    for tid in m.splits["train"].tracks:
        mine = [r for r in rows if r.track_id == tid]
        n = len(tracks[tid][0])
        assert [r.offset for r in mine] == list(range(0, n, 256))
        assert sum(r.length for r in mine) == n
        assert all(r.length == 256 for r in mine[:-1]) and mine[-1].length == n - 256 * (len(mine) - 1)
    part = pq.read_table(str(dest / m.splits["train"].shards[0].path))
    assert part.schema.field("clean").type.list_size == 256
    last = part.slice(part.num_rows - 1).to_pylist()[0]
    assert all(v == 0.0 for v in last["clean"][last["length"] :])


def test_long_track_spans_shards_in_order(dataset, tmp_path):
    root, tracks = dataset
    cfg = ShardConfig(**SMALL, val_fraction=0.0, test_fraction=0.0)
    m = write_shards(root, tmp_path / "s", EFFECT, cfg)
    train = m.splits["train"]
    assert [s.rows for s in train.shards] and max(s.rows for s in train.shards) <= 12
    long_id = next(t for t, (x, _) in tracks.items() if len(x) == 7000)
    holders = [
        s.path
        for s in train.shards
        if long_id in set(pq.read_table(str(tmp_path / "s" / s.path)).column("track_id").to_pylist())
    ]
    assert len(holders) >= 3  # 28 rows over shards of 12
    np.testing.assert_array_equal(read_track(m, "train", long_id)[0], tracks[long_id][0])


def test_pack_shards_whole_tracks_when_possible():
    assert pack_shards([3, 4, 5], 8) == [[(0, 0, 3), (1, 0, 4)], [(2, 0, 5)]]
    assert pack_shards([2, 20, 1], 8) == [[(0, 0, 2)], [(1, 0, 8)], [(1, 8, 16)], [(1, 16, 20), (2, 0, 1)]]


def test_pcm24_resolution_survives(tmp_path):
    """24-bit integers -> read_audio -> shards -> read_track / stream -> identical integers."""
    rng = np.random.default_rng(5)
    root = tmp_path / "data"
    ints = {}
    for i in range(3):
        tid = f"pair-{i}"
        q = rng.integers(-(2**23), 2**23, size=2000 + 300 * i)
        for sub, a in (("clean", q), (f"processed/{EFFECT}", q[::-1].copy())):
            (root / sub).mkdir(parents=True, exist_ok=True)
            sf.write(str(root / sub / f"{tid}.wav"), (a << 8).astype(np.int32), SR, subtype="PCM_24")
        audio, _ = read_audio(root / "clean" / f"{tid}.wav")
        np.testing.assert_array_equal((audio[0].astype(np.float64) * 2**23).astype(np.int64), q)
        ints[tid] = q
    dest = tmp_path / "s"
    m = write_shards(root, dest, EFFECT, ShardConfig(**SMALL, val_fraction=0.0, test_fraction=0.0))
    for tid, q in ints.items():
        clean, proc = read_track(dest, "train", tid)
        np.testing.assert_array_equal((clean.astype(np.float64) * 2**23).astype(np.int64), q)
        np.testing.assert_array_equal((proc.astype(np.float64) * 2**23).astype(np.int64), q[::-1])
    # through the stream: windows with no history tile the tracks
    spec = WindowSpec(receptive_field=1, output_len=100)
    ds = WindowDataset(dest, "train", spec, StreamConfig(shuffle_windows=0, remainder="drop"), with_ids=True)
    n = 0
    for item in ds:
        q = ints[item["track_id"]]
        got = (item["x"][0].numpy().astype(np.float64) * 2**23).astype(np.int64)
        np.testing.assert_array_equal(got, q[item["offset"] : item["offset"] + 100])
        n += 1
    assert n == sum(sum(min(256, len(q) - o) // 100 for o in range(0, len(q), 256)) for q in ints.values())
    assert m.sample_rate == SR


def test_splits_disjoint_deterministic_nonempty():
    ids = [f"t{i:03d}" for i in range(20)]
    cfg = ShardConfig(val_fraction=0.1, test_fraction=0.2, split_seed=3)
    a = assign_splits(ids, cfg)
    assert a == assign_splits(list(reversed(ids)), cfg)
    assert [len(a[s]) for s in ("train", "validation", "test")] == [14, 2, 4]
    assert sorted(t for v in a.values() for t in v) == ids
    assert a != assign_splits(ids, ShardConfig(val_fraction=0.1, test_fraction=0.2, split_seed=4))
    three = assign_splits(["a", "b", "c"], ShardConfig())
    assert all(len(v) == 1 for v in three.values())
    assert assign_splits(["a"], ShardConfig()) == {"train": ["a"], "validation": [], "test": []}
    # adding a track keeps the others' splits (hash order)
    b = assign_splits(ids + ["t999"], cfg)
    moved = [t for t in ids if not any(t in a[s] and t in b[s] for s in a)]
    assert len(moved) <= 2


def test_rerun_removes_stale_and_temp_files(dataset, tmp_path):
    root, _ = dataset
    dest = tmp_path / "s"
    write_shards(root, dest, EFFECT, ShardConfig(**{**SMALL, "rows_per_shard": 4}))
    many = sorted(p.name for p in (dest / "train").iterdir())
    assert len(many) > 3
    (dest / "train" / ".part-00000.parquet.tmp-deadbeef").write_bytes(b"half a shard")
    (dest / "test" / "part-00042.parquet").write_bytes(b"stale")
    m = write_shards(root, dest, EFFECT, ShardConfig(**{**SMALL, "rows_per_shard": 400}))
    for split, info in m.splits.items():
        names = sorted(p.name for p in (dest / split).iterdir())
        assert names == [Path(s.path).name for s in info.shards] == ["part-00000.parquet"]
    verify(dest)


def test_failed_rerun_keeps_the_old_set_whole(dataset, tmp_path):
    root, tracks = dataset
    dest = tmp_path / "s"
    first = write_shards(root, dest, EFFECT, ShardConfig(**SMALL))
    before = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    bad = max(tracks)
    y = tracks[bad][1].copy()
    y[5] = np.nan
    sf.write(str(root / "processed" / EFFECT / f"{bad}.wav"), y, SR, subtype="FLOAT")
    with pytest.raises(DataError, match="NaN"):
        write_shards(root, dest, EFFECT, ShardConfig(**SMALL))
    after = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert after == before  # the old set, byte for byte
    assert read_manifest(dest).splits.keys() == first.splits.keys()
    assert verify(dest).shards == sum(len(s.shards) for s in first.splits.values())
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left beside it


def test_rewrite_swaps_in_the_new_set_and_keeps_other_files(dataset, tmp_path):
    root, _ = dataset
    dest = tmp_path / "s"
    write_shards(root, dest, EFFECT, ShardConfig(**SMALL))
    (dest / "notes.txt").write_text("mine")
    second = write_shards(root, dest, EFFECT, ShardConfig(**{**SMALL, "rows_per_shard": 2 * SMALL["rows_per_shard"]}))
    assert (dest / "notes.txt").read_text() == "mine"
    assert read_manifest(dest).shard_config["rows_per_shard"] == 2 * SMALL["rows_per_shard"]
    listed = {s.path for split in second.splits.values() for s in split.shards}
    on_disk = {str(p.relative_to(dest)) for p in dest.rglob("*.parquet")}
    assert listed == on_disk
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def _pair(
    root: Path, tid: str, clean: np.ndarray, proc: np.ndarray, sr: int = SR, psr: int | None = None
) -> tuple[Path, Path]:
    c, p = root / "clean" / f"{tid}.wav", root / "processed" / EFFECT / f"{tid}.wav"
    for path, a, rate in ((c, clean, sr), (p, proc, psr or sr)):
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), np.asarray(a, dtype=np.float32).T, rate, subtype="FLOAT")
    return c, p


@pytest.mark.parametrize(
    "case, match",
    [
        ("length", r"length 1000 samples but .*bad\.wav has 999"),
        ("rate", r"sample rate 8000 Hz but .*bad\.wav has 16000 Hz"),
        ("track_rate", r"bad\.wav: sample rate 16000 Hz, expected 8000 Hz"),
        ("nan", r"bad\.wav: NaN"),
        ("silent", r"bad\.wav: audio is silent .*a silent processed track teaches nothing; remove the pair"),
        ("unmatched", r"clean/bad\.wav: no processed file"),
        ("orphan", r"bad\.wav: no clean file"),
        ("stereo", r"bad\.wav: expected mono"),
    ],
)
def test_bad_inputs_raise_data_error_naming_file(tmp_path, case, match):
    root = tmp_path / "data"
    x = (0.3 * np.random.default_rng(0).standard_normal(1000)).astype(np.float32)
    _pair(root, "good", x, np.tanh(x))
    y = np.tanh(x)
    if case == "length":
        _pair(root, "bad", x, y[:999])
    elif case == "rate":
        _pair(root, "bad", x, y, psr=16000)
    elif case == "track_rate":
        _pair(root, "bad", x, y, sr=16000)
    elif case == "nan":
        y[10] = np.nan
        _pair(root, "bad", x, y)
    elif case == "silent":
        _pair(root, "bad", x, np.zeros_like(y))
    elif case == "unmatched":
        _pair(root, "bad", x, y)
        (root / "processed" / EFFECT / "bad.wav").unlink()
    elif case == "orphan":
        _pair(root, "bad", x, y)
        (root / "clean" / "bad.wav").unlink()
    elif case == "stereo":
        _pair(root, "bad", x, np.stack([y, -y]))
    cfg = ShardConfig(row_samples=256, rows_per_group=2, rows_per_shard=4, downmix=case != "stereo")
    with pytest.raises(DataError, match=match):
        write_shards(root, tmp_path / "s", EFFECT, cfg, sample_rate=SR)
    assert not (tmp_path / "s" / "manifest.json").exists()


def test_stereo_target_downmixed_and_pairs_list(tmp_path):
    root = tmp_path / "data"
    x = (0.3 * np.random.default_rng(1).standard_normal(700)).astype(np.float32)
    stereo = np.stack([np.tanh(x), 0.5 * x]).astype(np.float32)
    pairs = [("a", *_pair(root, "a", x, stereo)), ("b", *_pair(root, "b", -x, stereo))]
    m = write_shards(pairs, tmp_path / "s", EFFECT, ShardConfig(row_samples=256, rows_per_group=2, rows_per_shard=4))
    assert m.sample_rate == SR and sorted(m.splits["train"].tracks + m.splits["validation"].tracks) == ["a", "b"]
    split = "train" if "a" in m.splits["train"].tracks else "validation"
    np.testing.assert_array_equal(read_track(m, split, "a")[1], stereo.mean(axis=0))


def test_config_validation():
    with pytest.raises(ValueError, match="compression"):
        ShardConfig(compression="brotli9")
    with pytest.raises(ValueError, match="rows_per_shard"):
        ShardConfig(rows_per_group=16, rows_per_shard=8)
    with pytest.raises(ValueError, match="val_fraction"):
        ShardConfig(val_fraction=0.6, test_fraction=0.5)


def test_rendered_effect_yaml_goes_into_manifest(dataset, tmp_path):
    root, _ = dataset
    (root / "processed" / EFFECT / "effect.yaml").write_text("name: dist\nstages:\n- type: Distortion\n")
    m = write_shards(root, tmp_path / "s", EFFECT, ShardConfig(**SMALL))
    assert m.effect_config == {"name": "dist", "stages": [{"type": "Distortion"}]}
    assert read_manifest(tmp_path / "s").effect_config == m.effect_config


def _tone_root(root: Path, sr: int = 8000, seconds: float = 2.0, shift: int = 0, noise: bool = False) -> Path:
    rng = np.random.default_rng(3)
    t = np.arange(int(sr * seconds)) / sr
    clean = (0.5 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0)).astype(np.float32)
    proc = np.tanh(3 * clean)
    proc = np.concatenate([np.zeros(shift, np.float32), proc])[: len(clean)]
    if noise:
        proc = 0.1 * rng.standard_normal(len(clean))
    _pair(root, "take", clean, proc, sr=sr)
    return root


def test_shard_warns_of_a_misaligned_pair_and_strict_refuses_it(tmp_path):
    root = _tone_root(tmp_path / "data", shift=400)  # 50 ms: a recording's latency, not a filter's delay
    lines = []
    write_shards(root, tmp_path / "s", EFFECT, ShardConfig(**SMALL), log=lines.append)
    assert len(lines) == 1 and re.search(r"take.wav: lines up with take.wav 400 samples \(50.0 ms\) later .*fxdist data import", lines[0])
    with pytest.raises(DataError, match=r"1 pair\(s\) do not line up sample-aligned \(--strict\): .*400 samples"):
        write_shards(root, tmp_path / "strict", EFFECT, ShardConfig(**SMALL), strict=True)
    assert not (tmp_path / "strict").exists()


def test_shard_warns_of_unrelated_audio(tmp_path):
    root = _tone_root(tmp_path / "data", noise=True)
    lines = []
    write_shards(root, tmp_path / "s", EFFECT, ShardConfig(**SMALL), log=lines.append)
    assert len(lines) == 1 and "does not follow take.wav" in lines[0] and "unrelated audio" in lines[0]


def test_aligned_pairs_pass_the_check(tmp_path):
    root = _tone_root(tmp_path / "data")
    lines = []
    write_shards(root, tmp_path / "s", EFFECT, ShardConfig(**SMALL), log=lines.append)
    assert lines == []


def test_splits_chosen_at_import_are_kept(dataset, tmp_path):
    root, tracks = dataset
    ids = sorted(tracks)
    (root / "splits.json").write_text(json.dumps({ids[0]: "test", ids[1]: "validation", ids[2]: "train"}))
    m = write_shards(root, tmp_path / "s", EFFECT, ShardConfig(**SMALL))
    assert ids[0] in m.splits["test"].tracks and ids[1] in m.splits["validation"].tracks
    assert ids[2] in m.splits["train"].tracks
    assert sorted(t for s in m.splits.values() for t in s.tracks) == ids


def test_pairs_imported_for_another_effect_are_left_out(dataset, tmp_path):
    root, tracks = dataset
    clean = next(iter(tracks.values()))[0]
    _pair(root, "pair-take", clean, clean)  # processed/dist/pair-take.wav ...
    other = root / "processed" / "my_pedal"
    other.mkdir(parents=True)
    (root / "processed" / EFFECT / "pair-take.wav").rename(other / "pair-take.wav")  # ... belongs to my_pedal
    m = write_shards(root, tmp_path / "s", EFFECT, ShardConfig(**SMALL))
    assert "pair-take" not in [t for s in m.splits.values() for t in s.tracks]
    (root / "clean" / "synth-extra.wav").write_bytes((root / "clean" / "pair-take.wav").read_bytes())
    with pytest.raises(DataError, match=r"synth-extra.wav: no processed file"):  # a missing render is still an error
        write_shards(root, tmp_path / "s2", EFFECT, ShardConfig(**SMALL))
    mine = write_shards(root, tmp_path / "s3", "my_pedal", ShardConfig(**SMALL))  # the recording's own set
    assert [t for s in mine.splits.values() for t in s.tracks] == ["pair-take"]


def test_an_interrupted_rewrite_is_tidied_and_a_set_moved_aside_is_put_back(dataset, tmp_path):
    root, _ = dataset
    dest = tmp_path / "s"
    write_shards(root, dest, EFFECT, ShardConfig(**SMALL))
    (tmp_path / ".s.writing-1-deadbeef").mkdir()  # a staging folder of a killed rewrite
    dest.rename(tmp_path / ".s.writing-2-cafe.old")  # killed between the swap's two moves
    lines = []
    write_shards(root, dest, EFFECT, ShardConfig(**SMALL), log=lines.append)
    assert verify(dest).shards > 0
    assert lines == [f"{dest}: put back the shard set an interrupted rewrite had moved aside"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
