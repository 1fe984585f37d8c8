"""fxdist.data.array without SLURM: chunk tasks run in this process, one after another.

What an array task does on a node is exactly ``render_chunk(cfg, index)``, so these tests
cover the planning, resume and merge logic; tests/cluster/test_render_array.py runs the
same through a real SLURM array.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from fxdist.cli import main
from fxdist.config import from_dict, to_dict
from fxdist.data.generate import GenerateConfig, generate
from fxdist.data.render import render
from fxdist.data.manifest import read_manifest, verify
from fxdist.data.shards import ShardConfig, iter_rows, write_shards
from fxdist.errors import ConfigError, DataError, ShardError
from fxdist.data.array import RenderArrayConfig, chunk_hosts, finalize, load_render_config, plan_chunks, prepare, render_chunk

REPO = Path(__file__).resolve().parents[2]
GEN = {"seed": 3, "sample_rate": 8000, "tracks": 7, "segments_per_track": 2, "segment_seconds": 0.5}
SHARD = {"row_samples": 1500, "rows_per_group": 2, "rows_per_shard": 5, "val_fraction": 0.2, "test_fraction": 0.2}


def _cfg(root: Path, **kw) -> RenderArrayConfig:
    data = {"root": str(root), "effect": "distortion", "generate": GEN, "tasks": 3, "shard": SHARD, **kw}
    return from_dict(RenderArrayConfig, data, "<test>")


def _render_all(cfg: RenderArrayConfig, order=None) -> None:
    for i in order if order is not None else range(len(prepare(cfg).chunks)):
        assert not render_chunk(cfg, i, workers=1).skipped


def _single_machine(root: Path) -> Path:
    """generate -> render -> write_shards on one machine, as `fxdist pipeline` does it."""
    generate(from_dict(GenerateConfig, GEN), root / "clean")
    render(root / "clean", "distortion", root / "processed" / "distortion", workers=1, progress=False)
    write_shards(root, root / "single", "distortion", from_dict(ShardConfig, SHARD))
    return root / "single"


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


# -- planning --------------------------------------------------------------------------------------


def test_plan_chunks_cuts_contiguous_balanced_runs():
    assert plan_chunks(10, tasks=3) == [(0, 4), (4, 7), (7, 10)]
    assert plan_chunks(10, tracks_per_task=4) == [(0, 4), (4, 8), (8, 10)]
    assert plan_chunks(3, tasks=3) == [(0, 1), (1, 2), (2, 3)]
    assert plan_chunks(5, tasks=1) == plan_chunks(5, tracks_per_task=9) == [(0, 5)]
    for n in range(1, 30):
        for tasks in range(1, n + 1):
            chunks = plan_chunks(n, tasks=tasks)
            sizes = [hi - lo for lo, hi in chunks]
            assert len(chunks) == tasks and max(sizes) - min(sizes) <= 1
            assert [lo for lo, _ in chunks[1:]] == [hi for _, hi in chunks[:-1]] and chunks[0][0] == 0 and chunks[-1][1] == n


@pytest.mark.parametrize("args, words", [
    ((10, 4, 2), ["exactly one of tasks and tracks_per_task"]),
    ((10, None, None), ["exactly one of tasks and tracks_per_task"]),
    ((3, 4, None), ["tasks must be in [1, 3]", "got 4"]),
    ((0, 1, None), ["no tracks"]),
    ((5, None, 0), ["tracks_per_task must be >= 1"]),
])
def test_plan_chunks_refuses_impossible_cuts(args, words):
    with pytest.raises(ConfigError) as info:
        plan_chunks(*args)
    for word in words:
        assert word in str(info.value)


def test_the_plan_is_saved_once_and_the_same_for_every_task(tmp_path):
    cfg = _cfg(tmp_path / "data")
    plan = prepare(cfg)
    assert plan.tracks == [f"synth-s3-{i:04d}" for i in range(7)]
    assert plan.chunks == [(0, 3), (3, 5), (5, 7)] and plan.sample_rate == 8000
    assert plan.out == tmp_path / "data" / "shards" / "distortion"
    saved = (plan.out / "render-array" / "plan.json").read_text()
    assert prepare(cfg).digest == plan.digest
    assert (plan.out / "render-array" / "plan.json").read_text() == saved  # no timestamps: racing tasks agree
    assert (tmp_path / "data" / "processed" / "distortion" / "effect.yaml").is_file()  # claimed for the effect


# -- chunks, resume, finalize ----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["generate", "clean"])
def test_chunks_merge_into_the_single_machine_shard_set(tmp_path, source):
    """Same splits, same tracks in the same order, bit-identical rows; only the cut into files differs."""
    single = _single_machine(tmp_path / "single")
    root = tmp_path / "array"
    if source == "clean":  # a dataset root whose clean/ exists already; no generate spec
        generate(from_dict(GenerateConfig, GEN), root / "clean")
        cfg = _cfg(root, generate=None, tasks=None, tracks_per_task=2)
    else:
        cfg = _cfg(root)
    _render_all(cfg, order=reversed(range(len(prepare(cfg).chunks))))  # tasks finish in any order
    manifest = finalize(cfg)
    assert verify(manifest.uri).rows == verify(single).rows
    ref = read_manifest(single)
    assert (manifest.sample_rate, manifest.row_samples, manifest.effect_id) == (ref.sample_rate, ref.row_samples, ref.effect_id)
    assert manifest.effect_config == ref.effect_config and manifest.shard_config == ref.shard_config
    for name, split in ref.splits.items():
        mine = manifest.splits[name]
        assert (mine.tracks, mine.track_samples, mine.rows, mine.seconds) == (split.tracks, split.track_samples, split.rows, split.seconds)
        rows = list(zip(iter_rows(manifest, name), iter_rows(ref, name), strict=True))
        assert len(rows) == split.rows
        for a, b in rows:
            assert (a.track_id, a.offset, a.length) == (b.track_id, b.offset, b.length)
            assert np.array_equal(a.clean, b.clean) and np.array_equal(a.processed, b.processed)
    assert set(chunk_hosts(cfg).values()) and all(isinstance(h, str) for h in chunk_hosts(cfg).values())
    assert main(["data", "verify", manifest.uri]) == 0


def test_a_done_chunk_is_skipped_untouched(tmp_path):
    cfg = _cfg(tmp_path / "data")
    first = render_chunk(cfg, 1, workers=1)
    assert not first.skipped and first.tracks == 2 and first.generated == first.rendered == 2
    before = _mtimes(tmp_path / "data")
    again = render_chunk(cfg, 1, workers=1)
    assert again.skipped and again.host == first.host
    assert _mtimes(tmp_path / "data") == before


def test_a_killed_chunk_is_redone_and_its_leftovers_removed(tmp_path):
    """A task killed after some tracks and shards were written but before its marker."""
    cfg = _cfg(tmp_path / "data")
    _render_all(cfg)
    out = prepare(cfg).out
    finalize(cfg)
    (out / "render-array" / "chunk-00001.json").unlink()  # the marker comes last: no marker, not done
    part = sorted(out.glob("*/part-00001-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])  # a half-written shard (cannot happen with temp + move; still redone)
    leftover = part.parent / f".{part.name}.tmp-0123456789ab"
    leftover.write_bytes(b"half")
    (tmp_path / "data" / "processed" / "distortion" / "synth-s3-0004.wav").unlink()  # one track not rendered yet
    with pytest.raises(ShardError, match=r"1 of 3 chunk\(s\) not done: 1 "):
        finalize(cfg)
    assert not (out / "manifest.json").exists()
    report = render_chunk(cfg, 1, workers=1)
    assert not report.skipped and (report.generated, report.rendered) == (0, 1)
    assert not leftover.exists()
    finalize(cfg)
    verify(out)


def test_finalize_names_the_missing_chunks(tmp_path):
    cfg = _cfg(tmp_path / "data", tasks=None, tracks_per_task=1)
    for i in (0, 3, 6):
        render_chunk(cfg, i, workers=1)
    with pytest.raises(ShardError) as info:
        finalize(cfg)
    assert "4 of 7 chunk(s) not done: 1-2,4-5" in str(info.value)
    assert "render-chunk" in str(info.value)


def test_finalize_drops_the_marker_of_a_chunk_with_a_bad_shard(tmp_path):
    cfg = _cfg(tmp_path / "data")
    _render_all(cfg)
    out = prepare(cfg).out
    part = sorted(out.glob("*/part-00002-*.parquet"))[-1]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    part.write_bytes(bytes(data))
    with pytest.raises(ShardError) as info:
        finalize(cfg)
    assert "chunk(s) 2;" in str(info.value) and "sha256 mismatch" in str(info.value) and part.name in str(info.value)
    assert not (out / "render-array" / "chunk-00002.json").exists()
    assert (out / "render-array" / "chunk-00001.json").exists()
    render_chunk(cfg, 2, workers=1)
    verify(finalize(cfg).uri)


# -- bad configs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("change, words", [
    ({"taks": 3}, ["unknown key(s) 'taks'", "allowed keys", "tracks_per_task"]),
    ({"tracks_per_task": 2}, ["exactly one of tasks and tracks_per_task"]),
    ({"tasks": 0}, ["tasks must be >= 1"]),
    ({"shard": {**SHARD, "row_samples": 0}}, ["shard", "row_samples must be >= 1"]),
])
def test_bad_configs_are_refused_with_the_key(tmp_path, change, words):
    path = tmp_path / "render.yaml"
    data = {"root": str(tmp_path / "data"), "generate": GEN, "tasks": 3, "shard": SHARD, **change}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_render_config(path)
    for word in words:
        assert word in str(info.value)
    assert "render.yaml" in str(info.value)
    assert main(["data", "render-chunk", str(path), "--index", "0"]) == 2


def test_plans_that_cannot_hold_are_refused(tmp_path):
    with pytest.raises(DataError, match="no .wav tracks, and no generate spec"):
        prepare(_cfg(tmp_path / "empty", generate=None))
    with pytest.raises(ConfigError, match=r"tasks must be in \[1, 7\]"):
        prepare(_cfg(tmp_path / "few", tasks=8))
    cfg = _cfg(tmp_path / "data")
    render_chunk(cfg, 0, workers=1)
    with pytest.raises(ConfigError, match=r"chunk index 3 out of range: the plan has 3 chunk\(s\), 0..2"):
        render_chunk(cfg, 3)
    changed = _cfg(tmp_path / "data", shard={**SHARD, "row_samples": 1000})
    with pytest.raises(ConfigError, match="planned with another config \\(differs in shard\\)"):
        render_chunk(changed, 1)
    assert prepare(_cfg(tmp_path / "data", cpus_per_task=4, max_parallel=1)).digest == prepare(cfg).digest  # how, not what
    extra = tmp_path / "data" / "clean" / "music-late.wav"
    extra.write_bytes((tmp_path / "data" / "clean" / "synth-s3-0000.wav").read_bytes())
    with pytest.raises(ConfigError, match=r"1 track\(s\) not in the plan .*\(music-late\)"):
        render_chunk(cfg, 1)


# -- the CLI ---------------------------------------------------------------------------------------


def test_cli_plan_chunks_and_finalize(tmp_path, capsys):
    path = tmp_path / "render.yaml"
    cfg = _cfg(tmp_path / "data")
    path.write_text(yaml.safe_dump({k: v for k, v in to_dict(cfg).items() if v is not None}))
    assert main(["data", "render-plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "7 track(s) in 3 chunk(s)" in out and "not done: 3 chunk(s) 0-2" in out
    assert f"sbatch --array=0-2 jobs/render-array.sbatch {path}" in out
    for i in range(3):
        assert main(["data", "render-chunk", str(path), "--index", str(i), "--workers", "2" if i == 0 else "1"]) == 0
        assert f"chunk {i}: " in capsys.readouterr().out
    assert main(["data", "render-chunk", str(path), "--index", "1"]) == 0
    assert "done already" in capsys.readouterr().out
    assert main(["data", "finalize", str(path)]) == 0
    assert "train" in capsys.readouterr().out
    marker = json.loads((tmp_path / "data" / "shards" / "distortion" / "render-array" / "chunk-00000.json").read_text())
    assert marker["host"] and marker["generated"] == 3 and set(marker["splits"]) == {"train", "validation", "test"}
    assert main(["data", "verify", str(tmp_path / "data" / "shards" / "distortion")]) == 0


def test_submit_render_refuses_sweep_options(tmp_path, capsys):
    path = tmp_path / "render.yaml"
    path.write_text(yaml.safe_dump({"root": str(tmp_path / "data"), "generate": GEN, "tasks": 3}))
    assert main(["submit", "--render", str(path), "--cluster", str(REPO / "configs/cluster/local.yaml"), "--shards", "x"]) == 2
    assert "--shards and --storage are for sweeps" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_the_example_config_matches_the_sbatch_template(tmp_path, monkeypatch):
    """configs/render/tiny.yaml plans 3 chunks; jobs/render-array.sbatch asks for --array=0-2."""
    monkeypatch.chdir(tmp_path)  # its root is relative: nothing may land in the repo
    plan = prepare(load_render_config(REPO / "configs/render/tiny.yaml"), write=False)
    assert len(plan.tracks) == 12 and len(plan.chunks) == 3
    template = (REPO / "jobs/render-array.sbatch").read_text()
    assert f"#SBATCH --array=0-{len(plan.chunks) - 1} " in template
    assert 'fxdist data render-chunk "$CONFIG" --index "$SLURM_ARRAY_TASK_ID"' in template
    assert not list(tmp_path.iterdir())
