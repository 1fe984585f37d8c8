"""Judge a trained model on held-out audio: metrics, figures, audio and one HTML page.

``evaluate`` runs one checkpoint over the test split of a shard set (or over a folder of
recorded clean/processed pairs), scores every track against the do-nothing baseline
(the clean input at its best gain, see ``fxdist.metrics``), and writes into ``out_dir``::

    metrics.json            per track + overall + model info + plain-words verdict
    report.html             one page: verdict, metrics beside the baseline, players, figures
    impulse_response.png    time-based effects (delay, reverb, chorus) whose config is known
    <track>/clean.wav effect.wav model.wav          (float WAV, at the model's rate)
    <track>/spectrograms.png waveforms.png error_spectrum.png [transfer_curve.png]

``compare`` scores several checkpoints on the same data (one row each, best ESR first).
``start_abx`` serves the blind ABX listening test (``fxdist.abx``) on model outputs.

Data and model must share a sample rate; otherwise evaluation refuses, unless
``resample=True`` (the data is then resampled to the model's rate, with a note on stderr).
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from fxdist import __version__
from fxdist.checkpoint import Checkpoint, load_checkpoint, load_model
from fxdist.errors import CheckpointError, DataError, ModelError
from fxdist.fsutil import write_text_atomic

# Effect families whose character is a static input -> output level curve.
AMPLITUDE_FAMILIES = ("distortion", "fuzz", "compression", "amp_cab")
# Effect families judged by their response to a click; seconds of response to plot.
TIME_FAMILIES = {"delay": 1.5, "reverb": 2.5, "chorus": 0.5}
# Metrics drawn as bar charts by ``compare``.
COMPARE_METRICS = ("esr", "esr_ratio", "mrstft_ratio", "snr_db", "log_mel")
# The project's success rule: the model's ESR must be this many times below the baseline's.
SUCCESS_FACTOR = 10.0
# Models whose output need not follow the waveform (``EffectModel.spectral_output``: pitch
# shifters) are judged by MR-STFT distance; issue #8 asks for 3x below doing nothing.
SPECTRAL_FACTOR = 3.0
TINY = 1e-9


# ----------------------------------------------------------------------------- data


@dataclass
class Track:
    """One clean/effect pair, mono float32 (N,) each, with where it came from."""

    track_id: str
    clean: np.ndarray
    effect: np.ndarray
    sample_rate: int
    source: str


@dataclass
class EvalData:
    """The tracks to evaluate on and what is known about the effect that made them."""

    source: str
    kind: Literal["shards", "pairs"]
    tracks: list[Track]
    split: str | None = None
    effect_id: str | None = None
    effect_config: dict | None = None
    resampled_from: list[int] = field(default_factory=list)

    @property
    def effect_family(self) -> str | None:
        return (self.effect_config or {}).get("family")

    @property
    def seconds(self) -> float:
        return sum(t.clean.size / t.sample_rate for t in self.tracks)

    def describe(self) -> dict:
        rates = sorted({t.sample_rate for t in self.tracks})
        return {
            "source": self.source, "kind": self.kind, "split": self.split, "effect_id": self.effect_id,
            "effect_family": self.effect_family, "sample_rate": rates[0] if len(rates) == 1 else rates,
            "resampled_from": sorted(set(self.resampled_from)) or None,
            "tracks": len(self.tracks), "seconds": round(self.seconds, 3),
        }


def is_shard_set(data: str | os.PathLike) -> bool:
    """A URI (``s3://...``) or a folder holding ``manifest.json``."""
    text = os.fspath(data)
    return "://" in text or (Path(text) / "manifest.json").is_file()


def load_data(
    data: str | os.PathLike, split: str = "test", max_seconds: float | None = None, max_tracks: int | None = None
) -> EvalData:
    """Read the tracks of a shard set's ``split`` or of a pairs folder, at their own rate.

    A pairs folder is ``clean/`` + ``processed/`` with matching stems, or
    ``<name>_clean.wav`` + ``<name>_processed.wav`` (``fxdist.data.ingest.find_pairs``);
    stereo files are averaged. ``max_seconds`` keeps the first seconds of each track,
    ``max_tracks`` the first tracks.
    """
    if max_seconds is not None and max_seconds <= 0:
        raise DataError(f"max_seconds must be > 0, got {max_seconds}")
    if max_tracks is not None and max_tracks < 1:
        raise DataError(f"max_tracks must be >= 1, got {max_tracks}")
    if is_shard_set(data):
        out = _load_shards(data, split, max_tracks)
    elif Path(data).is_dir():
        out = _load_pairs(Path(data), max_tracks)
    else:
        raise DataError(
            f"{data}: neither a shard set (no manifest.json) nor a folder of clean/processed pairs"
        )
    if not out.tracks:
        raise DataError(f"{data}: no tracks to evaluate" + (f" in split {split!r}" if out.kind == "shards" else ""))
    if max_seconds is not None:
        for t in out.tracks:
            n = max(1, round(max_seconds * t.sample_rate))
            t.clean, t.effect = t.clean[:n], t.effect[:n]
    return out


def _load_shards(data: str | os.PathLike, split: str, max_tracks: int | None) -> EvalData:
    from fxdist.data.shards import read_manifest
    from fxdist.data.stream import iter_tracks

    manifest = read_manifest(data)
    manifest.split(split)  # ShardError naming the known splits
    tracks = []
    for track_id, clean, processed in iter_tracks(manifest, split):
        tracks.append(Track(track_id, clean, processed, manifest.sample_rate, f"{data}/manifest.json"))
        if max_tracks is not None and len(tracks) >= max_tracks:
            break
    return EvalData(os.fspath(data), "shards", tracks, split, manifest.effect_id, manifest.effect_config)


def _load_pairs(folder: Path, max_tracks: int | None) -> EvalData:
    from fxdist.audio import read_audio, to_mono
    from fxdist.data.ingest import find_pairs, pair_stem, sanitize_stem

    tracks: list[Track] = []
    seen: dict[str, Path] = {}
    for clean_path, proc_path in find_pairs(folder):
        (clean, sr_c), (proc, sr_p) = read_audio(clean_path), read_audio(proc_path)
        if sr_c != sr_p:
            raise DataError(f"{clean_path}: sample rate {sr_c} Hz but {proc_path.name} has {sr_p} Hz")
        clean, proc = to_mono(clean, clean_path, True)[0], to_mono(proc, proc_path, True)[0]
        if clean.size != proc.size:
            raise DataError(
                f"{clean_path}: length {clean.size} samples but {proc_path.name} has {proc.size}; "
                "align the pair first (fxdist data import-pairs finds the latency)"
            )
        track_id = sanitize_stem(pair_stem(clean_path))
        if track_id in seen:
            raise DataError(f"{clean_path}: track name {track_id!r} already used by {seen[track_id]}")
        seen[track_id] = clean_path
        tracks.append(Track(track_id, clean, proc, sr_c, str(clean_path)))
        if max_tracks is not None and len(tracks) >= max_tracks:
            break
    return EvalData(str(folder), "pairs", tracks)


def conform(data: EvalData, sample_rate: int, resample: bool = False, model_path: str | os.PathLike = "the model") -> EvalData:
    """``data`` at ``sample_rate``: unchanged if it is there; resampled (with a note) or refused."""
    from fxdist.audio import resample as resample_audio

    off = [t for t in data.tracks if t.sample_rate != sample_rate]
    if not off:
        return data
    if not resample:
        t = off[0]
        raise DataError(
            f"{t.source}: data at {t.sample_rate} Hz but model {model_path} works at {sample_rate} Hz; "
            f"pass resample=True (CLI: --resample) to resample the data to {sample_rate} Hz"
        )
    tracks = []
    for t in data.tracks:
        if t.sample_rate != sample_rate:
            pair = resample_audio(np.stack([t.clean, t.effect]), t.sample_rate, sample_rate)
            t = replace(t, clean=pair[0], effect=pair[1], sample_rate=sample_rate)
        tracks.append(t)
    rates = sorted({t.sample_rate for t in off})
    print(f"note: resampled {len(off)} track(s) of {data.source} from {', '.join(map(str, rates))} Hz "
          f"to the model's {sample_rate} Hz", file=sys.stderr)
    return replace(data, tracks=tracks, resampled_from=data.resampled_from + [t.sample_rate for t in off])


# ----------------------------------------------------------------------------- model


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
    from fxdist.process import predict

    with exact_math():
        return predict(model, np.asarray(x, dtype=np.float32), block, device).astype(np.float32)


def model_info(path: str | os.PathLike, model, ckpt: Checkpoint) -> dict:
    """What the report says about a model: family, size, receptive field, rate, training result."""
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


def _device(name: str) -> torch.device:
    from fxdist.process import pick_device

    return pick_device(name)


def is_tune_experiment(path: str | os.PathLike) -> bool:
    """A Ray Tune experiment folder written by ``fxdist.tune.sweep`` (it holds ``tuner.pkl``)."""
    return (Path(path) / "tuner.pkl").is_file()


def find_checkpoints(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Checkpoint files named by ``source``: files as given; folders searched for ``**/best.pt``.

    A Ray Tune experiment folder gives each trial's best checkpoint, best trial first
    (``fxdist.tune.best``), rather than every checkpoint it kept.
    """
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir() and is_tune_experiment(path):
            from fxdist.tune import best

            trials = best(path, top=1_000_000)
            if not trials:
                raise CheckpointError(f"{path}: no trial of this Ray Tune experiment has a best checkpoint yet")
            found.extend(Path(t.checkpoint) for t in trials)
        elif path.is_dir():
            inside = sorted(path.glob("**/best.pt"))
            if not inside:
                raise CheckpointError(f"{path}: no best.pt checkpoint in this folder or below")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise CheckpointError(f"{path}: no such checkpoint file or experiment folder")
    if not found:
        raise CheckpointError("no checkpoints given")
    return found


def best_checkpoint(source: str | os.PathLike) -> Path:
    """A checkpoint file as is; for a folder, its ``**/best.pt`` with the lowest stored best val ESR.

    For a Ray Tune experiment folder: its best trial's checkpoint (``fxdist.tune.best``).
    """
    paths = find_checkpoints(source)
    if is_tune_experiment(source):
        return paths[0]
    if len(paths) == 1:
        return paths[0]

    def score(p: Path) -> float:
        v = load_checkpoint(p).best_val_esr
        return math.inf if v is None else float(v)

    return min(paths, key=score)


# ----------------------------------------------------------------------------- scoring


def verdict(m: dict, spectral: bool = False) -> tuple[str, str]:
    """(level, sentence) for overall metrics: level is good, partial, bad or gain-only.

    The project's rule: a model "models the effect" when its ESR is at most a tenth of
    the do-nothing baseline's (the clean input at its best gain). ``spectral`` (a model whose
    output need not follow the waveform, e.g. a pitch shifter): judged instead by MR-STFT
    distance, at least ``SPECTRAL_FACTOR`` times below doing nothing's.
    """
    if spectral:
        return _spectral_verdict(float(m["mrstft"]), float(m["baseline_mrstft"]))
    e, b = float(m["esr"]), float(m["baseline_esr"])
    below = f"{-10 * math.log10(max(e, 1e-20)):.1f} dB below the effect"
    if b <= TINY:
        return "gain-only", (
            "This effect only changes the volume: the clean input at the right level already matches it "
            f"(do-nothing error {b:.2g}), so the tenfold rule cannot be applied. "
            f"The model's error is ESR {e:.3g} ({below})."
        )
    if m.get("models_effect", e <= b / SUCCESS_FACTOR):
        times = "infinitely" if e <= 0 else f"{b / e:.0f}×"
        return "good", (
            f"The model imitates the effect: its error (ESR {e:.3g}, {below}) is {times} smaller than "
            f"doing nothing (the clean input at the best volume, ESR {b:.3g}). The project asks for 10×."
        )
    if e < b:
        gain = b / e
        return "partial", (
            f"Not there yet: the model is closer to the effect than doing nothing, but only {gain:.1f}× "
            f"(ESR {e:.3g} vs {b:.3g}). The project asks for 10×, so its error must still shrink "
            f"{SUCCESS_FACTOR / gain:.1f}× (to ESR {b / SUCCESS_FACTOR:.3g})."
        )
    return "bad", (
        f"The model does not imitate the effect: its error (ESR {e:.3g}) is {e / b:.1f}× that of doing "
        f"nothing (ESR {b:.3g}). The project asks for 10× smaller, so its error must shrink "
        f"{SUCCESS_FACTOR * e / b:.0f}× (to ESR {b / SUCCESS_FACTOR:.3g})."
    )


def _spectral_verdict(d: float, b: float) -> tuple[str, str]:
    why = ("Its output need not follow the effect's waveform (a pitch shifter's phases are its own), "
           "so it is judged by how close its spectrogram is (MR-STFT distance), not by ESR.")
    gain = b / d if d > 0 else math.inf
    if gain >= SPECTRAL_FACTOR:
        return "good", (f"The model imitates the effect's sound: its MR-STFT distance ({d:.3g}) is {gain:.1f}× smaller "
                        f"than doing nothing's ({b:.3g}); fxdist asks for {SPECTRAL_FACTOR:g}×. {why}")
    if gain > 1:
        return "partial", (f"Not there yet: the model's MR-STFT distance ({d:.3g}) is {gain:.1f}× smaller than doing "
                           f"nothing's ({b:.3g}); fxdist asks for {SPECTRAL_FACTOR:g}× (to {b / SPECTRAL_FACTOR:.3g}). {why}")
    return "bad", (f"The model does not imitate the effect's sound: its MR-STFT distance ({d:.3g}) is not below doing "
                   f"nothing's ({b:.3g}); fxdist asks for {SPECTRAL_FACTOR:g}× smaller. {why}")


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


# ----------------------------------------------------------------------------- evaluate


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
    dev = _device(device)
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
    family = loaded.effect_family
    plot_paths: dict[str, dict[str, Path]] = {}
    audio_paths: dict[str, dict[str, Path]] = {}
    for t, pred in zip(loaded.tracks, preds):
        folder = out / t.track_id
        if write_audio:
            audio_paths[t.track_id] = _write_track_audio(folder, t, pred, sr)
        if plots:
            plot_paths[t.track_id] = _track_plots(folder, t, pred, sr, family)
    impulse = None
    impulse_esr = None
    if plots and family in TIME_FAMILIES and loaded.effect_config:
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


def _track_plots(folder: Path, t: Track, pred: np.ndarray, sr: int, family: str | None) -> dict[str, Path]:
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
    if family is None or family in AMPLITUDE_FAMILIES or family == "other":
        out["transfer_curve"] = plots.transfer_curve(c, pred, e, folder / "transfer_curve.png",
                                                     title=f"{t.track_id}: how each input level is mapped to an output level")
    return out


def _impulse_plot(path: Path, model, data: EvalData, sr: int, block: int, device) -> tuple[Path, float]:
    """Feed one click through the effect chain and the model; plot both responses."""
    from fxdist import plots
    from fxdist.effects import Chain
    from fxdist.metrics import esr

    chain = Chain.from_config(data.effect_config, source=f"{data.source} effect_config")
    click = plots.impulse_input(sr, duration_s=TIME_FAMILIES[chain.family])
    ir_effect = chain(click[None, :], sr, label="impulse")[0]
    ir_model = run_model(model, click, block, device)
    plots.impulse_responses(ir_effect, ir_model, sr, path,
                            title=f"Response to a single click: effect {chain.name!r} vs model")
    return path, esr(ir_model, ir_effect)


# ----------------------------------------------------------------------------- compare


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
) -> CompareReport:
    """Score several checkpoints on the same data: compare.json, a bar chart per key metric, compare.html.

    ``models``: checkpoint files and/or experiment folders (searched for ``**/best.pt``).
    Rows hold the model's label, checkpoint, family, params, receptive field, stored best
    val ESR and the overall metrics; sorted by ESR, best first.
    """
    paths = find_checkpoints(models)
    labels = short_labels(paths)
    dev = _device(device)
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


def short_labels(paths: Sequence[Path]) -> list[str]:
    """Shortest distinct trailing path parts: ``runs/best/1-a/best.pt`` -> ``1-a`` beside ``2-b``."""
    parts = [list(Path(p).with_suffix("").parts) for p in paths]
    if len(paths) > 1 and len({p[-1] for p in parts}) == 1 and all(len(p) > 1 for p in parts):
        parts = [p[:-1] for p in parts]  # every file has the same name: the folders tell them apart
    for k in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-k:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]


# ----------------------------------------------------------------------------- ABX


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

    dev = _device(device)
    model, ckpt = _load(model_path, dev)
    loaded = conform(load_data(data, split, max_seconds, max_tracks), ckpt.sample_rate, resample, model_path)
    preds = [run_model(model, t.clean, block, dev) for t in loaded.tracks]
    server = run_abx([t.clean for t in loaded.tracks], [t.effect for t in loaded.tracks], preds, out_dir,
                     sr=ckpt.sample_rate, cfg=cfg or AbxConfig(), host=host, port=port)
    server.session.meta.update({"checkpoint": str(Path(model_path).resolve()), "data": loaded.describe()})
    return server


# ----------------------------------------------------------------------------- HTML

# metric -> (name, unit, what it means); the baseline column shows baseline_<key> when present.
_METRIC_TEXT = {
    "esr": ("Error-to-signal ratio (ESR)", "",
            "Energy of the difference ÷ energy of the effect's output. 0 = identical, 1 = as wrong as silence."),
    "esr_ratio": ("ESR ÷ do-nothing ESR", "", "Below 1: better than doing nothing. The project asks for 0.1 or less."),
    "snr_db": ("Signal-to-error ratio", "dB", "How far the error sits below the effect. Higher is better; 20 dB ≈ ESR 0.01."),
    "esr_pre": ("ESR with treble emphasis", "", "ESR after boosting highs, where distortion's harmonics live (the training loss)."),
    "mrstft": ("Spectral distance (MR-STFT)", "", "How different the spectra are, at three time resolutions. 0 = identical."),
    "mrstft_ratio": ("MR-STFT ÷ do-nothing", "", "Below 1: the spectrum is closer than the clean input's."),
    "log_mel": ("Spectrogram difference", "dB", "Average level difference in the spectrogram as the ear bands it."),
    "lufs_diff": ("Loudness difference", "LU", "Model minus effect loudness. 0 = equally loud; +1 LU ≈ 1 dB louder."),
}
_TABLE_METRICS = ("esr", "snr_db", "esr_pre", "mrstft", "log_mel", "lufs_diff")
_PLOT_TEXT = {
    "spectrograms": ("Spectrograms",
                     ("Time left to right, pitch bottom to top, brightness = loudness. The middle picture (model) "
                      "should look like the right one (effect), not the left one (clean input).")),
    "waveforms": ("Waveforms",
                  "The orange dashed line (model) should sit on the blue line (effect). The lower panel zooms on a few cycles."),
    "error_spectrum": ("Where the model is wrong",
                       ("Red is what is left when the effect is subtracted from the model. The further the red curve "
                        "sits below the blue one, the less you can hear the difference at that pitch.")),
    "transfer_curve": ("Transfer curve",
                       ("How each input level becomes an output level. Clipping and compression show as bends; the "
                        "model's dashed curve should follow the effect's.")),
}
_LEVEL_STYLE = {"good": ("#e6f4ea", "#1e7d32", "✔"), "partial": ("#fff4e0", "#a65e00", "◐"),
                "bad": ("#fde8e8", "#b3261e", "✘"), "gain-only": ("#eef2fb", "#2f5fb3", "ⓘ")}

_LEVEL_WORDS = {"good": "yes", "partial": "not yet", "bad": "no", "gain-only": "gain only"}

_CSS = """
:root { --ink:#1d2430; --muted:#5b6577; --line:#d9dee7; --bg:#f5f7fb; }
* { box-sizing: border-box; }
body { margin:0; font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--ink); background:var(--bg); }
main { max-width:1120px; margin:24px auto; padding:28px 36px; background:#fff; border:1px solid var(--line); border-radius:12px; }
h1 { font-size:27px; margin:0 0 4px; } h2 { font-size:21px; margin:34px 0 10px; padding-top:14px; border-top:1px solid var(--line); }
h3 { font-size:17px; margin:22px 0 4px; } .sub { color:var(--muted); margin:0 0 18px; }
.verdict { padding:16px 20px; border-radius:10px; border-left:6px solid; font-size:18px; margin:18px 0; }
.verdict b { display:block; font-size:20px; margin-bottom:4px; }
.verdict.small { font-size:15px; padding:10px 16px; } .verdict.small b { font-size:16px; }
details { margin:10px 0; } summary { cursor:pointer; color:var(--muted); font-weight:600; }
table { border-collapse:collapse; width:100%; margin:8px 0 4px; font-size:15px; }
th, td { padding:7px 9px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:#f0f3f8; font-weight:600; } td.n { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.why { color:var(--muted); font-size:14px; }
.players { display:grid; grid-template-columns:repeat(3,1fr); gap:14px; margin:10px 0; }
.players div { background:#f7f9fc; border:1px solid var(--line); border-radius:8px; padding:8px 10px; }
.players span { display:block; font-weight:600; margin-bottom:4px; } audio { width:100%; }
figure { margin:14px 0 22px; } figure img { width:100%; max-width:1040px; display:block; border:1px solid var(--line); border-radius:6px; }
figcaption { color:var(--muted); font-size:14px; margin-top:4px; }
.kv td:first-child { color:var(--muted); width:230px; } .note { color:#a65e00; }
.clean { color:#6b6b6b; } .effect { color:#1f77b4; } .model { color:#d26a00; }
"""


def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    v = float(v)
    text = f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return f"{text} {unit}".strip()


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _baseline_of(m: dict, key: str):
    if key == "snr_db":
        b = m.get("baseline_esr")
        return None if b is None else min(200.0, -10 * math.log10(max(b, 1e-20)))
    return m.get(f"baseline_{key}")


def metrics_table_html(m: dict) -> str:
    """An HTML table of one metrics dict: model, do-nothing baseline, their ratio, what it means."""
    rows = []
    for key in _TABLE_METRICS:
        name, unit, why = _METRIC_TEXT[key]
        ratio = m.get(f"{key}_ratio")
        rows.append(
            f"<tr><td>{name}</td><td class='n'><b>{_fmt(m.get(key), unit)}</b></td>"
            f"<td class='n'>{_fmt(_baseline_of(m, key), unit)}</td><td class='n'>{_fmt(ratio)}</td>"
            f"<td class='why'>{html.escape(why)}</td></tr>"
        )
    return ("<table><tr><th>Measure</th><th>Model</th><th>Doing nothing<br><small>(clean input at best volume)</small>"
            "</th><th>Model ÷ nothing</th><th>What it means</th></tr>" + "".join(rows) + "</table>")


def _verdict_box(level: str, sentence: str, small: bool = False) -> str:
    bg, fg, icon = _LEVEL_STYLE.get(level, _LEVEL_STYLE["bad"])
    head = {"good": "Models the effect", "partial": "Does not model the effect yet", "bad": "Does not model the effect",
            "gain-only": "The effect is a volume change"}.get(level, level)
    cls = "verdict small" if small else "verdict"
    return (f'<div class="{cls}" style="background:{bg};border-color:{fg}">'
            f'<b style="color:{fg}">{icon} {head}</b>{html.escape(sentence)}</div>')


def render_report(result: dict, out_dir: Path) -> str:
    """The single-page report of one ``evaluate`` result (figures inlined, audio linked relatively)."""
    model, data, overall = result["model"], result["data"], result["overall"]
    effect = data.get("effect_id") or model.get("effect_id") or "the effect"
    title = f"How well does the {html.escape(str(model['family']))} model imitate {html.escape(str(effect))}?"
    parts = [f"<h1>{title}</h1>",
             (f"<p class='sub'>{data['tracks']} track(s), {data['seconds']:.1f} s of "
              f"{'the ' + html.escape(str(data['split'])) + ' split of ' if data['split'] else ''}"
              f"<code>{html.escape(data['source'])}</code>; model <code>{html.escape(model['checkpoint'])}</code> "
              f"({html.escape(str(model['family']))}, {_fmt(model['params'])} parameters)</p>"),
             _verdict_box(result["verdict_level"], result["verdict"])]
    parts += [f"<p class='note'>Note: {html.escape(n)}</p>" for n in result.get("notes", [])]
    parts += ["<h2>All tracks together</h2>",
              ("<p>Each measure compares the model's output with the effect's output. The <b>doing nothing</b> column "
               "is the clean input turned to its best volume: a model must beat it clearly to have learnt anything.</p>"),
              metrics_table_html(overall)]
    if len(result["tracks"]) > 1:
        parts.append(_track_table(result["tracks"]))
    imp = result.get("impulse_response")
    if imp:
        parts += ["<h2>Echoes and tails: the answer to a single click</h2>",
                  (f"<figure>{_img(out_dir / imp['png'])}<figcaption>A click played through the effect (blue) and "
                   f"the model (orange). Each echo is a spike; a reverb tail is a slope in the lower panel. "
                   f"ESR of the model's response: {_fmt(imp['esr'])}.</figcaption></figure>")]
    for track_id, t in result["tracks"].items():
        parts.append(f"<h2>Track <code>{html.escape(track_id)}</code> <small class='sub'>"
                     f"({t['seconds']:.1f} s)</small></h2>")
        single = len(result["tracks"]) == 1  # its verdict and numbers are those above
        if not single:
            parts.append(_verdict_box(*verdict(t, result.get("judged_by") == "mrstft"), small=True))
        if t["audio"]:
            players = "".join(
                f"<div><span class='{k}'>{label}</span><audio controls preload='metadata' "
                f"src='{html.escape(t['audio'][k])}'></audio></div>"
                for k, label in (("clean", "Clean input"), ("effect", "Effect (target)"), ("model", "Model"))
                if k in t["audio"]
            )
            parts.append(f"<h3>Listen</h3><div class='players'>{players}</div>")
        if not single:
            parts.append("<details><summary>All numbers for this track</summary>" + metrics_table_html(t) + "</details>")
        for key, rel in t["plots"].items():
            name, why = _PLOT_TEXT.get(key, (key, ""))
            parts.append(f"<h3>{name}</h3><figure>{_img(out_dir / rel)}<figcaption>{html.escape(why)}</figcaption></figure>")
    parts.append("<h2>The model</h2>" + _kv_table([
        ("Checkpoint", f"<code>{html.escape(model['checkpoint'])}</code>"),
        ("Family", html.escape(str(model["family"]))), ("Parameters", _fmt(model["params"])),
        ("Receptive field", _receptive_text(model["receptive_field"], model["sample_rate"])),
        ("Sample rate", f"{model['sample_rate']:,} Hz"), ("Trained on effect", html.escape(str(model.get("effect_id") or "—"))),
        ("Training steps", _fmt(model.get("step"))),
        ("Best validation ESR (training)", _fmt(model.get("best_val_esr"))),
        ("Do-nothing validation ESR (training)", _fmt(model.get("baseline_val_esr"))),
    ]))
    parts.append(f"<p class='sub'>fxdist {html.escape(result['fxdist_version'])}, {html.escape(result['created'])}. "
                 "All numbers are in <code>metrics.json</code> beside this page.</p>")
    return _page(title, "".join(parts))


def _receptive_text(rf: int, sr: int) -> str:
    if rf <= 1:
        return "1 sample (recurrent: it remembers the past through its state)"
    return f"{rf:,} samples ({1000 * rf / sr:.1f} ms of input per output sample)"


def _track_table(tracks: dict) -> str:
    rows = "".join(
        f"<tr><td><code>{html.escape(k)}</code></td><td class='n'>{t['seconds']:.1f} s</td>"
        f"<td class='n'>{_fmt(t['esr'])}</td><td class='n'>{_fmt(t['baseline_esr'])}</td>"
        f"<td class='n'>{_fmt(t['esr_ratio'])}</td><td class='n'>{_fmt(t['snr_db'], 'dB')}</td>"
        f"<td>{'✔ yes' if t['models_effect'] else '✘ no'}</td></tr>"
        for k, t in tracks.items()
    )
    return ("<h3>Track by track</h3><table><tr><th>Track</th><th>Length</th><th>ESR</th><th>Doing nothing</th>"
            "<th>Ratio</th><th>SNR</th><th>Models the effect?</th></tr>" + rows + "</table>")


def _kv_table(items: list[tuple[str, str]]) -> str:
    return "<table class='kv'>" + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in items) + "</table>"


def _page(title: str, body: str) -> str:
    plain = html.unescape(title)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(plain)}</title>"
            f"<style>{_CSS}</style></head><body><main>{body}</main></body></html>\n")


def compare_table_html(rows: Sequence[dict]) -> str:
    """An HTML table of ``compare`` rows: rank, model, size, ESR beside the baseline, verdict."""
    head = ("<tr><th>#</th><th>Model</th><th>Family</th><th>Params</th><th>ESR</th><th>Doing nothing</th>"
            "<th>ESR ÷ nothing</th><th>SNR</th><th>MR-STFT ÷ nothing</th><th>Spectrogram diff.</th><th>Models the effect?</th></tr>")
    body = "".join(
        f"<tr><td>{r['rank']}</td><td><code>{html.escape(r['model'])}</code></td><td>{html.escape(str(r['family']))}</td>"
        f"<td class='n'>{_fmt(r['params'])}</td><td class='n'><b>{_fmt(r['esr'])}</b></td>"
        f"<td class='n'>{_fmt(r['baseline_esr'])}</td><td class='n'>{_fmt(r['esr_ratio'])}</td>"
        f"<td class='n'>{_fmt(r['snr_db'], 'dB')}</td><td class='n'>{_fmt(r['mrstft_ratio'])}</td>"
        f"<td class='n'>{_fmt(r['log_mel'], 'dB')}</td>"
        f"<td style='color:{_LEVEL_STYLE.get(r['verdict_level'], _LEVEL_STYLE['bad'])[1]}'>"
        f"{_LEVEL_STYLE.get(r['verdict_level'], _LEVEL_STYLE['bad'])[2]} {_LEVEL_WORDS.get(r['verdict_level'], '?')}</td></tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>"


def render_compare(doc: dict, out_dir: Path) -> str:
    """The single-page comparison: a ranked table and one bar chart per key metric (inlined)."""
    rows = doc["rows"]
    data = doc["data"]
    parts = [f"<h1>Which model imitates {html.escape(str(data.get('effect_id') or 'the effect'))} best?</h1>",
             (f"<p class='sub'>{len(rows)} model(s) on {data['tracks']} track(s), {data['seconds']:.1f} s of "
              f"<code>{html.escape(data['source'])}</code>. Best first. A model imitates the effect when its ESR is "
              "at most a tenth of doing nothing's (ESR ÷ nothing ≤ 0.1); a pitch shifter, whose waveform is its own, "
              "when its MR-STFT distance is at most a third of doing nothing's.</p>"),
             _verdict_box(rows[0]["verdict_level"], f"Best: {rows[0]['model']}. {rows[0]['verdict']}"),
             compare_table_html(rows)]
    for metric, name in doc["plots"].items():
        label, _, why = _METRIC_TEXT.get(metric, (metric, "", ""))
        parts.append(f"<h2>{html.escape(label)}</h2><figure>{_img(out_dir / name)}"
                     f"<figcaption>{html.escape(why)}</figcaption></figure>")
    return _page("Model comparison", "".join(parts))


__all__ = [
    "AMPLITUDE_FAMILIES",
    "COMPARE_METRICS",
    "TIME_FAMILIES",
    "CompareReport",
    "EvalData",
    "EvalReport",
    "Track",
    "best_checkpoint",
    "compare",
    "compare_table_html",
    "conform",
    "evaluate",
    "exact_math",
    "find_checkpoints",
    "is_shard_set",
    "is_tune_experiment",
    "load_data",
    "metrics_table_html",
    "model_info",
    "render_compare",
    "render_report",
    "run_model",
    "short_labels",
    "start_abx",
    "verdict",
]
