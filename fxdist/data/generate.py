"""Seeded synthetic guitar-range training signals.

Following the recipe of a 2018 effect-modelling study, a track is a row of segments of
``segment_seconds`` each. Every segment draws its own polyphony (1..``max_density``
simultaneous voices), its own rest pattern (from continuous playing to sparse phrases
separated by silence) and its own loudness (``level_range_db`` below the track peak), so
level-dependent effects (distortion, compression) see their whole input range.

A voice plays notes back to back inside a phrase. A note is one of:

- ``chirp``: a phase-continuous sine sweep between two random frequencies in
  [min_freq, max_freq], linear or logarithmic, its sweep speed set by its random length;
- ``sine``: a sustained sine;
- ``square`` / ``saw``: band-limited bursts (a wavetable holding only harmonics below
  0.45 * sample_rate), so nothing aliases even at 8 kHz.

Every note has a raised-cosine attack and release (no clicks) and a random amplitude.
With probability ``decay_probability`` a note is struck rather than held: after its
attack it decays exponentially, its time constant drawn log-uniformly in
[min_decay_seconds, max_decay_seconds], as plucked and struck strings do. Compressors
and other envelope-following effects then see levels falling through their threshold,
not only steady notes. The default 0 draws nothing extra, so a seed's tracks stay the
tracks earlier versions made.
Fundamentals are drawn log-uniformly in [min_freq, max_freq].

A track depends on (seed, index) alone, so tracks can be made in parallel, in any order.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fxdist.audio import write_audio

KINDS = ("chirp", "sine", "square", "saw")
HARMONIC_CEILING = 0.45  # harmonics stay below this fraction of the sample rate
MIN_RAMP_SECONDS = 0.002  # shortest attack/release: clicks start below ~1 ms
_TABLE_SIZE = 1 << 14  # wavetable length; linear-interpolation images stay below -100 dB


def _default_kinds() -> dict[str, float]:
    return {kind: 1.0 for kind in KINDS}


@dataclass
class GenerateConfig:
    """How synthetic tracks are drawn. Times in seconds, levels in dB, frequencies in Hz.

    Each segment draws a rest probability in [0, max_gap_probability]: after every phrase
    (length in [min_phrase_seconds, max_phrase_seconds]) a rest of length in
    [min_gap_seconds, max_gap_seconds] follows with that probability. Segment levels are
    drawn in [-level_range_db, 0] dB and the loudest segment of a track peaks at ``peak``.
    Note amplitudes spread over ``note_level_range_db`` inside a segment. A note decays
    exponentially after its attack with probability ``decay_probability`` (time constant
    in [min_decay_seconds, max_decay_seconds]). ``kinds`` maps
    note kinds (chirp, sine, square, saw) to relative weights.
    """

    seed: int = 0
    sample_rate: int = 48000
    tracks: int = 4
    segments_per_track: int = 6
    segment_seconds: float = 10.0
    min_freq: float = 80.0
    max_freq: float = 1200.0
    max_density: int = 4
    min_note_seconds: float = 0.1
    max_note_seconds: float = 2.0
    min_phrase_seconds: float = 0.5
    max_phrase_seconds: float = 4.0
    max_gap_probability: float = 0.8
    min_gap_seconds: float = 0.1
    max_gap_seconds: float = 1.5
    max_attack_seconds: float = 0.02
    max_release_seconds: float = 0.08
    level_range_db: float = 30.0
    note_level_range_db: float = 12.0
    decay_probability: float = 0.0
    min_decay_seconds: float = 0.05
    max_decay_seconds: float = 2.0
    peak: float = 0.9
    kinds: dict[str, float] = field(default_factory=_default_kinds)

    def __post_init__(self) -> None:
        _require(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        _require(self.sample_rate >= 4000, f"sample_rate must be >= 4000, got {self.sample_rate}")
        _require(self.tracks >= 0, f"tracks must be >= 0, got {self.tracks}")
        _require(self.segments_per_track >= 1, f"segments_per_track must be >= 1, got {self.segments_per_track}")
        _require(self.segment_seconds > 0, f"segment_seconds must be > 0, got {self.segment_seconds}")
        _require(self.max_density >= 1, f"max_density must be >= 1, got {self.max_density}")
        _require(0 < self.min_freq < self.max_freq, f"need 0 < min_freq < max_freq, got {self.min_freq}, {self.max_freq}")
        _require(
            self.max_freq < HARMONIC_CEILING * self.sample_rate,
            f"max_freq {self.max_freq} Hz must be below {HARMONIC_CEILING} * sample_rate "
            f"= {HARMONIC_CEILING * self.sample_rate:g} Hz",
        )
        for lo, hi in (("min_note_seconds", "max_note_seconds"), ("min_phrase_seconds", "max_phrase_seconds"),
                       ("min_gap_seconds", "max_gap_seconds"), ("min_decay_seconds", "max_decay_seconds")):
            a, b = getattr(self, lo), getattr(self, hi)
            _require(0 < a <= b, f"need 0 < {lo} <= {hi}, got {a}, {b}")
        _require(0 <= self.decay_probability <= 1, f"decay_probability must be in [0, 1], got {self.decay_probability}")
        _require(0 <= self.max_gap_probability <= 1, f"max_gap_probability must be in [0, 1], got {self.max_gap_probability}")
        for name in ("max_attack_seconds", "max_release_seconds"):
            value = getattr(self, name)
            _require(value >= MIN_RAMP_SECONDS, f"{name} must be >= {MIN_RAMP_SECONDS}, got {value}")
        _require(0 <= self.level_range_db <= 120, f"level_range_db must be in [0, 120], got {self.level_range_db}")
        _require(0 <= self.note_level_range_db <= 60, f"note_level_range_db must be in [0, 60], got {self.note_level_range_db}")
        _require(0 < self.peak <= 1, f"peak must be in (0, 1], got {self.peak}")
        unknown = sorted(set(self.kinds) - set(KINDS))
        _require(not unknown, f"unknown note kind(s) {unknown} in kinds; allowed: {', '.join(KINDS)}")
        _require(all(w >= 0 for w in self.kinds.values()), f"kinds weights must be >= 0, got {self.kinds}")
        _require(sum(self.kinds.values()) > 0, f"kinds weights must not all be 0, got {self.kinds}")

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))

    @property
    def track_samples(self) -> int:
        """Samples per track: segments_per_track * round(segment_seconds * sample_rate)."""
        return self.segments_per_track * self.segment_samples


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def track_id(seed: int, index: int) -> str:
    """The track id of synthetic track ``index`` of ``seed``: ``synth-s<seed>-<index:04d>``."""
    return f"synth-s{seed}-{index:04d}"


def generate_track(cfg: GenerateConfig, index: int) -> np.ndarray:
    """Render track ``index`` as float32 (N,), N = cfg.track_samples; depends on (seed, index) only."""
    if index < 0:
        raise ValueError(f"track index must be >= 0, got {index}")
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, index]))
    segments = [_render_segment(cfg, rng) for _ in range(cfg.segments_per_track)]
    levels_db = rng.uniform(-cfg.level_range_db, 0.0, size=len(segments))
    levels_db -= levels_db.max()  # loudest segment peaks at cfg.peak
    track = np.concatenate([_normalise(seg, cfg.peak * 10 ** (db / 20)) for seg, db in zip(segments, levels_db)])
    return track.astype(np.float32)


def _normalise(x: np.ndarray, target_peak: float) -> np.ndarray:
    peak = np.max(np.abs(x))
    return x * (target_peak / peak) if peak > 0 else x


def _render_segment(cfg: GenerateConfig, rng: np.random.Generator) -> np.ndarray:
    """One segment, float64 (segment_samples,), unnormalised: phrases of `density` voices and rests."""
    sr, n = cfg.sample_rate, cfg.segment_samples
    out = np.zeros(n)
    density = int(rng.integers(1, cfg.max_density + 1))
    gap_probability = rng.uniform(0.0, cfg.max_gap_probability)
    t = 0
    while t < n:
        phrase_end = min(n, t + int(rng.uniform(cfg.min_phrase_seconds, cfg.max_phrase_seconds) * sr))
        for _ in range(density):
            _render_voice(cfg, rng, out, t, phrase_end)
        t = phrase_end
        if rng.random() < gap_probability:
            t += int(_log_uniform(rng, cfg.min_gap_seconds, cfg.max_gap_seconds) * sr)
    return out


def _render_voice(cfg: GenerateConfig, rng: np.random.Generator, out: np.ndarray, start: int, end: int) -> None:
    """Add back-to-back notes of one voice to ``out[start:end]`` (in place)."""
    sr = cfg.sample_rate
    kinds = [k for k in KINDS if cfg.kinds.get(k, 0) > 0]
    weights = np.array([cfg.kinds[k] for k in kinds], dtype=float)
    t = start
    while t < end:
        length = min(end - t, max(2, int(_log_uniform(rng, cfg.min_note_seconds, cfg.max_note_seconds) * sr)))
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        amplitude = 10 ** (-rng.uniform(0.0, cfg.note_level_range_db) / 20)
        phase0 = rng.random()
        if kind == "chirp":
            f0, f1 = _log_uniform(rng, cfg.min_freq, cfg.max_freq, size=2)
            freq = chirp_frequency(f0, f1, length, log=bool(rng.random() < 0.5))
            note = np.sin(2 * np.pi * (phase0 + np.cumsum(freq / sr)))
        else:
            f = _log_uniform(rng, cfg.min_freq, cfg.max_freq)
            phase = phase0 + f / sr * np.arange(length)
            note = np.sin(2 * np.pi * phase) if kind == "sine" else wavetable_read(bandlimited_table(kind, f, sr), phase)
        attack = rng.uniform(MIN_RAMP_SECONDS, cfg.max_attack_seconds) * sr
        release = rng.uniform(MIN_RAMP_SECONDS, cfg.max_release_seconds) * sr
        env = envelope(length, int(attack), int(release))
        if cfg.decay_probability > 0 and rng.random() < cfg.decay_probability:
            env *= decay(length, int(attack), _log_uniform(rng, cfg.min_decay_seconds, cfg.max_decay_seconds) * sr)
        out[t : t + length] += amplitude * note * env
        t += length


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, size: int | None = None):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size=size))


def chirp_frequency(f0: float, f1: float, n: int, log: bool) -> np.ndarray:
    """Instantaneous frequency (n,) in Hz sweeping f0 -> f1, linearly or geometrically."""
    ramp = np.arange(n) / max(n - 1, 1)
    return f0 * (f1 / f0) ** ramp if log else f0 + (f1 - f0) * ramp


def envelope(n: int, attack: int, release: int) -> np.ndarray:
    """Gain (n,): raised-cosine rise over ``attack`` samples, fall over ``release``, 1 between.

    Ramps are shrunk to fit notes shorter than attack + release; the first and last
    samples are 0 so notes start and end without a step.
    """
    attack = max(1, min(attack, n // 2))
    release = max(1, min(release, n - attack))
    env = np.ones(n)
    env[:attack] = 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / attack)
    env[n - release :] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(release) + 1) / release)
    return env


def decay(n: int, attack: int, tau: float) -> np.ndarray:
    """Gain (n,): 1 for the first ``attack`` samples, then exp(-(k - attack) / tau), tau in samples."""
    k = np.maximum(np.arange(n) - attack, 0)
    return np.exp(-k / max(tau, 1.0))


def bandlimited_table(kind: str, freq: float, sample_rate: int) -> np.ndarray:
    """One period (_TABLE_SIZE,) of a square or saw holding only harmonics below 0.45 * sample_rate.

    Peak-normalised to 1 (the Gibbs overshoot of a band-limited square is scaled out).
    """
    n_harmonics = min(int(HARMONIC_CEILING * sample_rate / freq), _TABLE_SIZE // 2 - 1)
    k = np.arange(1, n_harmonics + 1)
    if kind == "saw":
        amps = (-1.0) ** (k + 1) / k
    elif kind == "square":
        amps = np.where(k % 2 == 1, 1.0 / k, 0.0)
    else:
        raise ValueError(f"no wavetable for note kind {kind!r}; tables exist for 'square' and 'saw'")
    spectrum = np.zeros(_TABLE_SIZE // 2 + 1, dtype=complex)
    spectrum[k] = -0.5j * _TABLE_SIZE * amps  # irfft of these bins = sum_k amps_k sin(2 pi k t)
    table = np.fft.irfft(spectrum, n=_TABLE_SIZE)
    return table / np.max(np.abs(table))


def wavetable_read(table: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Read periodic ``table`` (T,) at ``phase`` (n,) in cycles, linear interpolation; returns (n,)."""
    size = len(table)
    pos = (phase % 1.0) * size
    i0 = pos.astype(np.int64)
    frac = pos - i0
    i0 %= size  # pos may round up to exactly size
    return table[i0] + frac * (table[(i0 + 1) % size] - table[i0])


def generate(cfg: GenerateConfig, out_dir: str | Path, overwrite: bool = False, workers: int = 1) -> list[Path]:
    """Write tracks 0..cfg.tracks-1 as ``<out_dir>/synth-s<seed>-<i:04d>.wav`` (mono float32 WAV).

    Existing files are kept (a rerun resumes) unless ``overwrite``. ``workers`` > 1 renders
    tracks in that many processes; output is byte-identical either way. Returns all paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{track_id(cfg.seed, i)}.wav" for i in range(cfg.tracks)]
    todo = [i for i, p in enumerate(paths) if overwrite or not p.exists()]
    jobs = [(cfg, i, paths[i]) for i in todo]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs), os.cpu_count() or 1)) as pool:
            list(pool.map(_write_one, jobs))
    else:
        for job in jobs:
            _write_one(job)
    return paths


def _write_one(job: tuple[GenerateConfig, int, Path]) -> Path:
    cfg, index, path = job
    return write_audio(path, generate_track(cfg, index), cfg.sample_rate)


__all__ = [
    "GenerateConfig",
    "KINDS",
    "bandlimited_table",
    "chirp_frequency",
    "decay",
    "envelope",
    "generate",
    "generate_track",
    "track_id",
    "wavetable_read",
]
