"""Small real datasets for tests: generated, rendered through a preset, sharded."""

from __future__ import annotations

from pathlib import Path

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
