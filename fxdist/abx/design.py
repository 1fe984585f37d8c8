"""What an ABX session plays: its config, the excerpts cut from the tracks, the trial design.

Audio is mono float32 (N,). The three versions (clean, effect, model) of one excerpt share
one gain that puts their joint peak at ``peak_dbfs``, so their relative loudness is kept.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from fxdist.audio import read_audio, to_mono
from fxdist.errors import DataError

Source = Literal["clean", "effect", "model"]
ROLES = ("A", "B", "X")


@dataclass
class AbxConfig:
    """Design of a listening session."""

    n_trials: int = 12
    # Share of trials whose X is an exact copy of A or B (attention checks).
    control_fraction: float = 0.25
    excerpt_s: float = 4.0
    fade_s: float = 0.02
    # Joint peak of the three versions of an excerpt after levelling (dBFS).
    peak_dbfs: float = -1.0
    seed: int = 0

    def __post_init__(self):
        if self.n_trials < 1:
            raise ValueError(f"n_trials must be >= 1, got {self.n_trials}")
        if not 0 <= self.control_fraction < 1:
            raise ValueError(f"control_fraction must be in [0, 1), got {self.control_fraction}")
        if not 0.5 <= self.excerpt_s <= 30:
            raise ValueError(f"excerpt_s must be in [0.5, 30] seconds, got {self.excerpt_s}")
        if not 0 <= self.fade_s <= self.excerpt_s / 4:
            raise ValueError(f"fade_s must be in [0, excerpt_s/4], got {self.fade_s}")
        if self.peak_dbfs > 0:
            raise ValueError(f"peak_dbfs must be <= 0, got {self.peak_dbfs}")


# ---------------------------------------------------------------- excerpts


def excerpt(x: np.ndarray, sr: int, start_s: float, dur_s: float, fade_s: float = 0.02) -> np.ndarray:
    """``x[start : start + dur]`` with raised-cosine fades in and out; (N,) -> float32 (M,)."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    i0 = int(round(start_s * sr))
    seg = x[i0 : i0 + int(round(dur_s * sr))].copy()
    if seg.size == 0:
        raise DataError(f"excerpt at {start_s:.2f} s is outside the {x.size / sr:.2f} s of audio")
    n = min(int(round(fade_s * sr)), seg.size // 2)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
        seg[:n] *= ramp
        seg[-n:] *= ramp[::-1]
    return seg


def pick_starts(target: np.ndarray, sr: int, n: int, dur_s: float, seed: int = 0) -> list[float]:
    """Start times (s) of up to ``n`` non-overlapping ``dur_s`` windows, drawn among the loudest.

    The track is cut into consecutive windows; ``n`` are drawn at random (seeded) from the
    louder half of those within 20 dB of the loudest, so excerpts have music in them (fewer
    than ``n`` if fewer qualify). A track shorter than ``dur_s`` gives [0.0].
    """
    x = np.asarray(target, dtype=np.float64).reshape(-1)
    size = int(round(dur_s * sr))
    count = x.size // size
    if count <= 1:
        return [0.0]
    rms = np.sqrt(np.mean(x[: count * size].reshape(count, size) ** 2, axis=1))
    ranked = [i for i in np.argsort(-rms) if rms[i] >= 0.1 * rms.max()]  # within 20 dB of the loudest
    loud = np.array(ranked[: max(n, (len(ranked) + 1) // 2)])
    rng = np.random.default_rng(seed)
    chosen = rng.choice(loud, size=min(n, loud.size), replace=False)
    return sorted(float(i * size / sr) for i in chosen)


def _level(triple: Sequence[np.ndarray], peak_dbfs: float) -> list[np.ndarray]:
    """Scale three excerpts by one common gain so their joint peak is ``peak_dbfs``."""
    peak = max(float(np.max(np.abs(x))) for x in triple)
    if peak <= 0:
        raise DataError("an ABX excerpt is silent in clean, effect and model alike")
    gain = 10 ** (peak_dbfs / 20) / peak
    return [(x * gain).astype(np.float32) for x in triple]


def _load(item, sr: int | None, what: str) -> tuple[np.ndarray, int]:
    if isinstance(item, (str, Path)):
        audio, file_sr = read_audio(item)
        return to_mono(audio, item, downmix=True)[0], file_sr
    if sr is None:
        raise DataError(f"{what}: audio given as an array needs the sample rate sr")
    a = np.asarray(item, dtype=np.float32)
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 1:
        raise DataError(f"{what}: expected mono audio (N,) or (1, N), got shape {a.shape}")
    return a, sr


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def load_tracks(clean, effect, model, sr: int | None = None) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], int]:
    """Load (clean, effect, model) tracks from paths or arrays; check lengths and rates match.

    Each argument is one item or a list of items (one per track); an item is a WAV path
    (stereo is averaged) or a mono array (then ``sr`` is required).
    """
    lists = [_as_list(clean), _as_list(effect), _as_list(model)]
    if len({len(x) for x in lists}) != 1:
        raise DataError(f"clean, effect and model track counts differ: {[len(x) for x in lists]}")
    tracks, rate = [], None
    for i, items in enumerate(zip(*lists)):
        loaded = [_load(item, sr, f"{name} track {i}") for item, name in zip(items, ("clean", "effect", "model"))]
        rates = {r for _, r in loaded}
        if len(rates) != 1 or (rate is not None and rates != {rate}):
            raise DataError(f"track {i}: sample rates differ: {[r for _, r in loaded]} (session rate {rate})")
        rate = rates.pop()
        lengths = [a.size for a, _ in loaded]
        if len(set(lengths)) != 1:
            names = [str(x) if isinstance(x, (str, Path)) else n for x, n in zip(items, ("clean", "effect", "model"))]
            raise DataError(f"track {i}: lengths differ: " + ", ".join(f"{n} {m} samples" for n, m in zip(names, lengths)))
        tracks.append(tuple(a for a, _ in loaded))
    return tracks, int(rate)


def cut_excerpts(
    tracks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], sr: int, n: int, cfg: AbxConfig
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Up to ``n`` faded (clean, effect, model) excerpts spread over the tracks, loud parts first."""
    per_track = -(-n // len(tracks))
    out = []
    for i, (c, e, m) in enumerate(tracks):
        for start in pick_starts(e, sr, per_track, cfg.excerpt_s, seed=cfg.seed + i):
            out.append(tuple(excerpt(x, sr, start, cfg.excerpt_s, cfg.fade_s) for x in (c, e, m)))
    return out[:n] if len(out) > n else out


# ---------------------------------------------------------------- design


@dataclass(frozen=True)
class AbxTrial:
    """One trial: which excerpt, which source is A (B is the other), what X is."""

    trial_id: str
    token: str
    excerpt: int
    a_source: Literal["clean", "effect"]
    x_source: Source

    @property
    def b_source(self) -> str:
        return "effect" if self.a_source == "clean" else "clean"

    @property
    def kind(self) -> str:
        return "model" if self.x_source == "model" else "control"

    def source(self, role: str) -> str:
        return {"A": self.a_source, "B": self.b_source, "X": self.x_source}[role]


def make_trials(n_excerpts: int, n_trials: int, control_fraction: float, seed: int) -> list[AbxTrial]:
    """A seeded random design: ``round(control_fraction * n_trials)`` controls, the rest model trials.

    Model trials walk through the excerpts in turn; controls use random excerpts and copy
    A or B (half each, rounded at random); A is clean or effect at random per trial; the
    order is shuffled. Tokens come from ``secrets`` and are not seeded.
    """
    if n_excerpts < 1:
        raise DataError("an ABX session needs at least one excerpt")
    rng = np.random.default_rng(seed)
    n_control = int(round(control_fraction * n_trials))
    if control_fraction > 0 and n_trials >= 2:
        n_control = max(1, n_control)
    n_control = min(n_control, n_trials - 1)
    specs: list[tuple[int, str]] = [(i % n_excerpts, "model") for i in range(n_trials - n_control)]
    copies = ["clean", "effect"] * n_control
    rng.shuffle(copies)
    specs += [(int(rng.integers(n_excerpts)), copies[i]) for i in range(n_control)]
    order = rng.permutation(len(specs))
    sides = rng.integers(0, 2, size=len(specs))
    return [
        AbxTrial(
            trial_id=f"t{k + 1:02d}", token=secrets.token_hex(8), excerpt=specs[j][0],
            a_source="clean" if sides[k] == 0 else "effect", x_source=specs[j][1],  # type: ignore[arg-type]
        )
        for k, j in enumerate(order)
    ]
