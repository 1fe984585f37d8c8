"""Real-time streaming: a block of any length costs what the block costs, not RF + block.

``EffectModel.process`` is exact but naive (it reruns forward over RF - 1 history samples).
Here each family gets a *streaming module*, an ``nn.Module`` built from the model's own
layers with the signature (same for every family, TorchScript- and ONNX-exportable)::

    forward(x: (B, 1, T), state: List[Tensor]) -> (y: (B, 1, T), new_state: List[Tensor])

and ``initial_state(batch) -> List[Tensor]``. T >= 1 (``Streamer`` handles T = 0).

- conv families (``wavenet`` both layouts, ``tcn``, ``fcn``): one history tensor per dilated
  conv, (B, C_in, (k - 1) * d): the last inputs *of that layer*. Convs run as matmuls over
  stacked taps with weights copied at construction: build a new streaming module (or
  Streamer) after changing the model's weights. The initial history is what
  each layer sees during silence (zero input), taken from one offline pass over zeros, so
  streaming equals ``forward`` over the signal preceded by zeros (``process``'s semantics).
- ``lstm``: [h, c] (LSTM) or [h] (GRU), each (num_layers, B, hidden); zeros at start.
- ``cnn``: pooling over a whole window has no cheap streaming form; its streaming module
  keeps the last W - 1 input samples and reruns the window (the naive way, on purpose).
- ``fir``: [history (B, 1, L - 1)], a direct convolution per block (L MACs per sample: fine
  for filters and cabinets; a 1.5 s reverb response belongs in a host's partitioned
  convolution, ``fxdist export --format ir``).
- time-varying gray-box families (``chorus``, ``grainpitch``): [history (B, 1, RF - 1),
  position (B,) int64 samples since the start]; the model's own ``_run`` per block, traced
  (``torch.jit.trace``) inside a scripted wrapper, since it is plain tensor code.

``Streamer`` wraps a streaming module with its state for block-by-block use.
"""

import math
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from fxdist.errors import ModelError
from fxdist.models.base import EffectModel


class StreamingModule(nn.Module):
    """Base of the per-family streaming modules (see the module docstring)."""

    # Whether ``script_module`` can compile it (the naive cnn stream and the numba-run
    # compressor detector cannot); say why in ``unscriptable``.
    unscriptable: str = ""

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        raise NotImplementedError

    @torch.jit.export
    def initial_state(self, batch: int) -> List[Tensor]:
        raise NotImplementedError


# --- conv families ------------------------------------------------------------------


class _ConvStream(StreamingModule):
    """Holds the silence histories (1, C, L) of each dilated conv; initial_state expands them."""

    def __init__(self):
        super().__init__()
        self.silence: List[Tensor] = []

    @torch.jit.export
    def initial_state(self, batch: int) -> List[Tensor]:
        return [s.expand(batch, s.shape[1], s.shape[2]).contiguous() for s in self.silence]


def _span(conv: nn.Conv1d) -> int:
    return (conv.kernel_size[0] - 1) * conv.dilation[0]


@torch.no_grad()
def _silence_histories(model: EffectModel, convs: list[nn.Conv1d]) -> list[Tensor]:
    """Input each conv sees at the end of a long silence: (1, C_in, span) per conv."""
    seen: dict[int, Tensor] = {}

    def hook(module: nn.Module, inputs: tuple) -> None:
        seen[id(module)] = inputs[0][..., inputs[0].shape[-1] - _span(module) :].detach().clone()

    handles = [c.register_forward_pre_hook(hook) for c in convs]
    try:
        longest = max((_span(c) for c in convs), default=0)
        model(torch.zeros(1, 1, model.receptive_field + longest))
    finally:
        for h in handles:
            h.remove()
    return [seen[id(c)] for c in convs]


class _MatMul(nn.Module):
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


class _Conv(nn.Module):
    """The same op as _MatMul through F.conv1d (ONNX Runtime's Conv kernel beats MatMul here)."""

    def __init__(self, weight: Tensor, bias: Tensor | None, dilation: int = 1):
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", bias.detach().clone() if bias is not None else torch.zeros(weight.shape[0]))
        self.dilation = dilation

    def forward(self, buf: Tensor) -> Tensor:
        return torch.nn.functional.conv1d(buf, self.weight, self.bias, dilation=self.dilation)


_OPS = {"matmul": _MatMul, "conv": _Conv}


def _op(conv: nn.Module | None, kind: str, weight: Tensor | None = None, bias: Tensor | None = None) -> nn.Module:
    """``conv`` (or weight, bias) as a _MatMul / _Conv of ``kind``; None or Identity -> Identity."""
    if weight is not None:
        return _OPS[kind](weight, bias)
    if conv is None or isinstance(conv, nn.Identity):
        return nn.Identity()
    return _OPS[kind](conv.weight, conv.bias, conv.dilation[0])


class _GatedLayer(nn.Module):
    """One dilated layer of either WaveNet layout, with its (k-1)*d input history carried:
    (h, hist, mix) -> (next h, z (B, C, T), new hist). ``mix`` is added before the gate (nam)."""

    def __init__(self, layer: nn.Module, pre: nn.Module | None, kind: str):
        super().__init__()
        self.pre = _op(pre, kind)
        self.conv = _op(layer.conv, kind)
        self.gated = layer.gated
        self.act = layer.act if layer.act is not None else nn.Identity()
        self.has_res = layer.res is not None
        self.res = _op(layer.res, kind)
        self.span = _span(layer.conv)

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


class _WaveNetLayer(_GatedLayer):
    """fxdist layout layer: (h, hist) -> (next h, z (B, C, T), new hist); skips are summed later."""

    def forward(self, h: Tensor, hist: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        return self._step(h, hist, None)


class _WaveNetStream(_ConvStream):
    """fxdist layout; the per-layer skip 1x1s run as one 1x1 over all layers' z (same MACs)."""

    @torch.no_grad()
    def __init__(self, model: EffectModel, kind: str):
        super().__init__()
        cfg = model.cfg
        self.input = _op(model.input, kind)
        starts = set(model._stack_starts[:-1])
        stack_of = [s for s, stack in enumerate(cfg.stacks) for _ in stack.dilations]
        self.layers = nn.ModuleList(
            _WaveNetLayer(layer, model.rechannel[stack_of[i]] if i in starts else None, kind)
            for i, layer in enumerate(model.layers)
        )
        skips = [layer.skip for layer in model.layers]
        self.skip = _op(None, kind, torch.cat([c.weight for c in skips], dim=1), sum(c.bias for c in skips))
        head = list(model.head)  # ReLU, 1x1 (, ReLU, 1x1)
        self.head = nn.Sequential(*[_op(m, kind) if isinstance(m, nn.Conv1d) else m for m in head])
        self.input_skip = cfg.input_skip
        self.mol = cfg.output == "mol"
        self.k = cfg.mol_components
        self.top = 1.0 - 2.0 ** (1 - cfg.mol_bits)
        self.silence = _silence_histories(model, [layer.conv for layer in model.layers])

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


class _NamLayer(_GatedLayer):
    """nam layout layer: (h, mix, head, hist) -> (next h, head sum, new hist). ``mix`` is this
    layer's input-mixer output (all mixers run as one 1x1 on the raw input before the loop);
    ``post`` is the stack's head 1x1 on a stack's last layer (identity elsewhere)."""

    def __init__(self, layer: nn.Module, pre: nn.Module | None, post: nn.Module | None, is_first: bool, kind: str):
        super().__init__(layer, pre, kind)
        self.post = _op(post, kind)
        self.is_first = is_first

    def forward(self, h: Tensor, mix: Tensor, head: Tensor, hist: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        h, z, hist = self._step(h, hist, mix)
        head = self.post(z if self.is_first else head + z)
        return h, head, hist


class _NamWaveNetStream(_ConvStream):
    @torch.no_grad()
    def __init__(self, model: EffectModel, kind: str):
        super().__init__()
        starts = model._stack_starts
        layers = []
        for i, layer in enumerate(model.layers):
            pre = model.rechannel[starts.index(i)] if i in starts[:-1] else None
            post = model.head_rechannel[starts.index(i + 1) - 1] if i + 1 in starts[1:] else None
            layers.append(_NamLayer(layer, pre, post, i == 0, kind))
        self.layers = nn.ModuleList(layers)
        self.mixer = _op(None, kind, torch.cat([layer.mixer.weight for layer in model.layers], dim=0))
        self.offsets = [0]
        for layer in model.layers:
            self.offsets.append(self.offsets[-1] + layer.mixer.out_channels)
        self.head_scale = float(model.cfg.head_scale)
        self.silence = _silence_histories(model, [layer.conv for layer in model.layers])

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        mix = self.mixer(x)
        h, head = x, x
        new_state: List[Tensor] = []
        for i, layer in enumerate(self.layers):
            h, head, hist = layer(h, mix[:, self.offsets[i] : self.offsets[i + 1]], head, state[i])
            new_state.append(hist)
        return self.head_scale * head, new_state


class _TCNBlock(nn.Module):
    def __init__(self, block: nn.Module, kind: str):
        super().__init__()
        self.conv, self.act, self.res = _op(block.conv, kind), block.act, _op(block.res, kind)
        self.span = _span(block.conv)

    def forward(self, h: Tensor, hist: Tensor) -> Tuple[Tensor, Tensor]:
        buf = torch.cat([hist, h], dim=-1)
        return self.act(self.conv(buf)) + self.res(h), buf[..., buf.shape[-1] - self.span :]


class _TCNStream(_ConvStream):
    @torch.no_grad()
    def __init__(self, model: EffectModel, kind: str):
        super().__init__()
        self.blocks = nn.ModuleList(_TCNBlock(b, kind) for b in model.blocks)
        self.out = _op(model.out, kind)
        self.input_skip = model.cfg.input_skip
        self.silence = _silence_histories(model, [b.conv for b in model.blocks])

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


class _FCNLayer(nn.Module):
    def __init__(self, conv: nn.Conv1d, act: nn.Module, kind: str):
        super().__init__()
        self.conv, self.act = _op(conv, kind), act
        self.span = _span(conv)

    def forward(self, h: Tensor, hist: Tensor) -> Tuple[Tensor, Tensor]:
        buf = torch.cat([hist, h], dim=-1)
        return self.act(self.conv(buf)), buf[..., buf.shape[-1] - self.span :]


class _FCNStream(_ConvStream):
    @torch.no_grad()
    def __init__(self, model: EffectModel, kind: str):
        super().__init__()
        body = list(model.body)
        self.layers = nn.ModuleList(_FCNLayer(body[i], body[i + 1], kind) for i in range(0, len(body), 2))
        self.out = _op(model.out, kind)
        self.input_skip = model.cfg.input_skip
        self.silence = _silence_histories(model, [body[i] for i in range(0, len(body), 2)])

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


# --- recurrent ------------------------------------------------------------------------


class _LSTMStream(StreamingModule):
    def __init__(self, model: EffectModel):
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
    def __init__(self, model: EffectModel):
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


# --- gray-box families -----------------------------------------------------------------


class _FIRStream(StreamingModule):
    """fir: keeps the last L - 1 inputs; one direct convolution per block (exact, L MACs per sample)."""

    def __init__(self, model: EffectModel):
        super().__init__()
        self.weight = nn.Parameter(model.taps.detach().flip(0).view(1, 1, -1).clone(), requires_grad=False)
        self.hist = model.receptive_field - 1

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        full = torch.cat([state[0], x], dim=-1)
        y = torch.nn.functional.conv1d(full, self.weight)
        return y, [full[:, :, full.shape[-1] - self.hist :]]

    @torch.jit.export
    def initial_state(self, batch: int) -> List[Tensor]:
        return [torch.zeros(batch, 1, self.hist)]


class _WHStream(StreamingModule):
    """wh: state [input history (B, 1, P - 1), drive-output history (B, 1, Q - 1)]; two direct
    convolutions per block around the static tanh (exact, P + Q MACs per sample)."""

    def __init__(self, model: EffectModel):
        super().__init__()
        self.pre = nn.Parameter(model.pre.detach().flip(0).view(1, 1, -1).clone(), requires_grad=False)
        self.post = nn.Parameter(model.post.detach().flip(0).view(1, 1, -1).clone(), requires_grad=False)
        self.gain = float(model.log_gain.detach().exp())
        self.bias = float(model.bias.detach())
        self.pre_hist, self.post_hist = model.cfg.pre_length - 1, model.cfg.post_length - 1

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        full = torch.cat([state[0], x], dim=-1)
        v = torch.tanh(self.gain * torch.nn.functional.conv1d(full, self.pre) + self.bias)
        vfull = torch.cat([state[1], v], dim=-1)
        y = torch.nn.functional.conv1d(vfull, self.post)
        return y, [full[:, :, full.shape[-1] - self.pre_hist :], vfull[:, :, vfull.shape[-1] - self.post_hist :]]

    @torch.jit.export
    def initial_state(self, batch: int) -> List[Tensor]:
        # the drive's output for silent input is tanh(bias), not 0
        return [torch.zeros(batch, 1, self.pre_hist), torch.full((batch, 1, self.post_hist), math.tanh(self.bias))]


class _TimeVaryingCore(nn.Module):
    """(input with history (B, 1, T + RF - 1), position (B,) int64) -> (B, 1, T): the model's _run."""

    def __init__(self, model: EffectModel):
        super().__init__()
        self.model = model

    def forward(self, full: Tensor, position: Tensor) -> Tensor:
        return self.model._run(full, position)


class _TimeVaryingStream(StreamingModule):
    """chorus, grainpitch: state [history (B, 1, RF - 1), position (B,) int64]. ``script_module``
    traces the core (its length and position stay dynamic: checked on export by irregular blocks)."""

    def __init__(self, model: EffectModel):
        super().__init__()
        self.core = _TimeVaryingCore(model)
        self.hist = model.receptive_field - 1

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        full = torch.cat([state[0], x], dim=-1)
        y = self.core(full, state[1])
        return y, [full[:, :, full.shape[-1] - self.hist :], state[1] + x.shape[-1]]

    @torch.jit.export
    def initial_state(self, batch: int) -> List[Tensor]:
        return [torch.zeros(batch, 1, self.hist), torch.zeros(batch, dtype=torch.long)]

    def traced(self) -> "_TimeVaryingStream":
        """This module with its core replaced by a TorchScript trace (so the whole can be scripted)."""
        import warnings

        full = torch.zeros(1, 1, self.hist + 16)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            self.core = torch.jit.trace(self.core, (full, torch.zeros(1, dtype=torch.long)), check_trace=False)
        return self


# --- naive (cnn) ----------------------------------------------------------------------


class _NaiveStream(StreamingModule):
    """Keeps the last RF - 1 input samples and reruns ``forward`` (cost grows with RF). Not scriptable."""

    unscriptable = "cnn: its streaming module reruns a pooling window per sample through forward and cannot be scripted"

    def __init__(self, model: EffectModel):
        super().__init__()
        self.model = model
        self.hist = model.receptive_field - 1

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        full = torch.cat([state[0], x], dim=-1)
        y, _ = self.model(full)
        return y, [full[..., full.shape[-1] - self.hist :]]

    def initial_state(self, batch: int) -> List[Tensor]:
        return [torch.zeros(batch, 1, self.hist)]


# Families streamed by the model's own ``process`` (their state holds all history), with why
# that stream has no TorchScript/ONNX form.
_PROCESS_STREAMED = {
    "compressor": "compressor: its level detector is a per-sample recursion run by numba and cannot be scripted",
    "pvpitch": ("pvpitch: its phase-vocoder stream (per-lane frame offsets, FFT grains placed by scatter) "
                "has no TorchScript/ONNX form in fxdist yet and cannot be scripted"),
}


def _state_list(state) -> List[Tensor]:
    return list(state) if isinstance(state, (tuple, list)) else [state]


class _ProcessStream(StreamingModule):
    """compressor (state [detector level (B, 1) float64]) and pvpitch (state [last inputs,
    analysis and synthesis phases, overlap-add tail, position]): runs ``model.process``."""

    def __init__(self, model: EffectModel):
        super().__init__()
        self.model = model
        self.unscriptable = _PROCESS_STREAMED[model.family]

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        y, new = self.model.process(x, tuple(state))
        return y, _state_list(new)

    def initial_state(self, batch: int) -> List[Tensor]:
        return _state_list(self.model.initial_state(batch))


def stream_module(model: EffectModel, conv_as: str = "matmul") -> StreamingModule:
    """The streaming module of ``model`` (eval mode). Conv families copy the weights; ``conv_as``
    'matmul' (fastest in PyTorch) or 'conv' (F.conv1d: fastest once exported to ONNX Runtime)."""
    if conv_as not in _OPS:
        raise ModelError(f"conv_as must be one of {', '.join(_OPS)}, got {conv_as!r}")
    family = model.family
    if family == "wavenet":
        module = _NamWaveNetStream(model, conv_as) if model.cfg.layout == "nam" else _WaveNetStream(model, conv_as)
    elif family == "tcn":
        module = _TCNStream(model, conv_as)
    elif family == "fcn":
        module = _FCNStream(model, conv_as)
    elif family == "lstm":
        module = _LSTMStream(model) if model.cfg.cell == "lstm" else _GRUStream(model)
    elif family == "cnn":
        module = _NaiveStream(model)
    elif family == "fir":
        module = _FIRStream(model)
    elif family in _PROCESS_STREAMED:
        module = _ProcessStream(model)
    elif family == "wh":
        module = _WHStream(model)
    elif model.time_varying:
        module = _TimeVaryingStream(model)
    else:
        raise ModelError(
            f"no streaming module for model family {family!r}; known: cnn, compressor, fcn, lstm, pvpitch, tcn, "
            "wavenet, fir, wh, and the time-varying families (chorus, grainpitch)"
        )
    return module.eval()


class Streamer:
    """Block-by-block processing with cached state: ``y = streamer(x)`` for x (B, 1, T), any T >= 0.

    The output equals ``model.forward`` over the whole signal preceded by silence (conv
    models) or from a zero state (recurrent), so it trails offline rendering by ``latency``
    samples (``EffectModel.latency``; a host would report it). ``scripted=True`` runs a
    TorchScript compile of the streaming module (less Python overhead per block; not for ``cnn``).
    """

    def __init__(self, model: EffectModel, batch: int = 1, scripted: bool = False):
        if batch < 1:
            raise ModelError(f"streamer batch must be >= 1, got {batch}")
        self.family = model.family
        self.latency = model.latency
        self.batch = batch
        module = stream_module(model)
        if scripted:
            if module.unscriptable:
                raise ModelError(module.unscriptable)
            module = script_module(module)
        self.module = module
        self.reset()

    def reset(self) -> None:
        """Back to silence (conv) / zero state (recurrent)."""
        self.state = [s.clone() for s in self.module.initial_state(self.batch)]

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[1] != 1 or x.shape[0] != self.batch:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ModelError(f"{self.family} streamer: expected a block of shape ({self.batch}, 1, T), got {got}")
        if x.shape[-1] == 0:
            return x.new_zeros(self.batch, 1, 0)
        y, self.state = self.module(x.to(torch.float32), self.state)
        return y

    process = __call__


def script_module(module: StreamingModule) -> torch.jit.ScriptModule:
    """TorchScript-compile a streaming module (the deprecation warning of torch.jit is silenced)."""
    import warnings

    if isinstance(module, _TimeVaryingStream):
        module = module.traced()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(module)


def stream_array(model: EffectModel, audio: np.ndarray, block_size: int = 256, scripted: bool = False) -> np.ndarray:
    """Process (C, N) float32 audio through a Streamer in blocks; channels are lanes -> (C, N)."""
    if block_size <= 0:
        raise ModelError(f"block_size must be > 0, got {block_size}")
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[:, None, :]
    streamer = Streamer(model, batch=x.shape[0], scripted=scripted)
    parts = [streamer(x[..., i : i + block_size]) for i in range(0, x.shape[-1], block_size)]
    if not parts:
        return np.zeros_like(audio, dtype=np.float32)
    return torch.cat(parts, dim=-1)[:, 0, :].numpy()
