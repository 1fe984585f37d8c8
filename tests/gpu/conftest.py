"""GPU tests: every test marked ``gpu`` needs a CUDA device and skips, with the reason, without one.

``FXDIST_REQUIRE_GPU=1`` (jobs/gpu-check.sh sets it) turns the missing device into a usage
error, so a GPU session whose torch lost its CUDA build fails instead of skipping everything.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from fxdist.config import load
from fxdist.models.registry import get
from fxdist.train import TrainConfig, resolve_model_config

REPO = Path(__file__).resolve().parents[2]

# One preset per model family, trained on the tiny distortion shards (16 kHz).
FAMILY_PRESETS = {
    "cnn": "cnn-tiny", "fcn": "fcn-tiny", "lstm": "lstm-tiny", "wavenet": "wavenet-tiny", "tcn": "tcn-tiny",
    "fir": "fir-tiny", "chorus": "chorus-tiny", "grainpitch": "grainpitch-tiny", "compressor": "compressor",
    "pvpitch": "pvpitch", "wh": "wh",
}
# Learning rates other than tiny.yaml's 0.01: the wh filters diverge at 0.01 (ESR 30 after 5 steps on the CPU).
FAMILY_LR = {"wh": 1e-3, "compressor": 1e-3}


def cuda_problem() -> str | None:
    """Why CUDA cannot be used here, or None."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build (install the CUDA build of the same version)"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no CUDA device"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    problem = cuda_problem() if gpu_items else None
    if problem is None:
        return
    if os.environ.get("FXDIST_REQUIRE_GPU") == "1":
        raise pytest.UsageError(f"FXDIST_REQUIRE_GPU=1 but {problem}")
    skip = pytest.mark.skip(reason=f"needs a CUDA device: {problem}")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture
def cuda() -> torch.device:
    return torch.device("cuda")


@pytest.fixture
def exact_float32():
    """fp32 on the GPU as on the CPU: TF32 convolutions and matmuls off for the test."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def model_for(preset: str, sample_rate: int) -> dict:
    """The preset's model config, at ``sample_rate`` for families whose times are in ms/Hz."""
    model = resolve_model_config(preset)[0]
    if "sample_rate" in {f.name for f in dataclasses.fields(get(model["family"]).config_cls)}:
        model["sample_rate"] = sample_rate
    return model


def family_config(family: str, shards: Path, out: Path, *, device: str, amp: bool, steps: int) -> TrainConfig:
    """configs/train/tiny.yaml for ``family``'s preset on ``shards``: one validation, at the end."""
    cfg = load(TrainConfig, REPO / "configs/train/tiny.yaml")
    data = dataclasses.replace(cfg.data, shards=str(shards), output_len=128 if family == "cnn" else cfg.data.output_len)
    optim = dataclasses.replace(cfg.optim, lr=FAMILY_LR.get(family, 0.01), schedule="constant")
    return dataclasses.replace(
        cfg, model=model_for(FAMILY_PRESETS[family], 16000), data=data, optim=optim, out_dir=str(out), device=device,
        amp=amp, steps=steps, val_every=steps, checkpoint_every=steps, seed=0,
    )
