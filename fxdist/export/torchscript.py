"""TorchScript: the scripted streaming module (``forward(x (B, 1, T), state: List[Tensor]) ->
(y, state)``, ``initial_state(batch)``); metadata in the archive's extra file ``fxdist.json``.
Checked with ``torch.jit.load``."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fxdist import __version__
from fxdist.errors import ExportError
from fxdist.export.metadata import ExportMetadata, meta_dict
from fxdist.export.reference import one_thread
from fxdist.fsutil import atomic_path
from fxdist.models.base import EffectModel
from fxdist.models.registry import model_config_dict
from fxdist.realtime import script_module, stream_module


def write_torchscript(model: EffectModel, out: str | Path, meta: ExportMetadata) -> None:
    """Write the scripted streaming module of ``model`` (no verification; see export_model)."""
    scripted = script_module(stream_module(model))
    extra = {"fxdist.json": json.dumps({**meta_dict(meta), "model_config": model_config_dict(model),
                                         "receptive_field": model.receptive_field, "fxdist_version": __version__})}
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(scripted, str(tmp), _extra_files=extra)


def torchscript_metadata(path: str | Path) -> dict[str, Any]:
    """The ``fxdist.json`` extra file of a TorchScript export."""
    with zipfile.ZipFile(path) as z:
        name = next((n for n in z.namelist() if n.endswith("extra/fxdist.json")), None)
        if name is None:
            raise ExportError(f"{path}: no fxdist.json in this TorchScript archive")
        return json.loads(z.read(name))


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """``torch.jit.load`` without its deprecation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path))


def torchscript_run(path: str | Path, x: np.ndarray, blocks: list[int]) -> np.ndarray:
    """Run a TorchScript export on (N,) in ``blocks`` from its initial state, one thread -> (N,)."""
    with one_thread():
        module = load_torchscript(path)
        state = module.initial_state(1)
        parts, start = [], 0
        with torch.no_grad():
            for n in blocks:
                y, state = module(torch.from_numpy(x[start : start + n]).view(1, 1, -1), state)
                parts.append(y[0, 0].numpy())
                start += n
        return np.concatenate(parts)
