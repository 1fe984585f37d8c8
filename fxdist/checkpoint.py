"""Self-describing checkpoints: everything needed to rebuild and judge a model.

A checkpoint is a plain dict of tensors and JSON-like values, so it loads with
``torch.load(weights_only=True)`` (safe for files from shared storage). It holds the
model config and weights, sample rate, receptive field, fxdist version, and for
resuming: optimizer and scheduler state, step, data position, RNG and carried state.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
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
    _check_container(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused: {_refusal(exc)}") from exc
    except Exception as exc:
        raise CheckpointError(
            f"{path}: damaged checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}); "
            "copy it again or use another checkpoint of the run (last.pt / best.pt)"
        ) from exc
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


def _check_container(path: Path) -> None:
    """torch.save writes a zip archive: name an empty, cut-off or foreign file before unpickling."""
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes), not a checkpoint; copy it again")
    with open(path, "rb") as fh:
        head = fh.read(64)
    if not head.startswith(b"PK"):
        shown = head[:16]
        raise CheckpointError(
            f"{path}: not an fxdist checkpoint (a PyTorch checkpoint is a zip archive; this file starts with {shown!r}); "
            "give the best.pt or last.pt that `fxdist train` wrote"
        )
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: truncated or damaged checkpoint ({size} bytes, the zip archive's directory is missing); "
            "the copy or the save was cut off: copy it again or use another checkpoint of the run"
        )


def _refusal(exc: Exception) -> str:
    """Why torch's safe loader refused a file, without torch's advice to load it unsafely."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    what = f"it asks to import {found.group(1)}" if found else "it holds pickled Python objects beyond tensors and plain values"
    return (f"{what}, and loading it could run code. fxdist loads checkpoints only as weights (torch.load with "
            "weights_only=True) and never unpickles objects; use a checkpoint written by fxdist")


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
