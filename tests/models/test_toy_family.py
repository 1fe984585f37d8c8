"""A model family defined here, registered from the test and nowhere else, trains with
``fxdist.train.train``, streams with ``Streamer`` (blocks equal one pass) and exports to ONNX and
TorchScript (read back equal): a new family is one module, with nothing edited elsewhere."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from fxdist.checkpoint import load_model
from fxdist.export import ExportMetadata, export_model, format_table, offline_output, read_back
from fxdist.models import build_model, families
from fxdist.models.base import EffectModel
from fxdist.models.registry import registered
from fxdist.realtime import Streamer
from fxdist.config import load
from fxdist.train import TrainConfig, train


@dataclass
class ToyConfig:
    taps: int = 5


class ToyConv(EffectModel):
    """y = tanh(causal FIR of ``taps`` taps) + x: (B, 1, T) -> (B, 1, T - taps + 1)."""

    family = "toyconv"
    config_cls = ToyConfig

    def __init__(self, cfg: ToyConfig):
        super().__init__(cfg)
        self.conv = nn.Conv1d(1, 1, cfg.taps)

    @property
    def receptive_field(self) -> int:
        return self.cfg.taps

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, None]:
        self._check_no_state(state)
        self._check_input(x)
        return torch.tanh(self.conv(x)) + x[..., self.cfg.taps - 1 :], None

    def macs_per_sample(self) -> int:
        return self.cfg.taps


@pytest.fixture
def toy():
    with registered(ToyConv) as cls:
        yield cls
    assert "toyconv" not in families()


def test_toy_family_trains_streams_and_exports(toy, tiny_shards, tmp_path):
    cfg = load(TrainConfig, Path(__file__).resolve().parents[2] / "configs/train/tiny.yaml")
    cfg = dataclasses.replace(
        cfg, model={"family": "toyconv", "taps": 5}, steps=4, val_every=4, checkpoint_every=4,
        out_dir=str(tmp_path / "run"), data=dataclasses.replace(cfg.data, shards=str(tiny_shards)),
    )
    result = train(cfg)
    assert result.step == 4 and result.best_checkpoint is not None
    model, ckpt = load_model(result.best_checkpoint)
    assert isinstance(model, ToyConv) and model.eval() is model

    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 1, 700)).astype(np.float32) * 0.3)
    streamer = Streamer(model, batch=2)
    sizes = [1, 3, 64, 0, 100, 250, 282]
    starts = np.cumsum([0] + sizes[:-1])
    streamed = torch.cat([streamer(x[..., i : i + n]) for i, n in zip(starts, sizes)], dim=-1)
    with torch.no_grad():
        whole, _ = model(torch.cat([x.new_zeros(2, 1, 4), x], dim=-1))
    assert streamed.shape == x.shape and (streamed - whole).abs().max().item() <= 1e-6

    meta = ExportMetadata(name="toy", sample_rate=int(ckpt.sample_rate))
    signal = np.random.default_rng(1).standard_normal(900).astype(np.float32) * 0.3
    for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".pt")):
        report = export_model(model, fmt, tmp_path / f"toy{suffix}", meta)
        assert report.family == "toyconv" and report.max_abs_error < 1e-5
        got = read_back(fmt, tmp_path / f"toy{suffix}", signal)
        np.testing.assert_allclose(got, offline_output(model, signal), atol=1e-5, rtol=0)
    assert "toyconv: onnx, torchscript" in format_table()


def test_a_registered_family_builds_from_config(toy):
    model = build_model({"family": "toyconv", "taps": 3})
    assert model.receptive_field == 3 and model.export_formats()["nam"].startswith("NAM's architectures")
