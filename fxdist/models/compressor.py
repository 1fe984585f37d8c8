"""Family ``compressor``: a gray-box feed-forward compressor (JUCE ``dsp::Compressor``).

pedalboard's Compressor is JUCE's ``dsp::Compressor``: a ballistics filter follows the
level, and a static gain computer turns it into a gain applied to the input. Per sample,
per lane (``cte(ms) = exp(-2 pi 1000 / (sr ms))``, 0 below 1e-3 ms, as JUCE):

    a(n)   = |x(n)|                (peak)  or  x(n)^2  (rms)
    c(n)   = cte(attack_ms) if a(n) > e(n-1) else cte(release_ms)
    e(n)   = a(n) + c(n) (e(n-1) - a(n))                     e(-1) = the state (0 at a reset)
    L(n)   = 20 log10 e(n)         (peak)  or  10 log10 e(n)  (rms, i.e. of sqrt e)
    g(n)   = (1/ratio - 1) max(0, L(n) - threshold_db)  dB   (hard knee, knee_db = 0, as JUCE)
    y(n)   = x(n) 10^((g(n) + makeup_db) / 20)

``knee_db`` > 0 replaces the hard knee by the quadratic soft knee of Giannoulis, Massberg
and Reiss (2012) of that width, centred on the threshold. ``makeup_db`` stands for a
following ``Gain`` (the compression preset's +30 dB).

The detector recursion is sequential: it runs in numba (float64) inside a custom autograd
Function whose backward is the adjoint recursion, so gradients reach every parameter; the
gain computer is plain torch. ``fit`` is a direct search (grid, then Nelder-Mead, make-up
gain in closed form) that recovers pedalboard's settings from clean/target tracks.

State: the detector level e of each lane, a (B, 1) float64 tensor (the mean square for
rms), carried by ``forward``/``stream_block`` like a recurrent model's hidden state.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from fxdist.errors import ModelError
from fxdist.models.base import EffectModel, check_positive
from fxdist.models.registry import register
from fxdist.models.streaming import ProcessStream, StreamingModule

_VALUES = ("threshold_db", "ratio", "attack_ms", "release_ms", "makeup_db")
_FLOOR_DB = -200.0  # level of a silent detector (JUCE's decibelsToGain floor)


@dataclass
class CompressorConfig:
    sample_rate: int = 48000
    detector: Literal["peak", "rms"] = "peak"
    knee_db: float = 0.0  # soft-knee width in dB (fixed); 0: hard knee, as JUCE
    # initial values of the learnable parameters
    threshold_db: float = -20.0
    ratio: float = 4.0
    attack_ms: float = 5.0
    release_ms: float = 100.0
    makeup_db: float = 0.0

    def __post_init__(self):
        check_positive("compressor", sample_rate=self.sample_rate)
        if not (math.isfinite(self.knee_db) and 0.0 <= self.knee_db <= 60.0):
            raise ValueError(f"compressor: knee_db must be in [0, 60], got {self.knee_db}")
        _check_values("compressor", threshold_db=self.threshold_db, ratio=self.ratio, attack_ms=self.attack_ms,
                      release_ms=self.release_ms, makeup_db=self.makeup_db)


def _check_values(owner: str, exc: type[Exception] = ValueError, **values: float) -> None:
    """Range checks of the physical parameters (any subset), raising ``exc`` naming the value."""
    limits = {"threshold_db": (-150.0, 50.0), "makeup_db": (-100.0, 100.0)}
    for name, value in values.items():
        if name not in _VALUES:
            raise exc(f"{owner}: unknown parameter {name!r}; known: {', '.join(_VALUES)}")
        value = float(value)
        if name in limits and not limits[name][0] <= value <= limits[name][1]:
            raise exc(f"{owner}: {name} must be in [{limits[name][0]:g}, {limits[name][1]:g}], got {value}")
        if name == "ratio" and not (math.isfinite(value) and value > 1.0):
            raise exc(f"{owner}: ratio must be > 1 (finite), got {value}")
        if name in ("attack_ms", "release_ms") and not (math.isfinite(value) and value > 0.0):
            raise exc(f"{owner}: {name} must be > 0 ms (finite), got {value}")


def time_constant(ms: Tensor | float, sample_rate: int) -> Tensor:
    """JUCE's ballistics coefficient exp(-2 pi 1000 / (sr ms)); 0 for ms < 1e-3. Same shape as ms."""
    ms = torch.as_tensor(ms, dtype=torch.float64)
    cte = torch.exp(-2.0 * math.pi * 1000.0 / (sample_rate * ms.clamp_min(1e-3)))
    return torch.where(ms < 1e-3, torch.zeros_like(cte), cte)


# --- numba kernels (compiled on first use: importing numba costs ~0.5 s) -------------------


@functools.cache
def _kernels():
    import numba

    njit = numba.njit(cache=False)

    @njit
    def detect(a, y0, cte_at, cte_rl):
        """a (B, N) rectified input, y0 (B,) -> e (B, N) levels, attack (B, N) branch flags."""
        batch, n = a.shape
        e = np.empty((batch, n))
        attack = np.empty((batch, n), dtype=np.bool_)
        for b in range(batch):
            prev = y0[b]
            for i in range(n):
                up = a[b, i] > prev
                c = cte_at if up else cte_rl
                prev = a[b, i] + c * (prev - a[b, i])
                e[b, i] = prev
                attack[b, i] = up
        return e, attack

    @njit
    def adjoint(g, a, e, attack, y0, cte_at, cte_rl):
        """Backward of ``detect`` given dL/de g (B, N): (dL/da, dL/dy0, dL/dcte_at, dL/dcte_rl).

        lambda(n) = g(n) + c(n+1) lambda(n+1); dL/da(n) = lambda(n) (1 - c(n));
        dL/dc(n) = lambda(n) (e(n-1) - a(n)), summed over attack / release samples;
        dL/dy0 = c(0) lambda(0). The branch itself is not differentiated.
        """
        batch, n = a.shape
        ga = np.empty((batch, n))
        gy0 = np.empty(batch)
        gat = 0.0
        grl = 0.0
        for b in range(batch):
            carry = 0.0
            for i in range(n - 1, -1, -1):
                lam = g[b, i] + carry
                c = cte_at if attack[b, i] else cte_rl
                prev = e[b, i - 1] if i > 0 else y0[b]
                ga[b, i] = lam * (1.0 - c)
                d = lam * (prev - a[b, i])
                if attack[b, i]:
                    gat += d
                else:
                    grl += d
                carry = c * lam
            gy0[b] = carry
        return ga, gy0, gat, grl

    @njit
    def sums(x, t, starts, rms, threshold_db, slope, knee_db, cte_at, cte_rl):
        """One pass of the compressor without make-up over tracks concatenated in x and t
        (track k = [starts[k], starts[k+1]), each from a zero state): (sum t u, sum u u)."""
        tu = 0.0
        uu = 0.0
        half = 0.5 * knee_db
        ln = math.log(10.0) / 20.0
        for k in range(len(starts) - 1):
            e = 0.0
            for i in range(starts[k], starts[k + 1]):
                a = x[i] * x[i] if rms else abs(x[i])
                c = cte_at if a > e else cte_rl
                e = a + c * (e - a)
                if rms:
                    level = 10.0 * math.log10(e) if e > 1e-20 else _FLOOR_DB
                else:
                    level = 20.0 * math.log10(e) if e > 1e-10 else _FLOOR_DB
                over = level - threshold_db
                if over <= -half:
                    u = x[i]
                else:
                    if over >= half:
                        gdb = slope * over
                    else:
                        gdb = slope * (over + half) ** 2 / (2.0 * knee_db)
                    u = x[i] * math.exp(ln * gdb)
                tu += t[i] * u
                uu += u * u
        return tu, uu

    return detect, adjoint, sums


class _Detector(torch.autograd.Function):
    """e = ballistics(a; y0, cte_at, cte_rl): a (B, N), y0 (B,), ctes 0-dim, all float64."""

    @staticmethod
    def forward(ctx, a: Tensor, y0: Tensor, cte_at: Tensor, cte_rl: Tensor) -> Tensor:
        detect = _kernels()[0]
        a_np = np.ascontiguousarray(a.detach().cpu().numpy())
        y0_np = np.ascontiguousarray(y0.detach().cpu().numpy())
        e, attack = detect(a_np, y0_np, float(cte_at), float(cte_rl))
        ctx.arrays = (a_np, y0_np, e, attack, float(cte_at), float(cte_rl))
        ctx.device = a.device
        return torch.from_numpy(e).to(a.device)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        adjoint = _kernels()[1]
        a_np, y0_np, e, attack, cte_at, cte_rl = ctx.arrays
        g = np.ascontiguousarray(grad.detach().to(torch.float64).cpu().numpy())
        ga, gy0, gat, grl = adjoint(g, a_np, e, attack, y0_np, cte_at, cte_rl)
        dev, f64 = ctx.device, torch.float64
        return (torch.from_numpy(ga).to(dev), torch.from_numpy(gy0).to(dev),
                torch.tensor(gat, dtype=f64, device=dev), torch.tensor(grl, dtype=f64, device=dev))


def detector(a: Tensor, y0: Tensor, cte_at: Tensor, cte_rl: Tensor) -> Tensor:
    """Differentiable ballistics filter (float64): a (B, N) >= 0 rectified input, y0 (B,)
    incoming levels, cte_at / cte_rl 0-dim coefficients -> levels e (B, N)."""
    return _Detector.apply(a, y0, cte_at, cte_rl)


def gain_db(level_db: Tensor, threshold_db: Tensor, ratio: Tensor, knee_db: float) -> Tensor:
    """Static gain computer in dB (<= 0): hard knee, or the Giannoulis/Reiss soft knee of width
    knee_db. level_db any shape; threshold_db and ratio broadcast."""
    slope = 1.0 / ratio - 1.0
    over = level_db - threshold_db
    if knee_db <= 0:
        return slope * torch.relu(over)
    half = 0.5 * knee_db
    inside = slope * (over.clamp(-half, half) + half) ** 2 / (2.0 * knee_db)
    return torch.where(over >= half, slope * over, torch.where(over <= -half, torch.zeros_like(over), inside))


@register
class CompressorModel(EffectModel):
    """x (B, 1, T), state (B, 1) detector levels -> y (B, 1, T), new state; receptive_field 1."""

    family = "compressor"
    config_cls = CompressorConfig
    stateful = True

    def __init__(self, cfg: CompressorConfig):
        super().__init__(cfg)
        self.threshold_db = nn.Parameter(torch.tensor(float(cfg.threshold_db)))
        self.log_ratio_m1 = nn.Parameter(torch.tensor(math.log(cfg.ratio - 1.0)))
        self.log_attack_ms = nn.Parameter(torch.tensor(math.log(cfg.attack_ms)))
        self.log_release_ms = nn.Parameter(torch.tensor(math.log(cfg.release_ms)))
        self.makeup_db = nn.Parameter(torch.tensor(float(cfg.makeup_db)))

    @property
    def receptive_field(self) -> int:
        return 1

    # --- physical values -------------------------------------------------------------
    def values(self) -> dict[str, float]:
        """threshold_db, ratio, attack_ms, release_ms, makeup_db as plain numbers."""
        return {
            "threshold_db": float(self.threshold_db.detach()),
            "ratio": 1.0 + math.exp(float(self.log_ratio_m1.detach())),
            "attack_ms": math.exp(float(self.log_attack_ms.detach())),
            "release_ms": math.exp(float(self.log_release_ms.detach())),
            "makeup_db": float(self.makeup_db.detach()),
        }

    @torch.no_grad()
    def set_values(self, **values: float) -> None:
        """Set any of threshold_db, ratio (> 1), attack_ms, release_ms (> 0), makeup_db."""
        _check_values("compressor", ModelError, **values)
        for name, value in values.items():
            value = float(value)
            if name == "ratio":
                self.log_ratio_m1.fill_(math.log(value - 1.0))
            elif name in ("attack_ms", "release_ms"):
                getattr(self, f"log_{name}").fill_(math.log(value))
            else:
                getattr(self, name).fill_(value)

    # --- state -------------------------------------------------------------------------
    def initial_state(self, batch: int, device: Any = None) -> Tensor:
        return torch.zeros(batch, 1, dtype=torch.float64, device=device or self.threshold_db.device)

    def reset_lanes(self, state: Any, mask: Tensor) -> Any:
        if state is None:
            return None
        state = self._as_state(state)
        mask = self._check_mask(mask, state.shape[0], state.device)
        return state.masked_fill(mask.view(-1, 1), 0.0)

    def _as_state(self, state: Any, batch: int | None = None) -> Tensor:
        """A (B, 1) / (B,) tensor, or a 1-tuple of one (a state restored from a checkpoint's
        tensor list), as a (B, 1) float64 tensor."""
        if isinstance(state, (tuple, list)) and len(state) == 1:
            state = state[0]
        shaped = isinstance(state, Tensor) and (state.dim() == 1 or (state.dim() == 2 and state.shape[1] == 1))
        if shaped and (batch is None or state.shape[0] == batch):
            return state.reshape(-1, 1).to(torch.float64)
        got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
        want = ("B" if batch is None else batch, 1)
        raise ModelError(f"compressor: state must be a detector-level tensor of shape {want}, got {got}")

    # --- the effect ----------------------------------------------------------------------
    def coefficients(self) -> tuple[Tensor, Tensor]:
        """(cte_at, cte_rl) as 0-dim float64 tensors attached to the graph."""
        sr = self.cfg.sample_rate
        return (time_constant(torch.exp(self.log_attack_ms.double()), sr),
                time_constant(torch.exp(self.log_release_ms.double()), sr))

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Tensor]:
        self._check_input(x)
        batch = x.shape[0]
        y0 = self.initial_state(batch, x.device) if state is None else self._as_state(state, batch).to(x.device)
        sig = x[:, 0, :].to(torch.float64)
        rms = self.cfg.detector == "rms"
        cte_at, cte_rl = self.coefficients()
        env = detector(sig.square() if rms else sig.abs(), y0[:, 0], cte_at, cte_rl)
        floor = 1e-20 if rms else 1e-10
        level_db = (10.0 if rms else 20.0) * torch.log10(env.clamp_min(floor))
        ratio = 1.0 + torch.exp(self.log_ratio_m1.double())
        total_db = gain_db(level_db, self.threshold_db.double(), ratio, self.cfg.knee_db) + self.makeup_db.double()
        y = sig * torch.exp(total_db * (math.log(10.0) / 20.0))
        return y.to(x.dtype)[:, None, :], env[:, -1:]

    def stream_block(self, x: Tensor, stream_state: Any = None) -> tuple[Tensor, Any]:
        """Streaming is forward itself (receptive field 1); empty blocks pass the state on."""
        return self._stream_recurrent(x, stream_state, self._as_state)

    def stream_module(self, conv_as: str = "matmul") -> StreamingModule:
        """Runs ``stream_block``; state [detector level (B, 1) float64]."""
        return ProcessStream(
            self, "compressor: its level detector is a per-sample recursion run by numba and cannot be scripted"
        ).eval()

    def macs_per_sample(self) -> int:
        """Detector 1 (a + c (e - a)), the rms square 1, the level's log 1, gain slope 1,
        soft knee 2, the dB-to-gain exp 1 and the output multiply 1."""
        return 5 + (self.cfg.detector == "rms") + 2 * (self.cfg.knee_db > 0)

    # --- direct fit ------------------------------------------------------------------------
    def fit(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]], log: Any = print) -> dict[str, float]:
        """``fit_compressor`` with its defaults: grid search, then Nelder-Mead on plain ESR."""
        return fit_compressor(self, pairs, log=log)


def _concat(pairs: Sequence[tuple[np.ndarray, np.ndarray]], seconds: float, sr: int):
    """The first ``seconds`` in total (an equal share from the start of each track) as
    concatenated float64 x, t and the track starts (K + 1,) int64."""
    lengths = [len(np.asarray(c).ravel()) for c, _ in pairs]
    share = max(1, int(seconds * sr / len(pairs)))
    xs, ts, starts = [], [], [0]
    for (c, t), n in zip(pairs, lengths):
        m = min(n, share)
        xs.append(np.asarray(c, dtype=np.float64).ravel()[:m])
        ts.append(np.asarray(t, dtype=np.float64).ravel()[:m])
        starts.append(starts[-1] + m)
    return np.concatenate(xs), np.concatenate(ts), np.asarray(starts, dtype=np.int64)


def _unpack(p: np.ndarray) -> dict[str, float]:
    """Unconstrained (threshold_db, log(ratio - 1), log attack_ms, log release_ms) -> values."""
    q = np.clip(p, -30.0, 30.0)
    return {"threshold_db": float(np.clip(p[0], -150.0, 50.0)), "ratio": 1.0 + math.exp(q[1]),
            "attack_ms": math.exp(q[2]), "release_ms": math.exp(q[3])}


def fit_compressor(
    model: CompressorModel,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    grid_seconds: float = 15.0,
    fit_seconds: float = 60.0,
    thresholds: int = 12,
    ratios: Sequence[float] = (1.5, 3.0, 8.0, 30.0),
    attacks_ms: Sequence[float] = (0.1, 0.5, 2.0, 10.0, 50.0),
    releases_ms: Sequence[float] = (10.0, 40.0, 150.0, 600.0),
    starts: int = 3,
    max_evals: int = 600,
    good_esr: float = 1e-12,
    log: Any = print,
) -> dict[str, float]:
    """Fit threshold, ratio, attack, release and make-up of ``model`` to whole tracks
    (clean (N,), target (N,)), each from the effect's reset; returns the fitted values.

    The objective is plain ESR over the tracks of the exact forward (numba, no autograd),
    with the make-up gain solved in closed form (least-squares gain of the compressed
    signal), so the search runs over 4 parameters:

    1. A grid on the first ``grid_seconds`` (in total, from each track's start): thresholds
       every 6 dB from 3 dB below the loudest clean sample down (``thresholds`` of them),
       ``ratios`` x ``attacks_ms`` x ``releases_ms``.
    2. Nelder-Mead (restarted once from a fresh simplex) on the grid's audio from the
       ``starts`` best grid points and the model's current values, then once more from the
       best on the first ``fit_seconds``. A search stops early at ESR < ``good_esr`` (the
       model is exact there: the target is a JUCE compressor).
    """
    if not pairs:
        raise ModelError("compressor: fit needs at least one (clean, target) track")
    for i, (c, t) in enumerate(pairs):
        if np.asarray(c).size != np.asarray(t).size:
            raise ModelError(f"compressor: track {i}: clean has {np.asarray(c).size} samples but its target has "
                             f"{np.asarray(t).size}")
    sums = _kernels()[2]
    cfg = model.cfg
    sr, rms, knee = cfg.sample_rate, cfg.detector == "rms", float(cfg.knee_db)
    t0 = time.perf_counter()

    def objective(data, p: np.ndarray) -> tuple[float, float]:
        """(ESR, make-up gain) at unconstrained p."""
        x, t, st, tt = data
        v = _unpack(p)
        tu, uu = sums(x, t, st, rms, v["threshold_db"], 1.0 / v["ratio"] - 1.0, knee,
                      float(time_constant(v["attack_ms"], sr)), float(time_constant(v["release_ms"], sr)))
        if uu <= 0 or tu <= 0:
            return 1.0, 1.0
        return max(1.0 - tu * tu / (uu * tt), 0.0), tu / uu

    def dataset(seconds: float):
        x, t, st = _concat(pairs, seconds, sr)
        tt = float(t @ t)
        if tt <= 0 or not np.any(x):
            raise ModelError("compressor: fit needs tracks with non-silent clean and target audio")
        return x, t, st, tt

    grid_data, fit_data = dataset(grid_seconds), dataset(fit_seconds)
    peak_db = 20 * math.log10(max(float(np.abs(grid_data[0]).max()), 1e-10))
    top = peak_db - 3.0 if not rms else peak_db - 6.0
    candidates = []
    for thr in top - 6.0 * np.arange(thresholds):
        for r in ratios:
            for at in attacks_ms:
                for rl in releases_ms:
                    p = np.array([thr, math.log(r - 1.0), math.log(at), math.log(rl)])
                    candidates.append((objective(grid_data, p)[0], p))
    candidates.sort(key=lambda item: item[0])
    log(f"  compressor grid: {len(candidates)} points on {grid_data[0].size / sr:.1f} s, best ESR "
        f"{candidates[0][0]:.4g} at " + _fmt(_unpack(candidates[0][1])) + f" ({time.perf_counter() - t0:.1f} s)")

    now = model.values()
    current = np.array([now["threshold_db"], math.log(now["ratio"] - 1.0), math.log(now["attack_ms"]),
                        math.log(now["release_ms"])])
    firsts = [p for _, p in candidates[:starts]] + [current]
    best_esr, best_p = math.inf, current
    for k, p0 in enumerate(firsts):
        esr, p, evals = _nelder_mead(lambda q: objective(grid_data, q)[0], p0, max_evals, good_esr)
        log(f"  compressor Nelder-Mead from start {k} ({evals} evaluations): ESR {esr:.4g} at " + _fmt(_unpack(p))
            + f" ({time.perf_counter() - t0:.1f} s)")
        if esr < best_esr:
            best_esr, best_p = esr, p
        if best_esr < good_esr:
            break
    if fit_data[0].size > grid_data[0].size:
        esr, best_p, evals = _nelder_mead(lambda q: objective(fit_data, q)[0], best_p, max_evals, good_esr)
        log(f"  compressor Nelder-Mead on {fit_data[0].size / sr:.1f} s ({evals} evaluations): ESR {esr:.4g}"
            + f" ({time.perf_counter() - t0:.1f} s)")
    esr, makeup = objective(fit_data, best_p)
    values = {**_unpack(best_p), "makeup_db": 20 * math.log10(min(max(makeup, 1e-5), 1e5))}
    model.set_values(**values)
    log(f"  compressor fit: ESR {esr:.4g} on {fit_data[0].size / sr:.1f} s at {_fmt(values)} "
        f"({time.perf_counter() - t0:.1f} s)")
    return model.values()


class _Done(Exception):
    """Raised by the objective when the ESR is good enough to stop searching."""


def _nelder_mead(esr_at, p0: np.ndarray, max_evals: int, good_esr: float) -> tuple[float, np.ndarray, int]:
    """Minimise log10 ESR from p0 (Nelder-Mead restarted once from a fresh simplex, steps of
    3 dB and 0.5 in the log parameters); stops at ESR < good_esr. -> (ESR, p, evaluations)."""
    from scipy.optimize import minimize

    best = [esr_at(p0), np.asarray(p0, dtype=np.float64)]
    evals = [1]

    def loss(p: np.ndarray) -> float:
        esr = esr_at(p)
        evals[0] += 1
        if esr < best[0]:
            best[0], best[1] = esr, np.array(p)
        if esr < good_esr:
            raise _Done
        return math.log10(esr + 1e-300)

    steps = np.diag([3.0, 0.5, 0.5, 0.5])
    try:
        if best[0] >= good_esr:
            for _restart in range(2):
                p = best[1]
                minimize(loss, p, method="Nelder-Mead", options={
                    "initial_simplex": np.vstack([p, p + steps]), "maxfev": max_evals // 2, "xatol": 1e-4, "fatol": 1e-4})
    except _Done:
        pass
    return best[0], best[1], evals[0]


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in values.items())
