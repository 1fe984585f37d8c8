"""ONNX (opset 17): the streaming block function, inputs ``x`` (B, 1, T) and ``state_in_<i>``,
outputs ``y`` and ``state_out_<i>`` (conv: per-layer histories; LSTM: h, c), B and T dynamic.

Conv models start from the silence histories stored base64 in the metadata key
``fxdist.initial_state`` (``onnx_initial_state``); zeros there only colour the first RF
samples. Metadata in ``metadata_props``. Checked with onnxruntime.
"""

from __future__ import annotations

import base64
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fxdist import __version__
from fxdist.errors import ExportError
from fxdist.export.metadata import ExportMetadata, meta_dict
from fxdist.fsutil import atomic_path
from fxdist.models.base import EffectModel
from fxdist.models.registry import model_config_dict
from fxdist.realtime import stream_module

ONNX_OPSET = 17
_STATE_DTYPES = {"float32": "<f4", "int64": "<i8"}  # stored state tensors: name -> little-endian numpy dtype


class _FlatIO(torch.nn.Module):
    """forward(x, *state) -> (y, *state): the list-free signature ONNX needs."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x, *state):
        y, new = self.module(x, list(state))
        return (y, *new)


def write_onnx(model: EffectModel, out: str | Path, meta: ExportMetadata) -> None:
    """Write the streaming block function of ``model`` as ONNX (no verification; see export_model)."""
    import onnx

    module = stream_module(model, conv_as="conv")
    state = module.initial_state(1)
    n = len(state)
    x = torch.zeros(1, 1, 16)
    names_in = ["x"] + [f"state_in_{i}" for i in range(n)]
    names_out = ["y"] + [f"state_out_{i}" for i in range(n)]
    batch_axis = module.state_batch_axis
    dynamic = {"x": {0: "batch", 2: "time"}, "y": {0: "batch", 2: "time"}}
    for i in range(n):
        dynamic[f"state_in_{i}"] = {batch_axis: "batch"}
        dynamic[f"state_out_{i}"] = {batch_axis: "batch"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _FlatIO(module), (x, *state), buf, dynamo=False, opset_version=ONNX_OPSET,
            input_names=names_in, output_names=names_out, dynamic_axes=dynamic,
        )
    proto = onnx.load_from_string(buf.getvalue())
    props = {
        "fxdist.metadata": json.dumps(meta_dict(meta)),
        "fxdist.model_config": json.dumps(model_config_dict(model)),
        "fxdist.receptive_field": str(model.receptive_field),
        "fxdist.initial_state": json.dumps([_b64(s) for s in state]),
        "fxdist.state_batch_axis": str(batch_axis),
        "sample_rate": str(meta.sample_rate),
        "name": meta.name,
    }
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.producer_version = "fxdist", __version__
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))


def _b64(t: torch.Tensor) -> dict[str, Any]:
    """A state tensor as {shape, <dtype>_le_base64}: float32, or int64 (a stream position)."""
    kind = "int64" if t.dtype == torch.int64 else "float32"
    a = t.detach().numpy().astype(_STATE_DTYPES[kind])
    return {"shape": list(a.shape), f"{kind}_le_base64": base64.b64encode(a.tobytes()).decode("ascii")}


def onnx_initial_state(path: str | Path, batch: int = 1) -> list[np.ndarray]:
    """The stored initial state of an ONNX export, one array per ``state_in_<i>``, for ``batch`` lanes."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    if "fxdist.initial_state" not in props:
        raise ExportError(f"{path}: not an fxdist ONNX export (no fxdist.initial_state metadata)")
    if "fxdist.state_batch_axis" in props:
        axis = int(props["fxdist.state_batch_axis"])
    else:  # an export without the key: only lstm's (layers, B, hidden) states hold the batch at axis 1
        axis = 1 if json.loads(props["fxdist.model_config"]).get("family") == "lstm" else 0
    out = []
    for entry in json.loads(props["fxdist.initial_state"]):
        kind = "int64" if "int64_le_base64" in entry else "float32"
        a = np.frombuffer(base64.b64decode(entry[f"{kind}_le_base64"]), dtype=_STATE_DTYPES[kind])
        out.append(np.ascontiguousarray(np.repeat(a.reshape(entry["shape"]), batch, axis=axis), dtype=kind))
    return out


def onnx_session(path: str | Path, threads: int = 1):
    """An onnxruntime session on ``threads`` intra-op threads (1: one core)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_run(path: str | Path, x: np.ndarray, blocks: list[int]) -> np.ndarray:
    """Run an ONNX export on (N,) in ``blocks`` from its stored initial state, one thread -> (N,)."""
    sess = onnx_session(path)
    state = onnx_initial_state(path)
    parts, start = [], 0
    for n in blocks:
        feeds = {"x": x[start : start + n].reshape(1, 1, -1).astype(np.float32)}
        feeds.update({f"state_in_{i}": s for i, s in enumerate(state)})
        y, *state = sess.run(None, feeds)
        parts.append(y[0, 0])
        start += n
    return np.concatenate(parts)
