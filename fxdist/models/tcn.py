"""Family ``tcn``: temporal convolutional network with fast-growing dilations.

As in Steinmetz & Reiss' micro-TCN (compressor modelling): residual blocks
[dilated conv -> PReLU/tanh/ReLU] + 1x1 projection of the (cropped) block input, dilation
growing by ``dilation_growth`` per block, no normalisation and no FiLM conditioning, then a
1x1 conv to one channel. Dilations 1, g, g^2, ... reach hundreds of ms with few layers:
kernel 13, growth 10, 4 blocks -> RF 13333 samples (278 ms at 48 kHz).

``checkpoint_activations``: when training (``model.train()`` with grad enabled) each block
runs through ``torch.utils.checkpoint``, keeping only its input for backward and recomputing
the block there (about half the activation bytes for about a third more compute). Outputs
and gradients equal the plain path; inference and streaming never checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Literal, Tuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from fxdist.models.base import EffectModel, check_positive, make_activation, receptive_field_of
from fxdist.models.registry import register
from fxdist.models.streaming import ConvStream, StreamingModule, conv_op, conv_span, silence_histories


@dataclass
class TCNConfig:
    channels: int = 16
    kernel_size: int = 13
    num_layers: int = 4
    dilation_growth: int = 10  # layer i has dilation dilation_growth ** i
    activation: Literal["prelu", "tanh", "relu"] = "prelu"
    input_skip: bool = False  # add the aligned input sample to the output
    checkpoint_activations: bool = False  # training: recompute each block in backward

    def __post_init__(self):
        check_positive(
            "tcn",
            channels=self.channels,
            kernel_size=self.kernel_size,
            num_layers=self.num_layers,
            dilation_growth=self.dilation_growth,
        )

    @property
    def dilations(self) -> list[int]:
        return [self.dilation_growth**i for i in range(self.num_layers)]


class _Block(nn.Module):
    """(B, C_in, T) -> (B, C, T - (k-1)d): act(conv(x)) + proj(x cropped)."""

    def __init__(self, c_in: int, channels: int, kernel_size: int, dilation: int, activation: str):
        super().__init__()
        self.shrink = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(c_in, channels, kernel_size, dilation=dilation)
        self.act = make_activation(activation, channels)
        self.res = nn.Conv1d(c_in, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x)) + self.res(x[..., self.shrink :])


@register
class TCNModel(EffectModel):
    """x (B, 1, T) -> y (B, 1, T - RF + 1); RF = 1 + (k-1) * sum(growth^i)."""

    family = "tcn"
    config_cls = TCNConfig
    stateful = False

    def __init__(self, cfg: TCNConfig):
        super().__init__(cfg)
        c_in = 1
        blocks = []
        for d in cfg.dilations:
            blocks.append(_Block(c_in, cfg.channels, cfg.kernel_size, d, cfg.activation))
            c_in = cfg.channels
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv1d(cfg.channels, 1, 1)
        self._rf = receptive_field_of(cfg.kernel_size, cfg.dilations)

    @property
    def receptive_field(self) -> int:
        return self._rf

    def stream_module(self, conv_as: str = "matmul") -> StreamingModule:
        return _TCNStream(self, conv_as).eval()

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, None]:
        self._check_no_state(state)
        self._check_input(x)
        if self.cfg.checkpoint_activations and self.training and torch.is_grad_enabled():
            h = x
            for block in self.blocks:
                h = checkpoint(block, h, use_reentrant=False)
        else:
            h = self.blocks(x)
        y = self.out(h)
        if self.cfg.input_skip:
            y = y + x[..., self._rf - 1 :]
        return y, None

    def macs_per_sample(self) -> int:
        cfg = self.cfg
        macs, c_in = 0, 1
        for _ in range(cfg.num_layers):
            macs += c_in * cfg.channels * cfg.kernel_size + c_in * cfg.channels
            c_in = cfg.channels
        return macs + cfg.channels


class _TCNBlock(nn.Module):
    def __init__(self, block: _Block, kind: str):
        super().__init__()
        self.conv, self.act, self.res = conv_op(block.conv, kind), block.act, conv_op(block.res, kind)
        self.span = conv_span(block.conv)

    def forward(self, h: Tensor, hist: Tensor) -> Tuple[Tensor, Tensor]:
        buf = torch.cat([hist, h], dim=-1)
        return self.act(self.conv(buf)) + self.res(h), buf[..., buf.shape[-1] - self.span :]


class _TCNStream(ConvStream):
    """tcn: one history (B, C_in, (k - 1) * d) per block's dilated conv."""

    @torch.no_grad()
    def __init__(self, model: TCNModel, kind: str):
        super().__init__()
        self.blocks = nn.ModuleList(_TCNBlock(b, kind) for b in model.blocks)
        self.out = conv_op(model.out, kind)
        self.input_skip = model.cfg.input_skip
        self.silence = silence_histories(model, [b.conv for b in model.blocks])

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        h = x
        new_state: List[Tensor] = []
        for i, block in enumerate(self.blocks):
            h, hist = block(h, state[i])
            new_state.append(hist)
        y = self.out(h)
        if self.input_skip:
            y = y + x
        return y, new_state
