"""Family ``wh``: a gray-box Wiener-Hammerstein model (linear filter, static nonlinearity, linear filter).

Guitar amps are classically modelled as pre-EQ -> drive -> tone stack + cabinet:
``u = pre * x`` (FIR, ``pre_length`` taps), ``v = tanh(gain * u + bias)``,
``y = post * v`` (FIR, ``post_length`` taps). ``bias`` lets the clipping be asymmetric;
its DC offset goes through ``post`` like the rest of ``v``. Every parameter is learnable
(Adam fine-tunes all of them after ``fit``); at init both filters are deltas, gain 1, bias 0.

Receptive field = pre_length + post_length - 1. Valid convolution as every conv family:
forward on T samples gives T - RF + 1 outputs. Each filter runs by FFT (``fir``'s
``fft_convolve_valid``) or, for ``method: direct`` / short filters under ``auto``, by
``F.conv1d``; the choice depends on the config only, so forward has no data-dependent
control flow (traceable). Streaming is ``EffectModel.stream_block``.

``fit`` (``fit_wh``) sets every weight without gradients and without knowing the effect:
the input filter restricted to a one-pole high-pass (a grid of cutoffs, "none" included),
the drive on a log grid, each candidate ranked by how much of the target a linear filter
of its nonlinearity's output can explain (Welch coherence: cheap, and blind to a filter
length). Nelder-Mead then refines (cutoff, drive, bias), scoring each point by the ESR of
its least-squares output filter of ``search_post_length`` taps on chunks of the tracks
(exact covariance-method normal equations). The output filter at full length is then
``fit_least_squares`` on the whole tracks. Measured: the amp_cab preset at 48 kHz, 180 s
of generated audio, one BLAS thread on a busy machine: 22 s, train ESR 1.1e-7, cutoff
89.94 Hz (90), gain 19.96 (26 dB = 19.95).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, List, Literal, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fxdist.errors import ModelError
from fxdist.models.base import EffectModel, check_positive, fit_tracks
from fxdist.models.fir import DIRECT_MAX_TAPS, _fast_size, fft_convolve_valid, fit_least_squares
from fxdist.models.registry import register
from fxdist.models.streaming import StreamingModule

# Fit search grid: input high-pass cutoffs (0 = no filter) and drive gains.
GRID_CUTOFFS_HZ = (0.0, 20.0, 40.0, 80.0, 160.0, 320.0)
GRID_GAINS = tuple(float(g) for g in np.geomspace(0.5, 200.0, 13))


@dataclass
class WHConfig:
    pre_length: int = 1024  # taps of the input filter (pre-EQ)
    post_length: int = 4800  # taps of the output filter (tone stack + cabinet)
    nonlinearity: Literal["tanh"] = "tanh"  # v = tanh(gain * u + bias)
    # fft: torch.fft; direct: F.conv1d; auto: direct for a filter of <= 128 taps, FFT above
    method: Literal["auto", "fft", "direct"] = "auto"
    sample_rate: int = 48000  # the rate the fit's cutoff grid is in Hz at
    # fit search: seconds of audio (spread over the tracks in search_chunks chunks) and
    # output-filter taps (capped at post_length) used to rank (cutoff, drive) candidates
    search_seconds: float = 10.0
    search_chunks: int = 16
    search_post_length: int = 1024
    refine_evals: int = 60  # Nelder-Mead evaluations after the grid (0: grid only)

    def __post_init__(self):
        check_positive("wh", pre_length=self.pre_length, post_length=self.post_length,
                       sample_rate=self.sample_rate, search_chunks=self.search_chunks,
                       search_post_length=self.search_post_length)
        if self.sample_rate < 1000:
            raise ValueError(f"wh: sample_rate must be >= 1000 Hz, got {self.sample_rate}")
        if not 0.01 <= self.search_seconds <= 3600:
            raise ValueError(f"wh: search_seconds must be in [0.01, 3600], got {self.search_seconds}")
        if self.refine_evals < 0:
            raise ValueError(f"wh: refine_evals must be >= 0, got {self.refine_evals}")


@register
class WHModel(EffectModel):
    """x (B, 1, T) -> y (B, 1, T - RF + 1). Parameters: ``pre`` (pre_length,), ``log_gain`` (),
    ``bias`` (), ``post`` (post_length,); taps[0] = lag 0 in both filters."""

    family = "wh"
    config_cls = WHConfig
    stateful = False

    def __init__(self, cfg: WHConfig):
        super().__init__(cfg)
        pre, post = torch.zeros(cfg.pre_length), torch.zeros(cfg.post_length)
        pre[0] = post[0] = 1.0
        self.pre = nn.Parameter(pre)
        self.log_gain = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(()))
        self.post = nn.Parameter(post)

    @property
    def receptive_field(self) -> int:
        return self.cfg.pre_length + self.cfg.post_length - 1

    def _convolve(self, x: Tensor, taps: Tensor) -> Tensor:
        """Valid causal FIR: x (B, 1, T), taps (L,) -> (B, 1, T - L + 1)."""
        if self.cfg.method == "direct" or (self.cfg.method == "auto" and taps.shape[0] <= DIRECT_MAX_TAPS):
            return F.conv1d(x, taps.flip(0).view(1, 1, -1))
        return fft_convolve_valid(x, taps)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, None]:
        self._check_no_state(state)
        self._check_input(x)
        u = self._convolve(x, self.pre)
        v = torch.tanh(self.log_gain.exp() * u + self.bias)
        return self._convolve(v, self.post), None

    def macs_per_sample(self) -> int:
        """Direct-form cost of both filters plus the gain (the FFT path is O(log T) per sample)."""
        return self.cfg.pre_length + self.cfg.post_length + 1

    def stream_module(self, conv_as: str = "matmul") -> StreamingModule:
        return _WHStream(self).eval()

    def fit(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]], log: Any = print) -> dict[str, float]:
        """``fit_wh`` with the config's search settings."""
        return fit_wh(self, pairs, log=log)

    @torch.no_grad()
    def set_weights(self, pre: np.ndarray, gain: float, bias: float, post: np.ndarray) -> None:
        """Replace all weights: pre (pre_length,), gain > 0, bias, post (post_length,)."""
        for name, taps, length in (("pre", pre, self.cfg.pre_length), ("post", post, self.cfg.post_length)):
            t = torch.as_tensor(np.asarray(taps, dtype=np.float32))
            if tuple(t.shape) != (length,):
                raise ModelError(f"wh: {name} taps must have shape ({length},), got {tuple(t.shape)}")
            getattr(self, name).copy_(t)
        if not (math.isfinite(gain) and gain > 0 and math.isfinite(bias)):
            raise ModelError(f"wh: gain must be finite and > 0 and bias finite, got gain={gain}, bias={bias}")
        self.log_gain.fill_(math.log(gain))
        self.bias.fill_(float(bias))


# --------------------------------------------------------------------------- fit


def highpass_taps(cutoff_hz: float, sample_rate: int, length: int) -> np.ndarray:
    """Impulse response (length,) float64 of a one-pole high-pass (bilinear, prewarped, as
    JUCE/pedalboard's first-order HighpassFilter), truncated; cutoff 0 gives a delta."""
    h = np.zeros(length)
    h[0] = 1.0
    if cutoff_hz <= 0:
        return h
    k = math.tan(math.pi * min(cutoff_hz, 0.49 * sample_rate) / sample_rate)
    b0, a1 = 1.0 / (1.0 + k), (k - 1.0) / (k + 1.0)
    # y[n] = b0 (x[n] - x[n-1]) - a1 y[n-1]: h[0] = b0, h[n] = b0 (p^n - p^(n-1)), p = -a1
    p = -a1
    n = np.arange(1, length)
    h[0] = b0
    h[1:] = b0 * (p ** n - p ** (n - 1))
    return h


def _chunk_correlations(w: np.ndarray, t: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pieces of the exact least-squares normal equations for t[n] ~ sum_k h[k] w[n + q - 1 - k].

    w: (N + q - 1,) regressor signal with q - 1 samples of history before the rows, t: (N,).
    In row offsets a = q - 1 - j: R[a, a + l] = r[l] + sum_{i<a} d[i, l] (covariance method:
    every product is of real samples, no zero padding), r (q,) the correlation over the
    first N samples, d (q - 1, q) the samples entering and leaving along each diagonal;
    p (q,) with p[b] = sum_n t[n] w[n + b]. Sums over chunks stay valid; ``_assemble``
    turns them into R h = p.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    n = t.size
    size = _fast_size(w.size + q)
    fw = np.fft.rfft(w, size)
    r = np.fft.irfft(np.conj(np.fft.rfft(w[:n], size)) * fw, size)[:q]
    p = np.fft.irfft(np.conj(np.fft.rfft(t, size)) * fw, size)[:q]
    wp = np.concatenate([w, np.zeros(q)])
    # d[i, l] = w[N+i] w[N+i+l] - w[i] w[i+l]
    d = wp[n : n + q - 1, None] * sliding_window_view(wp[n : n + 2 * q - 1], q)[: q - 1]
    d -= wp[: q - 1, None] * sliding_window_view(wp[: 2 * q - 1], q)[: q - 1]
    return r, d, p


def _assemble(r: np.ndarray, d: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R (q, q), p (q,) in tap order k (lag 0 first) from ``_chunk_correlations``' pieces."""
    q = r.size
    c = np.zeros((q, q))
    np.cumsum(d, axis=0, out=c[1:])
    rab = np.zeros((q, q))
    for a in range(q):
        rab[a, a:] = r[: q - a] + c[a, : q - a]
    rab += np.triu(rab, 1).T
    return rab[::-1, ::-1], p[::-1]


@dataclass
class _Chunk:
    x: np.ndarray  # clean (history + N,), history = pre_length + q - 2 samples
    t: np.ndarray  # target (N,)


def _search_chunks(pairs: list[tuple[np.ndarray, np.ndarray]], seconds: float, count: int, sample_rate: int,
                   history: int) -> list[_Chunk]:
    """``count`` chunks totalling ``seconds`` (or everything when shorter), evenly spread over
    the concatenated tracks; each carries ``history`` clean samples before it (zeros before a
    track's start: what the effect saw)."""
    lengths = [c.size for c, _ in pairs]
    total = sum(lengths)
    want = min(total, max(count, int(seconds * sample_rate)))
    size = max(1, want // count)
    chunks = []
    starts = np.linspace(0, total - size, count).astype(np.int64) if total > size * count else np.arange(0, total, size)
    offsets = np.cumsum([0, *lengths])
    for s in starts:
        i = int(np.searchsorted(offsets, s, side="right") - 1)
        clean, target = pairs[i]
        lo = int(s - offsets[i])
        hi = min(lo + size, clean.size)
        if hi <= lo:
            continue
        padded = np.concatenate([np.zeros(history), clean[:hi]])
        chunks.append(_Chunk(x=padded[lo:], t=target[lo:hi]))
    return chunks


class _Search:
    """Least-squares output filter (q taps) and its ESR for a candidate (cutoff, gain, bias)."""

    def __init__(self, chunks: list[_Chunk], pre_length: int, q: int, sample_rate: int, ridge: float = 1e-6):
        self.chunks, self.pre_length, self.q, self.sr, self.ridge = chunks, pre_length, q, sample_rate, ridge
        self.energy = sum(float(c.t @ c.t) for c in chunks)
        self._u: dict[float, list[np.ndarray]] = {}
        self.evaluations = self.ranked = 0
        # Welch frames of each chunk's target for coherence_esr: Hann, half overlap
        self.frame = min(max(c.t.size for c in chunks), 1 << max(4, (2 * q - 1).bit_length()))
        self._window = np.hanning(self.frame + 2)[1:-1]
        self._t_spectra = [self._spectra(c.t) for c in chunks]
        self._stt = sum((np.abs(s) ** 2).sum(axis=0) for s in self._t_spectra if s is not None)

    def _spectra(self, x: np.ndarray) -> np.ndarray | None:
        """rfft of the windowed half-overlapping frames of x (N,) -> (frames, frame // 2 + 1)."""
        from numpy.lib.stride_tricks import sliding_window_view

        if x.size < self.frame:
            return None
        frames = sliding_window_view(x, self.frame)[:: max(1, self.frame // 2)]
        return np.fft.rfft(frames * self._window, axis=-1)

    def coherence_esr(self, cutoff: float, gain: float, bias: float) -> float:
        """Cheap ESR estimate of the best linear filter v -> t (Welch: 1 - coherence, weighted by
        the target's spectrum); ranks the grid, free of the tap count's truncation."""
        self.ranked += 1
        svv = svt = 0.0
        for u, chunk, ts in zip(self._pre_output(cutoff), self.chunks, self._t_spectra):
            if ts is None:
                continue
            vs = self._spectra(np.tanh(gain * u[self.q - 1 :] + bias))
            svv = svv + (np.abs(vs) ** 2).sum(axis=0)
            svt = svt + (np.conj(vs) * ts).sum(axis=0)
        explained = np.abs(svt) ** 2 / np.maximum(svv, 1e-300)
        return float(np.sum(self._stt - explained) / max(np.sum(self._stt), 1e-300))

    def _pre_output(self, cutoff: float) -> list[np.ndarray]:
        """u over each chunk's rows and q - 1 samples of history, for one cutoff (cached)."""
        if cutoff not in self._u:
            from scipy.signal import oaconvolve

            h = highpass_taps(cutoff, self.sr, self.pre_length)
            self._u[cutoff] = [oaconvolve(c.x, h)[self.pre_length - 1 : c.x.size] for c in self.chunks]
            if len(self._u) > 64:
                self._u.pop(next(iter(self._u)))
        return self._u[cutoff]

    def solve(self, cutoff: float, gain: float, bias: float) -> tuple[float, np.ndarray]:
        """(ESR of the best q-tap output filter on the chunks, those taps (q,))."""
        self.evaluations += 1
        r, d, p = np.zeros(self.q), np.zeros((self.q - 1, self.q)), np.zeros(self.q)
        for u, chunk in zip(self._pre_output(cutoff), self.chunks):
            rc, dc, pc = _chunk_correlations(np.tanh(gain * u + bias), chunk.t, self.q)
            r += rc
            d += dc
            p += pc
        r, p = _assemble(r, d, p)
        r[np.diag_indices(self.q)] += self.ridge * max(np.trace(r) / self.q, 1e-30)
        from scipy.linalg import LinAlgError, cho_factor, cho_solve

        try:
            h = cho_solve(cho_factor(r), p)
        except LinAlgError:
            h = np.linalg.lstsq(r, p, rcond=None)[0]
        return max(self.energy - float(h @ p), 0.0) / self.energy, h


def fit_wh(model: WHModel, pairs: Sequence[tuple[np.ndarray, np.ndarray]], log: Any = print,
           cutoffs: Sequence[float] = GRID_CUTOFFS_HZ, gains: Sequence[float] = GRID_GAINS) -> dict[str, float]:
    """Set ``model``'s weights from whole (clean (N,), target (N,)) tracks, each from its start.

    1. Grid over input high-pass ``cutoffs`` (Hz, 0 = none) x drive ``gains``, bias 0, on
       ``search_seconds`` of chunks; each candidate ranked by ``_Search.coherence_esr``.
    2. Nelder-Mead on (log cutoff, log gain, bias) from the best (``refine_evals`` evaluations;
       log cutoff left out when the best has none), each point scored by the ESR of its
       least-squares output filter of ``search_post_length`` taps on the chunks.
    3. The output filter at ``post_length`` taps by ``fit_least_squares`` on the whole tracks.
    Returns {cutoff_hz, gain, bias, search_esr, train_esr, fit_seconds}. Runs BLAS on one thread.
    """
    import scipy.linalg  # noqa: F401  loaded before threadpool_limits, which limits loaded libraries only

    try:  # BLAS threads on a busy machine spin-wait: a 1024-tap Cholesky took 3 s instead of 0.03 s
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - librosa -> scikit-learn brings it
        threadpool_limits = None
    with threadpool_limits(1) if threadpool_limits is not None else contextlib.nullcontext():
        return _fit_wh(model, pairs, log, cutoffs, gains)


def _fit_wh(model: WHModel, pairs: Sequence[tuple[np.ndarray, np.ndarray]], log: Any,
            cutoffs: Sequence[float], gains: Sequence[float]) -> dict[str, float]:
    from scipy.optimize import minimize
    from scipy.signal import oaconvolve

    cfg = model.cfg
    t0 = time.perf_counter()
    tracks = fit_tracks("wh", pairs)
    if not tracks or not any(np.any(t) for _, t in tracks):
        raise ModelError("wh: fit needs at least one (clean, target) track with a non-silent target")
    sr, nyquist_cap = cfg.sample_rate, 0.45 * cfg.sample_rate
    q = min(cfg.search_post_length, cfg.post_length)
    chunks = _search_chunks(tracks, cfg.search_seconds, cfg.search_chunks, sr, cfg.pre_length + q - 2)
    search = _Search(chunks, cfg.pre_length, q, sr)
    if search.energy <= 0:
        raise ModelError("wh: the search chunks of the targets are silent; nothing to fit")

    best = (math.inf, 0.0, 1.0)
    for fc in (f for f in cutoffs if f < nyquist_cap):
        for g in gains:
            esr = search.coherence_esr(fc, g, 0.0)
            if esr < best[0]:
                best = (esr, fc, g)
    _, fc, gain = best
    bias = 0.0
    esr, _ = search.solve(fc, gain, bias)
    log(f"wh fit: grid of {search.ranked} on {sum(c.t.size for c in chunks) / sr:.1f} s: cutoff {fc:g} Hz, "
        f"gain {gain:.4g}, ESR at {q} taps {esr:.4g} ({time.perf_counter() - t0:.1f} s)")

    if cfg.refine_evals > 0:
        with_cutoff = fc > 0

        def unpack(z: np.ndarray) -> tuple[float, float, float]:
            if with_cutoff:
                return min(math.exp(z[0]), nyquist_cap), math.exp(z[1]), float(z[2])
            return 0.0, math.exp(z[0]), float(z[1])

        def objective(z: np.ndarray) -> float:
            return search.solve(*unpack(z))[0]

        start = [math.log(gain), 0.0]
        steps = [0.25, 0.1]
        if with_cutoff:
            start, steps = [math.log(fc), *start], [0.35, *steps]
        simplex = np.array([start] + [np.add(start, np.eye(len(start))[i] * steps[i]) for i in range(len(start))])
        res = minimize(objective, np.array(start), method="Nelder-Mead",
                       options={"maxfev": cfg.refine_evals, "initial_simplex": simplex, "xatol": 1e-4, "fatol": 0.0})
        if res.fun < esr:
            esr, (fc, gain, bias) = float(res.fun), unpack(res.x)
        log(f"wh fit: refined by {res.nfev} evaluations: cutoff {fc:.4g} Hz, gain {gain:.4g}, bias {bias:.4g}, "
            f"ESR {esr:.4g} ({time.perf_counter() - t0:.1f} s)")

    pre = highpass_taps(fc, sr, cfg.pre_length)
    nonlinear = [np.tanh(gain * oaconvolve(c, pre)[: c.size] + bias) for c, _ in tracks]
    post = fit_least_squares([(v, t) for v, (_, t) in zip(nonlinear, tracks)], cfg.post_length)
    err = sum(float(np.sum((t - oaconvolve(v, post)[: t.size]) ** 2)) for v, (_, t) in zip(nonlinear, tracks))
    train_esr = err / sum(float(t @ t) for _, t in tracks)
    model.set_weights(pre, gain, bias, post)
    seconds = time.perf_counter() - t0
    log(f"wh fit: output filter of {cfg.post_length} taps on {sum(c.size for c, _ in tracks) / sr:.1f} s: "
        f"train ESR {train_esr:.4g} ({seconds:.1f} s)")
    return {"cutoff_hz": float(fc), "gain": float(gain), "bias": float(bias), "search_esr": float(esr),
            "train_esr": float(train_esr), "fit_seconds": seconds}


class _WHStream(StreamingModule):
    """wh: state [input history (B, 1, P - 1), drive-output history (B, 1, Q - 1)]; two direct
    convolutions per block around the static tanh (exact, P + Q MACs per sample)."""

    def __init__(self, model: WHModel):
        super().__init__()
        self.pre = nn.Parameter(model.pre.detach().flip(0).view(1, 1, -1).clone(), requires_grad=False)
        self.post = nn.Parameter(model.post.detach().flip(0).view(1, 1, -1).clone(), requires_grad=False)
        self.gain = float(model.log_gain.detach().exp())
        self.bias = float(model.bias.detach())
        self.pre_hist, self.post_hist = model.cfg.pre_length - 1, model.cfg.post_length - 1

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        full = torch.cat([state[0], x], dim=-1)
        v = torch.tanh(self.gain * F.conv1d(full, self.pre) + self.bias)
        vfull = torch.cat([state[1], v], dim=-1)
        y = F.conv1d(vfull, self.post)
        return y, [full[:, :, full.shape[-1] - self.pre_hist :], vfull[:, :, vfull.shape[-1] - self.post_hist :]]

    @torch.jit.export
    def initial_state(self, batch: int) -> List[Tensor]:
        # the drive's output for silent input is tanh(bias), not 0
        return [torch.zeros(batch, 1, self.pre_hist), torch.full((batch, 1, self.post_hist), math.tanh(self.bias))]
