"""Recurrent family ``lstm``: stacked LSTM or GRU, linear head, optional input skip.

The layout (nn.LSTM/nn.GRU with input size 1, then Linear(hidden, 1), y = x + head(h))
is that of AIDA-X / NAM LSTM models, so RTNeural-style exports map weights one to one.
State is a tuple of tensors of shape (num_layers, B, hidden): (h, c) for LSTM, (h,) for GRU
(a bare h tensor is accepted for GRU too).
Truncated BPTT and warm-up belong to the trainer: forward returns the state attached to
the graph; detach it with ``fxdist.models.base.detach_state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from fxdist.errors import ModelError
from fxdist.models.base import EffectModel, check_positive
from fxdist.models.registry import register


@dataclass
class LSTMConfig:
    hidden_size: int = 32
    num_layers: int = 1
    cell: Literal["lstm", "gru"] = "lstm"
    input_skip: bool = True  # y = x + head(h): the net learns the difference to the dry signal

    def __post_init__(self):
        check_positive("lstm", hidden_size=self.hidden_size, num_layers=self.num_layers)


@register
class LSTMModel(EffectModel):
    """x (B, 1, T), state -> y (B, 1, T), new state; receptive_field 1."""

    family = "lstm"
    config_cls = LSTMConfig
    stateful = True

    def __init__(self, cfg: LSTMConfig):
        super().__init__(cfg)
        rnn = nn.LSTM if cfg.cell == "lstm" else nn.GRU
        self.rnn = rnn(1, cfg.hidden_size, num_layers=cfg.num_layers, batch_first=True)
        self.head = nn.Linear(cfg.hidden_size, 1)

    @property
    def receptive_field(self) -> int:
        return 1

    def initial_state(self, batch: int, device: Any = None) -> tuple[Tensor, ...]:
        weight = self.head.weight
        shape = (self.cfg.num_layers, batch, self.cfg.hidden_size)
        n = 2 if self.cfg.cell == "lstm" else 1
        return tuple(torch.zeros(shape, device=device or weight.device, dtype=weight.dtype) for _ in range(n))

    def reset_lanes(self, state: Any, mask: Tensor) -> Any:
        if state is None:
            return None
        state = self._as_tuple(state)
        batch = self._check_state(state)
        mask = self._check_mask(mask, batch, state[0].device)
        return tuple(s.masked_fill(mask.view(1, -1, 1), 0.0) for s in state)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        self._check_input(x)
        batch = x.shape[0]
        state = self.initial_state(batch, x.device) if state is None else self._as_tuple(state)
        self._check_state(state, batch)
        hx = state if self.cfg.cell == "lstm" else state[0]
        out, new = self.rnn(x.transpose(1, 2), hx)
        y = self.head(out).transpose(1, 2)
        if self.cfg.input_skip:
            y = y + x
        return y, (tuple(new) if self.cfg.cell == "lstm" else (new,))

    def process(self, x: Tensor, stream_state: Any = None) -> tuple[Tensor, Any]:
        """Streaming is forward itself (receptive field 1); empty blocks pass the state on."""
        return self._process_recurrent(x, stream_state)

    def macs_per_sample(self) -> int:
        gates = 4 if self.cfg.cell == "lstm" else 3
        hidden = self.cfg.hidden_size
        macs = 0
        for layer in range(self.cfg.num_layers):
            inputs = 1 if layer == 0 else hidden
            macs += gates * hidden * (inputs + hidden)
        return macs + hidden

    def _as_tuple(self, state: Any) -> Any:
        """A bare GRU hidden tensor is accepted as (h,) (e.g. a state restored as one tensor)."""
        return (state,) if self.cfg.cell == "gru" and isinstance(state, Tensor) else state

    def _check_state(self, state: Any, batch: int | None = None) -> int:
        """Check a (h, c) / (h,) state of shape (num_layers, B, hidden); return B."""
        n = 2 if self.cfg.cell == "lstm" else 1
        layers, hidden = self.cfg.num_layers, self.cfg.hidden_size
        if isinstance(state, (tuple, list)) and len(state) == n and all(isinstance(s, Tensor) for s in state):
            lanes = state[0].shape[1] if state[0].dim() == 3 else -1
            if (batch is None or batch == lanes) and all(tuple(s.shape) == (layers, lanes, hidden) for s in state):
                return lanes
        got = (
            [tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__ for s in state]
            if isinstance(state, (tuple, list))
            else type(state).__name__
        )
        want = (layers, "B" if batch is None else batch, hidden)
        raise ModelError(
            f"lstm ({self.cfg.cell}): state must be a tuple of {n} tensor(s) of shape {want}, got {got}"
        )
