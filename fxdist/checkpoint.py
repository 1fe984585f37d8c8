"""Self-describing checkpoints: everything needed to rebuild and judge a model.

A checkpoint is a plain dict of tensors and JSON-like values, so it loads with
``torch.load(weights_only=True)`` (safe for files from shared storage). It holds the
model config and weights, sample rate, receptive field, fxdist version, and for
resuming: optimizer and scheduler state, step, data position, RNG and carried state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fxdist import __version__
from fxdist.errors import CheckpointError
from fxdist.fsutil import atomic_path

FORMAT = "fxdist-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """The decoded content of a checkpoint file."""

    model_config: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    sample_rate: int
    receptive_field: int
    fxdist_version: str = __version__
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_val_esr: float | None = None
    val_esr: float | None = None
    train_config: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    rng_state: torch.Tensor | None = None
    carried_state: list[torch.Tensor] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        payload = {"format": FORMAT, "format_version": FORMAT_VERSION}
        payload.update({k: getattr(self, k) for k in self.__dataclass_fields__})
        # Configs travel as JSON text: they may hold values torch's safe loader refuses.
        payload["train_config"] = json.dumps(self.train_config)
        payload["metadata"] = json.dumps(self.metadata)
        payload["model_config"] = json.dumps(self.model_config)
        return payload


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(ckpt.to_payload(), tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``; refuse anything else clearly."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not an fxdist checkpoint (cannot be loaded safely: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an fxdist checkpoint (no '{FORMAT}' marker)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is not supported by fxdist {__version__} "
            f"(expects {FORMAT_VERSION})"
        )
    fields = Checkpoint.__dataclass_fields__
    values = {k: payload[k] for k in fields if k in payload}
    missing = [k for k in ("model_config", "model_state", "sample_rate", "receptive_field") if k not in values]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    for key in ("train_config", "metadata", "model_config"):
        if isinstance(values.get(key), str):
            values[key] = json.loads(values[key])
    return Checkpoint(**values)


def load_model(path: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild the model stored in a checkpoint. Returns (model in eval mode, Checkpoint)."""
    from fxdist.models.registry import build_model

    ckpt = load_checkpoint(path, map_location)
    model = build_model(ckpt.model_config, source=str(path))
    try:
        model.load_state_dict(ckpt.model_state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit model {ckpt.model_config.get('family')!r}: {exc}") from exc
    if model.receptive_field != ckpt.receptive_field:
        raise CheckpointError(
            f"{path}: model rebuilt with receptive field {model.receptive_field}, "
            f"checkpoint says {ckpt.receptive_field}"
        )
    return model.eval(), ckpt
