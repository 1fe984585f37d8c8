"""Pieces the families' streaming modules share: the module interface, conv ops, silence histories.

A streaming module is an ``nn.Module`` built from a model's own layers, with one signature for
every family (TorchScript- and ONNX-exportable)::

    forward(x: (B, 1, T), state: List[Tensor]) -> (y: (B, 1, T), new_state: List[Tensor])

and ``initial_state(batch) -> List[Tensor]``; T >= 1 (``fxdist.realtime.Streamer`` handles
T = 0). Each family builds its own in ``EffectModel.stream_module``. Conv families carry one
history tensor per dilated conv, (B, C_in, (k - 1) * d), the last inputs *of that layer*,
starting from what each layer sees during silence, so streaming equals ``forward`` over the
signal preceded by zeros (``EffectModel.stream_block``'s semantics). Weights are copied at
construction: build a new streaming module after changing the model's weights.
"""

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn


class StreamingModule(nn.Module):
    """Base of the per-family streaming modules (see the module docstring)."""

    # Why ``fxdist.realtime.script_module`` cannot compile it ("" when it can).
    unscriptable: str = ""
    # The axis of the batch in each state tensor: 0, or 1 for (layers, B, hidden) RNN states.
    state_batch_axis: int = 0

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        raise NotImplementedError

    @torch.jit.export
    def initial_state(self, batch: int) -> List[Tensor]:
        raise NotImplementedError

    def scriptable(self) -> "StreamingModule":
        """The module ``torch.jit.script`` compiles: itself, or a form with traced parts."""
        return self


def trace_core(core: nn.Module, hist: int) -> torch.jit.ScriptModule:
    """``core(full (B, 1, hist + T), position (B,) int64) -> (B, 1, T)`` traced on a 16-sample block;
    the trace keeps length and position dynamic when the core is plain tensor code."""
    import warnings

    first = next(iter([*core.parameters(), *core.buffers()]), None)
    device = first.device if first is not None else None  # a trace keeps the device its inputs were on
    full = torch.zeros(1, 1, hist + 16, device=device)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.jit.trace(core, (full, torch.zeros(1, dtype=torch.long, device=device)), check_trace=False)


class ConvStream(StreamingModule):
    """Holds the silence histories (1, C, L) of each dilated conv; initial_state expands them."""

    def __init__(self):
        super().__init__()
        self.silence: List[Tensor] = []

    @torch.jit.export
    def initial_state(self, batch: int) -> List[Tensor]:
        return [s.expand(batch, s.shape[1], s.shape[2]).contiguous() for s in self.silence]


def conv_span(conv: nn.Conv1d) -> int:
    """(k - 1) * d: the input history a dilated conv needs."""
    return (conv.kernel_size[0] - 1) * conv.dilation[0]


@torch.no_grad()
def silence_histories(model: nn.Module, convs: list[nn.Conv1d]) -> list[Tensor]:
    """Input each conv sees at the end of a long silence: (1, C_in, span) per conv."""
    seen: dict[int, Tensor] = {}

    def hook(module: nn.Module, inputs: tuple) -> None:
        seen[id(module)] = inputs[0][..., inputs[0].shape[-1] - conv_span(module) :].detach().clone()

    handles = [c.register_forward_pre_hook(hook) for c in convs]
    try:
        longest = max((conv_span(c) for c in convs), default=0)
        model(torch.zeros(1, 1, model.receptive_field + longest))
    finally:
        for h in handles:
            h.remove()
    return [seen[id(c)] for c in convs]


class MatMul(nn.Module):
    """A conv as one batched matmul, weights copied in (C_out, k * C_in) form.

    PyTorch runs small dilated/1x1 convs through its slow im2col path at inference; one
    ``baddbmm`` over the k stacked taps is several times faster for audio-sized blocks."""

    def __init__(self, weight: Tensor, bias: Tensor | None, dilation: int = 1):
        super().__init__()
        c_out, c_in, k = weight.shape
        self.register_buffer("weight", weight.detach().permute(0, 2, 1).reshape(c_out, k * c_in).clone())
        b = bias.detach().clone() if bias is not None else torch.zeros(c_out)
        self.register_buffer("bias", b.view(1, c_out, 1))
        self.k, self.dilation, self.span = k, dilation, (k - 1) * dilation

    def forward(self, buf: Tensor) -> Tensor:
        """(B, C_in, span + T) -> (B, C_out, T)."""
        if self.k == 1:
            taps = buf
        else:
            n = buf.shape[-1] - self.span
            taps = torch.cat([buf[:, :, j * self.dilation : j * self.dilation + n] for j in range(self.k)], dim=1)
        w = self.weight.expand(buf.shape[0], self.weight.shape[0], self.weight.shape[1])
        return torch.baddbmm(self.bias, w, taps)


class Conv(nn.Module):
    """The same op as MatMul through F.conv1d (ONNX Runtime's Conv kernel beats MatMul here)."""

    def __init__(self, weight: Tensor, bias: Tensor | None, dilation: int = 1):
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", bias.detach().clone() if bias is not None else torch.zeros(weight.shape[0]))
        self.dilation = dilation

    def forward(self, buf: Tensor) -> Tensor:
        return torch.nn.functional.conv1d(buf, self.weight, self.bias, dilation=self.dilation)


CONV_OPS = {"matmul": MatMul, "conv": Conv}


def conv_op(conv: nn.Module | None, kind: str, weight: Tensor | None = None, bias: Tensor | None = None) -> nn.Module:
    """``conv`` (or weight, bias) as a MatMul / Conv of ``kind``; None or Identity -> Identity."""
    if weight is not None:
        return CONV_OPS[kind](weight, bias)
    if conv is None or isinstance(conv, nn.Identity):
        return nn.Identity()
    return CONV_OPS[kind](conv.weight, conv.bias, conv.dilation[0])


class GatedLayer(nn.Module):
    """One dilated gated/activated layer with a residual 1x1, its (k-1)*d input history carried:
    (h, hist, mix) -> (next h, z (B, C, T), new hist). ``mix`` is added before the gate.

    ``layer`` has ``conv``, ``gated``, ``act`` (None when gated) and ``res`` (None: no residual)."""

    def __init__(self, layer: nn.Module, pre: nn.Module | None, kind: str):
        super().__init__()
        self.pre = conv_op(pre, kind)
        self.conv = conv_op(layer.conv, kind)
        self.gated = layer.gated
        self.act = layer.act if layer.act is not None else nn.Identity()
        self.has_res = layer.res is not None
        self.res = conv_op(layer.res, kind)
        self.span = conv_span(layer.conv)

    def _step(self, h: Tensor, hist: Tensor, mix: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        h = self.pre(h)
        buf = torch.cat([hist, h], dim=-1)
        a = self.conv(buf)
        if mix is not None:
            a = a + mix
        if self.gated:
            u, v = a.chunk(2, dim=1)
            z = torch.tanh(u) * torch.sigmoid(v)
        else:
            z = self.act(a)
        if self.has_res:
            h = h + self.res(z)
        return h, z, buf[..., buf.shape[-1] - self.span :]


class _ForwardCore(nn.Module):
    """(input with history (B, 1, hist + T), position (unused)) -> forward's output (B, 1, T)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, full: Tensor, position: Tensor) -> Tensor:
        return self.model(full)[0]


class RerunStream(StreamingModule):
    """Keeps the last RF - 1 input samples and reruns the model's ``forward`` over history + block
    (cost grows with RF). Scripted by tracing ``forward``; ``unscriptable`` says why a family's
    forward cannot be traced with a dynamic length."""

    def __init__(self, model: nn.Module, unscriptable: str = ""):
        super().__init__()
        self.core = _ForwardCore(model)
        self.hist = model.receptive_field - 1
        self.unscriptable = unscriptable

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        full = torch.cat([state[0], x], dim=-1)
        y = self.core(full, torch.zeros(1, dtype=torch.long))
        return y, [full[..., full.shape[-1] - self.hist :]]

    @torch.jit.export
    def initial_state(self, batch: int) -> List[Tensor]:
        return [torch.zeros(batch, 1, self.hist)]

    def scriptable(self) -> "RerunStream":
        self.core = trace_core(self.core, self.hist)
        return self


def state_list(state) -> List[Tensor]:
    return list(state) if isinstance(state, (tuple, list)) else [state]


class ProcessStream(StreamingModule):
    """Runs the model's own ``stream_block`` per block (families whose stream state holds all history
    in a form with no TorchScript/ONNX counterpart); ``unscriptable`` says why."""

    def __init__(self, model: nn.Module, unscriptable: str):
        super().__init__()
        self.model = model
        self.unscriptable = unscriptable

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        y, new = self.model.stream_block(x, tuple(state))
        return y, state_list(new)

    def initial_state(self, batch: int) -> List[Tensor]:
        return state_list(self.model.initial_state(batch))
