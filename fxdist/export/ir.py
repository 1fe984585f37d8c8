"""Impulse response WAV (mono, 32-bit float, the model's rate): what every convolution/IR loader
(amp sims, NAM's plugin, reverb hosts) loads. For models with ``ir_taps`` (``fir``), the taps as
they are (no normalisation). Checked by reading the WAV back with soundfile and convolving with
``scipy.signal.fftconvolve``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fxdist.export.metadata import ExportMetadata
from fxdist.fsutil import atomic_path
from fxdist.models.base import EffectModel


def write_ir(model: EffectModel, out: str | Path, meta: ExportMetadata) -> list[str]:
    """The model's impulse response as a mono 32-bit float WAV at the model's rate (atomic); notes."""
    import soundfile as sf

    taps = model.ir_taps()
    with atomic_path(out) as tmp:
        sf.write(str(tmp), taps, meta.sample_rate, subtype="FLOAT", format="WAV")
    return [f"{len(taps)} taps ({len(taps) / meta.sample_rate * 1000:.1f} ms), 32-bit float WAV"]


def ir_forward(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Convolve (N,) with the impulse response in a WAV file (as an IR loader does) -> (N,)."""
    import soundfile as sf
    from scipy.signal import fftconvolve

    h, _ = sf.read(str(path), dtype="float64", always_2d=True)
    return fftconvolve(np.asarray(x, dtype=np.float64), h[:, 0])[: len(x)].astype(np.float32)
