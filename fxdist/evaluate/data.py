"""The audio an evaluation runs on: a shard set's split or a folder of clean/processed pairs.

Every track is mono float32 (N,), clean and effect of the same length, at its own rate;
``conform`` brings them to the model's rate or refuses.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from fxdist.errors import DataError


@dataclass
class Track:
    """One clean/effect pair, mono float32 (N,) each, with where it came from."""

    track_id: str
    clean: np.ndarray
    effect: np.ndarray
    sample_rate: int
    source: str


@dataclass
class EvalData:
    """The tracks to evaluate on and what is known about the effect that made them."""

    source: str
    kind: Literal["shards", "pairs"]
    tracks: list[Track]
    split: str | None = None
    effect_id: str | None = None
    effect_config: dict | None = None
    resampled_from: list[int] = field(default_factory=list)

    @property
    def effect_kind(self) -> str | None:
        """The effect config's ``family`` key (distortion, delay, ...), if the config is known."""
        return (self.effect_config or {}).get("family")

    @property
    def seconds(self) -> float:
        return sum(t.clean.size / t.sample_rate for t in self.tracks)

    def describe(self) -> dict:
        rates = sorted({t.sample_rate for t in self.tracks})
        return {
            "source": self.source, "kind": self.kind, "split": self.split, "effect_id": self.effect_id,
            "effect_family": self.effect_kind, "sample_rate": rates[0] if len(rates) == 1 else rates,
            "resampled_from": sorted(set(self.resampled_from)) or None,
            "tracks": len(self.tracks), "seconds": round(self.seconds, 3),
        }


def is_shard_set(data: str | os.PathLike) -> bool:
    """A URI (``s3://...``) or a folder holding ``manifest.json``."""
    text = os.fspath(data)
    return "://" in text or (Path(text) / "manifest.json").is_file()


def load_data(
    data: str | os.PathLike, split: str = "test", max_seconds: float | None = None, max_tracks: int | None = None
) -> EvalData:
    """Read the tracks of a shard set's ``split`` or of a pairs folder, at their own rate.

    A pairs folder is ``clean/`` + ``processed/`` with matching stems, or
    ``<name>_clean.wav`` + ``<name>_processed.wav`` (``fxdist.data.ingest.find_pairs``);
    stereo files are averaged. ``max_seconds`` keeps the first seconds of each track,
    ``max_tracks`` the first tracks.
    """
    if max_seconds is not None and max_seconds <= 0:
        raise DataError(f"max_seconds must be > 0, got {max_seconds}")
    if max_tracks is not None and max_tracks < 1:
        raise DataError(f"max_tracks must be >= 1, got {max_tracks}")
    if is_shard_set(data):
        out = _load_shards(data, split, max_tracks)
    elif Path(data).is_dir():
        out = _load_pairs(Path(data), max_tracks)
    else:
        raise DataError(
            f"{data}: neither a shard set (no manifest.json) nor a folder of clean/processed pairs"
        )
    if not out.tracks:
        raise DataError(f"{data}: no tracks to evaluate" + (f" in split {split!r}" if out.kind == "shards" else ""))
    if max_seconds is not None:
        for t in out.tracks:
            n = max(1, round(max_seconds * t.sample_rate))
            t.clean, t.effect = t.clean[:n], t.effect[:n]
    return out


def _load_shards(data: str | os.PathLike, split: str, max_tracks: int | None) -> EvalData:
    from fxdist.data.manifest import read_manifest
    from fxdist.data.stream import iter_tracks

    manifest = read_manifest(data)
    manifest.split(split)  # ShardError naming the known splits
    tracks = []
    for track_id, clean, processed in iter_tracks(manifest, split):
        tracks.append(Track(track_id, clean, processed, manifest.sample_rate, f"{data}/manifest.json"))
        if max_tracks is not None and len(tracks) >= max_tracks:
            break
    return EvalData(os.fspath(data), "shards", tracks, split, manifest.effect_id, manifest.effect_config)


def _load_pairs(folder: Path, max_tracks: int | None) -> EvalData:
    from fxdist.audio import read_audio, to_mono
    from fxdist.data.ingest import find_pairs, pair_stem, sanitize_stem

    tracks: list[Track] = []
    seen: dict[str, Path] = {}
    for clean_path, proc_path in find_pairs(folder):
        (clean, sr_c), (proc, sr_p) = read_audio(clean_path), read_audio(proc_path)
        if sr_c != sr_p:
            raise DataError(f"{clean_path}: sample rate {sr_c} Hz but {proc_path.name} has {sr_p} Hz")
        clean, proc = to_mono(clean, clean_path, True)[0], to_mono(proc, proc_path, True)[0]
        if clean.size != proc.size:
            raise DataError(
                f"{clean_path}: length {clean.size} samples but {proc_path.name} has {proc.size}; "
                "align the pair first (fxdist data import-pairs finds the latency)"
            )
        track_id = sanitize_stem(pair_stem(clean_path))
        if track_id in seen:
            raise DataError(f"{clean_path}: track name {track_id!r} already used by {seen[track_id]}")
        seen[track_id] = clean_path
        tracks.append(Track(track_id, clean, proc, sr_c, str(clean_path)))
        if max_tracks is not None and len(tracks) >= max_tracks:
            break
    return EvalData(str(folder), "pairs", tracks)


def conform(data: EvalData, sample_rate: int, resample: bool = False, model_path: str | os.PathLike = "the model") -> EvalData:
    """``data`` at ``sample_rate``: unchanged if it is there; resampled (with a note) or refused."""
    from fxdist.audio import resample as resample_audio

    off = [t for t in data.tracks if t.sample_rate != sample_rate]
    if not off:
        return data
    if not resample:
        t = off[0]
        raise DataError(
            f"{t.source}: data at {t.sample_rate} Hz but model {model_path} works at {sample_rate} Hz; "
            f"pass resample=True (CLI: --resample) to resample the data to {sample_rate} Hz"
        )
    tracks = []
    for t in data.tracks:
        if t.sample_rate != sample_rate:
            pair = resample_audio(np.stack([t.clean, t.effect]), t.sample_rate, sample_rate)
            t = replace(t, clean=pair[0], effect=pair[1], sample_rate=sample_rate)
        tracks.append(t)
    rates = sorted({t.sample_rate for t in off})
    print(f"note: resampled {len(off)} track(s) of {data.source} from {', '.join(map(str, rates))} Hz "
          f"to the model's {sample_rate} Hz", file=sys.stderr)
    return replace(data, tracks=tracks, resampled_from=data.resampled_from + [t.sample_rate for t in off])

