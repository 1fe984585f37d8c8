"""Family ``hybrid``: a gray-box stage fitted first, and a small black-box network trained with it
that learns only what the structure misses.

``y = g(x) + alpha * r(u)``: ``g`` is a feed-forward gray-box family with a direct fit (``wh``,
``fir``, ...), ``r`` a feed-forward black-box family (``wavenet``, ``tcn``, ``cnn``), and ``u``
is the input (``residual_input: clean``, a parallel path) or the gray stage's output (``gray``,
a post-stage). ``alpha`` starts at 0 (as ReZero does), so after ``fit`` the hybrid is exactly
its gray stage, and the trainer's ``best.pt`` keeps that when the joint steps do not beat it;
the first steps move ``alpha`` and, through it, the network.

Receptive field: parallel ``max(RF_g, RF_r)``, post ``RF_g + RF_r - 1``. Valid convolution as
every conv family: forward on T samples gives T - RF + 1 outputs, both paths cut to the newest
ones. Streaming runs the stages' own streaming modules (``_HybridStream``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Literal, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from fxdist.config import load_yaml
from fxdist.errors import ModelError
from fxdist.models.base import EffectModel
from fxdist.models.registry import build_model, get, register
from fxdist.models.streaming import StreamingModule
from fxdist.presets import model_preset


@dataclass
class HybridConfig:
    # Each a model preset name or a mapping with ``family``.
    gray: Any = "wh"
    residual: Any = field(default_factory=lambda: {
        "family": "wavenet", "stacks": [{"channels": 8, "kernel_size": 3, "dilations": [1, 2, 4, 8, 16, 32, 64, 128]}],
        "skip_channels": 8, "head_channels": 8, "gated": False, "activation": "tanh", "output": "regression"})
    residual_input: Literal["clean", "gray"] = "clean"
    # Set into the stages whose times are in Hz or ms (wh's cutoff grid, a compressor's attack).
    sample_rate: Optional[int] = None


def _stage_config(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, str):
        data = load_yaml(model_preset(value))
    elif isinstance(value, dict):
        data = dict(value)
    else:
        raise ModelError(f"hybrid.{name}: a model preset name or a mapping with 'family', got {value!r}")
    if not isinstance(data, dict) or "family" not in data:
        raise ModelError(f"hybrid.{name}: the model config has no 'family': {data!r}")
    return data


def _with_rate(data: dict[str, Any], rate: int | None) -> dict[str, Any]:
    fields_ = get(data["family"]).config_cls.__dataclass_fields__
    return {**data, "sample_rate": rate} if rate is not None and "sample_rate" in fields_ else data


@register
class HybridModel(EffectModel):
    """x (B, 1, T) -> y (B, 1, T - RF + 1). Submodules ``gray`` and ``residual``; parameter
    ``alpha`` () scales the residual path."""

    family = "hybrid"
    config_cls = HybridConfig
    stateful = False

    def __init__(self, cfg: HybridConfig):
        super().__init__(cfg)
        gray_cfg = _with_rate(_stage_config(cfg.gray, "gray"), cfg.sample_rate)
        residual_cfg = _with_rate(_stage_config(cfg.residual, "residual"), cfg.sample_rate)
        self.gray = build_model(gray_cfg, source="hybrid.gray")
        self.residual = build_model(residual_cfg, source="hybrid.residual")
        for name, stage in (("gray", self.gray), ("residual", self.residual)):
            if stage.stateful or stage.time_varying or stage.output_kind != "regression" or stage.latency:
                raise ModelError(
                    f"hybrid.{name}: {stage.family} is stateful, time-varying, latent or not a regression model; "
                    "both stages must be feed-forward convolutional families without latency"
                )
        if not self.gray.can_fit():
            raise ModelError(f"hybrid.gray: {self.gray.family} has no direct fit; the gray stage is fitted first")
        self.alpha = nn.Parameter(torch.zeros(()))

    @property
    def receptive_field(self) -> int:
        rf_g, rf_r = self.gray.receptive_field, self.residual.receptive_field
        return max(rf_g, rf_r) if self.cfg.residual_input == "clean" else rf_g + rf_r - 1

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, None]:
        self._check_no_state(state)
        self._check_input(x)
        n = x.shape[-1] - self.receptive_field + 1  # outputs
        rf_r = self.residual.receptive_field
        post = self.cfg.residual_input == "gray"
        g_in = n - 1 + self.gray.receptive_field + (rf_r - 1 if post else 0)
        g, _ = self.gray(x[..., x.shape[-1] - g_in:])
        u = g if post else x
        r, _ = self.residual(u[..., u.shape[-1] - (n - 1 + rf_r):])
        return g[..., g.shape[-1] - n:] + self.alpha * r, None

    def macs_per_sample(self) -> int:
        return self.gray.macs_per_sample() + self.residual.macs_per_sample() + 1

    def fit(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]], log: Any = print) -> dict[str, float]:
        """The gray stage's own fit; the residual path stays off (alpha 0) until the steps."""
        values = self.gray.fit(pairs, log=log)
        with torch.no_grad():
            self.alpha.zero_()
        return {f"gray.{k}": v for k, v in values.items()}

    def stream_module(self, conv_as: str = "matmul") -> StreamingModule:
        return _HybridStream(self, conv_as).eval()

    def describe(self) -> str:
        return f"hybrid ({self.gray.describe()} + {self.residual.describe()} on the {self.cfg.residual_input} input)"


class _HybridStream(StreamingModule):
    """The stages' streaming modules: in parallel both take the input block; as a post-stage the
    network takes the gray stage's output block. State: the gray stage's list, then the network's.
    A post-stage network starts from what it sees after a silence (the gray stage's output for
    zeros, not zeros), as ``forward`` over the signal preceded by zeros does."""

    def __init__(self, model: HybridModel, conv_as: str):
        super().__init__()
        self.gray = model.gray.stream_module(conv_as)
        self.residual = model.residual.stream_module(conv_as)
        self.register_buffer("alpha", model.alpha.detach().clone())
        self.post = model.cfg.residual_input == "gray"
        self.n_gray = len(self.gray.initial_state(1))
        self.lead = model.residual.receptive_field - 1
        self.unscriptable = self.gray.unscriptable or self.residual.unscriptable

    def forward(self, x: Tensor, state: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        g, gs = self.gray(x, state[: self.n_gray])
        r, rs = self.residual(g if self.post else x, state[self.n_gray :])
        return g + self.alpha * r, gs + rs

    @torch.jit.export
    def initial_state(self, batch: int) -> List[Tensor]:
        gs = self.gray.initial_state(batch)
        rs = self.residual.initial_state(batch)
        if self.post and self.lead > 0:
            g0, gs = self.gray(torch.zeros(batch, 1, self.lead), gs)
            _, rs = self.residual(g0, rs)
        return gs + rs

    def scriptable(self) -> "_HybridStream":
        self.gray = self.gray.scriptable()
        self.residual = self.residual.scriptable()
        return self
