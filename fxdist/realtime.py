"""Real-time streaming: a block of any length costs what the block costs, not RF + block.

``EffectModel.stream_block`` is exact but naive (it reruns forward over RF - 1 history samples).
Each family builds a *streaming module* from its own layers (``EffectModel.stream_module``;
the interface is in ``fxdist.models.streaming``)::

    forward(x: (B, 1, T), state: List[Tensor]) -> (y: (B, 1, T), new_state: List[Tensor])

``Streamer`` wraps one with its state for block-by-block use; ``script_module`` compiles one
with TorchScript; ``stream_array`` runs (C, N) audio through a Streamer.
"""

import copy
import warnings

import numpy as np
import torch
from torch import Tensor

from fxdist.errors import ModelError
from fxdist.models.base import EffectModel
from fxdist.models.streaming import CONV_OPS, StreamingModule


def stream_module(model: EffectModel, conv_as: str = "matmul") -> StreamingModule:
    """The streaming module of ``model`` (eval mode). Conv families copy the weights; ``conv_as``
    'matmul' (fastest in PyTorch) or 'conv' (F.conv1d: fastest once exported to ONNX Runtime)."""
    if conv_as not in CONV_OPS:
        raise ModelError(f"conv_as must be one of {', '.join(CONV_OPS)}, got {conv_as!r}")
    return model.stream_module(conv_as)


class Streamer:
    """Block-by-block processing with cached state: ``y = streamer(x)`` for x (B, 1, T), any T >= 0.

    The output equals ``model.forward`` over the whole signal preceded by silence (conv
    models) or from a zero state (recurrent), so it trails offline rendering by ``latency``
    samples (``EffectModel.latency``; a host would report it). ``scripted=True`` runs a
    TorchScript compile of the streaming module (less Python overhead per block; not for ``cnn``).
    ``device``: where the blocks run (a copy of the model is moved there); blocks are expected on it.
    """

    def __init__(self, model: EffectModel, batch: int = 1, scripted: bool = False, device: str | torch.device = "cpu"):
        if batch < 1:
            raise ModelError(f"streamer batch must be >= 1, got {batch}")
        self.family = model.family
        self.latency = model.latency
        self.batch = batch
        self.device = torch.device(device)
        if _device_of(model) != self.device:  # streaming modules may hold the model: leave the caller's where it is
            model = copy.deepcopy(model).to(self.device)
        module = stream_module(model).to(self.device)
        if scripted:
            if module.unscriptable:
                raise ModelError(module.unscriptable)
            module = script_module(module)
        self.module = module
        self.reset()

    def reset(self) -> None:
        """Back to silence (conv) / zero state (recurrent)."""
        self.state = [s.to(self.device).clone() for s in self.module.initial_state(self.batch)]

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[1] != 1 or x.shape[0] != self.batch:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ModelError(f"{self.family} streamer: expected a block of shape ({self.batch}, 1, T), got {got}")
        if x.shape[-1] == 0:
            return x.new_zeros(self.batch, 1, 0)
        y, self.state = self.module(x.to(self.device, torch.float32), self.state)
        return y

    process = __call__


def _device_of(model: EffectModel) -> torch.device:
    first = next(iter([*model.parameters(), *model.buffers()]), None)
    return first.device if first is not None else torch.device("cpu")


def script_module(module: StreamingModule) -> torch.jit.ScriptModule:
    """TorchScript-compile a streaming module (the deprecation warning of torch.jit is silenced)."""
    module = module.scriptable()
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
