"""Recurrent family ``lstm``: stacked LSTM or GRU, linear head, optional input skip.

The layout (nn.LSTM/nn.GRU with input size 1, then Linear(hidden, 1), y = x + head(h))
is that of AIDA-X / NAM LSTM models, so RTNeural-style exports map weights one to one
(``rtneural_model``, ``nam_config``/``nam_weights``; NAM's LSTM has no input skip).
State is a tuple of tensors of shape (num_layers, B, hidden): (h, c) for LSTM, (h,) for GRU
(a bare h tensor is accepted for GRU too).
Truncated BPTT and warm-up belong to the trainer: forward returns the state attached to
the graph; detach it with ``fxdist.models.base.detach_state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Literal, Tuple

import torch
from torch import Tensor, nn

from fxdist.errors import ModelError
from fxdist.models.base import EffectModel, check_positive, flat_weights
from fxdist.models.registry import register
from fxdist.models.streaming import StreamingModule

# Hidden sizes AIDA-X's RTNeural build loads (1-layer models only).
AIDAX_HIDDEN_SIZES = (8, 12, 16, 20, 24, 32, 40, 64, 80)


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
    nam_architecture = "LSTM"

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

    def stream_block(self, x: Tensor, stream_state: Any = None) -> tuple[Tensor, Any]:
        """Streaming is forward itself (receptive field 1); empty blocks pass the state on."""
        return self._stream_recurrent(x, stream_state)

    def stream_module(self, conv_as: str = "matmul") -> StreamingModule:
        return (_LSTMStream(self) if self.cfg.cell == "lstm" else _GRUStream(self)).eval()

    # --- export ------------------------------------------------------------------------
    def describe(self) -> str:
        return f"lstm (cell {self.cfg.cell}, input_skip {self.cfg.input_skip})"

    def export_formats(self) -> dict[str, str | None]:
        out = super().export_formats()
        if self.cfg.cell != "lstm":
            out["nam"] = "NAM has no GRU architecture"
        elif self.cfg.input_skip:
            out["nam"] = "NAM's LSTM has no input skip (y = head(h)); train with input_skip: false"
        else:
            out["nam"] = None
        out["rtneural"] = None
        return out

    @classmethod
    def export_variants(cls) -> list[tuple[str, dict[str, Any]]]:
        return [("cell lstm, input_skip false", {"cell": "lstm", "input_skip": False})]

    def export_notes(self, fmt: str) -> list[str]:
        cfg = self.cfg
        if fmt == "rtneural" and (cfg.num_layers != 1 or cfg.hidden_size not in AIDAX_HIDDEN_SIZES):
            return [
                (f"AIDA-X loads only 1-layer LSTM/GRU of hidden size {AIDAX_HIDDEN_SIZES}; this file needs RTNeural's "
                 f"dynamic json_parser (num_layers {cfg.num_layers}, hidden {cfg.hidden_size})")
            ]
        return []

    def nam_config(self, nam_version: str) -> dict[str, Any]:
        return {"input_size": 1, "hidden_size": self.cfg.hidden_size, "num_layers": self.cfg.num_layers}

    def nam_weights(self) -> list[float]:
        """Per layer: [W_ih | W_hh] (4H, in + H) row-major, b_ih + b_hh, initial h, initial c; head W, b."""
        rnn, hidden = self.rnn, self.cfg.hidden_size
        out: list[float] = []
        for layer in range(self.cfg.num_layers):
            w = torch.cat([getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}")], dim=1)
            b = getattr(rnn, f"bias_ih_l{layer}") + getattr(rnn, f"bias_hh_l{layer}")
            out += flat_weights(w, b, torch.zeros(hidden), torch.zeros(hidden))  # fxdist starts from a zero state
        return out + flat_weights(self.head.weight, self.head.bias)

    def rtneural_model(self) -> dict[str, Any]:
        """RTNeural/AIDA-X JSON without metadata: Keras kernel layouts (in, G*H), gates i,f,c,o
        (LSTM) / z,r,h (GRU), then a dense layer; ``in_skip`` 1 for input-skip models."""
        cfg, rnn = self.cfg, self.rnn
        hidden = cfg.hidden_size
        layers = []
        for layer in range(cfg.num_layers):
            w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}").detach(), getattr(rnn, f"weight_hh_l{layer}").detach()
            b_ih, b_hh = getattr(rnn, f"bias_ih_l{layer}").detach(), getattr(rnn, f"bias_hh_l{layer}").detach()
            if cfg.cell == "lstm":  # PyTorch's i, f, g, o is Keras's i, f, c, o; RTNeural adds no second bias
                weights = [w_ih.T.tolist(), w_hh.T.tolist(), (b_ih + b_hh).tolist()]
            else:  # PyTorch r, z, n -> Keras z, r, h; reset_after: input and recurrent biases kept apart
                order = torch.arange(3 * hidden).view(3, hidden)[[1, 0, 2]].reshape(-1)
                weights = [w_ih[order].T.tolist(), w_hh[order].T.tolist(), [b_ih[order].tolist(), b_hh[order].tolist()]]
            layers.append({"type": cfg.cell, "activation": "", "shape": [None, None, hidden], "weights": weights})
        layers.append({
            "type": "dense", "activation": "", "shape": [None, None, 1],
            "weights": [self.head.weight.detach().T.tolist(), self.head.bias.detach().tolist()],
        })
        return {"in_shape": [None, None, 1], "in_skip": 1 if cfg.input_skip else 0, "layers": layers}

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


class _LSTMStream(StreamingModule):
    """lstm cell: state [h, c], each (num_layers, B, hidden); zeros at start."""

    state_batch_axis = 1

    def __init__(self, model: LSTMModel):
        super().__init__()
        self.rnn, self.head = model.rnn, model.head
        self.input_skip = model.cfg.input_skip
        self.num_layers, self.hidden = model.cfg.num_layers, model.cfg.hidden_size

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        out, (h, c) = self.rnn(x.transpose(1, 2), (state[0], state[1]))
        y = self.head(out).transpose(1, 2)
        if self.input_skip:
            y = y + x
        return y, [h, c]

    @torch.jit.export
    def initial_state(self, batch: int) -> List[Tensor]:
        return [torch.zeros(self.num_layers, batch, self.hidden), torch.zeros(self.num_layers, batch, self.hidden)]


class _GRUStream(StreamingModule):
    """gru cell: state [h] (num_layers, B, hidden); zeros at start."""

    state_batch_axis = 1

    def __init__(self, model: LSTMModel):
        super().__init__()
        self.rnn, self.head = model.rnn, model.head
        self.input_skip = model.cfg.input_skip
        self.num_layers, self.hidden = model.cfg.num_layers, model.cfg.hidden_size

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        out, h = self.rnn(x.transpose(1, 2), state[0])
        y = self.head(out).transpose(1, 2)
        if self.input_skip:
            y = y + x
        return y, [h]

    @torch.jit.export
    def initial_state(self, batch: int) -> List[Tensor]:
        return [torch.zeros(self.num_layers, batch, self.hidden)]
