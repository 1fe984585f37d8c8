"""Figures a musician can read: spectrograms, waveforms, error spectra, transfer curves.

Every function takes mono float arrays of shape (N,) (``clean`` = the effect's input,
``target`` = the effect's output, ``pred`` = the model's output), writes one PNG
atomically and returns its path. Colours are the same in every figure: clean input
grey, effect blue, model orange, error red. Figures are built on matplotlib's
object API with the Agg canvas, so nothing touches pyplot's global state or a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from fxdist.errors import DataError
from fxdist.fsutil import atomic_path
from fxdist.metrics import log_mel_db, mel_params

CLEAN, EFFECT, MODEL, ERROR = "#8c8c8c", "#1f77b4", "#ff7f0e", "#d62728"
MUSICAL_TICKS_HZ = (20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
DPI = 110
STYLE = {
    "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10,
    "figure.titlesize": 14, "axes.grid": False,
}


def _mono(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 1 or a.size == 0:
        raise DataError(f"{name}: expected non-empty mono audio (N,) or (1, N), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{name}: holds NaN or Inf")
    return a


def _same_length(**signals: np.ndarray) -> list[np.ndarray]:
    arrays = [_mono(v, k) for k, v in signals.items()]
    lengths = {k: a.size for k, a in zip(signals, arrays)}
    if len(set(lengths.values())) != 1:
        raise DataError(f"signals differ in length: {lengths}")
    return arrays


def _figure(width: float, height: float) -> Figure:
    import matplotlib

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def _hz_label(f: float) -> str:
    return f"{f / 1000:g}k" if f >= 1000 else f"{f:g}"


def _spread_ticks(scale, fmin: float, fmax: float, min_gap: float = 0.05) -> list[float]:
    """Musical Hz ticks in [fmin, fmax], dropping any closer than ``min_gap`` of the axis to the last kept."""
    lo, hi = scale(fmin), scale(fmax)
    kept: list[float] = []
    for f in sorted(MUSICAL_TICKS_HZ, reverse=True):
        if fmin <= f <= fmax and (not kept or scale(kept[-1]) - scale(f) >= min_gap * (hi - lo)):
            kept.append(f)
    return kept[::-1]


def _musical_log_axis(axis, fmin: float, fmax: float) -> None:
    """Put Hz ticks at 50, 100, 200, 500, 1k ... on a log-frequency axis."""
    ticks = [f for f in MUSICAL_TICKS_HZ if fmin <= f <= fmax]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda f, _: _hz_label(f)))
    axis.set_minor_locator(NullLocator())


def spectrograms(
    clean: np.ndarray, pred: np.ndarray, target: np.ndarray, sr: int, path: str | Path, title: str = ""
) -> Path:
    """Log-mel spectrograms of clean input, model and effect side by side, one dB colour scale.

    Colour is mel power in dB re full scale (``fxdist.metrics.log_mel_db``), shown over
    the 80 dB below the loudest of the three; frequency in Hz on the mel scale.
    """
    import librosa

    clean, pred, target = _same_length(clean=clean, pred=pred, target=target)
    params = mel_params(sr)
    specs = [log_mel_db(x, sr) for x in (clean, pred, target)]
    vmax = float(np.ceil(max(s.max() for s in specs)))
    vmin = vmax - 80.0
    mel_lo, mel_hi = librosa.hz_to_mel(params["fmin"]), librosa.hz_to_mel(params["fmax"])
    duration = clean.size / sr
    ticks = _spread_ticks(librosa.hz_to_mel, params["fmin"], params["fmax"])

    fig = _figure(14, 4.6)
    axes = fig.subplots(1, 3, sharey=True)
    names = [("Clean input", CLEAN), ("Model output", MODEL), ("Effect output (target)", EFFECT)]
    for ax, spec, (name, colour) in zip(axes, specs, names):
        image = ax.imshow(
            spec, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax,
            extent=(0, duration, mel_lo, mel_hi), interpolation="nearest",
        )
        ax.set_title(name, color=colour, fontweight="bold")
        ax.set_xlabel("Time (s)")
        ax.set_yticks(librosa.hz_to_mel(np.array(ticks, dtype=float)), [_hz_label(f) for f in ticks])
    axes[0].set_ylabel("Frequency (Hz)")
    bar = fig.colorbar(image, ax=list(axes), pad=0.01, fraction=0.03)
    bar.set_label("dB")
    fig.suptitle(title or "Log-mel spectrograms: clean input, model, effect (same colour scale)")
    return _save(fig, path)


def _loudest_span(x: np.ndarray, sr: int, dur_s: float) -> float:
    """Start time (s) of the ``dur_s`` window with the most energy in ``x``."""
    n = max(1, min(x.size, int(round(dur_s * sr))))
    energy = np.concatenate([[0.0], np.cumsum(x**2)])
    window = energy[n:] - energy[:-n]
    return float(np.argmax(window)) / sr


def _period_s(x: np.ndarray, sr: int) -> float | None:
    """Fundamental period (s) from the autocorrelation of ``x`` (None if not periodic)."""
    x = x - x.mean()
    if x.size < 64 or not np.any(x):
        return None
    spec = np.fft.rfft(x, 2 * x.size)
    ac = np.fft.irfft(np.abs(spec) ** 2)[: x.size]
    ac /= ac[0]
    lo = max(2, int(sr / 2000))  # periods from 0.5 ms (2 kHz) ...
    hi = min(x.size // 2, int(sr / 30))  # ... to 33 ms (30 Hz)
    if hi <= lo:
        return None
    lag = lo + int(np.argmax(ac[lo:hi]))
    return lag / sr if ac[lag] > 0.3 else None


def waveforms(
    clean: np.ndarray,
    pred: np.ndarray,
    target: np.ndarray,
    sr: int,
    path: str | Path,
    span_s: tuple[float, float] | None = None,
    zoom_ms: float | None = None,
    title: str = "",
) -> Path:
    """Clean, effect and model waveforms overlaid over a short span, plus a zoom on a few periods.

    ``span_s = (start, duration)`` in seconds; default: the loudest 300 ms of the effect.
    ``zoom_ms``: length of the lower panel (centred in the span); default about four
    periods of the effect's fundamental, else 20 ms. Time axes in ms from the file start.
    """
    clean, pred, target = _same_length(clean=clean, pred=pred, target=target)
    total = clean.size / sr
    if span_s is None:
        dur = min(0.3, total)
        span_s = (_loudest_span(target, sr, dur), dur)
    start, dur = span_s
    if start < 0 or dur <= 0 or start >= total:
        raise DataError(f"span_s={span_s} is outside the {total:.3f} s of audio")
    i0, i1 = int(round(start * sr)), min(clean.size, int(round((start + dur) * sr)))
    if zoom_ms is None:
        period = _period_s(target[i0:i1], sr)
        zoom_ms = 1000 * 4 * period if period else 20.0
    zoom_ms = min(zoom_ms, 1000 * (i1 - i0) / sr)
    mid = (i0 + i1) // 2
    half = int(round(zoom_ms / 2000 * sr))
    z0, z1 = max(i0, mid - half), min(i1, mid + half + 1)

    fig = _figure(12, 6.4)
    top, bottom = fig.subplots(2, 1, height_ratios=[1, 1.15])
    for ax, (a, b) in ((top, (i0, i1)), (bottom, (z0, z1))):
        t_ms = 1000 * np.arange(a, b) / sr
        ax.plot(t_ms, clean[a:b], color=CLEAN, lw=1.2, label="Clean input")
        ax.plot(t_ms, target[a:b], color=EFFECT, lw=1.8, label="Effect (target)")
        ax.plot(t_ms, pred[a:b], color=MODEL, lw=1.4, ls="--", label="Model")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xlim(t_ms[0], t_ms[-1])
        ax.set_ylabel("Amplitude")
        ax.set_xlabel("Time (ms)")
    top.axvspan(1000 * z0 / sr, 1000 * (z1 - 1) / sr, color="gold", alpha=0.25, label="zoomed below")
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    top.set_title(f"Waveforms over {1000 * (i1 - i0) / sr:.0f} ms")
    bottom.set_title(f"Zoom: {1000 * (z1 - z0) / sr:.1f} ms")
    fig.suptitle(title or "Waveforms: does the model follow the effect sample by sample?")
    return _save(fig, path)


def _psd_db(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Long-term average spectrum (Welch, Hann) in dB re a full-scale sine's level."""
    from scipy.signal import welch

    n = int(min(x.size, 1 << int(np.ceil(np.log2(0.08 * sr)))))
    freqs, psd = welch(x, fs=sr, nperseg=n, scaling="spectrum")
    return freqs, 10 * np.log10(np.maximum(psd / 0.5, 1e-20))


def error_spectrum(pred: np.ndarray, target: np.ndarray, sr: int, path: str | Path, title: str = "") -> Path:
    """Average spectra of the effect, the model and the error (model - effect), dB vs log frequency.

    Where the red error curve sits far below the blue one the model is right; where it
    meets it, the model misses that band.
    """
    pred, target = _same_length(pred=pred, target=target)
    err = pred - target
    curves = [
        (target, EFFECT, "Effect (target)", 2.0), (pred, MODEL, "Model", 1.5),
        (err, ERROR, "Error (model − effect)", 1.5),
    ]
    fig = _figure(11, 5.2)
    ax = fig.subplots()
    top, bottom = -np.inf, np.inf
    for x, colour, label, lw in curves:
        freqs, db = _psd_db(x, sr)
        keep = freqs >= 20
        ax.semilogx(freqs[keep], db[keep], color=colour, lw=lw, label=label)
        top, bottom = max(top, db[keep].max()), min(bottom, np.percentile(db[keep], 2))
    ratio = np.sum(err**2) / max(np.sum(target**2), 1e-20)
    snr = -10 * np.log10(max(ratio, 1e-20))
    ax.set_xlim(20, sr / 2)
    ax.set_ylim(max(top - 100, bottom - 10), top + 6)
    _musical_log_axis(ax.xaxis, 20, sr / 2)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_xlabel("Frequency (Hz)")
    ax.set_ylabel("Level (dB)")
    ax.legend(loc="upper right")
    ax.text(
        0.01, 0.97, f"error is {snr:.1f} dB below the effect overall", transform=ax.transAxes,
        color=ERROR, fontsize=11, va="top", bbox={"facecolor": "white", "edgecolor": ERROR, "alpha": 0.9},
    )
    ax.set_title(title or "Average spectrum: effect, model and their difference")
    return _save(fig, path)


def transfer_curve(
    clean: np.ndarray, pred: np.ndarray, target: np.ndarray, path: str | Path, title: str = "", bins: int = 120
) -> Path:
    """Input sample vs output sample for the effect and the model (a static nonlinearity's curve).

    Left and middle: 2-D histograms (darker = more samples) of (clean[n], out[n]);
    right: the median output per input level for both, with the identity line
    (a dead-straight diagonal = the effect does nothing to the waveform's shape).
    """
    from matplotlib.colors import LogNorm

    clean, pred, target = _same_length(clean=clean, pred=pred, target=target)
    lim_in = float(np.max(np.abs(clean))) * 1.05 or 1.0
    lim_out = float(max(np.max(np.abs(target)), np.max(np.abs(pred)))) * 1.05 or 1.0
    lim = max(lim_in, lim_out)
    fig = _figure(14, 5.6)
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    edges = np.linspace(-lim, lim, bins + 1)
    for ax, out, name, cmap, colour in (
        (axes[0], target, "Effect", "Blues", EFFECT), (axes[1], pred, "Model", "Oranges", MODEL),
    ):
        counts, _, _ = np.histogram2d(clean, out, bins=[edges, edges])
        ax.pcolormesh(edges, edges, counts.T, cmap=cmap, norm=LogNorm(vmin=1, vmax=max(2, counts.max())))
        ax.set_title(f"{name}: output vs input", color=colour, fontweight="bold")
    centres = 0.5 * (edges[1:] + edges[:-1])
    which = np.digitize(clean, edges) - 1
    for out, colour, label, lw, ls in ((target, EFFECT, "Effect", 3.0, "-"), (pred, MODEL, "Model", 2.0, "--")):
        med = np.array([np.median(out[which == k]) if np.any(which == k) else np.nan for k in range(bins)])
        axes[2].plot(centres, med, color=colour, lw=lw, ls=ls, label=label)
    axes[2].set_title("Median output per input level")
    for ax in axes:
        ax.plot([-lim, lim], [-lim, lim], color=CLEAN, lw=1, ls=":", label="Identity (no effect)" if ax is axes[2] else None)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_box_aspect(1)
        ax.set_xlabel("Input sample (clean)")
        ax.grid(True, alpha=0.25)
    axes[0].set_ylabel("Output sample")
    axes[2].legend(loc="upper left")
    fig.suptitle(title or "Transfer curve: how each input level is mapped to an output level")
    return _save(fig, path)


def impulse_input(sr: int, duration_s: float = 1.0, amplitude: float = 0.5, at_s: float = 0.01) -> np.ndarray:
    """A single-sample click of ``amplitude`` at ``at_s`` in ``duration_s`` of silence; float32 (N,).

    Feed it to the effect and to the model to get the responses ``impulse_responses`` plots.
    """
    x = np.zeros(int(round(duration_s * sr)), dtype=np.float32)
    x[int(round(at_s * sr))] = amplitude
    return x


def _envelope_db(x: np.ndarray, sr: int, block_ms: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Peak level of each ``block_ms`` block in dBFS; (N,) -> (block start times in ms, dB)."""
    n = max(1, int(round(block_ms / 1000 * sr)))
    blocks = x.size // n
    if blocks == 0:
        raise DataError(f"impulse response of {x.size} samples is shorter than one {block_ms} ms block")
    peak = np.abs(x[: blocks * n]).reshape(blocks, n).max(axis=1)
    return 1000 * np.arange(blocks) * n / sr, 20 * np.log10(np.maximum(peak, 1e-10))


def impulse_responses(
    ir_effect: np.ndarray, ir_model: np.ndarray, sr: int, path: str | Path, title: str = "", range_db: float = 80.0
) -> Path:
    """Response of effect and model to a click: waveform and dB envelope (1 ms peaks) over time in ms.

    Delay taps show as spikes at their delay times, reverb as a straight decay slope
    in the lower panel; the model's orange line should sit on the effect's blue one.
    """
    ir_effect, ir_model = _same_length(ir_effect=ir_effect, ir_model=ir_model)
    t_ms = 1000 * np.arange(ir_effect.size) / sr
    fig = _figure(12, 6.6)
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(t_ms, ir_effect, color=EFFECT, lw=1.6, label="Effect")
    top.plot(t_ms, ir_model, color=MODEL, lw=1.2, ls="--", label="Model")
    top.axhline(0, color="black", lw=0.5)
    top.set_ylabel("Amplitude")
    top.set_title("Response to a click")
    top.legend(loc="upper right")
    peak_db = -np.inf
    for x, colour, label, lw in ((ir_effect, EFFECT, "Effect", 2.0), (ir_model, MODEL, "Model", 1.5)):
        t_env, env = _envelope_db(x, sr)
        bottom.plot(t_env, env, color=colour, lw=lw, label=label, drawstyle="steps-post")
        peak_db = max(peak_db, env.max())
    bottom.set_ylim(peak_db - range_db, peak_db + 5)
    bottom.set_xlim(0, t_ms[-1])
    bottom.set_ylabel("Level (dBFS, 1 ms peaks)")
    bottom.set_xlabel("Time (ms)")
    bottom.set_title("Envelope in dB: echoes show as spikes, reverb as a decay slope")
    bottom.grid(True, alpha=0.3)
    bottom.legend(loc="upper right")
    fig.suptitle(title or "Impulse response: effect vs model")
    return _save(fig, path)


LOWER_IS_BETTER = {"esr", "esr_pre", "mrstft", "log_mel", "esr_ratio", "mrstft_ratio", "baseline_esr", "baseline_mrstft"}


def compare_bar(
    table: Sequence[dict], metric: str, path: str | Path, label_key: str = "model", title: str = ""
) -> Path:
    """Horizontal bars of ``row[metric]`` for each row (one per model), best at the top.

    Rows are labelled by ``row[label_key]`` (fallback: "name", then the row number). For
    the *_ratio metrics a line at 1 marks the do-nothing baseline (clean input after
    its best gain); log scale when values span more than two decades.
    """
    rows = [r for r in table if metric in r and r[metric] is not None]
    if not rows:
        raise DataError(f"compare_bar: no row has metric {metric!r} (rows have {sorted({k for r in table for k in r})})")
    labels = [str(r.get(label_key, r.get("name", f"#{i}"))) for i, r in enumerate(rows)]
    values = np.array([float(r[metric]) for r in rows])
    lower = metric in LOWER_IS_BETTER or metric.endswith("_ratio")
    order = np.argsort(values if lower else -values)[::-1]  # barh draws bottom-up: best last = top
    labels, values = [labels[i] for i in order], values[order]
    fig = _figure(10, max(3.0, 1.2 + 0.5 * len(rows)))
    ax = fig.subplots()
    ratio = metric.endswith("_ratio")
    colours = [CLEAN if ratio and v >= 1 else MODEL for v in values]
    bars = ax.barh(labels, values, color=colours, edgecolor="black", lw=0.6)
    ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], padding=4, fontsize=10)
    positive = values[values > 0]
    if positive.size == values.size and positive.size > 1 and positive.max() / positive.min() > 100:
        ax.set_xscale("log")
    if ratio:
        ax.axvline(1.0, color="black", lw=1.5, ls="--")
    ax.margins(x=0.15)
    note = "; dashed line = do-nothing baseline, grey = worse than it" if ratio else ""
    ax.set_xlabel(f"{metric} ({'lower' if lower else 'higher'} is better{note})")
    ax.set_title(title or f"Model comparison: {metric}")
    return _save(fig, path)
