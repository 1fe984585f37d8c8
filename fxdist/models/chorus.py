"""Family ``chorus``: gray-box modulated delay line with feedback (a chorus / flanger).

The structure of JUCE's ``dsp::Chorus`` (pedalboard's Chorus): a sine LFO sets the delay,
the delayed signal is fed back (negatively) into the line, and dry and wet are mixed:

    d(n) = clamp(centre_ms + depth_ms * sin(2 pi rate_hz n / sr + phase), 1 ms, max_delay_ms)
    v(n) = x(n) - feedback * w(n - 1),        w(n) = v(n - d(n))   (linear interpolation)
    y(n) = dry * x(n) + wet * w(n)

Unrolled, w = sum_k (-feedback D z^-1)^k D x with D the modulated delay; the first
``feedback_terms`` + 1 terms are kept (|feedback|^(K+1) of the wet left out), so one pass is
a few vectorised gathers, and the receptive field is finite:
(K + 1) * ceil(max_delay_ms * sr / 1000) + K + 1 samples.

Every quantity is learnable (rate, phase, centre, depth, feedback, dry, wet); the config
holds their initial values and the sample rate that converts ms/Hz to samples. n is the
stream time counted from the start of the track (``fxdist.models.timevarying``): an effect
reset at each track's start has its LFO at the same phase there, so a model trained on
whole tracks knows it. Training windows must carry their position (``forward_at``); the
rate and phase form a non-convex landscape, so ``fit_chorus`` searches a grid first.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from fxdist.errors import ModelError
from fxdist.models.base import check_positive
from fxdist.models.registry import register
from fxdist.models.timevarying import TimeVaryingModel

_PARAMS = ("rate_hz", "phase", "centre_ms", "depth_ms", "feedback", "dry", "wet")


@dataclass
class ChorusConfig:
    sample_rate: int = 48000
    max_delay_ms: float = 30.0
    feedback_terms: int = 3
    # initial values of the learnable parameters
    rate_hz: float = 1.0
    phase: float = 0.0
    centre_ms: float = 8.0
    depth_ms: float = 4.0
    feedback: float = 0.0
    dry: float = 0.5
    wet: float = 0.5

    def __post_init__(self):
        check_positive("chorus", sample_rate=self.sample_rate)
        if self.feedback_terms < 0:
            raise ValueError(f"chorus: feedback_terms must be >= 0, got {self.feedback_terms}")
        if not 1.0 < self.max_delay_ms <= 1000.0:
            raise ValueError(f"chorus: max_delay_ms must be in (1, 1000], got {self.max_delay_ms}")


@register
class ChorusModel(TimeVaryingModel):
    """x (B, 1, T) -> y (B, 1, T - RF + 1); output 0 at stream time ``start`` (0 in forward)."""

    family = "chorus"
    config_cls = ChorusConfig

    def __init__(self, cfg: ChorusConfig):
        super().__init__(cfg)
        for name in _PARAMS:
            setattr(self, name, nn.Parameter(torch.tensor(float(getattr(cfg, name)))))
        self._max_delay = math.ceil(cfg.max_delay_ms * cfg.sample_rate / 1000)
        k = cfg.feedback_terms
        self._rf = (k + 1) * self._max_delay + k + 1  # term k reads back (k + 1) delays and k shifts

    @property
    def receptive_field(self) -> int:
        return self._rf

    def delay_samples(self, times: Tensor) -> Tensor:
        """Delay in samples at stream times ``times`` (any shape, int64)."""
        sr = self.cfg.sample_rate
        angle = 2 * math.pi * self.rate_hz.double() * times.double() / sr + self.phase.double()
        ms = self.centre_ms + self.depth_ms * torch.sin(angle).to(self.centre_ms.dtype)
        return ms.clamp(1.0, self.cfg.max_delay_ms) * (sr / 1000.0)

    def _run(self, x: Tensor, start: Tensor) -> Tensor:
        batch, _, length = x.shape
        j = torch.arange(length, device=x.device)
        times = start[:, None] + j[None, :] - (self._rf - 1)
        # in float64: the fraction must not depend on where a block starts (j is block-relative)
        read = j[None, :].double() - self.delay_samples(times).double()
        lo = torch.floor(read)
        frac = (read - lo).to(x.dtype)
        lo = lo.long()

        def delayed(s: Tensor) -> Tensor:  # s (B, T) read at j - d(j), zeros before index 0
            a = torch.gather(s, 1, lo.clamp(0, length - 1)) * (lo >= 0)
            b = torch.gather(s, 1, (lo + 1).clamp(0, length - 1)) * (lo + 1 >= 0)
            return a + frac * (b - a)

        flat = x[:, 0, :]
        term = delayed(flat)
        wet = term
        for _ in range(self.cfg.feedback_terms):
            shifted = torch.nn.functional.pad(term, (1, 0))[:, :length]
            term = -self.feedback * delayed(shifted)
            wet = wet + term
        y = self.dry * flat + self.wet * wet
        return y[:, None, self._rf - 1 :]

    def macs_per_sample(self) -> int:
        """Two interpolation MACs per delay read (one read per term), the feedback and mix gains."""
        return 3 * (self.cfg.feedback_terms + 1) + 2

    def fit(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]], log=print) -> dict[str, float]:
        """``fit_chorus`` with its defaults (grid search, then Adam on windows of known position)."""
        return fit_chorus(self, pairs, log=log)

    def values(self) -> dict[str, float]:
        """The learnt parameters as plain numbers."""
        return {name: float(getattr(self, name).detach()) for name in _PARAMS}


def _prefixes(pairs: Sequence[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[Tensor, Tensor]:
    """The first n samples of every pair as (B, n) clean and target tensors (zero-padded)."""
    xs = torch.zeros(len(pairs), n)
    ys = torch.zeros(len(pairs), n)
    for i, (c, t) in enumerate(pairs):
        m = min(n, len(c))
        xs[i, :m] = torch.from_numpy(np.asarray(c[:m], dtype=np.float32))
        ys[i, :m] = torch.from_numpy(np.asarray(t[:m], dtype=np.float32))
    return xs, ys


@torch.no_grad()
def _search(model: ChorusModel, x: Tensor, y: Tensor, rates: np.ndarray, phases: int,
            centres: Sequence[float], depths: Sequence[float]) -> tuple[float, dict[str, float]]:
    """Grid over (rate, phase, centre, depth) without feedback; dry and wet by least squares.
    x, y: (B, n) from stream time 0. Returns (best ESR, its parameters)."""
    rf = model.receptive_field
    xin = torch.nn.functional.pad(x, (rf - 1, 0))[:, None, :]
    saved = model.cfg.feedback_terms
    model.cfg.feedback_terms = 0
    model.feedback.fill_(0.0)
    model.dry.fill_(0.0)
    model.wet.fill_(1.0)
    best = (math.inf, {})
    yy = float((y * y).sum())
    try:
        for rate in rates:
            for p in range(phases):
                for centre in centres:
                    for frac in depths:
                        model.rate_hz.fill_(float(rate))
                        model.phase.fill_(2 * math.pi * p / phases)
                        model.centre_ms.fill_(centre)
                        model.depth_ms.fill_(frac * centre)
                        w = model._run(xin, torch.zeros(len(x), dtype=torch.long, device=x.device))[:, 0, :]
                        a = torch.stack([x.flatten(), w.flatten()], 1).double()
                        sol = torch.linalg.lstsq(a, y.flatten().double()[:, None]).solution[:, 0]
                        err = float(((a @ sol - y.flatten().double()) ** 2).sum()) / yy
                        if err < best[0]:
                            best = (err, {"rate_hz": float(rate), "phase": 2 * math.pi * p / phases,
                                          "centre_ms": centre, "depth_ms": frac * centre,
                                          "dry": float(sol[0]), "wet": float(sol[1])})
    finally:
        model.cfg.feedback_terms = saved
    return best


def fit_chorus(
    model: ChorusModel,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    search_seconds: float = 1.0,
    rates: tuple[float, float, int] = (0.1, 8.0, 80),
    phases: int = 8,
    centres: Sequence[float] = (3.0, 8.0, 15.0),
    depths: Sequence[float] = (0.3, 0.6, 0.9),
    stages: Sequence[float] = (1.0, 2.0, 6.0, 20.0, 0.0),
    steps_per_stage: int = 150,
    batch: int = 8,
    window: int = 16384,
    seed: int = 0,
    log=print,
) -> dict[str, float]:
    """Fit every parameter of ``model`` to whole tracks (clean (N,), target (N,)), each starting
    at the effect's reset (stream time 0). Returns the learnt values.

    1. Grid search on the first ``search_seconds`` of every track: log-spaced rates
       (lo, hi, count), ``phases`` phases, centres (ms) and depths (fractions of the centre),
       no feedback, dry and wet gains by least squares for each point.
    2. Adam on plain ESR, windows of ``window`` outputs at random positions (their stream times
       known), drawn from the first ``stages[i]`` seconds of the tracks (0: whole tracks), so the
       rate is refined on spans it can be resolved on before the long ones.
    """
    sr = model.cfg.sample_rate
    if not pairs:
        raise ModelError("chorus: fit_chorus needs at least one (clean, target) track")
    t0 = time.perf_counter()
    device = model.rate_hz.device  # the model may be on a GPU; the tracks are numpy
    x, y = (t.to(device) for t in _prefixes(pairs, int(search_seconds * sr)))
    grid = np.exp(np.linspace(math.log(rates[0]), math.log(rates[1]), int(rates[2])))
    err, values = _search(model, x, y, grid, phases, centres, depths)
    with torch.no_grad():
        for name, value in values.items():
            getattr(model, name).fill_(value)
        model.feedback.fill_(0.0)
    log(f"  chorus grid search: ESR {err:.4f} on the first {search_seconds:g} s at "
        + ", ".join(f"{k} {v:.4g}" for k, v in values.items()) + f" ({time.perf_counter() - t0:.1f} s)")

    rng = np.random.default_rng(seed)
    rf = model.receptive_field
    lengths = [len(c) for c, _ in pairs]
    lrs = {"rate_hz": 0.0, "phase": 5e-3, "centre_ms": 5e-3, "depth_ms": 5e-3, "feedback": 5e-3, "dry": 2e-3, "wet": 2e-3}
    for stage, seconds in enumerate(stages):
        # a rate error of e Hz costs 2 pi e T rad of LFO phase by time T: step it by ~1/T
        span = seconds if seconds > 0 else max(lengths) / sr
        lrs["rate_hz"] = 4e-3 / max(span, 1.0)
        opt = torch.optim.Adam([{"params": [getattr(model, k)], "lr": v} for k, v in lrs.items()])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps_per_stage, eta_min=0.0)
        for _ in range(steps_per_stage):
            xs, ys, starts = [], [], []
            for _b in range(batch):
                i = int(rng.integers(len(pairs)))
                limit = lengths[i] if seconds <= 0 else min(lengths[i], int(seconds * sr))
                out0 = int(rng.integers(0, max(1, limit - window)))  # stream time of output 0
                c, t = pairs[i]
                seg = np.zeros(rf - 1 + window, np.float32)
                lo = out0 - (rf - 1)
                src = np.asarray(c[max(lo, 0) : out0 + window], dtype=np.float32)
                seg[max(0, -lo) : max(0, -lo) + len(src)] = src
                tgt = np.zeros(window, np.float32)
                part = np.asarray(t[out0 : out0 + window], dtype=np.float32)
                tgt[: len(part)] = part
                xs.append(seg)
                ys.append(tgt)
                starts.append(out0)
            pred = model.forward_at(torch.from_numpy(np.stack(xs))[:, None, :].to(device), torch.tensor(starts, device=device))
            target = torch.from_numpy(np.stack(ys))[:, None, :].to(device)
            loss = ((pred - target) ** 2).sum() / (target.square().sum() + 1e-10)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        log(f"  chorus stage {stage} ({'whole tracks' if seconds <= 0 else f'first {seconds:g} s'}): "
            f"window ESR {float(loss.detach()):.5f}; " + ", ".join(f"{k} {v:.5g}" for k, v in model.values().items()))
    return model.values()
