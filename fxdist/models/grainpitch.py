"""Family ``grainpitch``: gray-box delay-line pitch shifter (two crossfaded read heads).

The classic time-domain pitch shifter: a read head moves through a delay line at
``ratio`` = 2^(semitones / 12) times the write speed, so its delay grows (ratio < 1) or
shrinks (ratio > 1) by |1 - ratio| samples per sample and jumps back by ``grain`` samples
when it runs out of range. ``heads`` heads spaced evenly over the grain are crossfaded with
sin^2 windows that sum to 1 and vanish at each head's jump. Per output sample n:

    phase_h(n) = frac((1 - ratio) n / grain + h / heads)
    delay_h(n) = 1 + phase_h(n) * grain                        (linear interpolation)
    shifted(n) = sum_h w_h(n) x(n - delay_h(n)),   w_h = sin^2(pi phase_h) * 2 / heads
    y = post_fir(shifted) + dry * x

Learned: the ``post_taps``-tap FIR on the shifted signal (tone, level; identity at start) and
the dry gain (0 at start). The shift itself (``semitones``) is a gray-box prior: the effect's
setting, not learned. The output does not follow the target's waveform (a phase vocoder's
phases differ from a read head's), so train it with a spectral loss (``LossConfig.mrstft``)
and judge it by MR-STFT distance.

Time-varying: n counts output samples from the start of the stream (see
``fxdist.models.timevarying``: ``forward`` puts output 0 at n = 0, ``stream_block`` carries n). Receptive field grain + 1 + post_taps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fxdist.models.base import check_positive
from fxdist.models.registry import register
from fxdist.models.timevarying import TimeVaryingModel


@dataclass
class GrainPitchConfig:
    semitones: float = -12.0  # the shift (2^(semitones/12) = read speed); -12: octave down
    grain: int = 2048  # samples a head sweeps before it jumps back (2048: 43 ms at 48 kHz)
    heads: int = 2
    post_taps: int = 64  # learnable FIR on the shifted signal

    def __post_init__(self):
        check_positive("grainpitch", grain=self.grain, post_taps=self.post_taps)
        if self.heads < 2:
            raise ValueError(f"grainpitch: heads must be >= 2 (crossfade), got {self.heads}")
        if not -36.0 <= self.semitones <= 36.0 or self.semitones == 0:
            raise ValueError(f"grainpitch: semitones must be nonzero and within +-36, got {self.semitones}")

    @property
    def ratio(self) -> float:
        return 2.0 ** (self.semitones / 12.0)


@register
class GrainPitchModel(TimeVaryingModel):
    """x (B, 1, T) -> y (B, 1, T - RF + 1); RF = grain + 1 + post_taps. Stream state:
    (history (B, 1, RF - 1), position (B,) int64 output samples produced so far)."""

    family = "grainpitch"
    config_cls = GrainPitchConfig
    stateful = False
    spectral_output = True

    def __init__(self, cfg: GrainPitchConfig):
        super().__init__(cfg)
        taps = torch.zeros(cfg.post_taps)
        taps[0] = 1.0
        self.post = nn.Parameter(taps)
        self.dry = nn.Parameter(torch.zeros(()))
        self._span = cfg.grain + 1  # longest delay a head reads (interpolation included)

    @property
    def receptive_field(self) -> int:
        return self._span + self.cfg.post_taps

    def _run(self, x: Tensor, start: Tensor) -> Tensor:
        """x (B, 1, T) with T >= RF, start (B,) stream time of output 0 -> (B, 1, T - RF + 1)."""
        cfg = self.cfg
        batch, _, length = x.shape
        n_out = length - self.receptive_field + 1
        n_shift = n_out + cfg.post_taps - 1  # shifted samples the post FIR needs
        # stream time of each shifted sample (the first post_taps - 1 precede output 0)
        t = start[:, None] + torch.arange(n_shift, device=x.device)[None, :] - (cfg.post_taps - 1)
        pos = torch.arange(n_shift, device=x.device)[None, :] + self._span  # its index in x
        out = x.new_zeros(batch, n_shift)
        flat = x[:, 0, :]
        slope = (1.0 - cfg.ratio) / cfg.grain
        for h in range(cfg.heads):
            cycles = t.double() * slope + h / cfg.heads
            phase = (cycles - torch.floor(cycles)).to(x.dtype)
            delay = 1.0 + phase * cfg.grain
            whole = torch.floor(delay)
            frac = delay - whole
            idx = pos - whole.long()
            a = torch.gather(flat, 1, idx)
            b = torch.gather(flat, 1, idx - 1)
            weight = torch.sin(math.pi * phase) ** 2 * (2.0 / cfg.heads)
            out = out + weight * (a + frac * (b - a))
        wet = F.conv1d(out[:, None, :], self.post.flip(0).view(1, 1, -1))
        return wet + self.dry * x[..., length - n_out :]

    def macs_per_sample(self) -> int:
        """Post FIR taps, two interpolation MACs and a window per head, the dry gain."""
        return self.cfg.post_taps + 3 * self.cfg.heads + 1
