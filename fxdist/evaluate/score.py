"""Run checkpoints over evaluation data and score them against the do-nothing baseline.

``evaluate`` writes one model's metrics.json, figures, audio and report.html; ``compare``
scores several checkpoints on the same data; ``start_abx`` serves the blind listening
test (``fxdist.abx``) on a model's outputs. Models run through ``fxdist.process``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fxdist import __version__
from fxdist.checkpoint import Checkpoint, load_model
from fxdist.errors import CheckpointError, ModelError
from fxdist.evaluate.checkpoints import find_checkpoints, short_labels
from fxdist.evaluate.data import EvalData, Track, conform, load_data
from fxdist.evaluate.report import _METRIC_TEXT, render_compare, render_report
from fxdist.evaluate.verdict import verdict
from fxdist.fsutil import write_text_atomic
from fxdist.process import pick_device, predict

# Effect kinds whose character is a static input -> output level curve.
AMPLITUDE_KINDS = ("distortion", "fuzz", "compression", "amp_cab")
# Effect kinds judged by their response to a click; seconds of response to plot.
TIME_KINDS = {"delay": 1.5, "reverb": 2.5, "chorus": 0.5}
# Metrics drawn as bar charts by ``compare``.
COMPARE_METRICS = ("esr", "esr_ratio", "mrstft_ratio", "snr_db", "log_mel")


@contextlib.contextmanager
def exact_math() -> Iterator[None]:
    """Turn TF32 off (cuDNN and matmul) while inside, so GPU results match float32 CPU ones."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def run_model(model, x: np.ndarray, block: int = 65536, device: str | torch.device = "cpu") -> np.ndarray:
    """The model's output for mono ``x`` (N,) -> float32 (N,), streamed in blocks, TF32 off."""
    with exact_math():
        return predict(model, np.asarray(x, dtype=np.float32), block, device).astype(np.float32)


def model_info(path: str | os.PathLike, model, ckpt: Checkpoint) -> dict:
    """What the report says about a model: model family, size, receptive field, rate, training result."""
    meta = ckpt.metadata or {}
    return {
        "checkpoint": str(Path(path).resolve()),
        "family": ckpt.model_config.get("family"),
        "params": int(sum(p.numel() for p in model.parameters())),
        "receptive_field": int(ckpt.receptive_field),
        "sample_rate": int(ckpt.sample_rate),
        "best_val_esr": ckpt.best_val_esr,
        "baseline_val_esr": meta.get("baseline_val_esr"),
        "effect_id": meta.get("effect_id"),
        "step": ckpt.step,
        "model_config": ckpt.model_config,
    }


def _load(path: str | os.PathLike, device: torch.device):
    try:
        model, ckpt = load_model(path, map_location="cpu")
    except (OSError, ValueError, RuntimeError, KeyError) as exc:  # an unusable file, whatever the cause
        raise CheckpointError(f"{path}: cannot rebuild the model ({exc})") from exc
    return model.to(device), ckpt



def _score(
    model, data: EvalData, block: int, device: torch.device, name: str | os.PathLike = "model"
) -> tuple[list[np.ndarray], list[dict], dict]:
    """Model outputs, per-track metrics and length-weighted overall metrics."""
    from fxdist.metrics import aggregate, evaluate_pair

    preds, per_track = [], []
    for t in data.tracks:
        pred = run_model(model, t.clean, block, device)
        if not np.all(np.isfinite(pred)):
            bad = int(np.argmax(~np.isfinite(pred)))
            raise ModelError(f"{name}: output for track {t.track_id} holds NaN/Inf (first at sample {bad})")
        preds.append(pred)
        m = evaluate_pair(t.clean, t.effect, pred, t.sample_rate)
        per_track.append({"seconds": round(t.clean.size / t.sample_rate, 4), "samples": int(t.clean.size), **m})
    overall = aggregate([{k: v for k, v in m.items() if k not in ("seconds", "samples")} for m in per_track],
                        weights=[t.clean.size for t in data.tracks])
    overall["seconds"] = round(data.seconds, 4)
    return preds, per_track, overall



@dataclass
class EvalReport:
    """Where ``evaluate`` wrote its results, and the numbers themselves."""

    out_dir: Path
    metrics_json: Path
    report_html: Path
    overall: dict
    tracks: dict[str, dict]
    model: dict
    data: dict
    verdict: str
    verdict_level: str
    plots: dict[str, dict[str, Path]]
    audio: dict[str, dict[str, Path]]
    impulse_png: Path | None = None


def evaluate(
    model_path: str | os.PathLike,
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    split: str = "test",
    max_seconds: float | None = None,
    block: int = 65536,
    write_audio: bool = True,
    plots: bool = True,
    resample: bool = False,
    max_tracks: int | None = None,
    device: str = "auto",
) -> EvalReport:
    """Run the checkpoint over ``data`` and write metrics.json, figures, audio and report.html.

    ``data``: a shard set (path/URI with manifest.json; ``split`` is used) or a folder of
    clean/processed pairs. A rate differing from the model's is refused unless ``resample``.
    """
    started = time.perf_counter()
    dev = pick_device(device)
    model, ckpt = _load(model_path, dev)
    info = model_info(model_path, model, ckpt)
    loaded = conform(load_data(data, split, max_seconds, max_tracks), ckpt.sample_rate, resample, model_path)
    sr = ckpt.sample_rate
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes = _notes(info, loaded)
    if info["effect_id"] and loaded.effect_id and info["effect_id"] != loaded.effect_id:
        print(f"note: {notes[0]}", file=sys.stderr)  # conform already told about resampling

    preds, per_track, overall = _score(model, loaded, block, dev, model_path)
    spectral = model.spectral_output
    level, sentence = verdict(overall, spectral)
    effect_kind = loaded.effect_kind
    plot_paths: dict[str, dict[str, Path]] = {}
    audio_paths: dict[str, dict[str, Path]] = {}
    for t, pred in zip(loaded.tracks, preds):
        folder = out / t.track_id
        if write_audio:
            audio_paths[t.track_id] = _write_track_audio(folder, t, pred, sr)
        if plots:
            plot_paths[t.track_id] = _track_plots(folder, t, pred, sr, effect_kind)
    impulse = None
    impulse_esr = None
    if plots and effect_kind in TIME_KINDS and loaded.effect_config:
        impulse, impulse_esr = _impulse_plot(out / "impulse_response.png", model, loaded, sr, block, dev)

    tracks = {}
    for t, m in zip(loaded.tracks, per_track):
        entry = dict(m)
        entry["plots"] = {k: p.relative_to(out).as_posix() for k, p in plot_paths.get(t.track_id, {}).items()}
        entry["audio"] = {k: p.relative_to(out).as_posix() for k, p in audio_paths.get(t.track_id, {}).items()}
        tracks[t.track_id] = entry
    data_info = loaded.describe()
    result = {
        "fxdist_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": info,
        "data": data_info,
        "overall": overall,
        "verdict": sentence,
        "verdict_level": level,
        "judged_by": "mrstft" if spectral else "esr",
        "notes": notes,
        "impulse_response": None if impulse is None else {"png": impulse.name, "esr": impulse_esr},
        "tracks": tracks,
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    metrics_json = out / "metrics.json"
    write_text_atomic(metrics_json, json.dumps(result, indent=2, allow_nan=False) + "\n")
    report_html = out / "report.html"
    write_text_atomic(report_html, render_report(result, out))
    return EvalReport(out, metrics_json, report_html, overall, tracks, info, data_info,
                      sentence, level, plot_paths, audio_paths, impulse)


def _notes(info: dict, data: EvalData) -> list[str]:
    notes = []
    if info["effect_id"] and data.effect_id and info["effect_id"] != data.effect_id:
        notes.append(f"the model was trained on effect {info['effect_id']!r} but the data is of {data.effect_id!r}")
    if data.resampled_from:
        rates = ", ".join(map(str, sorted(set(data.resampled_from))))
        notes.append(f"the data was resampled from {rates} Hz to the model's {info['sample_rate']} Hz")
    return notes


def _write_track_audio(folder: Path, t: Track, pred: np.ndarray, sr: int) -> dict[str, Path]:
    from fxdist.audio import write_audio

    return {name: write_audio(folder / f"{name}.wav", x, sr, subtype="FLOAT")
            for name, x in (("clean", t.clean), ("effect", t.effect), ("model", pred))}


def _track_plots(folder: Path, t: Track, pred: np.ndarray, sr: int, effect_kind: str | None) -> dict[str, Path]:
    from fxdist import plots

    c, e = t.clean, t.effect
    out = {
        "spectrograms": plots.spectrograms(c, pred, e, sr, folder / "spectrograms.png",
                                           title=f"{t.track_id}: spectrograms of clean input, model and effect"),
        "waveforms": plots.waveforms(c, pred, e, sr, folder / "waveforms.png",
                                     title=f"{t.track_id}: does the model follow the effect sample by sample?"),
        "error_spectrum": plots.error_spectrum(pred, e, sr, folder / "error_spectrum.png",
                                               title=f"{t.track_id}: where in the spectrum the model is wrong"),
    }
    if effect_kind is None or effect_kind in AMPLITUDE_KINDS or effect_kind == "other":
        out["transfer_curve"] = plots.transfer_curve(c, pred, e, folder / "transfer_curve.png",
                                                     title=f"{t.track_id}: how each input level is mapped to an output level")
    return out


def _impulse_plot(path: Path, model, data: EvalData, sr: int, block: int, device) -> tuple[Path, float]:
    """Feed one click through the effect chain and the model; plot both responses."""
    from fxdist import plots
    from fxdist.effects import Chain
    from fxdist.metrics import esr

    chain = Chain.from_config(data.effect_config, source=f"{data.source} effect_config")
    click = plots.impulse_input(sr, duration_s=TIME_KINDS[chain.effect_kind])
    ir_effect = chain(click[None, :], sr, label="impulse")[0]
    ir_model = run_model(model, click, block, device)
    plots.impulse_responses(ir_effect, ir_model, sr, path,
                            title=f"Response to a single click: effect {chain.name!r} vs model")
    return path, esr(ir_model, ir_effect)



@dataclass
class CompareReport:
    """One row per model (best ESR first) and where the comparison was written."""

    rows: list[dict]
    out_dir: Path
    compare_json: Path
    report_html: Path
    plots: dict[str, Path]


def compare(
    models: str | os.PathLike | Sequence[str | os.PathLike],
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    split: str = "test",
    max_seconds: float | None = None,
    block: int = 65536,
    plots: bool = True,
    resample: bool = False,
    max_tracks: int | None = None,
    device: str = "auto",
    trust: bool = False,
) -> CompareReport:
    """Score several checkpoints on the same data: compare.json, a bar chart per key metric, compare.html.

    ``models``: checkpoint files and/or experiment folders (searched for ``**/best.pt``).
    Rows hold the model's label, checkpoint, model family, params, receptive field, stored best
    val ESR and the overall metrics; sorted by ESR, best first.
    """
    paths = find_checkpoints(models, trust=trust)
    labels = short_labels(paths)
    dev = pick_device(device)
    native = load_data(data, split, max_seconds, max_tracks)
    by_rate: dict[int, EvalData] = {}
    rows = []
    for path, label in zip(paths, labels):
        model, ckpt = _load(path, dev)
        if ckpt.sample_rate not in by_rate:
            by_rate[ckpt.sample_rate] = conform(native, ckpt.sample_rate, resample, path)
        _, _, overall = _score(model, by_rate[ckpt.sample_rate], block, dev, path)
        info = model_info(path, model, ckpt)
        row = {"model": label, **{k: v for k, v in info.items() if k != "model_config"}, **overall}
        row["verdict_level"], row["verdict"] = verdict(overall, model.spectral_output)
        rows.append(row)
    rows.sort(key=lambda r: r["esr"])
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bars: dict[str, Path] = {}
    if plots:
        from fxdist.plots import compare_bar

        for metric in COMPARE_METRICS:
            bars[metric] = compare_bar(rows, metric, out / f"compare_{metric}.png",
                                       title=f"{_METRIC_TEXT.get(metric, (metric,))[0]}: one bar per model")
    doc = {"fxdist_version": __version__, "data": native.describe(), "rows": rows,
           "plots": {k: p.name for k, p in bars.items()}}
    compare_json = out / "compare.json"
    write_text_atomic(compare_json, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    report_html = out / "compare.html"
    write_text_atomic(report_html, render_compare(doc, out))
    return CompareReport(rows, out, compare_json, report_html, bars)



def start_abx(
    model_path: str | os.PathLike,
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    split: str = "test",
    cfg=None,
    max_seconds: float | None = None,
    max_tracks: int | None = None,
    resample: bool = False,
    host: str = "127.0.0.1",
    port: int = 0,
    block: int = 65536,
    device: str = "auto",
):
    """Run the model over ``data`` and serve a blind ABX test of it (``fxdist.abx.run_abx``).

    Returns the running ``AbxServer`` (``.url``, ``.wait()``, ``.shutdown()``); results
    go to ``out_dir/abx_results.json`` after every answer.
    """
    from fxdist.abx import AbxConfig, run_abx

    dev = pick_device(device)
    model, ckpt = _load(model_path, dev)
    loaded = conform(load_data(data, split, max_seconds, max_tracks), ckpt.sample_rate, resample, model_path)
    preds = [run_model(model, t.clean, block, dev) for t in loaded.tracks]
    server = run_abx([t.clean for t in loaded.tracks], [t.effect for t in loaded.tracks], preds, out_dir,
                     sr=ckpt.sample_rate, cfg=cfg or AbxConfig(), host=host, port=port)
    server.session.meta.update({"checkpoint": str(Path(model_path).resolve()), "data": loaded.describe()})
    return server

