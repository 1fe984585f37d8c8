"""Small real datasets for tests: generated, rendered through a preset, sharded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TINY_RATE = 16000


def make_dataset(root: Path, effect: str = "distortion", sample_rate: int = TINY_RATE, tracks: int = 6, seconds: float = 4.0, seed: int = 0) -> Path:
    """Generate ``tracks`` tracks, render ``effect``, shard them; returns the shard dir."""
    from fxdist.data.generate import GenerateConfig, generate
    from fxdist.data.render import render
    from fxdist.data.shards import ShardConfig, write_shards

    gen = GenerateConfig(seed=seed, sample_rate=sample_rate, tracks=tracks, segments_per_track=2, segment_seconds=seconds / 2)
    generate(gen, root / "clean")
    render(root / "clean", effect, root / "processed" / effect, workers=1, progress=False)
    dest = root / "shards" / effect
    write_shards(root, dest, effect, ShardConfig(row_samples=4000, rows_per_group=4, rows_per_shard=16, val_fraction=0.2, test_fraction=0.2))
    return dest


def noise_pairs(root: Path, lengths: list[int], seed: int = 0, sr: int = 8000, effect: str = "dist") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Float WAV pairs clean/<id>.wav and processed/<effect>/<id>.wav (processed = tanh(3 x)),
    one per length, of seeded noise; returns {track_id: (clean, processed)}."""
    from fxdist.audio import write_audio

    rng = np.random.default_rng(seed)
    out = {}
    for i, n in enumerate(lengths):
        tid = f"synth-s{seed}-{i:04d}"
        x = (0.3 * rng.standard_normal(n)).astype(np.float32)
        y = np.tanh(3 * x).astype(np.float32)
        write_audio(root / "clean" / f"{tid}.wav", x, sr)
        write_audio(root / "processed" / effect / f"{tid}.wav", y, sr)
        out[tid] = (x, y)
    return out


def recorded_pairs(root: Path, effect: str = "distortion", sample_rate: int = TINY_RATE, tracks: int = 3,
                   seconds: float = 4.0, seed: int = 0) -> Path:
    """A folder of pairs as a user brings them (``clean/<name>.wav``, ``processed/<name>.wav``):
    generated tracks rendered through the ``effect`` preset. Returns the folder."""
    import shutil

    from fxdist.data.generate import GenerateConfig, generate
    from fxdist.data.render import render

    work = root / "work"
    gen = GenerateConfig(seed=seed, sample_rate=sample_rate, tracks=tracks, segments_per_track=2, segment_seconds=seconds / 2)
    generate(gen, work / "clean")
    render(work / "clean", effect, work / "processed", workers=1, progress=False)
    pairs = root / "pairs"
    for side in ("clean", "processed"):
        (pairs / side).mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(sorted((work / side).glob("*.wav"))):
            shutil.copyfile(path, pairs / side / f"take{i}.wav")
    shutil.rmtree(work)
    return pairs
