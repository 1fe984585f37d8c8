"""Pure signal distances shared by training, models, metrics and evaluation.

Mono float arrays of shape (N,) (a (1, N) array is accepted and flattened); sums in float64.
``clean`` = the effect's input, ``target`` = its output, ``pred`` = a model's output for
``clean``. The do-nothing baseline is the clean input after its best single gain
``g* = <c, t> / <c, c>``; ``do_nothing_esr`` (over arrays) and ``do_nothing_esr_from_sums``
(over accumulated sums) are the one place its error is computed.
"""

from __future__ import annotations

import numpy as np

from fxdist.errors import DataError

EPS = 1e-12
# Multi-resolution STFT: FFT sizes, hops (FFT/4) and Hann windows (= FFT size).
MRSTFT_FFT_SIZES = (256, 1024, 4096)


def _mono(x: np.ndarray, name: str = "signal") -> np.ndarray:
    """(N,) or (1, N) -> float64 (N,); raise DataError on other shapes or NaN/Inf."""
    a = np.asarray(x)
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 1:
        raise DataError(f"{name}: expected mono audio of shape (N,) or (1, N), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{name}: holds NaN or Inf ({int((~np.isfinite(a)).sum())} samples)")
    return a.astype(np.float64, copy=False)


def _pair(pred: np.ndarray, target: np.ndarray, names=("pred", "target")) -> tuple[np.ndarray, np.ndarray]:
    p, t = _mono(pred, names[0]), _mono(target, names[1])
    if p.shape != t.shape:
        raise DataError(f"{names[0]} has {p.size} samples but {names[1]} has {t.size}")
    if p.size == 0:
        raise DataError(f"{names[0]} and {names[1]} are empty")
    return p, t


def esr(pred: np.ndarray, target: np.ndarray) -> float:
    """Error-to-signal ratio ``sum((t - p)^2) / sum(t^2)``; 0 is perfect, 1 = predicting silence.

    A pure gain error ``p = g t`` gives ``(1 - g)^2``.
    """
    p, t = _pair(pred, target)
    return float(np.sum((t - p) ** 2) / (np.sum(t**2) + EPS))


def best_gain(clean: np.ndarray, target: np.ndarray) -> float:
    """The single gain ``g* = <c, t> / <c, c>`` that brings ``clean`` closest to ``target``."""
    c, t = _pair(clean, target, ("clean", "target"))
    return float(np.dot(c, t) / (np.dot(c, c) + EPS))


def do_nothing_esr_from_sums(cc: float, tt: float, ct: float) -> float:
    """ESR of the do-nothing baseline from the sums ``cc = <c, c>``, ``tt = <t, t>``, ``ct = <c, t>``.

    ``min_g ||t - g c||^2 / ||t||^2 = 1 - ct^2 / (cc tt)``, clamped at 0 against rounding.
    The sums may run over many tracks (training validation accumulates them). Zero handling:
    a silent target gives 0 (``g* = 0`` reproduces it exactly); a silent clean input beside a
    non-silent target gives 1 (doing nothing is silence, as wrong as predicting nothing).
    """
    if tt <= 0:
        return 0.0
    if cc <= 0:
        return 1.0
    return float(max(0.0, 1.0 - ct * ct / (cc * tt)))


def do_nothing_esr(clean: np.ndarray, target: np.ndarray) -> float:
    """ESR of the do-nothing baseline ``g* clean``: ``1 - <c, t>^2 / (||c||^2 ||t||^2)``.

    0 for an effect that is a pure gain (or silences its input); near 1 when the effect's
    output is uncorrelated with its input. Zero handling as :func:`do_nothing_esr_from_sums`.
    """
    c, t = _pair(clean, target, ("clean", "target"))
    return do_nothing_esr_from_sums(float(np.dot(c, c)), float(np.dot(t, t)), float(np.dot(c, t)))


def mrstft_distance(pred: np.ndarray, target: np.ndarray, sr: int) -> float:
    """Multi-resolution STFT distance (auraloss ``MultiResolutionSTFTLoss``), 0 when equal.

    For each FFT size n in ``MRSTFT_FFT_SIZES`` (Hann window n, hop n/4), with magnitudes
    ``P = |STFT p|`` and ``T = |STFT t|``:
    ``SC = ||T - P||_F / ||T||_F`` (spectral convergence) plus
    ``LM = mean |log T - log P|`` (log-magnitude L1); the result is the mean of SC + LM
    over the sizes. Sizes whose half exceeds the signal length are dropped. ``sr`` is
    not used by the formula; it is taken for a uniform metric signature.
    """
    del sr
    p, t = _pair(pred, target)
    sizes = [n for n in MRSTFT_FFT_SIZES if n // 2 < p.size]
    if not sizes:
        need = MRSTFT_FFT_SIZES[0] // 2
        raise DataError(f"signal of {p.size} samples is too short for the MR-STFT distance (needs > {need})")
    import auraloss
    import torch

    loss = auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=sizes, hop_sizes=[n // 4 for n in sizes], win_lengths=sizes
    )
    with torch.no_grad():
        value = loss(
            torch.from_numpy(p.astype(np.float32)).view(1, 1, -1),
            torch.from_numpy(t.astype(np.float32)).view(1, 1, -1),
        )
    return float(value)
