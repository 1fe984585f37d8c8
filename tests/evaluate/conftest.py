"""Fixtures of the evaluation tests: one torch thread, a tiny trained checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fxdist.train import train
from tests.train.test_trainer import tiny_config


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tiny_shards, tmp_path_factory) -> Path:
    """A tiny LSTM trained for a few steps on the distortion shards (16 kHz)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(tiny_config(tiny_shards, tmp_path_factory.mktemp("run"), steps=4, val_every=4))
    finally:
        torch.set_num_threads(before)
    return Path(result.best_checkpoint)
