"""Data pipeline throughput: render, shard, stream, next to raw file reads on this machine.

    python benchmarks/data_throughput.py [--seconds 600] [--sample-rate 48000] [--keep DIR]

Makes synthetic clean tracks (fxdist.data.generate), renders the ``distortion`` preset
(fxdist.data.render), shards the pairs with each compression, then reads them back:
through ``iter_rows`` (plain scan), through ``WindowDataset`` (random and sequential
modes) and as raw bytes of a fresh copy of the shard files. Before every read the files'
page cache is dropped with posix_fadvise(DONTNEED) where the OS honours it (not on
tmpfs), so reads are as cold as this machine allows. MB are 1e6 bytes; "audio MB" counts
float32 clean + processed samples, "file MB" the bytes on disk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from fxdist.audio import write_audio
from fxdist.data.shards import ShardConfig, iter_rows, write_shards
from fxdist.data.stream import StreamConfig, WindowDataset, WindowSpec

EFFECT = "distortion"


def drop_cache(paths: list[Path]) -> None:
    """Ask the kernel to forget cached pages of ``paths`` (flushes them first)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def make_clean(root: Path, seconds: float, sr: int) -> float:
    """Write clean tracks of 15 s; returns their total seconds."""
    n_tracks = max(3, round(seconds / 15))
    try:
        from fxdist.data.generate import GenerateConfig, generate

        cfg = GenerateConfig(seed=0, sample_rate=sr, tracks=n_tracks, segments_per_track=3, segment_seconds=5.0)
        generate(cfg, root / "clean", workers=2)
    except ImportError:  # generator not there: noisy sines
        rng = np.random.default_rng(0)
        t = np.arange(int(15 * sr)) / sr
        for i in range(n_tracks):
            x = 0.5 * np.sin(2 * np.pi * rng.uniform(80, 800) * t) + 0.05 * rng.standard_normal(t.size)
            write_audio(root / "clean" / f"synth-s0-{i:04d}.wav", x.astype(np.float32), sr)
    return n_tracks * 15.0


def make_processed(root: Path, sr: int) -> str:
    """Render the effect; returns a line for the report."""
    try:
        from fxdist.data.render import render
    except ImportError:
        render = None
    if render is None:  # ---- RENDER SPOT: fxdist.data.render missing; tanh stands in ----
        from fxdist.audio import read_audio

        for p in sorted((root / "clean").glob("*.wav")):
            x, _ = read_audio(p)
            write_audio(root / "processed" / EFFECT / p.name, np.tanh(3 * x), sr)
        return "render      : n/a (fxdist.data.render not available; tanh(3x) used)"
    rep = render(root / "clean", EFFECT, root / "processed" / EFFECT, workers=2, progress=False)
    return (
        f"render      : {rep.audio_seconds:7.1f} s audio in {rep.wall_seconds:6.2f} s wall = "
        f"{rep.throughput:7.1f}x realtime, {rep.audio_seconds * sr * 4 / 1e6 / rep.wall_seconds:7.1f} MB/s "
        f"output ({EFFECT}, 2 workers)"
    )


def raw_read(files: list[Path], tmp: Path) -> float:
    """MB/s reading fresh copies of ``files`` sequentially in 8 MiB blocks."""
    copies = []
    for i, f in enumerate(files):
        dst = tmp / f"raw-{i:05d}.bin"
        shutil.copyfile(f, dst)
        copies.append(dst)
    drop_cache(copies)
    total = 0
    t0 = time.perf_counter()
    for c in copies:
        with open(c, "rb", buffering=0) as src:
            while block := src.read(8 << 20):
                total += len(block)
    rate = total / 1e6 / (time.perf_counter() - t0)
    for c in copies:
        c.unlink()
    return rate


def count(items) -> int:
    return sum(1 for _ in items)


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600.0, help="clean audio to make (default 600: two shards)")
    ap.add_argument("--sample-rate", type=int, default=48000)
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = ap.parse_args()
    sr = args.sample_rate
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="fxdist-bench-", dir=os.environ.get("TMPDIR")))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        root = tmp / "data"
        t, seconds = timed(make_clean, root, args.seconds, sr)
        print(f"setup       : {seconds:.0f} s of clean audio at {sr} Hz in {t:.1f} s")
        print(make_processed(root, sr))
        audio_mb = seconds * sr * 2 * 4 / 1e6
        print(f"pairs       : {audio_mb:.1f} audio MB (float32 clean + processed)\n")

        for compression in ("zstd", "none"):
            dest = tmp / f"shards-{compression}"
            cfg = ShardConfig(compression=compression, val_fraction=0.0, test_fraction=0.0)
            t, m = timed(write_shards, root, dest, EFFECT, cfg)
            files = [dest / s.path for s in m.splits["train"].shards]
            file_mb = sum(s.bytes for s in m.splits["train"].shards) / 1e6
            rows_mb = m.splits["train"].rows * m.row_samples * 8 / 1e6
            print(
                f"[{compression}] shard : {audio_mb / t:7.1f} audio MB/s written ({t:.2f} s), "
                f"files {file_mb:.1f} MB = {file_mb / audio_mb:.2f} x audio, {len(files)} shard(s)"
            )
            raw = raw_read(files, tmp)
            print(f"[{compression}] raw   : {raw:7.1f} file MB/s (sequential read of a fresh copy)")

            drop_cache(files)
            t, n = timed(count, iter_rows(dest, "train"))
            print(
                f"[{compression}] rows  : {rows_mb / t:7.1f} audio MB/s, {file_mb / t:7.1f} file MB/s "
                f"= {file_mb / t / raw:.2f} x raw ({n} rows, iter_rows)"
            )
            for mode, spec, kw in (
                ("random", WindowSpec(4096, 2048), {}),
                ("random", WindowSpec(64, 256), {}),
                ("sequential", WindowSpec(1, 2048), {"batch_size": 16}),
            ):
                ds = WindowDataset(dest, "train", spec, StreamConfig(mode=mode, shuffle_windows=1024), **kw)
                drop_cache(files)
                t, n = timed(count, ds)
                items = "windows" if mode == "random" else "batches"
                print(
                    f"[{compression}] {mode[:3]}   : {rows_mb / t:7.1f} audio MB/s, {file_mb / t:7.1f} file MB/s "
                    f"= {file_mb / t / raw:.2f} x raw, {n / t:9.0f} {items}/s "
                    f"(rf {spec.receptive_field}, out {spec.output_len}, bound {ds.memory_bound_bytes() / 1e6:.1f} MB)"
                )
            print()
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
