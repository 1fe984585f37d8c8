"""The reference signal every export is checked on, the model's own output on it, and loudness."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from fxdist.models.base import EffectModel

REFERENCE_RMS_DB = -15.0  # RMS of NAM's loudness reference clip; our reference signal is scaled to it


def reference_signal(sample_rate: int, seconds: float = 1.0) -> np.ndarray:
    """A seeded guitar-range test signal (N,) at RMS -15 dBFS, the level of NAM's loudness clip."""
    from fxdist.data.generate import GenerateConfig, generate_track

    cfg = GenerateConfig(
        seed=0, sample_rate=sample_rate, segments_per_track=1, segment_seconds=seconds,
        max_freq=min(1200.0, 0.4 * sample_rate), max_gap_probability=0.0, level_range_db=0.0,
    )
    x = generate_track(cfg, 0).astype(np.float64)
    rms = np.sqrt(np.mean(x**2))
    return (x * (10 ** (REFERENCE_RMS_DB / 20) / max(rms, 1e-12))).astype(np.float32)


@contextmanager
def one_thread():
    """Run torch on one thread: a recurrent step on several threads of a busy machine is ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def offline_output(model: EffectModel, x: np.ndarray) -> np.ndarray:
    """model.forward over (N,) preceded by silence (conv) / from zero state (recurrent) -> (N,)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).view(1, 1, -1)
    if not model.stateful:
        t = torch.cat([t.new_zeros(1, 1, model.receptive_field - 1), t], dim=-1)
    with one_thread():
        return model.eval()(t)[0][0, 0].numpy()


def measure_loudness(model: EffectModel, sample_rate: int) -> tuple[float, float]:
    """(loudness dB RMS of the output on the reference, NAM-style gain 0..1) as NAM computes them."""
    x = reference_signal(sample_rate)
    rms = [float(np.sqrt(np.mean(offline_output(model, g * x).astype(np.float64) ** 2))) for g in np.linspace(0, 1, 11)]
    loudness = 20 * np.log10(max(rms[-1], 1e-12))
    max_gain = rms[-1] * len(rms)
    this = sum(rms)
    gain = float(np.clip((this - 0.5 * max_gain) / max(0.5 * max_gain, 1e-12), 0.0, 1.0))
    return float(loudness), gain


def irregular_blocks(total: int) -> list[int]:
    """Block sizes 1, 7, 64, 256, 33, 500, 2, ... summing to ``total``: streaming formats are
    checked on these, so a state carried wrongly between blocks shows."""
    sizes, out, i = [1, 7, 64, 256, 33, 500, 2], [], 0
    while total > 0:
        n = min(sizes[i % len(sizes)], total)
        out.append(n)
        total -= n
        i += 1
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function in numpy, for the independent readers of NAM and RTNeural files."""
    return 1.0 / (1.0 + np.exp(-x))
