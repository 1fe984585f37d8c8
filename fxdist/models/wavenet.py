"""Family ``wavenet``: non-autoregressive WaveNet (as in Neural Amp Modeler), causal and valid.

input 1x1 conv -> stacks of layers [dilated conv -> tanh*sigmoid gate (or one activation)
-> residual 1x1 back into the stream, skip 1x1 into a shared skip sum] -> head
(ReLU, 1x1, ReLU, 1x1) -> output. Stacks may differ in width (NAM's 16/8 "standard");
a 1x1 conv re-channels between them. Output ``regression``: one float32 channel, nothing
quantised. Output ``mol``: 3K mixture-of-logistics parameters (``forward_params``) over
2^mol_bits levels; ``forward`` then returns the mixture mean. See ``fxdist.models.mol``.

``layout: nam`` builds Neural Amp Modeler's WaveNet exactly (so ``fxdist export --format nam``
can write it; preset ``fxdist/presets/model/wavenet-nam.yaml`` is NAM's "standard"). Per stack ("layer
array"): a bias-free 1x1 re-channel of the stream (the raw input for the first stack), then
layers z = act(dilated conv(h) + bias-free 1x1 of the raw input) -- act is tanh/relu, or
tanh(a) * sigmoid(b) when gated -- with h + 1x1(z) as the next stream and z itself added to
the head sum. A stack ends with a 1x1 of its head sum (bias only on the last stack) whose
width is the next stack's channels (1 for the last), and the next stack adds its layers' z
to that. Output = head_scale * the last stack's head 1x1. There is no skip 1x1, ReLU head,
input skip or MoL head in this layout: skip_channels, head_channels, mol_* are unused.

``checkpoint_activations``: when training (``model.train()`` with grad enabled) each layer
runs through ``torch.utils.checkpoint``, keeping only its input stream for backward (not its
gate or activation outputs) and recomputing the layer there: fewer activation bytes per
sample (about half for ungated layers, a quarter for gated ones) for about a third more
compute. Outputs and gradients equal the plain path; inference and streaming never checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from fxdist.models.base import EffectModel, check_positive, flat_weights, make_activation, receptive_field_of
from fxdist.models.mol import mol_mean, mol_nll
from fxdist.models.registry import register
from fxdist.models.streaming import StreamingModule
from fxdist.models.wavenet_stream import NamWaveNetStream, WaveNetStream


def _octave_dilations() -> list[int]:
    return [2**i for i in range(10)]


@dataclass
class WaveNetStack:
    channels: int = 16
    kernel_size: int = 3
    dilations: list[int] = field(default_factory=_octave_dilations)

    def __post_init__(self):
        check_positive("wavenet stack", channels=self.channels, kernel_size=self.kernel_size)
        if not self.dilations:
            raise ValueError("wavenet stack: dilations must not be empty")
        for i, d in enumerate(self.dilations):
            check_positive("wavenet stack", **{f"dilations[{i}]": d})


@dataclass
class WaveNetConfig:
    stacks: list[WaveNetStack] = field(default_factory=lambda: [WaveNetStack()])
    skip_channels: int = 16
    head_channels: int = 16  # hidden width of the head; 0: one 1x1 conv after the ReLU
    gated: bool = True  # tanh(a) * sigmoid(b); False: `activation` alone
    activation: Literal["tanh", "relu"] = "tanh"  # used when gated is False
    output: Literal["regression", "mol"] = "regression"
    mol_components: int = 10  # K
    mol_bits: int = 24
    input_skip: bool = False  # add the aligned input sample to the output (to the means for mol)
    layout: Literal["fxdist", "nam"] = "fxdist"  # "nam": Neural Amp Modeler's WaveNet (module docstring)
    head_scale: float = 0.02  # layout nam only: output = head_scale * last stack's head 1x1 (NAM's value)
    checkpoint_activations: bool = False  # training: recompute each layer in backward (module docstring)

    def __post_init__(self):
        if self.layout == "nam" and (self.output != "regression" or self.input_skip):
            raise ValueError(
                f"wavenet: layout 'nam' needs output 'regression' and input_skip false (NAM's WaveNet has "
                f"neither a mixture head nor an input skip), got output {self.output!r}, input_skip {self.input_skip}"
            )
        if not self.stacks:
            raise ValueError("wavenet: stacks must not be empty")
        for stack in self.stacks:
            if not isinstance(stack, WaveNetStack):
                raise TypeError(f"wavenet: stacks must hold WaveNetStack, got {type(stack).__name__}")
        check_positive("wavenet", skip_channels=self.skip_channels, mol_components=self.mol_components)
        if self.head_channels < 0:
            raise ValueError(f"wavenet: head_channels must be >= 0, got {self.head_channels}")
        if not 1 <= self.mol_bits <= 32:
            raise ValueError(f"wavenet: mol_bits must be in 1..32, got {self.mol_bits}")


class _Layer(nn.Module):
    """One dilated layer: (B, C, T) -> residual stream (B, C, T - shrink) or None, skip (B, S, n_out)."""

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        dilation: int,
        skip_channels: int,
        gated: bool,
        activation: str,
        has_residual: bool,
    ):
        super().__init__()
        self.gated = gated
        self.shrink = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(channels, 2 * channels if gated else channels, kernel_size, dilation=dilation)
        self.act = None if gated else make_activation(activation, channels)
        self.skip = nn.Conv1d(channels, skip_channels, 1)
        # The very last layer's residual output would be unused (and break DDP), so it has none.
        self.res = nn.Conv1d(channels, channels, 1) if has_residual else None

    def forward(self, x: Tensor, n_out: int) -> tuple[Tensor | None, Tensor]:
        h = self.conv(x)
        if self.gated:
            a, b = h.chunk(2, dim=1)
            z = torch.tanh(a) * torch.sigmoid(b)
        else:
            z = self.act(h)
        skip = self.skip(z[..., z.shape[-1] - n_out :])
        res = None if self.res is None else x[..., self.shrink :] + self.res(z)
        return res, skip


class _NamLayer(nn.Module):
    """NAM layer: z = act(conv(h) + mixer(x)); returns stream h + res(z) (None if last), head term z."""

    def __init__(
        self, channels: int, kernel_size: int, dilation: int, gated: bool, activation: str, has_residual: bool
    ):
        super().__init__()
        self.gated = gated
        self.shrink = (kernel_size - 1) * dilation
        mid = 2 * channels if gated else channels
        self.conv = nn.Conv1d(channels, mid, kernel_size, dilation=dilation)
        self.mixer = nn.Conv1d(1, mid, 1, bias=False)  # NAM's "input mixer": the raw input as condition
        self.act = None if gated else make_activation(activation, channels)
        self.res = nn.Conv1d(channels, channels, 1) if has_residual else None

    def forward(self, h: Tensor, x: Tensor, n_out: int) -> tuple[Tensor | None, Tensor]:
        """h: (B, C, L) stream, x: (B, 1, >= L - shrink) raw input aligned at the end."""
        a = self.conv(h)
        a = a + self.mixer(x[..., x.shape[-1] - a.shape[-1] :])
        if self.gated:
            u, v = a.chunk(2, dim=1)
            z = torch.tanh(u) * torch.sigmoid(v)
        else:
            z = self.act(a)
        res = None if self.res is None else h[..., self.shrink :] + self.res(z)
        return res, z[..., z.shape[-1] - n_out :]


class MolParams(nn.Module):
    """``forward(x)`` = ``model.forward_params(x)``: lets DistributedDataParallel wrap the MoL head's
    training call (DDP averages gradients only of calls made through its own forward)."""

    def __init__(self, model: "WaveNetModel"):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.forward_params(x)


@register
class WaveNetModel(EffectModel):
    """x (B, 1, T) -> y (B, 1, T - RF + 1); RF = 1 + sum over layers of (k - 1) * d."""

    family = "wavenet"
    config_cls = WaveNetConfig
    stateful = False
    nam_architecture = "WaveNet"

    def __init__(self, cfg: WaveNetConfig):
        super().__init__(cfg)
        self._stack_starts = [0]
        for stack in cfg.stacks:
            self._stack_starts.append(self._stack_starts[-1] + len(stack.dilations))
        self._rf = 1 + sum(receptive_field_of(s.kernel_size, s.dilations) - 1 for s in cfg.stacks)
        if cfg.layout == "nam":
            self._build_nam(cfg)
            return
        first = cfg.stacks[0].channels
        self.input = nn.Conv1d(1, first, 1)
        self.rechannel = nn.ModuleList()
        self.layers = nn.ModuleList()
        prev = first
        n_layers = sum(len(s.dilations) for s in cfg.stacks)
        for stack in cfg.stacks:
            self.rechannel.append(nn.Conv1d(prev, stack.channels, 1) if stack.channels != prev else nn.Identity())
            for d in stack.dilations:
                last = len(self.layers) == n_layers - 1
                self.layers.append(
                    _Layer(
                        stack.channels,
                        stack.kernel_size,
                        d,
                        cfg.skip_channels,
                        cfg.gated,
                        cfg.activation,
                        has_residual=not last,
                    )
                )
            prev = stack.channels
        out = 3 * cfg.mol_components if cfg.output == "mol" else 1
        if cfg.head_channels > 0:
            self.head = nn.Sequential(
                nn.ReLU(),
                nn.Conv1d(cfg.skip_channels, cfg.head_channels, 1),
                nn.ReLU(),
                nn.Conv1d(cfg.head_channels, out, 1),
            )
        else:
            self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(cfg.skip_channels, out, 1))

    def _build_nam(self, cfg: WaveNetConfig) -> None:
        """Modules of NAM's WaveNet: rechannel[s], layers, head_rechannel[s] (see module docstring)."""
        self.rechannel = nn.ModuleList()
        self.layers = nn.ModuleList()
        self.head_rechannel = nn.ModuleList()
        n_layers = self._stack_starts[-1]
        prev = 1
        for s, stack in enumerate(cfg.stacks):
            self.rechannel.append(nn.Conv1d(prev, stack.channels, 1, bias=False))
            for d in stack.dilations:
                last = len(self.layers) == n_layers - 1
                self.layers.append(
                    _NamLayer(stack.channels, stack.kernel_size, d, cfg.gated, cfg.activation, has_residual=not last)
                )
            is_last = s == len(cfg.stacks) - 1
            head_out = 1 if is_last else cfg.stacks[s + 1].channels
            self.head_rechannel.append(nn.Conv1d(stack.channels, head_out, 1, bias=is_last))
            prev = stack.channels

    @property
    def receptive_field(self) -> int:
        return self._rf

    @property
    def stack_starts(self) -> list[int]:
        """Index of each stack's first layer in ``layers``, then the number of layers."""
        return list(self._stack_starts)

    @property
    def output_kind(self) -> str:
        return self.cfg.output

    def forward_params(self, x: Tensor) -> Tensor:
        """Raw head output: (B, 1, T') for regression, (B, 3K, T') MoL parameters for mol."""
        self._check_input(x)
        n_out = x.shape[-1] - self._rf + 1
        if self.cfg.layout == "nam":
            return self._forward_nam(x, n_out)
        run = self._layer_runner()
        h = self.input(x)
        skip_sum = None
        for s, stack_rechannel in enumerate(self.rechannel):
            h = stack_rechannel(h)
            for layer in self.layers[self._stack_starts[s] : self._stack_starts[s + 1]]:
                h, skip = run(layer, h, n_out)
                skip_sum = skip if skip_sum is None else skip_sum + skip
        out = self.head(skip_sum)
        if self.cfg.input_skip:
            aligned = x[..., self._rf - 1 :]
            if self.cfg.output == "mol":
                k = self.cfg.mol_components
                out = torch.cat([out[:, :k], out[:, k : 2 * k] + aligned, out[:, 2 * k :]], dim=1)
            else:
                out = out + aligned
        return out

    def _layer_runner(self):
        """Call a layer directly, or through checkpoint when training with checkpoint_activations."""
        if self.cfg.checkpoint_activations and self.training and torch.is_grad_enabled():
            return lambda layer, *args: checkpoint(layer, *args, use_reentrant=False)
        return lambda layer, *args: layer(*args)

    def _forward_nam(self, x: Tensor, n_out: int) -> Tensor:
        run = self._layer_runner()
        h, head = x, None
        for s, rechannel in enumerate(self.rechannel):
            h = rechannel(h)
            for layer in self.layers[self._stack_starts[s] : self._stack_starts[s + 1]]:
                h, term = run(layer, h, x, n_out)
                head = term if head is None else head + term
            head = self.head_rechannel[s](head)
        return self.cfg.head_scale * head

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, None]:
        """Prediction (B, 1, T'): the regression output, or the mixture mean for mol."""
        self._check_no_state(state)
        out = self.forward_params(x)
        if self.cfg.output == "mol":
            out = mol_mean(out, self.cfg.mol_bits)
        return out, None

    def macs_per_sample(self) -> int:
        cfg = self.cfg
        if cfg.layout == "nam":
            convs = [m for m in self.modules() if isinstance(m, nn.Conv1d)]
            return sum(m.in_channels * m.out_channels * m.kernel_size[0] for m in convs)
        macs = cfg.stacks[0].channels
        for layer in self.layers:
            c_in, c_out, k = layer.conv.in_channels, layer.conv.out_channels, layer.conv.kernel_size[0]
            macs += c_in * c_out * k + c_in * cfg.skip_channels + (c_in * c_in if layer.res is not None else 0)
        for r in self.rechannel:
            if isinstance(r, nn.Conv1d):
                macs += r.in_channels * r.out_channels
        out = 3 * cfg.mol_components if cfg.output == "mol" else 1
        if cfg.head_channels > 0:
            macs += cfg.skip_channels * cfg.head_channels + cfg.head_channels * out
        else:
            macs += cfg.skip_channels * out
        return macs

    def stream_module(self, conv_as: str = "matmul") -> StreamingModule:
        stream = NamWaveNetStream if self.cfg.layout == "nam" else WaveNetStream
        return stream(self, conv_as).eval()

    # --- training ----------------------------------------------------------------------
    def train_module(self) -> nn.Module:
        """The MoL head trains on forward_params, wrapped as a module's forward so that DDP (whose
        gradient averaging hooks only see calls through its own forward) can hold it."""
        return MolParams(self) if self.cfg.output == "mol" else self

    def training_loss(self, module: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]] | None:
        """Mixture-of-logistics head: the discretised NLL of the 24-bit target (nats per sample)."""
        if self.cfg.output != "mol":
            return None
        params = module(x)  # forward_params, through DDP when data-parallel
        nll = mol_nll(params.float(), y, bits=self.cfg.mol_bits)
        return nll, {"nll": float(nll.detach())}

    # --- export ------------------------------------------------------------------------
    def describe(self) -> str:
        return f"wavenet (layout {self.cfg.layout})"

    def export_formats(self) -> dict[str, str | None]:
        out = super().export_formats()
        out["nam"] = None if self.cfg.layout == "nam" else (
            "NAM's WaveNet differs from fxdist's layout (NAM: bias-free input re-channel, an input mixer "
            "per layer, no skip 1x1s, head = head_scale * per-stack head 1x1, no ReLU head/input skip/MoL); "
            "train with layout: nam (preset wavenet-nam)"
        )
        return out

    @classmethod
    def export_variants(cls) -> list[tuple[str, dict[str, Any]]]:
        return [("layout nam", {"layout": "nam"})]

    def _nam_activation(self) -> str:
        return "Tanh" if self.cfg.gated or self.cfg.activation == "tanh" else "ReLU"

    def nam_config(self, nam_version: str) -> dict[str, Any]:
        """NAM's layer arrays, one per stack: 0.5 (legacy keys ``head_size``/``head_bias``/``gated``)
        or 0.7 (neural-amp-modeler >= 0.13's per-layer lists, every optional block off)."""
        cfg = self.cfg
        layers = []
        for s, stack in enumerate(cfg.stacks):
            last = s == len(cfg.stacks) - 1
            head_size = 1 if last else cfg.stacks[s + 1].channels
            common = {
                "input_size": 1 if s == 0 else cfg.stacks[s - 1].channels,
                "condition_size": 1,
            }
            n = len(stack.dilations)
            if nam_version == "0.5":
                layers.append({
                    **common, "head_size": head_size, "channels": stack.channels, "kernel_size": stack.kernel_size,
                    "dilations": list(stack.dilations), "activation": self._nam_activation(), "gated": cfg.gated,
                    "head_bias": last,
                })
            else:
                off = {"active": False, "shift": True, "groups": 1}
                layers.append({
                    **common, "head": {"out_channels": head_size, "kernel_size": 1, "bias": last},
                    "channels": stack.channels, "kernel_sizes": [stack.kernel_size] * n,
                    "dilations": list(stack.dilations), "activation": [{"type": self._nam_activation()}] * n,
                    "bottleneck": stack.channels, "head1x1": {"active": False, "out_channels": 1, "groups": 1},
                    "layer1x1": {"active": True, "groups": 1}, "groups_input": 1, "groups_input_mixin": 1,
                    **{k: dict(off) for k in ("conv_pre_film", "conv_post_film", "input_mixin_pre_film",
                                              "input_mixin_post_film", "activation_pre_film", "activation_post_film",
                                              "layer1x1_post_film", "head1x1_post_film")},
                    "gating_mode": ["gated" if cfg.gated else "none"] * n,
                    "secondary_activation": [{"type": "Sigmoid"} if cfg.gated else None] * n,
                    "slimmable": None,
                })
        return {"layers": layers, "head": None, "head_scale": float(cfg.head_scale)}

    def nam_weights(self) -> list[float]:
        """Per stack: rechannel W; per layer conv W, b, mixer W, 1x1 W, b; head 1x1 W (, b); head_scale."""
        out: list[float] = []
        starts = self._stack_starts
        for s in range(len(self.cfg.stacks)):
            out += flat_weights(self.rechannel[s].weight)
            for layer in self.layers[starts[s] : starts[s + 1]]:
                out += flat_weights(layer.conv.weight, layer.conv.bias, layer.mixer.weight)
                if layer.res is not None:
                    out += flat_weights(layer.res.weight, layer.res.bias)
                else:  # NAM has this 1x1 on the very last layer too; its output is unused there
                    c = layer.conv.in_channels
                    out += [0.0] * (c * c + c)
            head = self.head_rechannel[s]
            out += flat_weights(head.weight) + (flat_weights(head.bias) if head.bias is not None else [])
        return out + [float(self.cfg.head_scale)]
