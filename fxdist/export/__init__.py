"""Export trained models to the formats players load: NAM, ONNX, TorchScript, RTNeural JSON, IR WAV.

Every export is numerically verified after writing (``ExportReport.max_abs_error``): the file
is read back by an independent path and run on a reference signal, in irregular blocks for
the streaming formats, against ``model.forward`` over the whole signal preceded by silence.
One module per format (``nam``, ``onnx``, ``torchscript``, ``rtneural``, ``ir``) writes it and
holds its reader; each model says which formats it can use and why not
(``EffectModel.export_formats``), and ``format_table`` lists them by family from the registry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fxdist.errors import ExportError
from fxdist.export.formats import FORMATS, SUFFIXES, check_format, export_support, family_formats, format_table
from fxdist.export.ir import ir_forward, write_ir
from fxdist.export.metadata import NAM_GEAR_TYPES, NAM_TONE_TYPES, ExportMetadata, ExportReport, meta_dict
from fxdist.export.nam import NAM_VERSIONS, nam_dict, nam_forward, nam_read, write_nam
from fxdist.export.onnx import ONNX_OPSET, onnx_initial_state, onnx_run, onnx_session, write_onnx
from fxdist.export.reference import (
    REFERENCE_RMS_DB,
    irregular_blocks,
    measure_loudness,
    offline_output,
    one_thread,
    reference_signal,
)
from fxdist.export.rtneural import rtneural_dict, rtneural_forward, rtneural_read, write_rtneural
from fxdist.export.torchscript import load_torchscript, torchscript_metadata, torchscript_run, write_torchscript
from fxdist.models.base import EffectModel

__all__ = [
    "FORMATS", "check_suffix", "NAM_GEAR_TYPES", "NAM_TONE_TYPES", "NAM_VERSIONS", "ONNX_OPSET", "REFERENCE_RMS_DB", "SUFFIXES",
    "ExportError", "ExportMetadata", "ExportReport", "check_format", "export_checkpoint", "export_model",
    "export_support", "family_formats", "format_table", "ir_forward", "load_torchscript", "measure_loudness",
    "nam_dict", "nam_forward", "offline_output", "one_thread", "onnx_initial_state", "onnx_session", "read_back",
    "reference_signal", "rtneural_dict", "rtneural_forward", "torchscript_metadata", "write_ir", "write_nam",
    "write_onnx", "write_rtneural", "write_torchscript",
]


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

    check_suffix(fmt, out)
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


def check_suffix(fmt: str, out: str | Path) -> None:
    """Refuse an output name whose suffix says another format (an ONNX file named .wav)."""
    if fmt not in SUFFIXES:
        raise ExportError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    out = Path(out)
    if out.suffix.lower() != SUFFIXES[fmt]:
        raise ExportError(
            f"{out}: a {fmt} export is written as {SUFFIXES[fmt]}, not {out.suffix or 'a name without suffix'}; "
            f"name it {out.with_suffix(SUFFIXES[fmt]).name}"
        )


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
    check_suffix(fmt, out)
    model = model.eval()
    out = Path(out)
    notes = _write(model, fmt, out, meta, nam_version)
    x = reference_signal(meta.sample_rate, check_seconds)
    got = read_back(fmt, out, x)
    want = offline_output(model, x)
    err = float(np.max(np.abs(got.astype(np.float64) - want)))
    if not err < 1e-4:
        raise ExportError(f"{out}: {fmt} export does not reproduce the model: max abs error {err:.3g} > 1e-4")
    return ExportReport(fmt, str(out), model.family, err, len(x), meta_dict(meta), notes)


def _write(model: EffectModel, fmt: str, out: Path, meta: ExportMetadata, nam_version: str) -> list[str]:
    """Write one format; the notes for the user."""
    if fmt == "nam":
        return write_nam(model, out, meta, nam_version)
    if fmt == "torchscript":
        write_torchscript(model, out, meta)
    elif fmt == "onnx":
        write_onnx(model, out, meta)
    elif fmt == "ir":
        return write_ir(model, out, meta)
    else:
        return write_rtneural(model, out, meta)
    return model.export_notes(fmt)


def read_back(fmt: str, path: str | Path, x: np.ndarray, blocks: list[int] | None = None) -> np.ndarray:
    """Run an exported file on (N,) through an independent reader; streaming formats in ``blocks``."""
    if fmt == "nam":
        return nam_read(path, x)
    if fmt == "rtneural":
        return rtneural_read(path, x)
    if fmt == "ir":
        return ir_forward(path, x)
    blocks = blocks or irregular_blocks(len(x))
    if fmt == "torchscript":
        return torchscript_run(path, x, blocks)
    if fmt == "onnx":
        return onnx_run(path, x, blocks)
    raise ExportError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
