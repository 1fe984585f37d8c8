"""Convolutional families ``cnn`` (one output per large window) and ``fcn`` (fully convolutional).

``cnn`` follows the 2018 large-window studies: a window of W past samples goes through
[conv -> ReLU -> pool] stages and an MLP head predicting the window's LAST sample. To train
without normalisation it adds the last input sample to the output (``input_skip``; the head's
last layer starts at zero, so an untrained model is the identity) and feeds the head the
``direct_taps`` newest raw samples next to the pooled features, which a memoryless
nonlinearity needs (pooling blurs where in the window a value was).

Cost: forward over T >= W samples unfolds T - W + 1 overlapping windows into a
(B * (T - W + 1), 1, W) batch: memory and MACs grow as W per output sample. Train it on
short segments (T a few hundred samples beyond W); without grad the windows are run in
chunks of ``INFERENCE_CHUNK`` to bound memory.

``checkpoint_activations``: when training (``model.train()`` with grad enabled) the windows
run in chunks of at most ``CHECKPOINT_CHUNK`` through ``torch.utils.checkpoint``: only views
of the input are kept, and backward recomputes one chunk at a time (one more forward per
step). Activation memory is then one chunk's, however many windows a batch holds; without
it, about 1 MB per window at W = 5000 (benchmarks/memory_per_worker.py). Outputs and
gradients equal the plain path; inference and streaming never checkpoint.

``fcn`` is the fully convolutional variant: stacked valid dilated causal convs, no pooling,
1x1 conv to the output; T samples in give T - RF + 1 out, all computed at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, List, Literal, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from fxdist.models.base import EffectModel, check_positive, make_activation, receptive_field_of
from fxdist.models.registry import register
from fxdist.models.streaming import ConvStream, RerunStream, StreamingModule, conv_op, conv_span, silence_histories

INFERENCE_CHUNK = 4096  # windows per pass when no gradient is needed
CHECKPOINT_CHUNK = 64  # windows per recomputed chunk with checkpoint_activations


@dataclass
class CNNConfig:
    window: int = 1024  # W: input samples per output sample (= receptive field)
    channels: list[int] = field(default_factory=lambda: [16, 32, 32])  # one conv+pool stage each
    kernel_size: int = 9
    pool: int = 4
    pool_type: Literal["max", "avg"] = "max"
    hidden: int = 64  # hidden width of the MLP head; 0: linear head
    direct_taps: int = 16  # newest raw samples fed to the head beside the conv features
    input_skip: bool = True  # y = x_last + head(...)
    checkpoint_activations: bool = False  # training: recompute chunks of windows in backward

    def __post_init__(self):
        check_positive("cnn", window=self.window, kernel_size=self.kernel_size, pool=self.pool)
        if not self.channels:
            raise ValueError("cnn: channels must list at least one stage")
        for i, c in enumerate(self.channels):
            check_positive("cnn", **{f"channels[{i}]": c})
        if self.hidden < 0 or self.direct_taps < 0:
            raise ValueError(f"cnn: hidden and direct_taps must be >= 0, got {self.hidden}, {self.direct_taps}")
        if self.direct_taps > self.window:
            raise ValueError(f"cnn: direct_taps {self.direct_taps} exceeds window {self.window}")
        self.stage_lengths()

    def stage_lengths(self) -> list[tuple[int, int]]:
        """(conv output length, pooled length) per stage for one window; ValueError if too short."""
        lengths, n = [], self.window
        for i in range(len(self.channels)):
            if n < self.kernel_size:
                raise ValueError(
                    f"cnn: window {self.window} too short: stage {i} conv gets {n} samples but "
                    f"kernel_size is {self.kernel_size} (use fewer stages, a smaller pool or a longer window)"
                )
            conv = n - self.kernel_size + 1
            n = math.ceil(conv / self.pool)
            lengths.append((conv, n))
        return lengths


@register
class CNNModel(EffectModel):
    """x (B, 1, T) -> y (B, 1, T - W + 1), one window of W samples per output."""

    family = "cnn"
    config_cls = CNNConfig
    stateful = False

    def __init__(self, cfg: CNNConfig):
        super().__init__(cfg)
        self.convs = nn.ModuleList()
        c_in = 1
        for c in cfg.channels:
            conv = nn.Conv1d(c_in, c, cfg.kernel_size)
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            self.convs.append(conv)
            c_in = c
        features = cfg.channels[-1] * cfg.stage_lengths()[-1][1] + cfg.direct_taps
        if cfg.hidden > 0:
            self.hidden = nn.Linear(features, cfg.hidden)
            nn.init.kaiming_normal_(self.hidden.weight, nonlinearity="relu")
            nn.init.zeros_(self.hidden.bias)
            self.out = nn.Linear(cfg.hidden, 1)
        else:
            self.hidden = None
            self.out = nn.Linear(features, 1)
        if cfg.input_skip:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
        self._pool = F.max_pool1d if cfg.pool_type == "max" else F.avg_pool1d

    @property
    def receptive_field(self) -> int:
        return self.cfg.window

    def stream_module(self, conv_as: str = "matmul") -> StreamingModule:
        """Pooling over a whole window has no cheap streaming form: rerun the window (on purpose)."""
        return RerunStream(
            self, "cnn: its streaming module reruns a pooling window per sample through forward and cannot be scripted"
        ).eval()

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, None]:
        self._check_no_state(state)
        self._check_input(x)
        w = self.cfg.window
        batch, _, length = x.shape
        n = length - w + 1
        windows = x.unfold(-1, w, 1)  # (B, 1, n, W) view
        if torch.is_grad_enabled() and self.training and self.cfg.checkpoint_activations:
            y = self._checkpointed(x, n)
        elif torch.is_grad_enabled():
            y = self._per_window(windows.reshape(batch * n, 1, w)).view(batch, n)
        else:
            parts = [
                self._per_window(windows[:, :, i : i + INFERENCE_CHUNK].reshape(-1, 1, w)).view(batch, -1)
                for i in range(0, n, INFERENCE_CHUNK)
            ]
            y = torch.cat(parts, dim=1)
        return y.unsqueeze(1), None

    def _checkpointed(self, x: Tensor, n: int) -> Tensor:
        """(B, 1, T) -> (B, n): chunks of <= CHECKPOINT_CHUNK windows, each recomputed in backward.

        A chunk is a run of one sequence's windows (n >= chunk) or whole sequences (n < chunk),
        so its input is a view of ``x`` and checkpointing keeps no copy of the windows.
        """
        batch, chunk = x.shape[0], CHECKPOINT_CHUNK
        if n >= chunk:
            rows = []
            span = self.cfg.window - 1  # input samples beyond a chunk's first window
            for b in range(batch):
                parts = [
                    checkpoint(self._windows_of, x[b : b + 1, :, i : min(i + chunk, n) + span], use_reentrant=False)
                    for i in range(0, n, chunk)
                ]
                rows.append(torch.cat(parts, dim=1))
            return torch.cat(rows, dim=0)
        group = chunk // n
        parts = [checkpoint(self._windows_of, x[b : b + group], use_reentrant=False) for b in range(0, batch, group)]
        return torch.cat(parts, dim=0)

    def _windows_of(self, x: Tensor) -> Tensor:
        """(b, 1, T) -> (b, T - W + 1): every window's prediction, in one pass."""
        w = self.cfg.window
        windows = x.unfold(-1, w, 1)
        return self._per_window(windows.reshape(-1, 1, w)).view(x.shape[0], -1)

    def _per_window(self, win: Tensor) -> Tensor:
        """(N, 1, W) windows -> (N,) predictions of each window's last sample."""
        p = self.cfg.pool
        h = win
        for conv in self.convs:
            h = torch.relu(conv(h))
            pad = (-h.shape[-1]) % p  # pad the oldest end so the newest samples are never dropped
            if pad:
                h = F.pad(h, (pad, 0))
            h = self._pool(h, p)
        feats = h.flatten(1)
        taps = self.cfg.direct_taps
        if taps:
            feats = torch.cat([feats, win[:, 0, win.shape[-1] - taps :]], dim=1)
        if self.hidden is not None:
            feats = torch.relu(self.hidden(feats))
        y = self.out(feats)[:, 0]
        if self.cfg.input_skip:
            y = y + win[:, 0, -1]
        return y

    def macs_per_sample(self) -> int:
        """Full per-window cost (no reuse between overlapping windows)."""
        cfg = self.cfg
        macs, c_in = 0, 1
        for c, (conv_len, _) in zip(cfg.channels, cfg.stage_lengths()):
            macs += c_in * c * cfg.kernel_size * conv_len
            c_in = c
        features = cfg.channels[-1] * cfg.stage_lengths()[-1][1] + cfg.direct_taps
        if cfg.hidden > 0:
            return macs + features * cfg.hidden + cfg.hidden
        return macs + features


def _octave_dilations() -> list[int]:
    return [2**i for i in range(8)]


@dataclass
class FCNConfig:
    channels: int = 16
    kernel_size: int = 3
    dilations: list[int] = field(default_factory=_octave_dilations)
    activation: Literal["relu", "tanh", "prelu"] = "relu"
    input_skip: bool = True  # y = x_aligned + out(...); the output conv starts at zero

    def __post_init__(self):
        check_positive("fcn", channels=self.channels, kernel_size=self.kernel_size)
        if not self.dilations:
            raise ValueError("fcn: dilations must not be empty")
        for i, d in enumerate(self.dilations):
            check_positive("fcn", **{f"dilations[{i}]": d})


@register
class FCNModel(EffectModel):
    """x (B, 1, T) -> y (B, 1, T - RF + 1); RF = 1 + sum((k - 1) * d)."""

    family = "fcn"
    config_cls = FCNConfig
    stateful = False

    def __init__(self, cfg: FCNConfig):
        super().__init__(cfg)
        layers, c_in = [], 1
        for d in cfg.dilations:
            conv = nn.Conv1d(c_in, cfg.channels, cfg.kernel_size, dilation=d)
            if cfg.activation != "tanh":
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                nn.init.zeros_(conv.bias)
            layers += [conv, make_activation(cfg.activation, cfg.channels)]
            c_in = cfg.channels
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv1d(cfg.channels, 1, 1)
        if cfg.input_skip:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
        self._rf = receptive_field_of(cfg.kernel_size, cfg.dilations)

    @property
    def receptive_field(self) -> int:
        return self._rf

    def stream_module(self, conv_as: str = "matmul") -> StreamingModule:
        return _FCNStream(self, conv_as).eval()

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, None]:
        self._check_no_state(state)
        self._check_input(x)
        y = self.out(self.body(x))
        if self.cfg.input_skip:
            y = y + x[..., self._rf - 1 :]
        return y, None

    def macs_per_sample(self) -> int:
        cfg = self.cfg
        c_in, macs = 1, 0
        for _ in cfg.dilations:
            macs += c_in * cfg.channels * cfg.kernel_size
            c_in = cfg.channels
        return macs + cfg.channels


class _FCNLayer(nn.Module):
    def __init__(self, conv: nn.Conv1d, act: nn.Module, kind: str):
        super().__init__()
        self.conv, self.act = conv_op(conv, kind), act
        self.span = conv_span(conv)

    def forward(self, h: Tensor, hist: Tensor) -> Tuple[Tensor, Tensor]:
        buf = torch.cat([hist, h], dim=-1)
        return self.act(self.conv(buf)), buf[..., buf.shape[-1] - self.span :]


class _FCNStream(ConvStream):
    """fcn: one history (B, C_in, (k - 1) * d) per dilated conv."""

    @torch.no_grad()
    def __init__(self, model: FCNModel, kind: str):
        super().__init__()
        body = list(model.body)
        self.layers = nn.ModuleList(_FCNLayer(body[i], body[i + 1], kind) for i in range(0, len(body), 2))
        self.out = conv_op(model.out, kind)
        self.input_skip = model.cfg.input_skip
        self.silence = silence_histories(model, [body[i] for i in range(0, len(body), 2)])

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        h = x
        new_state: List[Tensor] = []
        for i, layer in enumerate(self.layers):
            h, hist = layer(h, state[i])
            new_state.append(hist)
        y = self.out(h)
        if self.input_skip:
            y = y + x
        return y, new_state
