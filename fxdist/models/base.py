"""The interface every model family implements: forward, streaming, training and export hooks.

A family is one module: a config dataclass and an ``EffectModel`` subclass registered with
``fxdist.models.registry.register``. Besides ``forward`` it may override ``stream_module``
(its real-time form, ``fxdist.models.streaming``), ``train_module``/``training_loss`` (a head
with a loss of its own), and ``export_formats``/``describe``/``export_variants`` with the
mappings its formats need (``nam_config``/``nam_weights``, ``rtneural_model``, ``ir_taps``).

Tensors are (B, 1, T) float32, channels-first. Conv models use valid (unpadded) causal
convolutions: ``forward`` on T input samples gives T - receptive_field + 1 outputs, output
``i`` aligned to input ``i + receptive_field - 1`` and depending on inputs ``i .. i+RF-1``.
``stream_block`` streams blocks of any length (>= 0) with exact equality to one whole pass over
the signal preceded by zeros (conv history) or a zero recurrent state.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fxdist.errors import ModelError
from fxdist.models.streaming import RerunStream, StreamingModule


class EffectModel(nn.Module):
    """Base of every family: a mono (B, 1, T) -> (B, 1, T') effect model.

    Subclasses set ``family``, ``config_cls`` and ``stateful``, and implement
    ``receptive_field``, ``forward`` and ``macs_per_sample``. Defaults here are those of a
    stateless conv model (no state; ``stream_block`` keeps the last RF-1 input samples).
    """

    family: ClassVar[str]
    config_cls: ClassVar[type]
    stateful: ClassVar[bool] = False
    # Output depends on stream time (an LFO, a read head): training windows pass their
    # track position to ``forward(x, start=...)`` (fxdist.models.timevarying).
    time_varying: ClassVar[bool] = False
    # The output need not follow the target's waveform (a pitch shifter's phases differ from
    # another's): ``fxdist evaluate`` judges it by MR-STFT distance instead of ESR.
    spectral_output: ClassVar[bool] = False

    def __init__(self, cfg: Any):
        super().__init__()
        if not isinstance(cfg, self.config_cls):
            raise ModelError(f"{type(self).__name__} needs a {self.config_cls.__name__}, got {type(cfg).__name__}")
        self.cfg = cfg

    # --- what each family provides -------------------------------------------------
    @property
    def receptive_field(self) -> int:
        """Input samples needed per output sample (1 for recurrent models)."""
        raise NotImplementedError

    @property
    def latency(self) -> int:
        """Samples by which the output trails the effect it imitates (0 for most families).

        A host compensates a plugin's reported latency when it renders offline (pedalboard
        does so for Rubber Band's), so offline rendering (``fxdist.process.predict``,
        ``fxdist.process.process_array``) runs this many zeros past the end of the input and
        drops as many samples from the start of the output. Streaming (``stream_block``,
        ``fxdist.realtime``) cannot look ahead and keeps the delay.
        """
        return 0

    @property
    def output_kind(self) -> str:
        """'regression' (forward's output is the prediction) or 'mol' (see wavenet)."""
        return "regression"

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """x: (B, 1, T) -> y: (B, 1, T - RF + 1), new state (None for conv models)."""
        raise NotImplementedError

    def macs_per_sample(self) -> int:
        """Multiply-accumulates per output sample (analytic; biases and activations excluded)."""
        raise NotImplementedError

    # Families with a direct fit (least squares, a parameter search) override ``fit``;
    # ``fxdist train`` with ``fit: true`` runs it on the whole training tracks first.
    def fit(self, pairs: Any, log: Any = print) -> dict[str, float]:
        """Set the weights from whole (clean (N,), target (N,)) tracks, each from its start."""
        raise ModelError(f"model family {self.family!r} has no direct fit; train it by gradient descent only")

    @classmethod
    def can_fit(cls) -> bool:
        """Whether the family overrides ``fit``."""
        return cls.fit is not EffectModel.fit

    # --- state ---------------------------------------------------------------------
    def initial_state(self, batch: int, device: Any = None) -> Any:
        """Zero state for ``batch`` lanes; None for conv models."""
        return None

    def reset_lanes(self, state: Any, mask: Tensor) -> Any:
        """Return ``state`` with lanes where ``mask`` (bool, (B,)) zeroed; out of place.

        For conv models ``state`` is None (forward) or the (B, 1, RF-1) stream history of
        ``stream_block``; zeroing it restarts those lanes as if from silence.
        """
        if state is None:
            return None
        mask = self._check_mask(mask, state.shape[0], state.device)
        return state.masked_fill(mask.view(-1, 1, 1), 0.0)

    # --- streaming -----------------------------------------------------------------
    def stream_block(self, x: Tensor, stream_state: Any = None) -> tuple[Tensor, Any]:
        """Stream a block: x (B, 1, T_block) -> y (B, 1, T_block), new stream state.

        ``stream_state`` is the (B, 1, RF-1) history of previous input samples (None: zeros).
        Exact but simple: it reruns forward over history + block; no cached activations.
        """
        self._check_shape(x)
        batch, _, length = x.shape
        hist_len = self.receptive_field - 1
        if stream_state is None:
            stream_state = x.new_zeros(batch, 1, hist_len)
        elif not isinstance(stream_state, Tensor) or tuple(stream_state.shape) != (batch, 1, hist_len):
            got = tuple(stream_state.shape) if isinstance(stream_state, Tensor) else type(stream_state).__name__
            raise ModelError(
                f"{self.family}: stream state must be a tensor of shape {(batch, 1, hist_len)}, got {got}"
            )
        if length == 0:
            return x.new_zeros(batch, 1, 0), stream_state
        full = torch.cat([stream_state, x], dim=-1)
        y, _ = self.forward(full)
        return y, full[..., full.shape[-1] - hist_len :]

    def _stream_recurrent(self, x: Tensor, stream_state: Any, as_state: Any = None) -> tuple[Tensor, Any]:
        """``stream_block`` of a recurrent family (receptive field 1, all history in the state):
        forward itself; an empty block passes the state on, checked by ``as_state(state,
        batch)`` when given."""
        self._check_shape(x)
        if x.shape[-1] == 0:
            batch = x.shape[0]
            if stream_state is None:
                state = self.initial_state(batch, x.device)
            else:
                state = stream_state if as_state is None else as_state(stream_state, batch)
            return x.new_zeros(batch, 1, 0), state
        return self.forward(x, stream_state)

    def stream_module(self, conv_as: str = "matmul") -> StreamingModule:
        """The streaming module of this model (``fxdist.models.streaming``), in eval mode.

        Default: keep RF - 1 input samples and rerun ``forward`` per block (exact; cost grows
        with RF). Conv families build theirs from their layers; ``conv_as`` 'matmul' (fastest
        in PyTorch) or 'conv' (F.conv1d: fastest once exported to ONNX Runtime).
        """
        return RerunStream(self).eval()

    # --- training --------------------------------------------------------------------
    def train_module(self) -> nn.Module:
        """The module the trainer calls on a batch (and DDP wraps): the model itself by default."""
        return self

    def training_loss(self, module: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]] | None:
        """A loss of the family's own on a random-window batch x (B, 1, RF - 1 + T), y (B, 1, T):
        (total, logged parts), calling ``module`` (``train_module``, DDP-wrapped when
        data-parallel). None: train ``forward``'s prediction on the configured loss."""
        return None

    # --- export ----------------------------------------------------------------------
    def describe(self) -> str:
        """The family, with the settings that decide which export formats it can use."""
        return self.family

    def export_formats(self) -> dict[str, str | None]:
        """format -> None if this model can be written in it, else the reason it cannot.

        Formats: nam, onnx, torchscript, rtneural, ir. TorchScript and ONNX hold the streaming
        module, so they follow its ``unscriptable``; the others hold specific architectures.
        """
        kind = "time-varying" if self.time_varying else None
        unscriptable = self.stream_module().unscriptable
        stream = f"{unscriptable} (process files with `fxdist process`)" if unscriptable else None
        return {
            "torchscript": stream,
            "onnx": stream,
            "nam": f"NAM's architectures are WaveNet, LSTM and Linear; fxdist's {self.family} is none of them",
            "rtneural": f"the RTNeural JSON path (AIDA-X) holds recurrent + dense models; fxdist's {self.family} is "
            + (kind or "convolutional"),
            "ir": f"an impulse response holds a linear time-invariant effect; fxdist's {self.family} is "
            + (kind or "not linear"),
        }

    @classmethod
    def export_variants(cls) -> list[tuple[str, dict[str, Any]]]:
        """(label, config fields) of settings that open formats the default config cannot use,
        for the family-by-format table (``fxdist.export.format_table``)."""
        return []

    def export_notes(self, fmt: str) -> list[str]:
        """Notes for the user about a file written in ``fmt`` (a player's size limits, say)."""
        return []

    # Families NAM can hold set ``nam_architecture`` ("WaveNet", "LSTM") and map themselves.
    nam_architecture: ClassVar[str] = ""

    def nam_config(self, nam_version: str) -> dict[str, Any]:
        """The .nam file's ``config`` for ``nam_version`` ('0.5' or '0.7')."""
        raise ModelError(f"{self.describe()}: no NAM mapping")

    def nam_weights(self) -> list[float]:
        """The .nam file's flat ``weights``, in NAM's order."""
        raise ModelError(f"{self.describe()}: no NAM mapping")

    # --- reporting -----------------------------------------------------------------
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- checks shared by families ---------------------------------------------------
    def _check_shape(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[1] != 1:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ModelError(f"{self.family}: expected input of shape (B, 1, T), got {got}")

    def _check_input(self, x: Tensor) -> None:
        """Shape (B, 1, T) with T >= receptive_field, as forward needs."""
        self._check_shape(x)
        rf = self.receptive_field
        if x.shape[-1] < rf:
            raise ModelError(
                f"{self.family}: input has {x.shape[-1]} samples but the receptive field is {rf}; "
                f"forward needs at least {rf} (stream_block() streams shorter blocks)"
            )

    def _check_no_state(self, state: Any) -> None:
        if state is not None:
            raise ModelError(
                f"{self.family}: conv models are stateless, forward takes state=None, got "
                f"{type(state).__name__} (use stream_block() to stream with history)"
            )

    def _check_mask(self, mask: Tensor, batch: int, device: Any) -> Tensor:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (batch,):
            got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
            raise ModelError(f"{self.family}: reset mask must be a bool tensor of shape ({batch},), got {got}")
        return mask.to(device)


def detach_state(state: Any) -> Any:
    """Detach a state (None, tensor, or tuple/list of them) from the graph, for TBPTT."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    raise ModelError(f"cannot detach a state of type {type(state).__name__}")


def make_activation(name: str, channels: int) -> nn.Module:
    """'relu' | 'tanh' | 'prelu' (one slope per channel) as a module."""
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "prelu":
        return nn.PReLU(channels)
    raise ModelError(f"unknown activation {name!r}; known: prelu, relu, tanh")


def check_positive(owner: str, **values: int) -> None:
    """Raise ValueError (-> ConfigError via from_dict) for any value < 1."""
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{owner}: {name} must be >= 1, got {value}")


def fit_tracks(family: str, pairs: Any) -> list[tuple[Any, Any]]:
    """A direct fit's (clean, target) pairs as float64 (N,) arrays, empty ones dropped;
    ModelError naming the track for mismatched lengths or NaN/Inf."""
    import numpy as np

    tracks = []
    for i, (clean, target) in enumerate(pairs):
        c = np.asarray(clean, dtype=np.float64).ravel()
        t = np.asarray(target, dtype=np.float64).ravel()
        if c.shape != t.shape:
            raise ModelError(f"{family}: track {i}: clean has {c.size} samples but its target has {t.size}")
        if not (np.isfinite(c).all() and np.isfinite(t).all()):
            raise ModelError(f"{family}: track {i}: clean or target holds NaN/Inf")
        if c.size:
            tracks.append((c, t))
    return tracks


def receptive_field_of(kernel_size: int, dilations: list[int]) -> int:
    """1 + sum((kernel_size - 1) * d) for a stack of valid dilated convs."""
    return 1 + sum((kernel_size - 1) * d for d in dilations)


def flat_weights(*tensors: Tensor) -> list[float]:
    """Tensors flattened row-major into one list of floats (NAM's weight layout)."""
    return [float(v) for t in tensors for v in t.detach().reshape(-1).tolist()]
