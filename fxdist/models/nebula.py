"""Family ``nebula``: dynamic convolution, a set of impulse responses chosen by the input level.

Dynamic convolution (Acustica Audio's Nebula) samples an effect with impulses at several input
levels and plays back the response of the level the input is at: a simplification of a
Volterra series to a level-dependent first-order kernel. Here K responses ``h_k`` of L taps,
sampled at levels ``l_k`` spaced evenly in dB from ``min_db`` to ``max_db``, are mixed by the
input's envelope:

    e[n]   = 10 log10 mean(x[n-W+1 .. n]^2)      (dBFS RMS over the last W samples: envelope_ms)
    u[n]   = (K - 1) clamp((e[n] - min_db) / (max_db - min_db), 0, 1)   (place on the level axis)
    w_k[n] = max(0, 1 - |u[n] - k|)              (hat functions: the two nearest levels, sum 1)
    y[n]   = sum_k w_k[n] (h_k * x)[n]

Between two levels the response is their linear crossfade; below ``min_db`` it is h_0, above
``max_db`` h_{K-1}. The envelope is the RMS over a finite causal window rather than an
attack/release follower, whose recursion would give the model an infinite memory: with the
window the model is a plain convolutional one (stateless; receptive field max(L, W); trained
on random windows; streamed by carrying the last RF - 1 input samples, which hold the
envelope's state as well as the convolutions').

``forward`` runs the K convolutions by FFT (``fir``'s ``fft_convolve_valid``) or, for
``method: direct`` / <= 128 taps under ``auto``, by ``F.conv1d``; the streaming module runs one
direct convolution with K output channels per block (K L MACs per sample) and TorchScript-
and ONNX-exports.

``fit`` solves all K L taps jointly by least squares (``fit_nebula``): the regressors of tap j
of level k are w_k[n] x[n-j], so each sample touches only the two kernels its level sits
between and the normal equations are block-tridiagonal; they are summed in float64 over blocks
of rows (memory bounded by the block and the (K L)^2 matrix, not by the audio) from
``fit_seconds`` of the tracks (the cost is (2L)^2 per row), then solved with a small ridge and
a penalty on the difference between neighbouring kernels, which gives a level the tracks never
reach its neighbour's response instead of silence. The trainer's gradient steps follow.
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
from fxdist.models.fir import DIRECT_MAX_TAPS, fft_convolve_valid
from fxdist.models.registry import register
from fxdist.models.streaming import StreamingModule

# Bytes of one block of regressor rows in the fit (two kernels' lagged inputs, float64).
FIT_BLOCK_BYTES = 32 << 20
# Regularisation of the fit, relative to each level's input energy (``_NormalEquations.solve``):
# a ridge on every tap, and a penalty on the difference of neighbouring levels' kernels.
FIT_RIDGE = 1e-7
FIT_SMOOTH = 1e-6


@dataclass
class NebulaConfig:
    taps: int = 512  # L: length of each impulse response
    levels: int = 6  # K: input levels the responses are sampled at
    min_db: float = -60.0  # level of the first response (dBFS RMS); quieter input uses it
    max_db: float = 0.0  # level of the last response; louder input uses it
    envelope_ms: float = 10.0  # RMS window of the level detector
    sample_rate: int = 48000  # the rate envelope_ms is counted at
    init: Literal["identity", "zeros"] = "identity"  # identity: every h_k = delta (the dry signal)
    # fft: torch.fft; direct: F.conv1d (exact zeros outside the window); auto: direct up to 128 taps
    method: Literal["auto", "fft", "direct"] = "auto"
    fit_seconds: float = 10.0  # audio the least-squares fit sums (spread over the tracks)

    def __post_init__(self):
        check_positive("nebula", taps=self.taps, levels=self.levels, sample_rate=self.sample_rate)
        finite = math.isfinite(self.min_db) and math.isfinite(self.max_db)
        if not (finite and -200.0 <= self.min_db < self.max_db <= 60.0):
            raise ValueError(f"nebula: need -200 <= min_db < max_db <= 60 (dBFS), got min_db {self.min_db}, "
                             f"max_db {self.max_db}")
        if not (math.isfinite(self.envelope_ms) and self.envelope_ms > 0):
            raise ValueError(f"nebula: envelope_ms must be > 0, got {self.envelope_ms}")
        if not (math.isfinite(self.fit_seconds) and 0.01 <= self.fit_seconds <= 3600):
            raise ValueError(f"nebula: fit_seconds must be in [0.01, 3600], got {self.fit_seconds}")

    @property
    def window(self) -> int:
        """W: samples in the envelope's RMS window (at least 1)."""
        return max(1, round(self.envelope_ms * self.sample_rate / 1000.0))


def level_position(x: Tensor, window: int, min_db: float, max_db: float, levels: int) -> Tensor:
    """Where the input's level sits on the level axis: x (B, 1, T) -> u (B, 1, T - window + 1) in
    [0, levels - 1], output i for the window x[i .. i + window - 1] (RMS in dB, clamped)."""
    power = F.avg_pool1d(x.square(), window, 1)
    db = 10.0 * torch.log10(power.clamp_min(10.0 ** (min_db / 10.0)))
    return ((db - min_db) * ((levels - 1) / (max_db - min_db))).clamp(0.0, float(levels - 1))


def hat_weights(u: Tensor, levels: int) -> Tensor:
    """Linear interpolation weights between the two nearest levels: u (B, 1, T) -> (B, levels, T),
    w_k = max(0, 1 - |u - k|); they sum to 1 for u in [0, levels - 1]."""
    k = torch.arange(levels, dtype=u.dtype, device=u.device).view(1, -1, 1)
    return torch.relu(1.0 - (u - k).abs())


@register
class NebulaModel(EffectModel):
    """x (B, 1, T) -> y (B, 1, T - RF + 1), RF = max(taps, envelope window); kernels
    ``self.kernels`` (levels, taps), kernels[k, 0] = lag 0 of level k's response."""

    family = "nebula"
    config_cls = NebulaConfig
    stateful = False

    def __init__(self, cfg: NebulaConfig):
        super().__init__(cfg)
        kernels = torch.zeros(cfg.levels, cfg.taps)
        if cfg.init == "identity":
            kernels[:, 0] = 1.0
        self.kernels = nn.Parameter(kernels)

    @property
    def receptive_field(self) -> int:
        return max(self.cfg.taps, self.cfg.window)

    def level_db(self) -> np.ndarray:
        """The levels l_k (levels,) in dBFS the responses belong to."""
        return np.linspace(self.cfg.min_db, self.cfg.max_db, self.cfg.levels)

    def weights(self, x: Tensor) -> Tensor:
        """Each level's weight for each output: x (B, 1, T >= RF) -> (B, levels, T - RF + 1)."""
        cfg = self.cfg
        u = level_position(x[..., self.receptive_field - cfg.window :], cfg.window, cfg.min_db, cfg.max_db, cfg.levels)
        return hat_weights(u, cfg.levels)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, None]:
        self._check_no_state(state)
        self._check_input(x)
        taps = self.cfg.taps
        xs = x[..., self.receptive_field - taps :]
        if self.cfg.method == "direct" or (self.cfg.method == "auto" and taps <= DIRECT_MAX_TAPS):
            responses = F.conv1d(xs, self.kernels.flip(-1).unsqueeze(1))
        else:
            responses = fft_convolve_valid(xs, self.kernels)
        return (self.weights(x) * responses).sum(dim=1, keepdim=True), None

    def macs_per_sample(self) -> int:
        """Direct-form cost: the K kernels (K L), the envelope's window (W) and the mix (K)."""
        return self.cfg.levels * self.cfg.taps + self.cfg.window + self.cfg.levels

    def stream_module(self, conv_as: str = "matmul") -> StreamingModule:
        return _NebulaStream(self).eval()

    def describe(self) -> str:
        cfg = self.cfg
        return (f"nebula ({cfg.levels} responses of {cfg.taps} taps at {cfg.min_db:g}..{cfg.max_db:g} dBFS, "
                f"{cfg.envelope_ms:g} ms RMS envelope)")

    def export_formats(self) -> dict[str, str | None]:
        return {**super().export_formats(), "ir": (
            f"an impulse response holds a linear time-invariant effect; fxdist's nebula switches between "
            f"{self.cfg.levels} impulse responses by input level")}

    def fit(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]], log: Any = print) -> dict[str, float]:
        """Least-squares kernels (``fit_nebula``) from whole tracks."""
        return fit_nebula(self, pairs, log=log)

    @torch.no_grad()
    def set_kernels(self, kernels: np.ndarray | Tensor) -> None:
        """Replace the responses with ``kernels`` (levels, taps), kernels[k, 0] = lag 0."""
        t = torch.as_tensor(np.asarray(kernels, dtype=np.float32))
        want = (self.cfg.levels, self.cfg.taps)
        if tuple(t.shape) != want:
            raise ModelError(f"nebula: kernels must have shape {want}, got {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise ModelError("nebula: kernels hold NaN/Inf")
        self.kernels.copy_(t)


# --------------------------------------------------------------------------- fit


def fit_nebula(model: NebulaModel, pairs: Sequence[tuple[np.ndarray, np.ndarray]], log: Any = print,
               ridge: float = FIT_RIDGE, smooth: float = FIT_SMOOTH) -> dict[str, float]:
    """Set ``model``'s kernels to the least-squares fit of whole (clean (N,), target (N,)) tracks,
    each from its start (silence before it).

    Minimises sum_n (t[n] - sum_k w_k[n] sum_j h_k[j] x[n-j])^2 over the rows of
    ``fit_seconds`` of the tracks (all of them when shorter; else one-second pieces spread
    evenly), each row with its real history, plus a ridge and a penalty on neighbouring
    levels' differences scaled by each level's input energy (``_NormalEquations.solve``).
    Returns {train_esr (on those rows), fit_seconds, rows_seconds}. Runs BLAS on one thread
    (a sweep runs one trial per core). Measured: the 48 kHz preset (6 x 512 taps), 10 s of
    rows, one thread: 12 s.
    """
    import scipy.linalg  # noqa: F401  loaded before threadpool_limits, which limits loaded libraries only

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - librosa -> scikit-learn brings it
        threadpool_limits = None
    with threadpool_limits(1) if threadpool_limits is not None else contextlib.nullcontext():
        return _fit_nebula(model, pairs, log, ridge, smooth)


def _checked_tracks(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The pairs as float64 (N,) arrays, empty ones dropped; mismatched, non-finite or silent ones raise."""
    tracks = fit_tracks("nebula", pairs)
    if not any(np.any(c) for c, _ in tracks) or not any(np.any(t) for _, t in tracks):
        raise ModelError("nebula: fit needs at least one (clean, target) track with non-silent clean and target audio")
    return tracks


def fit_ranges(lengths: Sequence[int], rows: int, piece: int) -> list[tuple[int, int, int]]:
    """(track, start, stop) row ranges: every sample when the tracks hold <= ``rows``, else
    ``rows`` samples in ceil(rows / piece) equal pieces spread evenly over the tracks laid end
    to end (a piece that runs past its track's end stops there)."""
    total = sum(lengths)
    if total <= rows:
        return [(i, 0, n) for i, n in enumerate(lengths) if n]
    count = -(-rows // max(1, piece))
    sizes = [rows // count + (k < rows % count) for k in range(count)]
    offsets = np.cumsum([0, *lengths])
    out = []
    for s, size in zip(np.linspace(0, total - sizes[0], count).astype(np.int64), sizes):
        i = int(np.searchsorted(offsets, s, side="right") - 1)
        lo = int(s - offsets[i])
        out.append((i, lo, min(lo + size, lengths[i])))
    return out


class _NormalEquations:
    """R (K L, K L) and p (K L,) of the fit, summed block by block in float64; taps in reversed
    lag order within each level (column m of level k is lag L - 1 - m)."""

    def __init__(self, model: NebulaModel):
        cfg = model.cfg
        self.model, self.taps, self.levels = model, cfg.taps, cfg.levels
        self.span = min(2, cfg.levels)  # kernels one sample can weigh
        size = cfg.levels * cfg.taps
        self.r, self.p = np.zeros((size, size)), np.zeros(size)
        self.tt = 0.0
        self.rows = 0
        self.block = max(64, FIT_BLOCK_BYTES // (8 * self.span * cfg.taps))

    def add(self, clean: np.ndarray, target: np.ndarray, lo: int, hi: int) -> None:
        """Rows lo .. hi - 1 of one track (clean (N,), target (N,) float64), in blocks."""
        from numpy.lib.stride_tricks import sliding_window_view

        rf = self.model.receptive_field
        for start in range(lo, hi, self.block):
            stop = min(start + self.block, hi)
            first = start - (rf - 1)
            x = np.concatenate([np.zeros(max(0, -first)), clean[max(0, first) : stop]])
            with torch.no_grad():
                w = self.model.weights(torch.from_numpy(x).view(1, 1, -1))[0].numpy()  # (K, rows), float64
            lagged = sliding_window_view(x[rf - self.taps :], self.taps)  # row n: x[n - L + 1 .. n]
            self._accumulate(lagged, w, target[start:stop])

    def _accumulate(self, lagged: np.ndarray, w: np.ndarray, t: np.ndarray) -> None:
        """Add rows: lagged (n, L) inputs, w (K, n) level weights, t (n,) targets.

        A row weighs levels s and s + 1 (s its lower neighbour), or only one where its level is
        clamped or on a level; rows are grouped by those levels so each group adds one
        (span L)^2 Gram block."""
        n, span, taps = t.size, self.span, self.taps
        first = np.clip(np.argmax(w > 0, axis=0), 0, self.levels - span)  # lowest level with weight
        window = w[first[None, :] + np.arange(span)[:, None], np.arange(n)]  # (span, n)
        single = (window == 0).any(axis=0) if span > 1 else np.ones(n, dtype=bool)
        lone = np.where(window[0] > 0, first, first + span - 1)  # the level a single row weighs
        keys = np.where(single, lone, self.levels + first)
        for key in np.unique(keys):
            idx = np.flatnonzero(keys == key)
            rows, tg = lagged[idx], t[idx]
            if key < self.levels:  # one kernel, weight 1 (or the lone nonzero one)
                z = rows * w[key, idx, None]
                lo = key * taps
            else:
                s = key - self.levels
                z = np.concatenate([rows * w[s + i, idx, None] for i in range(span)], axis=1)
                lo = s * taps
            hi = lo + z.shape[1]
            self.r[lo:hi, lo:hi] += z.T @ z
            self.p[lo:hi] += z.T @ tg
        self.tt += float(t @ t)
        self.rows += n

    def solve(self, ridge: float, smooth: float) -> np.ndarray:
        """Kernels (K, L), lag 0 first, of the regularised normal equations.

        Level k's taps get a ridge of ``ridge`` m_k, and the pair (k, k + 1) a penalty
        ``smooth`` max(m_k, m_k+1) ||h_k+1 - h_k||^2, m_k the mean diagonal of level k's block
        (its input energy, which falls 10 dB per 10 dB of level: one scale for all levels would
        swamp the quiet ones). A level without rows takes its neighbour's kernel."""
        from scipy.linalg import LinAlgError, cho_factor, cho_solve

        taps, levels = self.taps, self.levels
        energy = np.array([np.trace(self.r[k * taps : (k + 1) * taps, k * taps : (k + 1) * taps]) / taps
                           for k in range(levels)])
        energy = np.maximum(energy, 1e-12 * max(energy.max(), 1e-300))
        a = self.r.copy()
        diag = np.diag_indices(taps)
        for k in range(levels):
            block = a[k * taps : (k + 1) * taps, k * taps : (k + 1) * taps]
            block[diag] += ridge * energy[k]
        for k in range(levels - 1):
            c = smooth * max(energy[k], energy[k + 1])
            lo, mid, hi = k * taps, (k + 1) * taps, (k + 2) * taps
            a[lo:mid, lo:mid][diag] += c
            a[mid:hi, mid:hi][diag] += c
            a[lo:mid, mid:hi][diag] -= c
            a[mid:hi, lo:mid][diag] -= c
        try:
            theta = cho_solve(cho_factor(a), self.p)
        except LinAlgError:
            theta = np.linalg.lstsq(a, self.p, rcond=None)[0]
        return theta.reshape(levels, taps)[:, ::-1]

    def esr(self, kernels: np.ndarray) -> float:
        """ESR on the summed rows of ``kernels`` (K, L), lag 0 first."""
        theta = kernels[:, ::-1].reshape(-1)
        err = self.tt - 2.0 * float(theta @ self.p) + float(theta @ self.r @ theta)
        return max(err, 0.0) / max(self.tt, 1e-300)


def _fit_nebula(model: NebulaModel, pairs: Sequence[tuple[np.ndarray, np.ndarray]], log: Any,
                ridge: float, smooth: float) -> dict[str, float]:
    t0 = time.perf_counter()
    cfg = model.cfg
    tracks = _checked_tracks(pairs)
    ranges = fit_ranges([c.size for c, _ in tracks], int(cfg.fit_seconds * cfg.sample_rate), cfg.sample_rate)
    normal = _NormalEquations(model)
    for i, lo, hi in ranges:
        normal.add(*tracks[i], lo, hi)
    if normal.tt <= 0:
        raise ModelError("nebula: the fitted rows of the targets are silent; nothing to fit")
    kernels = normal.solve(ridge, smooth)
    esr = normal.esr(kernels)
    model.set_kernels(kernels)
    seconds = time.perf_counter() - t0
    rows_seconds = normal.rows / cfg.sample_rate
    log(f"nebula fit: {cfg.levels} x {cfg.taps} taps on {rows_seconds:.1f} s: train ESR {esr:.4g} ({seconds:.1f} s)")
    return {"train_esr": esr, "fit_seconds": seconds, "rows_seconds": rows_seconds}


class _NebulaStream(StreamingModule):
    """nebula: state [input history (B, 1, RF - 1)]: the convolutions' and the envelope's window;
    one direct convolution with K output channels and one RMS window per block (exact)."""

    def __init__(self, model: NebulaModel):
        super().__init__()
        cfg = model.cfg
        self.weight = nn.Parameter(model.kernels.detach().flip(-1).unsqueeze(1).clone(), requires_grad=False)
        self.hist = model.receptive_field - 1
        self.conv_skip = model.receptive_field - cfg.taps
        self.env_skip = model.receptive_field - cfg.window
        self.window, self.levels = cfg.window, cfg.levels
        self.min_db, self.max_db = float(cfg.min_db), float(cfg.max_db)

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        full = torch.cat([state[0], x], dim=-1)
        responses = F.conv1d(full[:, :, self.conv_skip :], self.weight)
        u = level_position(full[:, :, self.env_skip :], self.window, self.min_db, self.max_db, self.levels)
        y = (hat_weights(u, self.levels) * responses).sum(dim=1, keepdim=True)
        return y, [full[:, :, full.shape[-1] - self.hist :]]

    @torch.jit.export
    def initial_state(self, batch: int) -> List[Tensor]:
        return [torch.zeros(batch, 1, self.hist)]
