"""Signals, spectra and helpers shared by the effect tests (1 s at 16 kHz unless told)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fxdist.effects import Chain, EffectConfig, load_effect_config
from fxdist.presets import list_effect_presets


SR = 16000
PRESETS = list_effect_presets()


# ----------------------------------------------------------------------------- signals


def sine(freq: float, amp: float = 0.5, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)[None, :]


def noise(seconds: float = 1.0, amp: float = 0.1, seed: int = 0) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal((1, int(seconds * SR)))).astype(np.float32)


def plucks(seconds: float = 2.0, seed: int = 0, sr: int = SR) -> np.ndarray:
    """Guitar-like plucked notes (8 harmonics, exponential decay) at -30..0 dB, (1, N)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros(n)
    t0 = 0
    while t0 < n:
        f0 = float(np.exp(rng.uniform(np.log(82), np.log(660))))
        t = np.arange(min(int(rng.uniform(0.15, 0.6) * sr), n - t0)) / sr
        note = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.28)) / k for k in range(1, 9) if k * f0 < 0.45 * sr)
        env = np.minimum(t / 0.003, 1.0) * np.exp(-t / rng.uniform(0.08, 0.4))
        out[t0 : t0 + len(t)] += 10 ** (rng.uniform(-30, 0) / 20) * env * note
        t0 += len(t)
    return (0.9 * out / np.max(np.abs(out)))[None, :].astype(np.float32)


def spectrum(y: np.ndarray, skip_s: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed power spectrum of channel 0 after ``skip_s`` (filter start-up left out)."""
    seg = np.asarray(y, dtype=np.float64)[0, int(skip_s * SR) :]
    power = np.abs(np.fft.rfft(seg * np.hanning(len(seg)))) ** 2
    return np.fft.rfftfreq(len(seg), 1 / SR), power


def band(y: np.ndarray, lo: float, hi: float) -> float:
    f, p = spectrum(y, skip_s=0.0)
    return float(p[(f >= lo) & (f < hi)].sum())


def thd(y: np.ndarray, f0: float) -> float:
    """sqrt(energy at harmonics 2f0, 3f0, ... below Nyquist / energy at f0)."""
    f, p = spectrum(y)

    def at(freq: float) -> float:
        return float(p[np.abs(f - freq) <= 3].sum())

    harmonics = sum(at(k * f0) for k in range(2, int(0.49 * SR / f0) + 1))
    return float(np.sqrt(harmonics / at(f0)))


def rms_db(y: np.ndarray, start_s: float, end_s: float) -> float:
    seg = y[0, int(start_s * SR) : int(end_s * SR)].astype(np.float64)
    return float(10 * np.log10(np.mean(seg**2)))


# ----------------------------------------------------------------------------- helpers


def missing_tools(cfg: EffectConfig) -> str | None:
    """Why ``cfg`` cannot run here (a program or LADSPA plugin it needs is absent), else None."""
    for stage in cfg.chain:
        if stage.command is None:
            continue
        if shutil.which(stage.command[0]) is None:
            return f"{cfg.name}: needs program {stage.command[0]!r}, not installed (apt-get install {stage.command[0]})"
        if "ladspa" in stage.command:
            module = stage.command[stage.command.index("ladspa") + 1]
            folder = stage.env.get("LADSPA_PATH", os.environ.get("LADSPA_PATH", "/usr/lib/ladspa"))
            if not (Path(module).is_file() or (Path(folder) / f"{module}.so").is_file()):
                return f"{cfg.name}: needs LADSPA plugin {module} in {folder}, not installed (apt-get install swh-plugins)"
    return None


def preset_or_skip(name: str) -> Chain:
    cfg = load_effect_config(name)
    reason = missing_tools(cfg)
    if reason:
        print(f"SKIP {reason}")
        pytest.skip(reason)
    return Chain(cfg)


def stage_param(cfg: EffectConfig, builtin: str, param: str) -> list[float]:
    return [s.params[param] for s in cfg.chain if s.builtin == builtin and param in s.params]


def cfg_dict(*stages: dict, name: str = "test") -> dict:
    return {"name": name, "family": "other", "chain": list(stages)}
