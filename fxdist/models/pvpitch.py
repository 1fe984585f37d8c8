"""Family ``pvpitch``: gray-box phase-vocoder pitch shifter with a learnt output spectrum.

Rubber Band (pedalboard's ``PitchShift``) is a phase vocoder, so this model is one, in the
time-compress-then-resample form, done grain by grain. With ratio r = 2^(semitones / 12),
window w_N (periodic Hann, N = ``n_fft``) and hop H:

    frame f ends at stream time e_f, a multiple of H:   X_f = rfft(w_N * x[e_f - N : e_f])
    true frequency of bin k (rad/sample):  om_fk = 2 pi k / N + princarg(arg X_fk - arg X_(f-1)k - 2 pi k H / N) / H
    synthesis phase:                       psi_fk = psi_(f-1)k + r H om_fk
    grain (M = round(N / r) samples):      g_f = irfft_M(|X_fk| e^(i psi_fk) G_k) * (M / N) * w_M * 8 H / (3 M)
    y[e_f : e_f + M] += g_f                (overlap-add; causal: the grain starts when its frame is complete)

The M-point inverse FFT of an N-point spectrum plays the grain 1 / r times slower, which
moves every partial by r and keeps its phase advance r H om per hop. ``G`` (``N/2 + 1``
bins, or ``M/2 + 1`` when M < N; bin k at k * sr / M) is the learnt part: the shifter's
tone and level, e.g. the low-pass a resampler puts above the shifted band. It starts at 1;
``fit`` sets it from whole tracks (the mean log-magnitude ratio per bin, the quantity the
MR-STFT distance scores), and Adam can refine it with an MR-STFT loss.

The phase recursion runs over the whole stream, so the model is stateful (receptive field 1):
state = (last N inputs (B, N), analysis and synthesis phase (B, K) float64, overlap-add tail
(B, M), stream position (B,) int64). Zero state = silence before (arg 0 = 0). Streaming in
any blocks equals one pass up to float rounding of the phase sums. The output does not
follow the target's waveform (another vocoder's phases), so judge it by MR-STFT distance.
Latency: a partial reaches the output about N / 2 + M / 2 samples after it entered. The
effect it imitates is usually rendered with its own latency compensated (pedalboard does so
for Rubber Band), so ``fit`` also finds the shift that aligns output and target
(``latency``, kept in the weights as ``latency_samples``). Offline rendering compensates it
(``EffectModel.latency``); streaming keeps the delay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from fxdist.errors import ModelError
from fxdist.models.base import EffectModel, check_positive
from fxdist.models.registry import register
from fxdist.models.streaming import ProcessStream, StreamingModule

GAIN_FLOOR = 1e-4  # |STFT| floor of the MR-STFT distance (auraloss clamps power at 1e-8)


@dataclass
class PVPitchConfig:
    semitones: float = -12.0  # the shift: a gray-box prior (the effect's setting), not learnt
    n_fft: int = 512  # analysis window N (512: 10.7 ms at 48 kHz; bins 94 Hz apart)
    hop: int = 64  # analysis hop H; frames end at stream times that are multiples of it

    def __post_init__(self):
        check_positive("pvpitch", n_fft=self.n_fft, hop=self.hop)
        if not -36.0 <= self.semitones <= 36.0 or self.semitones == 0:
            raise ValueError(f"pvpitch: semitones must be nonzero and within +-36, got {self.semitones}")
        if self.n_fft % 2 or self.n_fft < 16:
            raise ValueError(f"pvpitch: n_fft must be even and >= 16, got {self.n_fft}")
        if self.hop > self.n_fft // 4:
            raise ValueError(f"pvpitch: hop must be <= n_fft / 4 (Hann overlap-add), got hop {self.hop} for n_fft {self.n_fft}")

    @property
    def ratio(self) -> float:
        return 2.0 ** (self.semitones / 12.0)

    @property
    def grain(self) -> int:
        """M: synthesis grain length, round(N / ratio), at least 2."""
        return max(2, int(round(self.n_fft / self.ratio)))

    @property
    def bins(self) -> int:
        """K: bins carried from analysis to synthesis (and learnt gains)."""
        return min(self.n_fft, self.grain) // 2 + 1


def _princarg(phase: Tensor) -> Tensor:
    return torch.remainder(phase + math.pi, 2 * math.pi) - math.pi


@register
class PVPitchModel(EffectModel):
    """x (B, 1, T), state -> y (B, 1, T), new state; receptive_field 1 (history in the state)."""

    family = "pvpitch"
    config_cls = PVPitchConfig
    stateful = True
    spectral_output = True

    def __init__(self, cfg: PVPitchConfig):
        super().__init__(cfg)
        self.log_gain = nn.Parameter(torch.zeros(cfg.bins))
        self.register_buffer("latency_samples", torch.zeros((), dtype=torch.long))  # EffectModel.latency
        n, m = cfg.n_fft, cfg.grain
        self.register_buffer("window", torch.hann_window(n, periodic=True), persistent=False)
        scale = (m / n) * 8.0 * cfg.hop / (3.0 * m)  # resampled amplitude, Hann^2 overlap-add sum
        self.register_buffer("synth_window", torch.hann_window(m, periodic=True) * scale, persistent=False)
        k = torch.arange(cfg.bins, dtype=torch.float64)
        self.register_buffer("bin_omega", 2 * math.pi * k / n, persistent=False)

    @property
    def receptive_field(self) -> int:
        return 1

    @property
    def latency(self) -> int:
        """Set by ``fit`` (0 .. N + M in steps of H) and kept in the weights (``latency_samples``)."""
        return int(self.latency_samples)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before the fitted latency hold none: they rendered uncompensated
        state_dict.setdefault(prefix + "latency_samples", torch.zeros((), dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # --- state -------------------------------------------------------------------------
    def initial_state(self, batch: int, device: Any = None) -> tuple[Tensor, ...]:
        cfg = self.cfg
        device = device or self.log_gain.device
        return (
            torch.zeros(batch, cfg.n_fft, device=device),
            torch.zeros(batch, cfg.bins, dtype=torch.float64, device=device),
            torch.zeros(batch, cfg.bins, dtype=torch.float64, device=device),
            torch.zeros(batch, cfg.grain, device=device),
            torch.zeros(batch, dtype=torch.long, device=device),
        )

    def _as_state(self, state: Any, batch: int) -> tuple[Tensor, ...]:
        want = [(batch, self.cfg.n_fft), (batch, self.cfg.bins), (batch, self.cfg.bins), (batch, self.cfg.grain), (batch,)]
        ok = isinstance(state, (tuple, list)) and len(state) == 5 and all(
            isinstance(s, Tensor) and tuple(s.shape) == w for s, w in zip(state, want)
        )
        if not ok:
            got = [tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__ for s in state] if isinstance(state, (tuple, list)) else type(state).__name__
            raise ModelError(f"pvpitch: state must be 5 tensors of shapes {want} (inputs, phases, tail, position), got {got}")
        return tuple(state)

    def reset_lanes(self, state: Any, mask: Tensor) -> Any:
        if state is None:
            return None
        state = self._as_state(state, state[0].shape[0] if isinstance(state, (tuple, list)) and state else -1)
        mask = self._check_mask(mask, state[0].shape[0], state[0].device)
        return tuple(s.masked_fill(mask.view(-1, *([1] * (s.dim() - 1))), 0) for s in state)

    # --- the effect ----------------------------------------------------------------------
    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        self._check_input(x)
        cfg = self.cfg
        batch, _, length = x.shape
        n, m, hop = cfg.n_fft, cfg.grain, cfg.hop
        inputs, prev_phase, psi, tail, position = (
            self.initial_state(batch, x.device) if state is None else self._as_state(state, batch)
        )
        device = x.device
        full = torch.cat([inputs.to(x.dtype), x[:, 0, :]], dim=1)  # stream times position - N ..
        # frames end at stream time e = position + j, j in [0, T), e % hop == 0 (per lane)
        first = torch.remainder(-position, hop)  # (B,) local j of the first frame end
        frames = max(0, -(-(length - int(first.min())) // hop)) if length else 0
        if frames == 0:
            acc = torch.cat([tail, tail.new_zeros(batch, length)], dim=1)
            return acc[:, None, :length].to(x.dtype), (full[:, -n:], prev_phase, psi, acc[:, length:], position + length)
        ends = first[:, None] + hop * torch.arange(frames, device=device)[None, :]  # (B, F) local j
        valid = ends < length
        ends = torch.where(valid, ends, torch.zeros_like(ends))
        idx = ends[:, :, None] + torch.arange(n, device=device)[None, None, :]  # full index of frame j: [j, j + N)
        seg = torch.gather(full[:, None, :].expand(batch, frames, full.shape[1]), 2, idx)
        spec = torch.fft.rfft(seg * self.window, dim=-1)[..., : cfg.bins]  # (B, F, K)
        mag = spec.abs()
        phase = torch.angle(spec).double()
        prev = torch.cat([prev_phase[:, None, :], phase[:, :-1, :]], dim=1)
        advance = self.bin_omega * hop
        omega_h = advance + _princarg(phase - prev - advance)  # true frequency x hop
        inc = (cfg.ratio * omega_h) * valid[:, :, None]
        phases = torch.remainder(psi[:, None, :] + torch.cumsum(inc, dim=1), 2 * math.pi)
        gain = torch.exp(self.log_gain).to(mag.dtype)
        grains = torch.fft.irfft(torch.polar(mag * gain, phases.to(mag.dtype)), n=m, dim=-1) * self.synth_window
        grains = grains * valid[:, :, None].to(grains.dtype)
        acc = torch.cat([tail.to(grains.dtype), grains.new_zeros(batch, length)], dim=1)
        out_idx = (ends[:, :, None] + torch.arange(m, device=device)[None, None, :]).reshape(batch, -1)
        acc = acc.scatter_add(1, out_idx, grains.reshape(batch, -1))
        # the last valid frame's phases carry on
        count = valid.sum(dim=1)
        last = (count - 1).clamp_min(0)[:, None, None].expand(batch, 1, cfg.bins)
        has = (count > 0)[:, None]
        new_prev = torch.where(has, phase.gather(1, last)[:, 0, :], prev_phase)
        new_psi = torch.where(has, phases.gather(1, last)[:, 0, :], psi)
        new_state = (full[:, -n:].detach(), new_prev.detach(), new_psi.detach(), acc[:, length:], position + length)
        return acc[:, None, :length].to(x.dtype), new_state

    def stream_block(self, x: Tensor, stream_state: Any = None) -> tuple[Tensor, Any]:
        """Streaming is forward itself (receptive field 1); empty blocks pass the state on."""
        return self._stream_recurrent(x, stream_state, self._as_state)

    def stream_module(self, conv_as: str = "matmul") -> StreamingModule:
        """Runs ``stream_block``; state [last inputs, analysis and synthesis phases, overlap-add tail, position]."""
        return ProcessStream(self, (
            "pvpitch: its phase-vocoder stream (per-lane frame offsets, FFT grains placed by scatter) "
            "has no TorchScript/ONNX form in fxdist yet and cannot be scripted"
        )).eval()

    def macs_per_sample(self) -> int:
        """Per frame (every ``hop`` samples): analysis window N, rfft ~2 N log2 N, phase
        update ~4 K, gain K, irfft ~2 M log2 M, synthesis window M, overlap-add M."""
        cfg = self.cfg
        n, m, k = cfg.n_fft, cfg.grain, cfg.bins
        per_frame = n + 2 * n * math.log2(n) + 5 * k + 2 * m * math.log2(m) + 2 * m
        return int(math.ceil(per_frame / cfg.hop))

    # --- direct fit ------------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]], log: Any = print) -> dict[str, float]:
        """Set the output gains and the latency from whole (clean, target) tracks (see ``fit_pvpitch``)."""
        return fit_pvpitch(self, pairs, log=log)


@torch.no_grad()
def fit_pvpitch(model: PVPitchModel, pairs: Sequence[tuple[np.ndarray, np.ndarray]], max_samples: int = 4_000_000,
                align_samples: int = 1_440_000, log: Any = print) -> dict[str, float]:
    """Set ``model.log_gain`` so the output's log magnitude matches the target's, bin by bin,
    then ``model.latency_samples`` to the output's alignment with the target.

    Gains: runs the model with unit gains and no compensation over each clean track (N,) from
    silence, takes STFTs of output and target with the grain's size M (Hann, hop M/4; bin k
    at k sr / M, as the gains), and sets log G_k = mean over frames of
    (log max(|T|, floor) - log max(|P|, floor)) where either is above the floor (the MR-STFT
    distance's 1e-4). Uses at most ``max_samples`` samples in all.

    Latency: with those gains, the shift L in 0, H, 2H .. N + M that minimises the mean
    MR-STFT distance (``fxdist.dsp.mrstft_distance``) between the output moved L samples
    earlier and the target, over at most ``align_samples`` samples of the first tracks; then
    the gains again from the output moved L earlier. Returns a summary for the log.
    """
    from fxdist.dsp import mrstft_distance

    cfg = model.cfg
    model.latency_samples.zero_()
    log_gain, used = _fit_gains(model, pairs, max_samples, shift=0)

    tracks, left = [], align_samples
    for clean, target in pairs:
        take = min(len(clean), left)
        if take > cfg.n_fft + cfg.grain + 4096:  # room for every shift and the largest MR-STFT frame
            tracks.append((_run(model, clean[:take]).numpy(), np.asarray(target[:take], dtype=np.float32)))
            left -= take
        if left <= 0:
            break
    scores: dict[int, float] = {}
    for shift in range(0, cfg.n_fft + cfg.grain + 1, cfg.hop):
        if tracks:
            # (the distance does not use the sample rate)
            scores[shift] = float(np.mean([mrstft_distance(p[shift:], t[: len(t) - shift], sr=0) for p, t in tracks]))
    if scores:
        model.latency_samples.fill_(min(scores, key=scores.get))
        if model.latency:  # the gains again, output and target aligned
            log_gain, used = _fit_gains(model, pairs, max_samples, shift=model.latency)

    db = 20 * log_gain / math.log(10)
    values = {"samples": float(used), "gain_db_median": float(db.median()), "gain_db_min": float(db.min()),
              "gain_db_max": float(db.max()), "latency": float(model.latency)}
    aligned = (f"latency {model.latency} samples (MR-STFT {scores[0]:.3f} unshifted, {scores[model.latency]:.3f} aligned)"
               if scores else "latency 0 (no track long enough to align)")
    log(f"pvpitch fit: {used} samples; output gain per bin {values['gain_db_min']:+.1f} .. {values['gain_db_max']:+.1f} dB "
        f"(median {values['gain_db_median']:+.1f} dB); {aligned}")
    return values


def _fit_gains(model: PVPitchModel, pairs: Sequence[tuple[np.ndarray, np.ndarray]], max_samples: int,
               shift: int) -> tuple[Tensor, int]:
    """Set ``model.log_gain`` from the output moved ``shift`` samples earlier against the
    target (see ``fit_pvpitch``); returns the unclamped log gains and the samples used."""
    cfg = model.cfg
    m, k = cfg.grain, cfg.bins
    model.log_gain.zero_()
    window = torch.hann_window(m, periodic=True, dtype=torch.float64)
    total = torch.zeros(k, dtype=torch.float64)
    count = torch.zeros(k, dtype=torch.float64)
    used = 0
    for clean, target in pairs:
        if used >= max_samples:
            break
        take = min(len(clean), max_samples - used)
        if take <= m + shift:
            continue
        used += take
        pred = _run(model, clean[:take]).double()[shift:]
        tgt = torch.from_numpy(np.ascontiguousarray(target[: take - shift], dtype=np.float64))
        stft = lambda s: torch.stft(s, m, m // 4, window=window, return_complex=True).abs()[:k]  # noqa: E731
        p, t = stft(pred), stft(tgt)
        active = (p > GAIN_FLOOR) | (t > GAIN_FLOOR)
        diff = torch.log(t.clamp_min(GAIN_FLOOR)) - torch.log(p.clamp_min(GAIN_FLOOR))
        total += (diff * active).sum(dim=1)
        count += active.sum(dim=1)
    if used == 0:
        raise ModelError(f"pvpitch fit: no track longer than the grain ({m} samples)")
    log_gain = torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))
    model.log_gain.copy_(log_gain.clamp(math.log(GAIN_FLOOR), -math.log(GAIN_FLOOR)).float())
    return log_gain, used


def _run(model: PVPitchModel, clean: np.ndarray) -> Tensor:
    """The model's streaming output (N,) for a clean track (N,) from silence, uncompensated."""
    x = torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32)).view(1, 1, -1)
    return model(x.to(model.log_gain.device))[0].view(-1).cpu()
