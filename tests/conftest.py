"""Shared fixtures: a tiny real dataset (generated, rendered through a preset, sharded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.datasets import make_dataset

# One torch thread per test process: the CI machine has 2 cores, and intra-op threads
# fighting each other (and Ray/DataLoader workers) made small models ~100x slower there.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Restore one thread after any test that changed it (TrainConfig.threads, export...)."""
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """Six 4 s tracks at 16 kHz through the distortion preset, sharded (train/val/test)."""
    return make_dataset(tmp_path_factory.mktemp("tiny-data"))
