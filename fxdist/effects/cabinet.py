"""Generated guitar-cabinet impulse responses: a band-pass with resonances, made minimum phase."""

from __future__ import annotations

import math

import numpy as np


def cabinet_ir(
    sr: int,
    seed: int = 0,
    length_ms: float = 40.0,
    low_hz: float = 80.0,
    high_hz: float = 4500.0,
    resonances: int = 4,
    decay_ms: float = 6.0,
) -> np.ndarray:
    """A plausible guitar-cabinet impulse response, float32 (N,), N = length_ms * sr / 1000.

    Magnitude: 2nd-order high-pass at ``low_hz`` times 6th-order low-pass at ``high_hz``
    (a speaker's steep top roll-off, -36 dB/octave), a low "thump" resonance at 90-160 Hz,
    a mid dip at 350-800 Hz and ``resonances`` cone peaks at 1-4.5 kHz (+3..+9 dB), all
    drawn from ``seed``. Its minimum-phase impulse (energy up front, no delay) plus a noise
    tail decaying with time constant ``decay_ms`` and shaped by the same magnitude; faded
    out over the last 10 %. Scaled to 0 dB mean power gain over the pass band
    [low_hz, min(high_hz, 0.45 sr)], so its loudness hardly depends on the rate.
    Deterministic in its arguments.
    """
    n = max(16, int(round(length_ms * sr / 1000)))
    nfft = 1 << int(math.ceil(math.log2(4 * n)))
    f = np.fft.rfftfreq(nfft, 1.0 / sr)
    rng = np.random.default_rng(seed)
    mag = _cabinet_magnitude(f, rng, low_hz, high_hz, resonances)

    body = _minimum_phase(mag, nfft)[:n]
    t = np.arange(n) / sr
    noise = rng.standard_normal(n) * np.exp(-t / (decay_ms / 1000))
    tail = np.fft.irfft(np.fft.rfft(noise, nfft) * mag, nfft)[:n]
    ir = body + 0.3 * tail * (np.linalg.norm(body) / max(np.linalg.norm(tail), 1e-12))

    fade = max(1, n // 10)
    ir[-fade:] *= 0.5 * (1 + np.cos(np.linspace(0, np.pi, fade)))
    power = np.abs(np.fft.rfft(ir, nfft)) ** 2
    passband = (f >= low_hz) & (f <= min(high_hz, 0.45 * sr))
    return (ir / np.sqrt(np.mean(power[passband]))).astype(np.float32)


def _cabinet_magnitude(
    f: np.ndarray, rng: np.random.Generator, low_hz: float, high_hz: float, resonances: int
) -> np.ndarray:
    """Linear magnitude on frequency grid ``f`` (Hz): band-pass times resonant bumps."""
    hp = (f / low_hz) ** 2 / np.sqrt(1 + (f / low_hz) ** 4)
    lp = 1 / np.sqrt(1 + (f / high_hz) ** 12)
    logf = np.log2(np.maximum(f, 1.0))

    def bump(centre_hz: float, gain_db: float, width_oct: float) -> np.ndarray:
        return gain_db * np.exp(-0.5 * ((logf - np.log2(centre_hz)) / width_oct) ** 2)

    shape_db = bump(rng.uniform(90, 160), rng.uniform(3, 6), 0.3)
    shape_db += bump(rng.uniform(350, 800), -rng.uniform(3, 6), 0.6)
    for _ in range(resonances):
        shape_db += bump(np.exp(rng.uniform(np.log(1000), np.log(4500))), rng.uniform(3, 9), rng.uniform(0.08, 0.25))
    return hp * lp * 10 ** (shape_db / 20)


def _minimum_phase(mag: np.ndarray, nfft: int) -> np.ndarray:
    """Minimum-phase impulse (nfft,) with rfft magnitude ``mag`` (homomorphic method)."""
    cep = np.fft.irfft(np.log(np.maximum(mag, 1e-6)), nfft)
    fold = np.zeros(nfft)
    fold[0] = 1
    fold[1 : nfft // 2] = 2
    fold[nfft // 2] = 1
    return np.fft.irfft(np.exp(np.fft.rfft(cep * fold, nfft)), nfft)
