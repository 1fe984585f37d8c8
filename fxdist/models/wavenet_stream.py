"""Streaming modules of the ``wavenet`` family, one per layout (``fxdist.models.streaming``).

State: one history tensor per dilated layer, (B, C, (k - 1) * d), starting from what that
layer sees during silence. Convs run as ``conv_as`` ops with weights copied at construction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Tuple

import torch
from torch import Tensor, nn

from fxdist.models.streaming import ConvStream, GatedLayer, conv_op, silence_histories

if TYPE_CHECKING:
    from fxdist.models.wavenet import WaveNetModel


class _Layer(GatedLayer):
    """fxdist layout layer: (h, hist) -> (next h, z (B, C, T), new hist); skips are summed later."""

    def forward(self, h: Tensor, hist: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        return self._step(h, hist, None)


class WaveNetStream(ConvStream):
    """fxdist layout; the per-layer skip 1x1s run as one 1x1 over all layers' z (same MACs)."""

    @torch.no_grad()
    def __init__(self, model: WaveNetModel, kind: str):
        super().__init__()
        cfg = model.cfg
        self.input = conv_op(model.input, kind)
        starts = set(model.stack_starts[:-1])
        stack_of = [s for s, stack in enumerate(cfg.stacks) for _ in stack.dilations]
        self.layers = nn.ModuleList(
            _Layer(layer, model.rechannel[stack_of[i]] if i in starts else None, kind)
            for i, layer in enumerate(model.layers)
        )
        skips = [layer.skip for layer in model.layers]
        self.skip = conv_op(None, kind, torch.cat([c.weight for c in skips], dim=1), sum(c.bias for c in skips))
        head = list(model.head)  # ReLU, 1x1 (, ReLU, 1x1)
        self.head = nn.Sequential(*[conv_op(m, kind) if isinstance(m, nn.Conv1d) else m for m in head])
        self.input_skip = cfg.input_skip
        self.mol = cfg.output == "mol"
        self.k = cfg.mol_components
        self.top = 1.0 - 2.0 ** (1 - cfg.mol_bits)
        self.silence = silence_histories(model, [layer.conv for layer in model.layers])

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        h = self.input(x)
        zs: List[Tensor] = []
        new_state: List[Tensor] = []
        for i, layer in enumerate(self.layers):
            h, z, hist = layer(h, state[i])
            zs.append(z)
            new_state.append(hist)
        out = self.head(self.skip(torch.cat(zs, dim=1)))
        if self.mol:
            logits, means = out[:, : self.k], out[:, self.k : 2 * self.k]
            if self.input_skip:
                means = means + x
            y = (torch.softmax(logits, dim=1) * means).sum(dim=1, keepdim=True)
            return y.clamp(-1.0, self.top), new_state
        if self.input_skip:
            out = out + x
        return out, new_state


class _NamLayer(GatedLayer):
    """nam layout layer: (h, mix, head, hist) -> (next h, head sum, new hist). ``mix`` is this
    layer's input-mixer output (all mixers run as one 1x1 on the raw input before the loop);
    ``post`` is the stack's head 1x1 on a stack's last layer (identity elsewhere)."""

    def __init__(self, layer: nn.Module, pre: nn.Module | None, post: nn.Module | None, is_first: bool, kind: str):
        super().__init__(layer, pre, kind)
        self.post = conv_op(post, kind)
        self.is_first = is_first

    def forward(self, h: Tensor, mix: Tensor, head: Tensor, hist: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        h, z, hist = self._step(h, hist, mix)
        head = self.post(z if self.is_first else head + z)
        return h, head, hist


class NamWaveNetStream(ConvStream):
    """nam layout (Neural Amp Modeler's WaveNet)."""

    @torch.no_grad()
    def __init__(self, model: WaveNetModel, kind: str):
        super().__init__()
        starts = model.stack_starts
        layers = []
        for i, layer in enumerate(model.layers):
            pre = model.rechannel[starts.index(i)] if i in starts[:-1] else None
            post = model.head_rechannel[starts.index(i + 1) - 1] if i + 1 in starts[1:] else None
            layers.append(_NamLayer(layer, pre, post, i == 0, kind))
        self.layers = nn.ModuleList(layers)
        self.mixer = conv_op(None, kind, torch.cat([layer.mixer.weight for layer in model.layers], dim=0))
        self.offsets = [0]
        for layer in model.layers:
            self.offsets.append(self.offsets[-1] + layer.mixer.out_channels)
        self.head_scale = float(model.cfg.head_scale)
        self.silence = silence_histories(model, [layer.conv for layer in model.layers])

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        mix = self.mixer(x)
        h, head = x, x
        new_state: List[Tensor] = []
        for i, layer in enumerate(self.layers):
            h, head, hist = layer(h, mix[:, self.offsets[i] : self.offsets[i + 1]], head, state[i])
            new_state.append(hist)
        return self.head_scale * head, new_state
