"""Family ``fir``: a learnable long impulse response applied by FFT convolution (gray-box LTI).

A linear time-invariant effect at fixed settings (filters, a cabinet, pedalboard's Delay
and Reverb) is fully described by its impulse response h; a finite one of ``length``
taps represents it up to the energy of the tail it cuts off. ``y[n] = sum_k h[k] x[n-k]``,
k = 0 .. length-1, computed with ``torch.fft`` (O(T log T) instead of O(T * length)), so
responses of a second and more (48 000+ taps) train and run at audio rates. Short responses
(<= 128 taps with ``method: auto``) use a direct convolution instead, exact to the bit
outside the window (an FFT leaves ~1e-7 rounding on every output).

Receptive field = ``length``. Valid convolution as every conv family: forward on T input
samples gives T - length + 1 outputs. ``stream_block`` streams with a history of length - 1
samples and one FFT per block; the streaming module keeps the same history and runs one
direct convolution per block (L MACs per sample: fine for filters and cabinets; a 1.5 s
reverb response belongs in a host's partitioned convolution, ``fxdist export --format ir``).

``fit_least_squares`` solves for the taps in closed form from clean/target pairs (the
Wiener-Hopf normal equations, a Toeplitz system): the optimum ESR-without-pre-emphasis
FIR of that length. Used as the initialisation before gradient training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Literal, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fxdist.errors import ModelError
from fxdist.models.base import EffectModel, check_positive
from fxdist.models.registry import register
from fxdist.models.streaming import StreamingModule


DIRECT_MAX_TAPS = 128  # method "auto": F.conv1d up to this length, FFT above


@dataclass
class FIRConfig:
    length: int = 4800  # taps = receptive field (4800: 0.1 s at 48 kHz)
    init: Literal["identity", "zeros"] = "identity"  # identity: h = delta (the dry signal)
    # fft: torch.fft; direct: F.conv1d (exact zeros outside the window); auto: direct up to 128 taps
    method: Literal["auto", "fft", "direct"] = "auto"

    def __post_init__(self):
        check_positive("fir", length=self.length)


def fft_convolve_valid(x: Tensor, h: Tensor) -> Tensor:
    """Valid causal convolution by FFT. x: (B, 1, T), h: (L,) with h[0] the current-sample tap
    -> (B, 1, T - L + 1), output i = sum_k h[k] x[i + L - 1 - k].

    A circular convolution of size n >= T is exact on indices L-1 .. T-1 (the wrap only
    touches the first L-1), so no zero padding beyond T is needed.
    """
    length, t = h.shape[-1], x.shape[-1]
    n = _fast_size(t)
    spec = torch.fft.rfft(x, n=n) * torch.fft.rfft(h, n=n)
    return torch.fft.irfft(spec, n=n)[..., length - 1 : t]


def _fast_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (sizes torch's FFT handles fast)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


@register
class FIRModel(EffectModel):
    """x (B, 1, T) -> y (B, 1, T - length + 1); taps ``self.taps`` (length,), taps[0] = lag 0."""

    family = "fir"
    config_cls = FIRConfig
    stateful = False

    def __init__(self, cfg: FIRConfig):
        super().__init__(cfg)
        taps = torch.zeros(cfg.length)
        if cfg.init == "identity":
            taps[0] = 1.0
        self.taps = nn.Parameter(taps)

    @property
    def receptive_field(self) -> int:
        return self.cfg.length

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, None]:
        self._check_no_state(state)
        self._check_input(x)
        if self.cfg.method == "direct" or (self.cfg.method == "auto" and self.cfg.length <= DIRECT_MAX_TAPS):
            return F.conv1d(x, self.taps.flip(0).view(1, 1, -1)), None
        return fft_convolve_valid(x, self.taps), None

    def macs_per_sample(self) -> int:
        """Direct-form cost (length); the FFT path costs O(log T) per sample instead."""
        return self.cfg.length

    def stream_module(self, conv_as: str = "matmul") -> StreamingModule:
        return _FIRStream(self).eval()

    def export_formats(self) -> dict[str, str | None]:
        return {**super().export_formats(), "ir": None}

    def ir_taps(self) -> np.ndarray:
        """The impulse response (length,) float32 as it is (no normalisation), taps[0] = lag 0."""
        return self.taps.detach().cpu().numpy().astype(np.float32)

    def fit(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]], log: Any = print) -> dict[str, float]:
        """Least-squares taps (``fit_least_squares``) from whole tracks."""
        self.set_taps(fit_least_squares(pairs, self.cfg.length))
        return {"taps": float(self.cfg.length)}

    @torch.no_grad()
    def set_taps(self, taps: np.ndarray | Tensor) -> None:
        """Replace the impulse response with ``taps`` (length,)."""
        t = torch.as_tensor(np.asarray(taps, dtype=np.float32))
        if tuple(t.shape) != (self.cfg.length,):
            raise ModelError(f"fir: taps must have shape ({self.cfg.length},), got {tuple(t.shape)}")
        self.taps.copy_(t)


def fit_least_squares(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], length: int, ridge: float = 1e-6, refinements: int = 2
) -> np.ndarray:
    """Least-squares FIR (length,) float64 mapping each clean (N,) to its target (N,).

    Minimises sum over pairs of ||target - (h * clean)[:N]||^2 (each track preceded by
    silence) plus ``ridge * r[0] * ||h||^2`` (r[0] = input energy; keeps bands the input
    never excites near zero). Normal equations R h = p, R the Toeplitz autocorrelation of
    the inputs and p their cross-correlation with the targets, both from FFTs, solved by
    Levinson recursion (O(length^2) time, O(length) memory).

    The Toeplitz R assumes the targets go on after each track's end (the effect's tail,
    which a rendered pair cuts off); that biases h when length is not << N. Each of the
    ``refinements`` passes appends the tail the current h predicts and solves again; the
    fixed point is the exact (covariance-method) least-squares solution.
    """
    from scipy.linalg import solve_toeplitz

    if length < 1:
        raise ModelError(f"fir: length must be >= 1, got {length}")
    spectra = []
    r = np.zeros(length)
    for clean, target in pairs:
        c = np.asarray(clean, dtype=np.float64).ravel()
        t = np.asarray(target, dtype=np.float64).ravel()
        if c.shape != t.shape:
            raise ModelError(f"fir: clean has {c.size} samples but its target has {t.size}")
        n = _fast_size(c.size + length)
        fc = np.fft.rfft(c, n)
        r += np.fft.irfft(np.abs(fc) ** 2, n)[:length]
        spectra.append((fc, t, n))
    if r[0] <= 0:
        raise ModelError("fir: the clean signals are silent; nothing to fit")
    r[0] *= 1 + ridge
    h = np.zeros(length)
    for _ in range(refinements + 1):
        p = np.zeros(length)
        for fc, t, n in spectra:
            ext = np.zeros(n)
            ext[: t.size] = t
            if h.any():  # the tail beyond the track's end, as h predicts it
                tail = np.fft.irfft(fc * np.fft.rfft(h, n), n)
                ext[t.size : t.size + length - 1] = tail[t.size : t.size + length - 1]
            p += np.fft.irfft(np.fft.rfft(ext) * np.conj(fc), n)[:length]
        h = solve_toeplitz(r, p)
    return h


class _FIRStream(StreamingModule):
    """fir: state [history (B, 1, L - 1)]; one direct convolution per block (exact, L MACs per sample)."""

    def __init__(self, model: FIRModel):
        super().__init__()
        self.weight = nn.Parameter(model.taps.detach().flip(0).view(1, 1, -1).clone(), requires_grad=False)
        self.hist = model.receptive_field - 1

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        full = torch.cat([state[0], x], dim=-1)
        y = F.conv1d(full, self.weight)
        return y, [full[:, :, full.shape[-1] - self.hist :]]

    @torch.jit.export
    def initial_state(self, batch: int) -> List[Tensor]:
        return [torch.zeros(batch, 1, self.hist)]
