"""Neural Amp Modeler's .nam file, and NAM's forward pass in numpy to check it.

WaveNet only for ``layout: nam`` models (structurally NAM's WaveNet); LSTM only without input
skip (NAM's LSTM has none: y = head(h)); the model maps its own config and weights
(``EffectModel.nam_architecture``, ``nam_config``, ``nam_weights``). Written as .nam version
0.5.4 by default (read by every NAM plugin; current NeuralAmpModelerCore reads it through its
legacy keys ``head_size``/``head_bias``/``gated``) or 0.7.0 (the layout of neural-amp-modeler
>= 0.13, whose Python loader no longer reads 0.5 WaveNets). Checked by ``nam_forward``, a numpy
implementation of NAM's forward pass read from the file.
"""

from __future__ import annotations

import datetime as _dt
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

NAM_VERSIONS = {"0.5": "0.5.4", "0.7": "0.7.0"}


def nam_dict(model: EffectModel, meta: ExportMetadata, nam_version: str = "0.5") -> dict[str, Any]:
    """The .nam JSON of a NAM-compatible model (see module docstring); weights in NAM's order."""
    check_format(model, "nam")
    now = _dt.datetime.fromisoformat(meta.date)
    metadata = {
        "date": {k: getattr(now, k) for k in ("year", "month", "day", "hour", "minute", "second")},
        "loudness": meta.loudness_db,
        "gain": meta.gain,
        "name": meta.name,
        "modeled_by": meta.modeled_by,
        "gear_type": meta.gear_type,
        "gear_make": meta.gear_make,
        "gear_model": meta.gear_model,
        "tone_type": meta.tone_type,
        "training": {
            "validation_esr": meta.validation_esr,
            "fxdist": {"version": __version__, "effect_id": meta.effect_id},
        },
    }
    return {
        "version": NAM_VERSIONS[nam_version],
        "metadata": metadata,
        "architecture": model.nam_architecture,
        "config": model.nam_config(nam_version),
        "weights": model.nam_weights(),
        "sample_rate": meta.sample_rate,
    }


def write_nam(model: EffectModel, out: str | Path, meta: ExportMetadata, nam_version: str = "0.5") -> list[str]:
    """Write the .nam file (atomic); notes."""
    if nam_version not in NAM_VERSIONS:
        raise ExportError(f"nam version {nam_version!r} unknown; known: {', '.join(NAM_VERSIONS)}")
    write_text_atomic(out, json.dumps(nam_dict(model, meta, nam_version)))
    return [f".nam file version {NAM_VERSIONS[nam_version]}"]


def nam_read(path: str | Path, x: np.ndarray) -> np.ndarray:
    """``nam_forward`` of a .nam file on (N,) -> (N,)."""
    return nam_forward(json.loads(Path(path).read_text()), x)


def nam_forward(nam: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """NAM's forward pass in numpy, read from a .nam dict (0.5 or 0.7 WaveNet, LSTM): (N,) -> (N,).

    WaveNet output i sees x[i - RF + 1 .. i] with silence before the start, as NAM's plugin."""
    w = np.asarray(nam["weights"], dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if nam["architecture"] == "LSTM":
        return _nam_lstm_forward(nam["config"], w, x)
    if nam["architecture"] != "WaveNet":
        raise ExportError(f"nam_forward: architecture {nam['architecture']!r} not implemented")
    cfg = nam["config"]
    rf = 1 + sum((_nam_kernel(lc) - 1) * d for lc in cfg["layers"] for d in lc["dilations"])
    xp = np.concatenate([np.zeros(rf - 1), x])[None, :]  # (1, N + RF - 1)
    i = 0

    def take(*shape: int) -> np.ndarray:
        nonlocal i
        n = int(np.prod(shape))
        a = w[i : i + n].reshape(shape)
        i += n
        return a

    h, head = xp, None
    for lc in cfg["layers"]:
        c, k = lc["channels"], _nam_kernel(lc)
        gated = lc["gated"] if "gated" in lc else lc["gating_mode"][0] == "gated"
        act = lc["activation"] if isinstance(lc["activation"], str) else lc["activation"][0]["type"]
        head_out = lc["head_size"] if "head_size" in lc else lc["head"]["out_channels"]
        head_bias = lc["head_bias"] if "head_bias" in lc else lc["head"]["bias"]
        mid = 2 * c if gated else c
        h = take(c, lc["input_size"]) @ h
        for d in lc["dilations"]:
            wc, bc, wm = take(mid, c, k), take(mid), take(mid, 1)
            wr, br = take(c, c), take(c)
            n = h.shape[1] - (k - 1) * d
            a = sum(wc[:, :, j] @ h[:, j * d : j * d + n] for j in range(k)) + bc[:, None]
            a = a + wm @ xp[:, xp.shape[1] - n :]
            z = np.tanh(a[:c]) * sigmoid(a[c:]) if gated else (np.tanh(a) if act == "Tanh" else np.maximum(a, 0))
            h = h[:, (k - 1) * d :] + wr @ z + br[:, None]
            head = z if head is None else head[:, head.shape[1] - n :] + z
        head = take(head_out, c) @ head + (take(head_out)[:, None] if head_bias else 0.0)
    scale = w[i]
    if i + 1 != len(w):
        raise ExportError(f"nam_forward: {len(w)} weights but the config uses {i + 1}")
    return (scale * head)[0, head.shape[1] - len(x) :]


def _nam_kernel(lc: dict[str, Any]) -> int:
    return lc["kernel_size"] if "kernel_size" in lc else lc["kernel_sizes"][0]


def _nam_lstm_forward(cfg: dict[str, Any], w: np.ndarray, x: np.ndarray) -> np.ndarray:
    hidden, layers = cfg["hidden_size"], cfg["num_layers"]
    i, cells = 0, []
    for layer in range(layers):
        n_in = cfg["input_size"] if layer == 0 else hidden
        wm = w[i : i + 4 * hidden * (n_in + hidden)].reshape(4 * hidden, n_in + hidden)
        i += wm.size
        b, h0, c0 = w[i : i + 4 * hidden], w[i + 4 * hidden : i + 5 * hidden], w[i + 5 * hidden : i + 6 * hidden]
        i += 6 * hidden
        cells.append([wm, b, h0.copy(), c0.copy()])
    head_w, head_b = w[i : i + hidden], w[i + hidden]
    y = np.empty(len(x))
    for t, sample in enumerate(x):
        inp = np.array([sample])
        for cell in cells:
            wm, b, h, c = cell
            g = wm @ np.concatenate([inp, h]) + b
            i_, f_, g_, o_ = (g[k * hidden : (k + 1) * hidden] for k in range(4))  # NAM/PyTorch order i, f, g, o
            c = sigmoid(f_) * c + sigmoid(i_) * np.tanh(g_)
            h = sigmoid(o_) * np.tanh(c)
            cell[2], cell[3] = h, c
            inp = h
        y[t] = head_w @ inp + head_b
    return y
