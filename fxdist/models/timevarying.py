"""Base of time-varying conv models (an LFO, a read head): the output depends on stream time.

Such a model computes ``_run(x, start)``: x (B, 1, T), T >= receptive_field, with ``start``
(B,) int64 the stream time of output 0 -> (B, 1, T - RF + 1). ``forward`` puts output 0 at
time 0 (as after silence, the start of a track); ``stream_block`` carries the stream position in
its state, (history (B, 1, RF - 1), position (B,) int64), so blocks processed in turn equal
one pass over the signal preceded by silence, as for every family.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import torch
from torch import Tensor, nn

from fxdist.errors import ModelError
from fxdist.models.base import EffectModel
from fxdist.models.streaming import StreamingModule, trace_core


class TimeVaryingModel(EffectModel):
    """Stateless conv model whose stream state also counts samples (see module docstring)."""

    stateful = False
    time_varying = True

    def _run(self, x: Tensor, start: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, state: Any = None, start: Tensor | None = None) -> tuple[Tensor, None]:
        """Output 0 at stream time ``start`` (B,) int64, or 0 for every lane (a track's start).
        Training passes each window's track position as ``start`` (a keyword, so DDP forwards it)."""
        self._check_no_state(state)
        if start is None:
            start = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        elif tuple(start.shape) != (x.shape[0],):
            raise ModelError(f"{self.family}: start must have shape ({x.shape[0]},), got {tuple(start.shape)}")
        return self.forward_at(x, start), None

    def forward_at(self, x: Tensor, start: Tensor) -> Tensor:
        """x (B, 1, T), start (B,) int64 stream time of output 0 -> (B, 1, T - RF + 1)."""
        self._check_input(x)
        return self._run(x, start.to(device=x.device, dtype=torch.long))

    def stream_block(self, x: Tensor, stream_state: Any = None) -> tuple[Tensor, Any]:
        """Stream a block (B, 1, T_block) -> (B, 1, T_block), new (history, position)."""
        self._check_shape(x)
        batch, _, length = x.shape
        hist_len = self.receptive_field - 1
        if stream_state is None:
            stream_state = (x.new_zeros(batch, 1, hist_len), torch.zeros(batch, dtype=torch.long, device=x.device))
        hist, position = self._check_stream_state(stream_state, batch)
        if length == 0:
            return x.new_zeros(batch, 1, 0), (hist, position)
        full = torch.cat([hist, x], dim=-1)
        y = self._run(full, position)
        return y, (full[..., full.shape[-1] - hist_len :], position + length)

    def stream_module(self, conv_as: str = "matmul") -> StreamingModule:
        return TimeVaryingStream(self).eval()

    def reset_lanes(self, state: Any, mask: Tensor) -> Any:
        """Zero the history and the position of the masked lanes (out of place)."""
        if state is None:
            return None
        batch = state[0].shape[0] if isinstance(state, tuple) and state and isinstance(state[0], Tensor) else -1
        hist, position = self._check_stream_state(state, batch)
        mask = self._check_mask(mask, hist.shape[0], hist.device)
        return hist.masked_fill(mask.view(-1, 1, 1), 0.0), position.masked_fill(mask, 0)

    def _check_stream_state(self, state: Any, batch: int) -> tuple[Tensor, Tensor]:
        shape = (batch, 1, self.receptive_field - 1)
        ok = (
            isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], Tensor)
            and tuple(state[0].shape) == shape and isinstance(state[1], Tensor) and tuple(state[1].shape) == (batch,)
        )
        if not ok:
            raise ModelError(
                f"{self.family}: stream state must be (history {shape}, position ({batch},)), got {state!r:.200}"
            )
        return state


class _Core(nn.Module):
    """(input with history (B, 1, T + RF - 1), position (B,) int64) -> (B, 1, T): the model's _run."""

    def __init__(self, model: TimeVaryingModel):
        super().__init__()
        self.model = model

    def forward(self, full: Tensor, position: Tensor) -> Tensor:
        return self.model._run(full, position)


class TimeVaryingStream(StreamingModule):
    """State [history (B, 1, RF - 1), position (B,) int64]. Scripting traces the core (its length
    and position stay dynamic: exports check it on irregular blocks)."""

    def __init__(self, model: TimeVaryingModel):
        super().__init__()
        self.core = _Core(model)
        self.hist = model.receptive_field - 1

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        full = torch.cat([state[0], x], dim=-1)
        y = self.core(full, state[1])
        return y, [full[:, :, full.shape[-1] - self.hist :], state[1] + x.shape[-1]]

    @torch.jit.export
    def initial_state(self, batch: int) -> List[Tensor]:
        return [torch.zeros(batch, 1, self.hist), torch.zeros(batch, dtype=torch.long)]

    def scriptable(self) -> "TimeVaryingStream":
        self.core = trace_core(self.core, self.hist)
        return self
