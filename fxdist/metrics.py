"""Evaluation metrics: how close a model's output is to the effect it imitates.

Pure functions on mono float arrays of shape (N,) (a (1, N) array is accepted and
flattened). Naming: ``clean`` = the effect's input, ``target`` = the effect's output,
``pred`` = the model's output for ``clean``. All sums run in float64.

The study's success test compares the model with the do-nothing baseline, the clean
input after its best single gain ``g* = <c, t> / <c, c>``: a model that does not beat
``g* * clean`` has not learnt the effect. ``closer_ratio`` < 1 means the model output is
closer to the effect than that baseline; ``models_effect`` asks for a tenfold ESR gain.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Literal, Sequence

import numpy as np

from fxdist.errors import DataError

EPS = 1e-12
# snr_db of a perfect prediction would be +inf; JSON has no inf, so SNR is capped here.
SNR_CAP_DB = 200.0
# Multi-resolution STFT: FFT sizes, hops (FFT/4) and Hann windows (= FFT size).
MRSTFT_FFT_SIZES = (256, 1024, 4096)
# Silence has loudness -inf; report the BS.1770 absolute gate (-70 LUFS) instead.
LUFS_FLOOR = -70.0
# log_mel_distance ignores mel bins more than this far below the target's peak (dB).
LOG_MEL_RANGE_DB = 80.0

METRIC_NAMES = (
    "esr", "esr_pre", "snr_db", "mrstft", "log_mel", "lufs_diff",
    "baseline_esr", "baseline_mrstft", "esr_ratio", "mrstft_ratio", "models_effect",
)


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


def pre_emphasis(x: np.ndarray, coeff: float) -> np.ndarray:
    """First-order high-pass ``y[n] = x[n] - coeff * x[n-1]``; (N,) -> (N-1,)."""
    x = np.asarray(x, dtype=np.float64)
    return x[1:] - coeff * x[:-1]


def esr_pre_emphasis(pred: np.ndarray, target: np.ndarray, coeff: float = 0.85) -> float:
    """ESR after pre-emphasis ``H(z) = 1 - coeff z^-1`` of both signals (Wright & Välimäki).

    Weights high frequencies more, where distortion harmonics live; equals the training loss.
    """
    p, t = _pair(pred, target)
    return esr(pre_emphasis(p, coeff), pre_emphasis(t, coeff))


def snr_db(pred: np.ndarray, target: np.ndarray) -> float:
    """Signal-to-noise ratio ``10 log10(sum(t^2) / sum((t - p)^2))`` = ``-10 log10(ESR)``.

    Capped at ``SNR_CAP_DB`` (200 dB) so a perfect prediction stays a finite JSON number.
    """
    p, t = _pair(pred, target)
    err = float(np.sum((t - p) ** 2))
    sig = float(np.sum(t**2))
    if err <= sig * 10 ** (-SNR_CAP_DB / 10):
        return SNR_CAP_DB
    return float(10 * np.log10((sig + EPS) / err))


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


def mel_params(sr: int) -> dict:
    """STFT/mel settings used by ``log_mel_distance`` and the spectrogram plots.

    FFT about 43 ms (2048 at 48 kHz, 512 at 8–12 kHz), hop FFT/4, 64 mel bands from
    20 Hz (or 2 FFT bins, whichever is higher) to sr/2.
    """
    n_fft = 1 << max(8, int(math.ceil(math.log2(0.0426 * sr))))
    fmin = max(20.0, 2 * sr / n_fft)
    n_mels = 64 if sr >= 22050 else 48 if sr >= 11025 else 32
    return {"n_fft": n_fft, "hop_length": n_fft // 4, "n_mels": n_mels, "fmin": fmin, "fmax": sr / 2}


def log_mel_db(x: np.ndarray, sr: int) -> np.ndarray:
    """Mel power spectrogram in dB re full scale (a 0 dBFS sine reads about 0 dB); (N,) -> (n_mels, frames)."""
    import librosa

    params = mel_params(sr)
    x = _mono(x).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # librosa warns on signals shorter than n_fft
        mel = librosa.feature.melspectrogram(
            y=x, sr=sr, n_fft=params["n_fft"], hop_length=params["hop_length"], n_mels=params["n_mels"],
            fmin=params["fmin"], fmax=params["fmax"], power=2.0, norm=None, htk=False,
        )
    # Hann window: a full-scale sine peaks at (sum(w)/2)^2 = (n_fft/4)^2 in power.
    ref = (params["n_fft"] / 4) ** 2
    return 10 * np.log10(np.maximum(mel / ref, 1e-20))


def log_mel_distance(pred: np.ndarray, target: np.ndarray, sr: int) -> float:
    """Mean absolute difference (dB) of log-mel spectrograms ``mean |M_t - M_p|``.

    Both spectrograms (``log_mel_db``) are floored at the target's peak minus
    ``LOG_MEL_RANGE_DB`` (80 dB), so inaudible noise-floor bins do not dominate.
    """
    p, t = _pair(pred, target)
    mt, mp = log_mel_db(t, sr), log_mel_db(p, sr)
    floor = mt.max() - LOG_MEL_RANGE_DB
    return float(np.mean(np.abs(np.maximum(mt, floor) - np.maximum(mp, floor))))


def loudness_lufs(x: np.ndarray, sr: int) -> float:
    """Integrated loudness (LUFS) per ITU-R BS.1770-4, via pyloudnorm.

    K-weighting (shelf + high-pass, De Man's rate-independent coefficients, exact at
    48 kHz: a full-scale 997 Hz sine reads -3.01 LUFS), mean square over 400 ms blocks
    (75 % overlap), absolute gate -70 LUFS and relative gate -10 LU,
    ``L = -0.691 + 10 log10(mean z)``. Signals shorter than one block are measured as
    one ungated block. Silence reads ``LUFS_FLOOR`` (-70).
    """
    import pyloudnorm

    a = _mono(x, "signal")
    block = min(0.4, a.size / sr)
    if block <= 0:
        raise DataError("cannot measure the loudness of an empty signal")
    meter = pyloudnorm.Meter(sr, filter_class="DeMan", block_size=block)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        value = meter.integrated_loudness(a)
    return float(value) if np.isfinite(value) and value > LUFS_FLOOR else LUFS_FLOOR


def loudness_diff_lu(pred: np.ndarray, target: np.ndarray, sr: int) -> float:
    """``loudness(pred) - loudness(target)`` in LU; positive means the model is louder."""
    p, t = _pair(pred, target)
    return loudness_lufs(p, sr) - loudness_lufs(t, sr)


def best_gain(clean: np.ndarray, target: np.ndarray) -> float:
    """The single gain ``g* = <c, t> / <c, c>`` that brings ``clean`` closest to ``target``."""
    c, t = _pair(clean, target, ("clean", "target"))
    return float(np.dot(c, t) / (np.dot(c, c) + EPS))


def best_gain_baseline_esr(clean: np.ndarray, target: np.ndarray) -> float:
    """ESR of the do-nothing baseline ``g* clean``: ``1 - <c, t>^2 / (||c||^2 ||t||^2)``.

    0 for an effect that is a pure gain; near 1 when the effect's output is uncorrelated
    with its input.
    """
    c, t = _pair(clean, target, ("clean", "target"))
    cc, tt, ct = np.dot(c, c), np.dot(t, t), np.dot(c, t)
    return float(max(0.0, 1.0 - ct**2 / (cc * tt + EPS)))


Distance = Callable[[np.ndarray, np.ndarray], float]


def closer_ratio(
    pred: np.ndarray,
    clean: np.ndarray,
    target: np.ndarray,
    distance: Literal["esr", "mrstft"] | Distance = "esr",
    sr: int | None = None,
) -> float:
    """``distance(pred, target) / distance(g* clean, target)``: < 1 = model closer than the baseline.

    The baseline is the clean input after its best gain ``g*`` (for "esr" the denominator
    is ``best_gain_baseline_esr``). ``distance`` is "esr", "mrstft" (needs ``sr``) or any
    callable ``(pred, target) -> float``. The denominator is floored at 1e-12, so a
    perfect prediction of a pure-gain effect gives 0.
    """
    p, t = _pair(pred, target)
    c, _ = _pair(clean, target, ("clean", "target"))
    if distance == "esr":
        return esr(p, t) / max(best_gain_baseline_esr(c, t), EPS)
    if distance == "mrstft":
        if sr is None:
            raise DataError("closer_ratio with distance='mrstft' needs the sample rate sr")
        fn: Distance = lambda a, b: mrstft_distance(a, b, sr)  # noqa: E731
    elif callable(distance):
        fn = distance
    else:
        raise DataError(f"unknown distance {distance!r}; use 'esr', 'mrstft' or a callable")
    return fn(p, t) / max(fn(best_gain(c, t) * c, t), EPS)


def evaluate_pair(clean: np.ndarray, target: np.ndarray, pred: np.ndarray, sr: int) -> dict[str, float | bool]:
    """All metrics for one (clean, effect output, model output) triple of (N,) arrays.

    Keys (stable, see ``METRIC_NAMES``): esr, esr_pre, snr_db, mrstft, log_mel, lufs_diff,
    baseline_esr, baseline_mrstft (of ``g* clean``), esr_ratio = esr / baseline_esr,
    mrstft_ratio = mrstft / baseline_mrstft, and models_effect = esr <= baseline_esr / 10.
    """
    p, t = _pair(pred, target)
    c, _ = _pair(clean, target, ("clean", "target"))
    base = best_gain(c, t) * c
    out: dict[str, float | bool] = {
        "esr": esr(p, t),
        "esr_pre": esr_pre_emphasis(p, t),
        "snr_db": snr_db(p, t),
        "mrstft": mrstft_distance(p, t, sr),
        "log_mel": log_mel_distance(p, t, sr),
        "lufs_diff": loudness_diff_lu(p, t, sr),
        "baseline_esr": best_gain_baseline_esr(c, t),
        "baseline_mrstft": mrstft_distance(base, t, sr),
    }
    _derive(out)
    return out


def _derive(m: dict) -> None:
    """Fill the ratio keys and models_effect from esr/mrstft and their baselines."""
    m["esr_ratio"] = m["esr"] / max(m["baseline_esr"], EPS)
    m["mrstft_ratio"] = m["mrstft"] / max(m["baseline_mrstft"], EPS)
    m["models_effect"] = bool(m["esr"] <= m["baseline_esr"] / 10)


def aggregate(results: Sequence[dict], weights: Sequence[float] | None = None) -> dict[str, float | bool | int]:
    """Weighted mean of per-pair ``evaluate_pair`` dicts (weights: e.g. lengths; default equal).

    Plain metrics are weighted means. esr_ratio, mrstft_ratio and models_effect are
    recomputed from the averaged esr/mrstft and baselines (a ratio of means, so one
    near-silent clip cannot dominate); snr_db is the weighted mean of the per-pair values.
    Adds ``n_pairs`` and ``models_effect_fraction`` (weighted share of pairs that model
    the effect). Keys absent from some dicts are averaged over the dicts that have them.
    """
    if not results:
        raise DataError("aggregate needs at least one result")
    w = np.ones(len(results)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(results),) or np.any(w < 0) or w.sum() <= 0:
        raise DataError(f"aggregate: {len(results)} results but weights {list(w)} (need as many, >= 0, sum > 0)")
    keys = [k for k in dict.fromkeys(k for r in results for k in r)]
    out: dict = {}
    for key in keys:
        have = [(r[key], wi) for r, wi in zip(results, w) if key in r]
        vals = np.array([float(v) for v, _ in have])
        ws = np.array([wi for _, wi in have])
        out[key] = float(np.sum(vals * ws) / ws.sum()) if ws.sum() > 0 else float(np.mean(vals))
    if "models_effect" in out:
        out["models_effect_fraction"] = out.pop("models_effect")
    if {"esr", "baseline_esr", "mrstft", "baseline_mrstft"} <= out.keys():
        _derive(out)
    out["n_pairs"] = len(results)
    return out
