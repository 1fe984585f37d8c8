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

from fxdist.dsp import (  # noqa: F401  the pure distances metrics are built from
    EPS,
    MRSTFT_FFT_SIZES,
    _mono,
    _pair,
    best_gain,
    do_nothing_esr,
    esr,
    mrstft_distance,
)
from fxdist.errors import DataError

# snr_db of a perfect prediction would be +inf; JSON has no inf, so SNR is capped here.
SNR_CAP_DB = 200.0
# Silence has loudness -inf; report the BS.1770 absolute gate (-70 LUFS) instead.
LUFS_FLOOR = -70.0
# log_mel_distance ignores mel bins more than this far below the target's peak (dB).
LOG_MEL_RANGE_DB = 80.0

METRIC_NAMES = (
    "esr", "esr_pre", "snr_db", "mrstft", "log_mel", "lufs_diff",
    "baseline_esr", "baseline_mrstft", "esr_ratio", "mrstft_ratio", "models_effect",
)


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
    is ``do_nothing_esr``). ``distance`` is "esr", "mrstft" (needs ``sr``) or any
    callable ``(pred, target) -> float``. The denominator is floored at 1e-12, so a
    perfect prediction of a pure-gain effect gives 0.
    """
    p, t = _pair(pred, target)
    c, _ = _pair(clean, target, ("clean", "target"))
    if distance == "esr":
        return esr(p, t) / max(do_nothing_esr(c, t), EPS)
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
        "baseline_esr": do_nothing_esr(c, t),
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
