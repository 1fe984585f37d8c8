"""Shared fixtures: a tiny real dataset (generated, rendered through a preset, sharded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.datasets import make_dataset


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """Six 4 s tracks at 16 kHz through the distortion preset, sharded (train/val/test)."""
    return make_dataset(tmp_path_factory.mktemp("tiny-data"))
