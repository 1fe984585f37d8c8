"""Export trained models to the formats players load: NAM, ONNX, TorchScript, RTNeural JSON.

Every export is numerically verified after writing (``ExportReport.max_abs_error``): the file
is read back by an independent path and run on a reference signal, in irregular blocks for
the streaming formats, against ``model.forward`` over the whole signal preceded by silence.

- ``torchscript``: the scripted streaming module of ``fxdist.realtime`` (``forward(x (B, 1, T),
  state: List[Tensor]) -> (y, state)``, ``initial_state(batch)``); metadata in the archive's
  extra file ``fxdist.json``. Checked with ``torch.jit.load``.
- ``onnx`` (opset 17): the same block function, inputs ``x`` (B, 1, T) and ``state_in_<i>``,
  outputs ``y`` and ``state_out_<i>`` (conv: per-layer histories; LSTM: h, c), B and T
  dynamic. Conv models start from the silence histories stored base64 in the metadata key
  ``fxdist.initial_state`` (``onnx_initial_state``); zeros there only colour the first RF
  samples. Metadata in ``metadata_props``. Checked with onnxruntime.
- ``nam``: Neural Amp Modeler's file. WaveNet only for ``layout: nam`` models (structurally
  NAM's WaveNet); LSTM only without input skip (NAM's LSTM has none: y = head(h)). Written as
  .nam version 0.5.4 by default (read by every NAM plugin; current NeuralAmpModelerCore reads
  it through its legacy keys ``head_size``/``head_bias``/``gated``) or 0.7.0 (the layout of
  neural-amp-modeler >= 0.13, whose Python loader no longer reads 0.5 WaveNets). Checked by
  ``nam_forward``, a numpy implementation of NAM's forward pass read from the file.
- ``rtneural``: the Keras-style JSON of ``RTNeural::json_parser`` as AIDA-X uses it: LSTM/GRU
  layers then a dense layer; ``"in_skip": 1`` for input-skip models (AIDA-X adds the input).
  Checked by ``rtneural_forward``, a numpy implementation of RTNeural's layer math.
- ``ir``: an impulse response WAV (mono, 32-bit float, the model's rate), what every
  convolution/IR loader (amp sims, NAM's plugin, reverb hosts) loads. ``fir`` models only,
  the taps as they are (no normalisation). Checked by reading the WAV back with soundfile and
  convolving with ``scipy.signal.fftconvolve``.

Gray-box families: ``fir`` -> torchscript, onnx, ir; ``chorus`` and ``grainpitch`` ->
torchscript, onnx (their state carries the stream position, an int64 tensor).
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fxdist import __version__
from fxdist.errors import ExportError
from fxdist.fsutil import atomic_path, write_text_atomic
from fxdist.models.base import EffectModel


FORMATS = ("nam", "onnx", "torchscript", "rtneural", "ir")
SUFFIXES = {"nam": ".nam", "onnx": ".onnx", "torchscript": ".pt", "rtneural": ".json", "ir": ".wav"}
NAM_VERSIONS = {"0.5": "0.5.4", "0.7": "0.7.0"}
NAM_GEAR_TYPES = ("amp", "pedal", "pedal_amp", "amp_cab", "amp_pedal_cab", "preamp", "studio")
NAM_TONE_TYPES = ("clean", "overdrive", "crunch", "hi_gain", "fuzz")
REFERENCE_RMS_DB = -15.0  # RMS of NAM's loudness reference clip; our reference signal is scaled to it
ONNX_OPSET = 17


@dataclass
class ExportMetadata:
    """What players show or use: name, rate, loudness (dB RMS of the output on the reference)."""

    name: str
    sample_rate: int
    loudness_db: float | None = None
    gain: float | None = None  # NAM's 0..1 "how much gain/compression" estimate
    validation_esr: float | None = None
    gear_type: str | None = None
    gear_make: str | None = None
    gear_model: str | None = None
    tone_type: str | None = None
    modeled_by: str | None = None
    effect_id: str | None = None
    date: str = field(default_factory=lambda: _dt.datetime.now().replace(microsecond=0).isoformat())

    def __post_init__(self):
        if self.gear_type is not None and self.gear_type not in NAM_GEAR_TYPES:
            raise ExportError(f"gear type {self.gear_type!r} is not one of NAM's: {', '.join(NAM_GEAR_TYPES)}")
        if self.tone_type is not None and self.tone_type not in NAM_TONE_TYPES:
            raise ExportError(f"tone type {self.tone_type!r} is not one of NAM's: {', '.join(NAM_TONE_TYPES)}")


@dataclass
class ExportReport:
    format: str
    path: str
    family: str
    max_abs_error: float
    checked_samples: int
    metadata: dict[str, Any]
    notes: list[str]


# --- what can go where ------------------------------------------------------------------


def export_support(model: EffectModel) -> dict[str, str | None]:
    """format -> None if ``model`` can be written in it, else the reason it cannot."""
    from fxdist.realtime import stream_module

    family, cfg = model.family, model.cfg
    out: dict[str, str | None] = {}
    unscriptable = stream_module(model).unscriptable  # both formats hold the streaming module
    stream = f"{unscriptable} (process files with `fxdist process`)" if unscriptable else None
    out["torchscript"] = stream
    out["onnx"] = stream
    if family == "wavenet":
        out["nam"] = None if cfg.layout == "nam" else (
            "NAM's WaveNet differs from fxdist's layout (NAM: bias-free input re-channel, an input mixer "
            "per layer, no skip 1x1s, head = head_scale * per-stack head 1x1, no ReLU head/input skip/MoL); "
            "train with layout: nam (fxdist/presets/model/wavenet-nam.yaml)"
        )
    elif family == "lstm":
        if cfg.cell != "lstm":
            out["nam"] = "NAM has no GRU architecture"
        elif cfg.input_skip:
            out["nam"] = "NAM's LSTM has no input skip (y = head(h)); train with input_skip: false"
        else:
            out["nam"] = None
    else:
        out["nam"] = f"NAM's architectures are WaveNet, LSTM and Linear; fxdist's {family} is none of them"
    out["rtneural"] = None if family == "lstm" else (
        f"the RTNeural JSON path (AIDA-X) holds recurrent + dense models; fxdist's {family} is "
        + ("time-varying" if model.time_varying else "convolutional")
    )
    out["ir"] = None if family == "fir" else (
        f"an impulse response holds a linear time-invariant effect; fxdist's {family} is "
        + ("time-varying" if model.time_varying else "not linear")
    )
    return out


def check_format(model: EffectModel, fmt: str) -> None:
    """Raise ExportError naming the formats this model's family can use if ``fmt`` is not one."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    support = export_support(model)
    if support[fmt] is not None:
        ok = [f for f, why in support.items() if why is None]
        raise ExportError(
            f"cannot export a {_describe(model)} model as {fmt}: {support[fmt]}. "
            f"Formats this model can use: {', '.join(ok) or 'none'}. By family: {_family_table()}"
        )


def _describe(model: EffectModel) -> str:
    cfg = model.cfg
    if model.family == "wavenet":
        return f"wavenet (layout {cfg.layout})"
    if model.family == "lstm":
        return f"lstm (cell {cfg.cell}, input_skip {cfg.input_skip})"
    return model.family


def _family_table() -> str:
    return (
        "wavenet: onnx, torchscript, nam (layout nam only); lstm: onnx, torchscript, rtneural, "
        "nam (cell lstm, input_skip false); tcn: onnx, torchscript; fcn: onnx, torchscript; cnn: none; "
        "fir: onnx, torchscript, ir; wh, chorus, grainpitch: onnx, torchscript; compressor, pvpitch: none"
    )


# --- reference signal and measured metadata -----------------------------------------------


def reference_signal(sample_rate: int, seconds: float = 1.0) -> np.ndarray:
    """A seeded guitar-range test signal (N,) at RMS -15 dBFS, the level of NAM's loudness clip."""
    from fxdist.data.generate import GenerateConfig, generate_track

    cfg = GenerateConfig(
        seed=0, sample_rate=sample_rate, segments_per_track=1, segment_seconds=seconds,
        max_freq=min(1200.0, 0.4 * sample_rate), max_gap_probability=0.0, level_range_db=0.0,
    )
    x = generate_track(cfg, 0).astype(np.float64)
    rms = np.sqrt(np.mean(x**2))
    return (x * (10 ** (REFERENCE_RMS_DB / 20) / max(rms, 1e-12))).astype(np.float32)


@contextmanager
def one_thread():
    """Run torch on one thread: a recurrent step on several threads of a busy machine is ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def offline_output(model: EffectModel, x: np.ndarray) -> np.ndarray:
    """model.forward over (N,) preceded by silence (conv) / from zero state (recurrent) -> (N,)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).view(1, 1, -1)
    if not model.stateful:
        t = torch.cat([t.new_zeros(1, 1, model.receptive_field - 1), t], dim=-1)
    with one_thread():
        return model.eval()(t)[0][0, 0].numpy()


def measure_loudness(model: EffectModel, sample_rate: int) -> tuple[float, float]:
    """(loudness dB RMS of the output on the reference, NAM-style gain 0..1) as NAM computes them."""
    x = reference_signal(sample_rate)
    rms = [float(np.sqrt(np.mean(offline_output(model, g * x).astype(np.float64) ** 2))) for g in np.linspace(0, 1, 11)]
    loudness = 20 * np.log10(max(rms[-1], 1e-12))
    max_gain = rms[-1] * len(rms)
    this = sum(rms)
    gain = float(np.clip((this - 0.5 * max_gain) / max(0.5 * max_gain, 1e-12), 0.0, 1.0))
    return float(loudness), gain


# --- entry points ---------------------------------------------------------------------------


def export_checkpoint(
    checkpoint: str | Path,
    fmt: str,
    out: str | Path,
    name: str | None = None,
    gear_type: str | None = None,
    gear_make: str | None = None,
    gear_model: str | None = None,
    tone_type: str | None = None,
    modeled_by: str | None = None,
    nam_version: str = "0.5",
) -> ExportReport:
    """Load a checkpoint, fill metadata (checkpoint + measured loudness), write and verify ``out``."""
    from fxdist.checkpoint import load_model

    model, ckpt = load_model(checkpoint)
    check_format(model, fmt)
    effect = ckpt.metadata.get("effect_id") if isinstance(ckpt.metadata, dict) else None
    esr = ckpt.best_val_esr if ckpt.best_val_esr is not None else ckpt.val_esr
    loudness, gain = measure_loudness(model, ckpt.sample_rate)
    meta = ExportMetadata(
        name=name or effect or Path(checkpoint).stem, sample_rate=int(ckpt.sample_rate), loudness_db=loudness,
        gain=gain, validation_esr=None if esr is None else float(esr), gear_type=gear_type, gear_make=gear_make,
        gear_model=gear_model, tone_type=tone_type, modeled_by=modeled_by, effect_id=effect,
    )
    return export_model(model, fmt, out, meta, nam_version=nam_version)


def export_model(
    model: EffectModel,
    fmt: str,
    out: str | Path,
    meta: ExportMetadata,
    nam_version: str = "0.5",
    check_seconds: float = 0.5,
) -> ExportReport:
    """Write ``model`` as ``fmt`` to ``out`` atomically, then read it back and compare outputs."""
    check_format(model, fmt)
    model = model.eval()
    out = Path(out)
    notes: list[str] = []
    if fmt == "torchscript":
        write_torchscript(model, out, meta)
    elif fmt == "onnx":
        write_onnx(model, out, meta)
    elif fmt == "nam":
        if nam_version not in NAM_VERSIONS:
            raise ExportError(f"nam version {nam_version!r} unknown; known: {', '.join(NAM_VERSIONS)}")
        write_text_atomic(out, json.dumps(nam_dict(model, meta, nam_version)))
        notes.append(f".nam file version {NAM_VERSIONS[nam_version]}")
    elif fmt == "ir":
        write_ir(model, out, meta)
        notes.append(f"{model.cfg.length} taps ({model.cfg.length / meta.sample_rate * 1000:.1f} ms), 32-bit float WAV")
    else:
        write_text_atomic(out, json.dumps(rtneural_dict(model, meta)))
        notes += _aidax_notes(model)
    x = reference_signal(meta.sample_rate, check_seconds)
    got = read_back(fmt, out, x)
    want = offline_output(model, x)
    err = float(np.max(np.abs(got.astype(np.float64) - want)))
    if not err < 1e-4:
        raise ExportError(f"{out}: {fmt} export does not reproduce the model: max abs error {err:.3g} > 1e-4")
    return ExportReport(fmt, str(out), model.family, err, len(x), _meta_dict(meta), notes)


def read_back(fmt: str, path: str | Path, x: np.ndarray, blocks: list[int] | None = None) -> np.ndarray:
    """Run an exported file on (N,) through an independent reader; streaming formats in ``blocks``."""
    if fmt == "nam":
        return nam_forward(json.loads(Path(path).read_text()), x)
    if fmt == "rtneural":
        return rtneural_forward(json.loads(Path(path).read_text()), x)
    if fmt == "ir":
        return ir_forward(path, x)
    blocks = blocks or _irregular_blocks(len(x))
    if fmt == "torchscript":
        with one_thread():
            return _torchscript_run(path, x, blocks)
    if fmt == "onnx":
        return _onnx_run(path, x, blocks)
    raise ExportError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """``torch.jit.load`` without its deprecation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path))


def _torchscript_run(path: str | Path, x: np.ndarray, blocks: list[int]) -> np.ndarray:
    module = load_torchscript(path)
    state = module.initial_state(1)
    parts, start = [], 0
    with torch.no_grad():
        for n in blocks:
            y, state = module(torch.from_numpy(x[start : start + n]).view(1, 1, -1), state)
            parts.append(y[0, 0].numpy())
            start += n
    return np.concatenate(parts)


def _irregular_blocks(total: int) -> list[int]:
    sizes, out, i = [1, 7, 64, 256, 33, 500, 2], [], 0
    while total > 0:
        n = min(sizes[i % len(sizes)], total)
        out.append(n)
        total -= n
        i += 1
    return out


def _meta_dict(meta: ExportMetadata) -> dict[str, Any]:
    return {k: v for k, v in asdict(meta).items() if v is not None}


# --- TorchScript ----------------------------------------------------------------------------


def write_torchscript(model: EffectModel, out: str | Path, meta: ExportMetadata) -> None:
    """Write the scripted streaming module of ``model`` (no verification; see export_model)."""
    from fxdist.models.registry import model_config_dict
    from fxdist.realtime import script_module, stream_module

    scripted = script_module(stream_module(model))
    extra = {"fxdist.json": json.dumps({**_meta_dict(meta), "model_config": model_config_dict(model),
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


# --- ONNX -------------------------------------------------------------------------------------


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

    from fxdist.models.registry import model_config_dict
    from fxdist.realtime import stream_module

    module = stream_module(model, conv_as="conv")
    state = module.initial_state(1)
    n = len(state)
    x = torch.zeros(1, 1, 16)
    names_in = ["x"] + [f"state_in_{i}" for i in range(n)]
    names_out = ["y"] + [f"state_out_{i}" for i in range(n)]
    batch_axis = 1 if model.stateful else 0
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
        "fxdist.metadata": json.dumps(_meta_dict(meta)),
        "fxdist.model_config": json.dumps(model_config_dict(model)),
        "fxdist.receptive_field": str(model.receptive_field),
        "fxdist.initial_state": json.dumps([_b64(s) for s in state]),
        "sample_rate": str(meta.sample_rate),
        "name": meta.name,
    }
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.producer_version = "fxdist", __version__
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))


_STATE_DTYPES = {"float32": "<f4", "int64": "<i8"}  # stored state tensors: name -> little-endian numpy dtype


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
    config = json.loads(props["fxdist.model_config"])
    out = []
    for entry in json.loads(props["fxdist.initial_state"]):
        kind = "int64" if "int64_le_base64" in entry else "float32"
        a = np.frombuffer(base64.b64decode(entry[f"{kind}_le_base64"]), dtype=_STATE_DTYPES[kind])
        axis = 1 if config.get("family") == "lstm" else 0
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


def _onnx_run(path: str | Path, x: np.ndarray, blocks: list[int]) -> np.ndarray:
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


# --- impulse response WAV ------------------------------------------------------------------


def write_ir(model: EffectModel, out: str | Path, meta: ExportMetadata) -> None:
    """The taps of a ``fir`` model as a mono 32-bit float WAV at the model's rate (atomic)."""
    import soundfile as sf

    taps = model.taps.detach().cpu().numpy().astype(np.float32)
    with atomic_path(out) as tmp:
        sf.write(str(tmp), taps, meta.sample_rate, subtype="FLOAT", format="WAV")


def ir_forward(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Convolve (N,) with the impulse response in a WAV file (as an IR loader does) -> (N,)."""
    import soundfile as sf
    from scipy.signal import fftconvolve

    h, _ = sf.read(str(path), dtype="float64", always_2d=True)
    return fftconvolve(np.asarray(x, dtype=np.float64), h[:, 0])[: len(x)].astype(np.float32)


# --- NAM ---------------------------------------------------------------------------------------


def _flat(*tensors: torch.Tensor) -> list[float]:
    return [float(v) for t in tensors for v in t.detach().reshape(-1).tolist()]


def nam_dict(model: EffectModel, meta: ExportMetadata, nam_version: str = "0.5") -> dict[str, Any]:
    """The .nam JSON of a NAM-compatible model (see module docstring); weights in NAM's order."""
    check_format(model, "nam")
    if model.family == "lstm":
        architecture, config, weights = "LSTM", _nam_lstm_config(model), _nam_lstm_weights(model)
    else:
        architecture, config, weights = "WaveNet", _nam_wavenet_config(model, nam_version), _nam_wavenet_weights(model)
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
        "architecture": architecture,
        "config": config,
        "weights": weights,
        "sample_rate": meta.sample_rate,
    }


def _nam_lstm_config(model: EffectModel) -> dict[str, Any]:
    return {"input_size": 1, "hidden_size": model.cfg.hidden_size, "num_layers": model.cfg.num_layers}


def _nam_lstm_weights(model: EffectModel) -> list[float]:
    """Per layer: [W_ih | W_hh] (4H, in + H) row-major, b_ih + b_hh, initial h, initial c; head W, b."""
    rnn, hidden = model.rnn, model.cfg.hidden_size
    out: list[float] = []
    for layer in range(model.cfg.num_layers):
        w = torch.cat([getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}")], dim=1)
        b = getattr(rnn, f"bias_ih_l{layer}") + getattr(rnn, f"bias_hh_l{layer}")
        out += _flat(w, b, torch.zeros(hidden), torch.zeros(hidden))  # fxdist starts from a zero state
    return out + _flat(model.head.weight, model.head.bias)


def _nam_activation(model: EffectModel) -> str:
    return "Tanh" if model.cfg.gated or model.cfg.activation == "tanh" else "ReLU"


def _nam_wavenet_config(model: EffectModel, nam_version: str) -> dict[str, Any]:
    cfg = model.cfg
    layers = []
    for s, stack in enumerate(cfg.stacks):
        last = s == len(cfg.stacks) - 1
        head_size = 1 if last else cfg.stacks[s + 1].channels
        common = {
            "input_size": 1 if s == 0 else cfg.stacks[s - 1].channels,
            "condition_size": 1,
        }
        n = len(stack.dilations)
        if nam_version == "0.5":
            layers.append({
                **common, "head_size": head_size, "channels": stack.channels, "kernel_size": stack.kernel_size,
                "dilations": list(stack.dilations), "activation": _nam_activation(model), "gated": cfg.gated,
                "head_bias": last,
            })
        else:
            off = {"active": False, "shift": True, "groups": 1}
            layers.append({
                **common, "head": {"out_channels": head_size, "kernel_size": 1, "bias": last},
                "channels": stack.channels, "kernel_sizes": [stack.kernel_size] * n,
                "dilations": list(stack.dilations), "activation": [{"type": _nam_activation(model)}] * n,
                "bottleneck": stack.channels, "head1x1": {"active": False, "out_channels": 1, "groups": 1},
                "layer1x1": {"active": True, "groups": 1}, "groups_input": 1, "groups_input_mixin": 1,
                **{k: dict(off) for k in ("conv_pre_film", "conv_post_film", "input_mixin_pre_film",
                                          "input_mixin_post_film", "activation_pre_film", "activation_post_film",
                                          "layer1x1_post_film", "head1x1_post_film")},
                "gating_mode": ["gated" if cfg.gated else "none"] * n,
                "secondary_activation": [{"type": "Sigmoid"} if cfg.gated else None] * n,
                "slimmable": None,
            })
    return {"layers": layers, "head": None, "head_scale": float(cfg.head_scale)}


def _nam_wavenet_weights(model: EffectModel) -> list[float]:
    """Per stack: rechannel W; per layer conv W, b, mixer W, 1x1 W, b; head 1x1 W (, b); head_scale."""
    out: list[float] = []
    starts = model._stack_starts
    for s in range(len(model.cfg.stacks)):
        out += _flat(model.rechannel[s].weight)
        for layer in model.layers[starts[s] : starts[s + 1]]:
            out += _flat(layer.conv.weight, layer.conv.bias, layer.mixer.weight)
            if layer.res is not None:
                out += _flat(layer.res.weight, layer.res.bias)
            else:  # NAM has this 1x1 on the very last layer too; its output is unused there
                c = layer.conv.in_channels
                out += [0.0] * (c * c + c)
        head = model.head_rechannel[s]
        out += _flat(head.weight) + (_flat(head.bias) if head.bias is not None else [])
    return out + [float(model.cfg.head_scale)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


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
            z = np.tanh(a[:c]) * _sigmoid(a[c:]) if gated else (np.tanh(a) if act == "Tanh" else np.maximum(a, 0))
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
            c = _sigmoid(f_) * c + _sigmoid(i_) * np.tanh(g_)
            h = _sigmoid(o_) * np.tanh(c)
            cell[2], cell[3] = h, c
            inp = h
        y[t] = head_w @ inp + head_b
    return y


# --- RTNeural ------------------------------------------------------------------------------------


def rtneural_dict(model: EffectModel, meta: ExportMetadata) -> dict[str, Any]:
    """RTNeural/AIDA-X JSON: Keras kernel layouts (in, G*H), gates i,f,c,o (LSTM) / z,r,h (GRU)."""
    check_format(model, "rtneural")
    cfg, rnn = model.cfg, model.rnn
    hidden = cfg.hidden_size
    layers = []
    for layer in range(cfg.num_layers):
        w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}").detach(), getattr(rnn, f"weight_hh_l{layer}").detach()
        b_ih, b_hh = getattr(rnn, f"bias_ih_l{layer}").detach(), getattr(rnn, f"bias_hh_l{layer}").detach()
        if cfg.cell == "lstm":  # PyTorch's i, f, g, o is Keras's i, f, c, o; RTNeural adds no second bias
            weights = [w_ih.T.tolist(), w_hh.T.tolist(), (b_ih + b_hh).tolist()]
        else:  # PyTorch r, z, n -> Keras z, r, h; reset_after: input and recurrent biases kept apart
            order = torch.arange(3 * hidden).view(3, hidden)[[1, 0, 2]].reshape(-1)
            weights = [w_ih[order].T.tolist(), w_hh[order].T.tolist(), [b_ih[order].tolist(), b_hh[order].tolist()]]
        layers.append({"type": cfg.cell, "activation": "", "shape": [None, None, hidden], "weights": weights})
    layers.append({
        "type": "dense", "activation": "", "shape": [None, None, 1],
        "weights": [model.head.weight.detach().T.tolist(), model.head.bias.detach().tolist()],
    })
    metadata = {
        "name": meta.name, "samplerate": str(meta.sample_rate), "author": meta.modeled_by,
        "based": " ".join(v for v in (meta.gear_make, meta.gear_model) if v) or None, "style": meta.tone_type,
        "gear_type": meta.gear_type, "esr": meta.validation_esr, "loudness": meta.loudness_db,
        "source": f"fxdist {__version__}", "effect_id": meta.effect_id, "date": meta.date,
    }
    return {
        "in_shape": [None, None, 1],
        "in_skip": 1 if cfg.input_skip else 0,
        "layers": layers,
        "metadata": {k: v for k, v in metadata.items() if v is not None},
    }


def _aidax_notes(model: EffectModel) -> list[str]:
    sizes = (8, 12, 16, 20, 24, 32, 40, 64, 80)
    if model.cfg.num_layers != 1 or model.cfg.hidden_size not in sizes:
        return [
            (f"AIDA-X loads only 1-layer LSTM/GRU of hidden size {sizes}; this file needs RTNeural's "
             f"dynamic json_parser (num_layers {model.cfg.num_layers}, hidden {model.cfg.hidden_size})")
        ]
    return []


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
                cells[j] = _sigmoid(f_) * cells[j] + _sigmoid(i_) * np.tanh(c_)
                h = _sigmoid(o_) * np.tanh(cells[j])
            else:
                wx, uh = v @ kernel, h @ rec
                zr = _sigmoid(wx[: 2 * hidden] + uh[: 2 * hidden] + b[0, : 2 * hidden] + b[1, : 2 * hidden])
                z, r = zr[:hidden], zr[hidden:]
                c = np.tanh(wx[2 * hidden :] + b[0, 2 * hidden :] + r * (uh[2 * hidden :] + b[1, 2 * hidden :]))
                h = (1 - z) * c + z * h
            states[j] = h
            v = h
        y[t] = v[0] + (sample if skip else 0.0)
    return y
