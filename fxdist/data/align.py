"""Where a recorded, processed signal lines up with the clean signal that was played.

Two measurements, pure functions on mono float arrays (N,):

- **calibration** (the clean file is a fxdist re-amp signal, ``fxdist.data.reamp``): each
  calibration blip is a single-sample impulse after silence, so the processed signal's
  first arrival after it is the latency, whatever the effect does to the impulse (filtering,
  cabinet, polarity, modulation, pitch shift, a reverb tail). Onsets are found by threshold
  over the noise read in the silence before; the blips at the end give the latency there,
  and their difference over the distance between the calibrations is the clock drift;
- **correlation** (pairs recorded elsewhere): FFT cross-correlation of the waveforms near the
  start and the end, polarity-aware (a negative peak is an inverting device), and, when the
  waveform peak is weak (a cabinet or chorus scrambles phase, a pitch shifter moves every
  partial), correlation of the two signals' onset envelopes, which follow the notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import correlate

from fxdist.errors import DataError

DEFAULT_SPAN = 1 << 16  # samples correlated per latency estimate (1.4 s at 48 kHz)
ONSET_FRACTION = 0.1  # a blip's response starts where it first reaches -20 dB of its peak


# --------------------------------------------------------------------------- correlation


@dataclass(frozen=True)
class LatencyEstimate:
    """Where processed lines up with clean.

    lag: samples, positive = processed is late (processed[n + lag] ~ clean[n]).
    correlation: normalised cross-correlation at ``lag`` in [-1, 1] (negative: inverted polarity).
    subsample_lag: parabolic refinement of ``lag`` (reported only; alignment uses ``lag``).
    offset, span: the part of clean that was correlated, clean[offset : offset + span].
    at_edge: the peak sits at +-max_lag, so the true latency may lie beyond the search range.
    """

    lag: int
    correlation: float
    subsample_lag: float
    offset: int
    span: int
    at_edge: bool


def find_latency(
    clean: np.ndarray,
    processed: np.ndarray,
    max_lag: int,
    span: int = DEFAULT_SPAN,
    offset: int | None = None,
) -> LatencyEstimate:
    """Estimate the lag of ``processed`` (M,) behind ``clean`` (N,) within +-``max_lag`` samples.

    Correlates ``span`` samples of clean, from ``offset`` (default: the first frame with
    enough energy) against processed around the same place, by FFT, so the cost is
    O((span + max_lag) log) whatever the file length.
    """
    clean = np.asarray(clean, dtype=np.float64)
    processed = np.asarray(processed, dtype=np.float64)
    if clean.ndim != 1 or processed.ndim != 1:
        raise ValueError(f"find_latency expects 1-D signals, got shapes {clean.shape} and {processed.shape}")
    if max_lag < 0 or span < 1:
        raise ValueError(f"need max_lag >= 0 and span >= 1, got {max_lag}, {span}")
    span = min(span, len(clean))
    if offset is None:
        offset = energetic_offset(clean, span)
    offset = int(np.clip(offset, 0, len(clean) - span))
    x = clean[offset : offset + span]
    y = _window(processed, offset - max_lag, span + 2 * max_lag)
    xc = correlate(y, x, mode="valid", method="fft")  # xc[k] <-> lag k - max_lag
    k = int(np.argmax(np.abs(xc)))
    energy = np.concatenate([[0.0], np.cumsum(y * y)])
    denom = np.sqrt(np.dot(x, x) * (energy[k + span] - energy[k]))
    correlation = float(xc[k] / denom) if denom > 0 else 0.0
    return LatencyEstimate(
        lag=k - max_lag,
        correlation=float(np.clip(correlation, -1.0, 1.0)),
        subsample_lag=k - max_lag + _parabolic(np.abs(xc), k),
        offset=offset,
        span=span,
        at_edge=max_lag > 0 and k in (0, len(xc) - 1),
    )


def correlation_at(clean: np.ndarray, processed: np.ndarray, offset: int, span: int, lag: int) -> float:
    """Normalised correlation of clean[offset : offset + span] (N,) with processed (M,) ``lag``
    samples later, in [-1, 1] (0 where either part is silent or out of range)."""
    x = np.asarray(clean[offset : offset + span], dtype=np.float64)
    y = _window(np.asarray(processed, dtype=np.float64), offset + lag, len(x))
    denom = np.sqrt(np.dot(x, x) * np.dot(y, y))
    return float(np.clip(np.dot(x, y) / denom, -1.0, 1.0)) if denom > 0 else 0.0


def onset_envelope(x: np.ndarray, sample_rate: int, smooth_ms: float = 1.0) -> np.ndarray:
    """Onset strength (N,): the positive part of the rise of the smoothed log energy.

    Peaks at note onsets whatever the waveform's phase, polarity or pitch.
    """
    x = np.asarray(x, dtype=np.float64)
    w = max(1, int(round(smooth_ms * sample_rate / 1000)))
    energy = np.convolve(x * x, np.ones(w) / w, mode="full")[: len(x)]
    level = 10 * np.log10(energy + 1e-12 + 1e-6 * float(energy.max(initial=0.0)))
    rise = np.diff(level, prepend=level[:1])
    return np.maximum(rise, 0.0)


def find_latency_envelope(
    clean: np.ndarray, processed: np.ndarray, max_lag: int, sample_rate: int, span: int = DEFAULT_SPAN,
    offset: int | None = None,
) -> LatencyEstimate:
    """``find_latency`` on the onset envelopes of both signals (polarity and phase do not matter)."""
    clean = np.asarray(clean, dtype=np.float64)
    span = min(span, len(clean))
    if offset is None:
        offset = energetic_offset(clean, span)
    offset = int(np.clip(offset, 0, len(clean) - span))
    lo = max(0, offset - max_lag)
    env_c = onset_envelope(clean[lo : offset + span + max_lag], sample_rate)
    env_p = onset_envelope(_window(processed, lo, offset + span + 2 * max_lag - lo), sample_rate)
    full_c = np.zeros(len(clean))
    full_c[lo : lo + len(env_c)] = env_c
    full_p = np.zeros(max(len(processed), lo + len(env_p)))
    full_p[lo : lo + len(env_p)] = env_p
    return find_latency(full_c, full_p, max_lag, span, offset)


def level_similarity(clean: np.ndarray, processed: np.ndarray, sample_rate: int, frame_ms: float = 10.0) -> float:
    """Pearson correlation of the two signals' frame levels (dB, 10 ms frames, 60 dB floor), in [-1, 1].

    High for any effect that keeps the notes and rests where they are (pitch shifters and
    reverbs included); near 0 for unrelated audio.
    """
    n = min(len(clean), len(processed))
    frame = max(1, int(frame_ms * sample_rate / 1000))
    k = n // frame
    if k < 4:
        return 0.0
    levels = []
    for x in (clean, processed):
        rms = np.sqrt(np.mean(np.asarray(x[: k * frame], dtype=np.float64).reshape(k, frame) ** 2, axis=1))
        db = 20 * np.log10(rms + 1e-12)
        levels.append(np.maximum(db, db.max() - 60.0))
    a, b = (v - v.mean() for v in levels)
    denom = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return float(np.dot(a, b) / denom) if denom > 0 else 0.0


def energetic_offset(x: np.ndarray, span: int, from_end: bool = False, floor_db: float = -30.0) -> int:
    """Start of a ``span``-long window of ``x`` (N,) that begins (or, ``from_end``, ends) at the
    first (last) frame whose RMS is within ``floor_db`` of the loudest frame."""
    frame = max(1, min(1024, span // 8))
    n_frames = len(x) // frame
    if n_frames == 0:
        return 0
    rms = np.sqrt(np.mean(x[: n_frames * frame].reshape(n_frames, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (floor_db / 20))
    start = (loud[-1] + 1) * frame - span if from_end else loud[0] * frame
    return int(np.clip(start, 0, max(0, len(x) - span)))


def _window(x: np.ndarray, start: int, length: int) -> np.ndarray:
    """x[start : start + length], zero-padded where that runs off either end."""
    out = np.zeros(length)
    lo, hi = max(start, 0), min(start + length, len(x))
    if hi > lo:
        out[lo - start : hi - start] = x[lo:hi]
    return out


def _parabolic(y: np.ndarray, k: int) -> float:
    """Offset in (-0.5, 0.5) of the vertex of the parabola through y[k-1], y[k], y[k+1]."""
    if k == 0 or k == len(y) - 1:
        return 0.0
    a, b, c = y[k - 1], y[k], y[k + 1]
    curvature = a - 2 * b + c
    return float(0.5 * (a - c) / curvature) if curvature < 0 else 0.0


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class BlipOnsets:
    """The processed signal's first arrivals after a calibration's blips.

    latency: median onset - blip position over the usable blips (samples; negative: processed leads).
    subsample: the same with each onset interpolated between the samples around the threshold.
    polarity: +1, or -1 when the response's first extremum has the opposite sign of the blip.
    onsets: each blip's onset - position (None where the blip was unusable: noise or an earlier
    tail within 12 dB of its response, or no response at all). The latency is taken over the
    blips whose background lies 32 dB or more below their response when there are any.
    noise_db: the peak level (dBFS) of the processed silence before the first blip.
    """

    latency: int
    subsample: float
    polarity: int
    onsets: list[int | None] = field(default_factory=list)
    noise_db: float = -200.0


def blip_onsets(
    processed: np.ndarray,
    positions: list[int],
    max_lag: int,
    sample_rate: int,
    lead: int,
    blip_sign: int = 1,
) -> BlipOnsets | None:
    """Onsets of the responses to blips at ``positions`` (samples of the clean timeline) in
    ``processed`` (N,), searched within +-``max_lag``; ``lead`` samples of silence precede
    the first blip. None when no blip gives a response that stands out of the noise."""
    y = np.asarray(processed, dtype=np.float64)
    guard = max(1, int(0.002 * sample_rate))
    first = positions[0]
    noise_lo, noise_hi = max(0, first - lead + guard), max(0, first - max_lag - guard)
    noise = float(np.max(np.abs(y[noise_lo:noise_hi]), initial=0.0)) if noise_hi > noise_lo else 0.0
    pre = max(guard, int(0.02 * sample_rate))
    found: list[tuple[int, float, int, bool] | None] = []
    for p in positions:
        lo, hi = p - max_lag, p + max_lag + 1
        if lo < 0 or hi > len(y):
            found.append(None)
            continue
        # the background just before the search window: noise, an earlier blip's (or the music's)
        # decaying tail, and any DC offset, which is taken off both
        background = y[max(0, lo - pre) : lo]
        offset = float(np.median(background)) if background.size else 0.0
        window = y[lo:hi] - offset
        peak = float(np.max(np.abs(window)))
        floor = float(np.max(np.abs(background - offset), initial=0.0))
        if peak <= 0 or 4 * floor >= peak:
            found.append(None)
            continue
        # ISO 3382-1's start of an impulse response: where it first rises 20 dB below its maximum,
        # and well above the background. Earlier, a converter's or resampler's linear-phase
        # ringing and a look-ahead plugin's pre-echo would count as the arrival.
        threshold = max(4 * floor, ONSET_FRACTION * peak)
        above = np.flatnonzero(np.abs(window) > threshold)
        k = int(above[0])
        a0 = abs(window[k - 1]) if k > 0 else 0.0
        frac = (threshold - a0) / (abs(window[k]) - a0) if abs(window[k]) > a0 else 1.0
        settle = window[k : k + max(2, int(0.002 * sample_rate))]
        sign = 1 if settle[int(np.argmax(np.abs(settle)))] >= 0 else -1
        found.append((k - max_lag, k - max_lag - 1 + float(frac), sign, 4 * floor <= ONSET_FRACTION * peak))
    if found[0] is None:
        return None
    # The first blip follows silence; later ones may follow an echo or a tail of the one before
    # (a delay longer than the blip spacing puts its repeat inside the next blip's window), so
    # they count only where they agree with the first (a modulated device wanders a little).
    wander = max(2, int(0.002 * sample_rate))
    found = [f if f is None or abs(f[0] - found[0][0]) <= wander else None for f in found]
    usable = [f for f in found if f is not None]
    clean_ones = [f for f in usable if f[3]]  # threshold set by the peak alone: comparable across blips
    usable = clean_ones or usable
    lat = sorted(f[0] for f in usable)[len(usable) // 2]
    sub = float(np.median([f[1] for f in usable]))
    signs = [f[2] for f in usable]
    polarity = (1 if sum(signs) >= 0 else -1) * (1 if blip_sign >= 0 else -1)
    noise_db = 20 * np.log10(noise) if noise > 0 else -200.0
    return BlipOnsets(lat, sub, polarity, [None if f is None else f[0] for f in found], float(noise_db))


def calibration_drift(processed: np.ndarray, start: int, length: int, distance: int, max_shift: int) -> tuple[float, float]:
    """(drift in samples, correlation) between two identical calibrations ``distance`` apart, found by correlating
    the processed responses to them (blips and sweep) with each other: sub-sample, whatever the
    device does to the stimulus, as long as it does the same both times.

    ``start``/``length``: the first calibration's response in ``processed`` (N,).
    """
    y = np.asarray(processed, dtype=np.float64)
    later = y[distance:] if distance < len(y) else np.zeros(0)
    est = find_latency(y, later, max_shift, length, start)
    return float(est.subsample_lag), float(est.correlation)


def correct_drift(processed: np.ndarray, ppm: float) -> np.ndarray:
    """Resample ``processed`` (N,) so that a recording ``ppm`` long on the playback clock lines up."""
    import soxr

    rate = 1_000_000.0
    return soxr.resample(np.asarray(processed, dtype=np.float64), rate * (1 + ppm * 1e-6), rate, quality="VHQ")


ALIGN_SECONDS = 30.0  # of each pair, read for the alignment check
MISALIGNED_MS = 2.5  # a best lag this far from 0 is a recording's latency, not an effect's group delay
UNRELATED_LEVELS = 0.3  # frame levels this unlike belong to different audio


def alignment_problems(pairs, sr: int, max_lag_ms: float = 100.0, min_correlation: float = 0.3) -> list[str]:
    """Pairs (objects with ``clean`` and ``processed`` paths) that are not sample-aligned renders of
    each other: one line each with the numbers.

    Reads the first ``ALIGN_SECONDS`` of each pair. A pair whose waveforms correlate best at
    ``MISALIGNED_MS`` or more from lag 0 was recorded with latency; a pair whose frame levels do
    not follow each other (``level_similarity`` below ``UNRELATED_LEVELS``) and whose waveforms
    do not correlate is unrelated audio. Filters' group delays, reverbs, choruses and pitch
    shifters keep the notes in place and pass.
    """
    import soundfile as sf

    max_lag = int(max_lag_ms * sr / 1000)
    out = []
    for p in pairs:
        frames = min(sf.info(str(p.clean)).frames, int(ALIGN_SECONDS * sr))
        if frames < 4 * max_lag:
            continue
        c = sf.read(str(p.clean), frames=frames, dtype="float64", always_2d=True)[0].mean(axis=1)
        q = sf.read(str(p.processed), frames=frames, dtype="float64", always_2d=True)[0].mean(axis=1)
        if not (np.any(c) and np.any(q) and np.isfinite(c).all() and np.isfinite(q).all()):
            continue  # silence and NaN are refused with their own message when the pair is read
        n = min(int(1.5 * sr), frames - 2 * max_lag)
        wave = find_latency(c, q, max_lag, n, energetic_offset(c, n))
        related = abs(wave.correlation) >= min_correlation
        if related and abs(wave.lag) * 1000 >= MISALIGNED_MS * sr:
            out.append(f"{p.processed}: lines up with {p.clean.name} {wave.lag} samples ({1000 * wave.lag / sr:.1f} ms) "
                       f"later (correlation {wave.correlation:.3f}), not at 0: a recording with latency? Import "
                       "recordings with `fxdist data import`, which measures and removes it")
        elif not related and (levels := level_similarity(c, q, sr)) < UNRELATED_LEVELS:
            out.append(f"{p.processed}: does not follow {p.clean.name} (waveform correlation {wave.correlation:.3f} at "
                       f"lag {wave.lag}, frame levels correlate {levels:.2f}): unrelated audio, or the wrong pair?")
    return out


def align(clean: np.ndarray, processed: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Shift processed (M,) by ``lag`` (positive = late) against clean (N,); cut both to their
    common length L. Returns (clean[a : a + L], processed[b : b + L])."""
    a, b = max(0, -lag), max(0, lag)
    n = min(len(clean) - a, len(processed) - b)
    if n <= 0:
        raise DataError(f"no overlap between clean ({len(clean)}) and processed ({len(processed)}) at lag {lag}")
    return clean[a : a + n], processed[b : b + n]


__all__ = [
    "BlipOnsets", "DEFAULT_SPAN", "alignment_problems", "LatencyEstimate", "align", "blip_onsets", "calibration_drift", "correct_drift",
    "energetic_offset", "find_latency", "find_latency_envelope", "level_similarity", "onset_envelope",
]
