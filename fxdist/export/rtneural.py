"""RTNeural JSON: the Keras-style model file of ``RTNeural::json_parser`` as AIDA-X uses it
(recurrent layers then a dense layer; ``"in_skip": 1`` for input-skip models, AIDA-X adds the
input). The model maps its own layers (``rtneural_model``); checked by ``rtneural_forward``, a
numpy implementation of RTNeural's layer math."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fxdist import __version__
from fxdist.errors import ExportError
from fxdist.export.formats import check_format
from fxdist.export.metadata import ExportMetadata
from fxdist.export.reference import sigmoid
from fxdist.fsutil import write_text_atomic
from fxdist.models.base import EffectModel


def rtneural_dict(model: EffectModel, meta: ExportMetadata) -> dict[str, Any]:
    """RTNeural/AIDA-X JSON: the model's layers (``rtneural_model``) and AIDA-X's metadata."""
    check_format(model, "rtneural")
    metadata = {
        "name": meta.name, "samplerate": str(meta.sample_rate), "author": meta.modeled_by,
        "based": " ".join(v for v in (meta.gear_make, meta.gear_model) if v) or None, "style": meta.tone_type,
        "gear_type": meta.gear_type, "esr": meta.validation_esr, "loudness": meta.loudness_db,
        "source": f"fxdist {__version__}", "effect_id": meta.effect_id, "date": meta.date,
    }
    return {**model.rtneural_model(), "metadata": {k: v for k, v in metadata.items() if v is not None}}


def write_rtneural(model: EffectModel, out: str | Path, meta: ExportMetadata) -> list[str]:
    """Write the JSON (atomic); notes (the model's, e.g. AIDA-X's size limits)."""
    write_text_atomic(out, json.dumps(rtneural_dict(model, meta)))
    return model.export_notes("rtneural")


def rtneural_read(path: str | Path, x: np.ndarray) -> np.ndarray:
    """``rtneural_forward`` of a JSON file on (N,) -> (N,)."""
    return rtneural_forward(json.loads(Path(path).read_text()), x)


def rtneural_forward(model_json: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """RTNeural's layer math in numpy, reading the JSON as json_parser does, plus AIDA-X's in_skip.

    LSTM: W (in, 4H), U (H, 4H), b (4H), gates i, f, c, o. GRU: W (in, 3H), U (H, 3H),
    b (2, 3H), gates z, r, c with c = tanh(W_c x + b0_c + r * (U_c h + b1_c)), h = (1-z) c + z h.
    Dense: W (in, out), b (out). Zero initial state. (N,) -> (N,).
    """
    layers = []
    for spec in model_json["layers"]:
        ws = spec["weights"]
        if spec["type"] == "dense":
            layers.append(("dense", np.asarray(ws[0], dtype=np.float64), np.asarray(ws[1], dtype=np.float64)))
        elif spec["type"] in ("lstm", "gru"):
            kernel, rec = np.asarray(ws[0], dtype=np.float64), np.asarray(ws[1], dtype=np.float64)
            layers.append((spec["type"], kernel, rec, np.asarray(ws[2], dtype=np.float64), spec["shape"][-1]))
        else:
            raise ExportError(f"rtneural_forward: layer type {spec['type']!r} not implemented")
    states = [np.zeros(spec[4]) if spec[0] != "dense" else None for spec in layers]
    cells = [np.zeros(spec[4]) if spec[0] == "lstm" else None for spec in layers]
    skip = int(model_json.get("in_skip", 0))
    y = np.empty(len(x))
    for t, sample in enumerate(np.asarray(x, dtype=np.float64)):
        v = np.array([sample])
        for j, spec in enumerate(layers):
            if spec[0] == "dense":
                v = v @ spec[1] + spec[2]
                continue
            _, kernel, rec, b, hidden = spec
            h = states[j]
            if spec[0] == "lstm":
                g = v @ kernel + h @ rec + b
                i_, f_, c_, o_ = (g[k * hidden : (k + 1) * hidden] for k in range(4))
                cells[j] = sigmoid(f_) * cells[j] + sigmoid(i_) * np.tanh(c_)
                h = sigmoid(o_) * np.tanh(cells[j])
            else:
                wx, uh = v @ kernel, h @ rec
                zr = sigmoid(wx[: 2 * hidden] + uh[: 2 * hidden] + b[0, : 2 * hidden] + b[1, : 2 * hidden])
                z, r = zr[:hidden], zr[hidden:]
                c = np.tanh(wx[2 * hidden :] + b[0, 2 * hidden :] + r * (uh[2 * hidden :] + b[1, 2 * hidden :]))
                h = (1 - z) * c + z * h
            states[j] = h
            v = h
        y[t] = v[0] + (sample if skip else 0.0)
    return y
