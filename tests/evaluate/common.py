"""Exact models and data for evaluation tests: an identity/silent LSTM, gain-only pairs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from fxdist.checkpoint import Checkpoint, save_checkpoint
from fxdist.models.registry import build_model, model_config_dict

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
# Subprocesses: one torch thread. On a loaded 2-core machine two OpenMP threads make a
# small LSTM's sample-by-sample loop hundreds of times slower.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def zero_lstm(path: Path, sr: int, skip: bool = True, best_val_esr: float | None = None) -> Path:
    """All weights zero: output = input exactly (skip=True) or silence (skip=False)."""
    model = build_model({"family": "lstm", "hidden_size": 4, "input_skip": skip})
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    save_checkpoint(path, Checkpoint(model_config_dict(model), model.state_dict(), sr, 1,
                                     best_val_esr=best_val_esr, metadata={"effect_id": "gain"}))
    return path


def gain_pairs(folder: Path, sr: int = 8000, gain: float = 2.0, layout: str = "suffix") -> Path:
    """Two pairs of noise bursts where processed = gain * clean exactly (float WAV)."""
    rng = np.random.default_rng(0)
    for name, seconds in (("riff", 0.5), ("chord", 0.75)):
        clean = (0.3 * rng.standard_normal(int(sr * seconds))).astype(np.float32)
        if layout == "suffix":
            paths = folder / f"{name}_clean.wav", folder / f"{name}_processed.wav"
        else:
            paths = folder / "clean" / f"{name}.wav", folder / "processed" / f"{name}.wav"
        for path, x in zip(paths, (clean, gain * clean)):
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, x, sr, subtype="FLOAT")
    return folder
