"""Do-nothing baseline ESR of every shipped effect preset.

The baseline is the clean input after its best single gain: ESR = min_g ||y - g x||^2 / ||y||^2.
A preset whose baseline is near 0 is too mild to judge a model by; we want >= 0.1.

Signals: plucked guitar-like notes at levels spread over 30 dB (numpy, always), and a
synthetic track from ``fxdist.data.generate`` when that module is importable.

    python benchmarks/preset_baselines.py [--sr 48000] [--seconds 6] [--presets distortion fuzz]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fxdist.dsp import do_nothing_esr
from fxdist.effects import load_effect
from fxdist.presets import list_effect_presets
from fxdist.errors import EffectError


def pluck_signal(sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Plucked notes (8 harmonics, 1/k amplitudes, exponential decay) at -30..0 dB, (1, N) float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros(n)
    t0 = 0
    while t0 < n:
        length = int(rng.uniform(0.15, 0.6) * sr)
        f0 = float(np.exp(rng.uniform(np.log(82), np.log(660))))
        t = np.arange(min(length, n - t0)) / sr
        note = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 9) if k * f0 < 0.45 * sr)
        env = np.minimum(t / 0.003, 1.0) * np.exp(-t / rng.uniform(0.08, 0.4))
        out[t0 : t0 + len(t)] += 10 ** (rng.uniform(-30, 0) / 20) * env * note
        t0 += len(t)
    return (0.9 * out / np.max(np.abs(out)))[None, :].astype(np.float32)


def generated_signal(sr: int, seconds: float) -> np.ndarray | None:
    """A track from fxdist.data.generate, (1, N) float32, or None if that module is missing."""
    try:
        from fxdist.data.generate import GenerateConfig, generate_track
    except ImportError:
        return None
    segments = max(1, int(round(seconds / 2)))
    cfg = GenerateConfig(seed=0, sample_rate=sr, segments_per_track=segments, segment_seconds=2.0)
    return generate_track(cfg, 0)[None, :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sr", type=int, nargs="+", default=[16000, 48000])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--presets", nargs="*", default=None)
    args = parser.parse_args()

    names = args.presets or list_effect_presets()
    print(f"{'preset':16s} {'sr':>6s} {'pluck ESR':>10s} {'generated ESR':>14s} {'render x realtime':>18s}")
    for name in names:
        try:
            chain = load_effect(name)
        except EffectError as exc:
            print(f"{name:16s} skipped: {exc}")
            continue
        for sr in args.sr:
            row = []
            for signal in (pluck_signal(sr, args.seconds), generated_signal(sr, args.seconds)):
                if signal is None:
                    row.append(float("nan"))
                    continue
                start = time.perf_counter()
                y = chain(signal, sr)
                speed = signal.shape[1] / sr / (time.perf_counter() - start)
                row.append(do_nothing_esr(signal, y))
            print(f"{name:16s} {sr:6d} {row[0]:10.3f} {row[1]:14.3f} {speed:17.0f}x")


if __name__ == "__main__":
    main()
