"""Bring outside audio into a dataset root: a folder of music, and re-amped recorded pairs.

Both write the on-disk layout of the data steps (mono float32 WAV, track ids
``[A-Za-z0-9._-]+``), atomically, one file at a time:

- ``ingest_folder``: ``<out_dir>/clean/music-<sanitized stem>.wav``;
- ``import_pair(s)``: ``<out_root>/clean/pair-<stem>.wav`` and
  ``<out_root>/processed/<effect_id>/pair-<stem>.wav``, time-aligned sample-exactly.

Multichannel input is downmixed to mono as the mean of its channels (``downmix=True``)
or refused (``downmix=False``).

Recorded pairs are aligned by FFT cross-correlation of clean against processed over a
bounded span. Plain correlation survives the nonlinear effects of guitar rigs
(distortion keeps the phase of the fundamentals), and a polarity-inverting rig gives a
negative peak, which is accepted and reported as a negative correlation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf

from fxdist.audio import AUDIO_SUFFIXES, check_finite, check_not_silent, read_audio, resample, to_mono
from fxdist.audio import write_audio
from fxdist.data.align import DEFAULT_SPAN, LatencyEstimate, align, correct_drift, energetic_offset, find_latency  # noqa: F401
from fxdist.errors import ConfigError, DataError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EFFECT_ID = re.compile(r"[a-z0-9_-]+")
SEARCH_SECONDS = 1.0  # import_pair looks for the latency within +-max(2 * max latency, this)
ENVELOPE_MIN_CORRELATION = 0.5  # onset envelopes this alike line up
LEVELS_MIN_SIMILARITY = 0.6  # frame levels this alike: the same notes, however the effect colours them
EXPLAINS_FRACTION = 0.9  # the start's lag explains the end when it correlates this close to the end's own peak


def sanitize_stem(stem: str) -> str:
    """Map a file stem onto ``[A-Za-z0-9._-]+``: other runs become ``_``; never empty or hidden."""
    return _UNSAFE.sub("_", stem).strip("._-") or "track"


# ---------------------------------------------------------------------------------------
# A folder of music
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkippedFile:
    """A source file left out (``skip_bad=True``) and why."""

    path: Path
    reason: str


@dataclass
class IngestResult:
    """What ``ingest_folder`` did: ``outputs[i]`` is the clean file made from ``sources[i]``."""

    outputs: list[Path] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def ingest_folder(
    src_dir: str | Path,
    out_dir: str | Path,
    sample_rate: int = 48000,
    downmix: bool = True,
    recursive: bool = True,
    skip_bad: bool = False,
    overwrite: bool = False,
) -> IngestResult:
    """Decode every audio file under ``src_dir`` into ``<out_dir>/clean/music-<id>.wav``.

    ``out_dir`` is the dataset root. Each file is read, downmixed (channel mean) or refused
    when ``downmix`` is False and it has several channels, resampled to ``sample_rate``,
    checked (finite, not silent) and written atomically. A bad file raises DataError naming
    it, or with ``skip_bad`` is listed in ``result.skipped`` with the reason. Hidden files
    (name starting with ".") and anything inside ``out_dir`` are ignored. Stems that clash
    after sanitizing (same stem in two folders, or ``a.wav`` + ``a.flac``) all get
    ``-<8 hex of sha1(relative path)>`` appended, so ids do not depend on listing order.
    Outputs that already exist at ``sample_rate`` are kept unless ``overwrite``.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if not src_dir.is_dir():
        raise DataError(f"{src_dir}: not a folder of audio files")
    files = _audio_files(src_dir, out_dir, recursive)
    if not files:
        raise DataError(f"{src_dir}: no audio files found (suffixes {' '.join(AUDIO_SUFFIXES)}, recursive={recursive})")
    result = IngestResult()
    for rel, track in _music_ids(files).items():
        source, target = src_dir / rel, out_dir / "clean" / f"{track}.wav"
        try:
            if overwrite or not _is_current(target, sample_rate):
                audio = load_mono(source, sample_rate, downmix)
                write_audio(target, audio, sample_rate)
        except DataError as exc:
            if not skip_bad:
                raise
            result.skipped.append(SkippedFile(source, str(exc)))
            continue
        result.outputs.append(target)
        result.sources.append(source)
    return result


def load_mono(path: str | Path, sample_rate: int, downmix: bool = True) -> np.ndarray:
    """Read ``path`` as checked mono float32 (1, N) at ``sample_rate``; DataError names the file."""
    audio, sr = read_audio(path)
    audio = resample(to_mono(audio, path, downmix), sr, sample_rate)
    check_finite(audio, path)
    check_not_silent(audio, path)
    return audio


def _audio_files(src_dir: Path, out_dir: Path, recursive: bool) -> list[Path]:
    """Audio files under ``src_dir`` as sorted relative paths, skipping hidden ones and ``out_dir``."""
    out_resolved = out_dir.resolve()
    found = []
    for path in src_dir.rglob("*") if recursive else src_dir.iterdir():
        rel = path.relative_to(src_dir)
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        if not path.is_file() or path.resolve().is_relative_to(out_resolved):
            continue
        found.append(rel)
    return sorted(found, key=lambda p: p.as_posix())


def _music_ids(files: list[Path]) -> dict[Path, str]:
    """Track id per relative path; clashing sanitized stems (case-insensitive) get a path hash."""
    stems = {rel: sanitize_stem(rel.stem) for rel in files}
    counts: dict[str, int] = {}
    for stem in stems.values():
        counts[stem.lower()] = counts.get(stem.lower(), 0) + 1
    ids = {}
    for rel, stem in stems.items():
        if counts[stem.lower()] > 1:
            stem = f"{stem}-{hashlib.sha1(rel.as_posix().encode()).hexdigest()[:8]}"
        ids[rel] = f"music-{stem}"
    return ids


def _is_current(target: Path, sample_rate: int) -> bool:
    try:
        return sf.info(str(target)).samplerate == sample_rate
    except Exception:
        return False


# ---------------------------------------------------------------------------------------
# Recorded pairs (re-amping through hardware)
# ---------------------------------------------------------------------------------------


SPLIT_NAMES = ("train", "validation", "test")
SPLITS_FILE = "splits.json"  # in the dataset root: track id -> split, for tracks whose split was chosen


@dataclass(frozen=True)
class ImportReport:
    """One imported track. Latency and input lengths at ``source_sample_rate``; ``length`` (the
    trimmed, aligned length of both outputs) at ``sample_rate``.

    method: how the latency was found: "calibration" (a re-amp signal's blips), "correlation"
    (waveforms), "envelope" (onset envelopes, when the waveforms do not correlate) or "given".
    polarity: -1 when the device inverts. drift_ppm: the recording's clock against playback
    (measured from the two calibrations; 0.0 when not measured), corrected when ``drift_corrected``.
    split: the split the track was put in (None: left to ``data shard``'s hash order).
    """

    track_id: str
    effect_id: str
    clean_source: Path
    processed_source: Path
    clean_out: Path
    processed_out: Path
    source_sample_rate: int
    sample_rate: int
    latency_samples: int
    latency_ms: float
    latency_subsample: float
    correlation: float
    latency_end_samples: int
    correlation_end: float
    clean_length: int
    processed_length: int
    length: int
    method: str = "correlation"
    polarity: int = 1
    drift_ppm: float = 0.0
    drift_corrected: bool = False
    split: str | None = None


@dataclass(frozen=True)
class _Alignment:
    lag: int
    subsample: float
    method: str
    polarity: int
    correlation: float
    lag_end: int
    correlation_end: float
    drift_ppm: float = 0.0
    drift_corrected: bool = False


def import_pair(
    clean_path: str | Path,
    processed_path: str | Path,
    out_root: str | Path,
    sample_rate: int | None = None,
    max_latency_ms: float = 100.0,
    min_correlation: float = 0.3,
    length_tolerance_ms: float = 250.0,
    drift_tolerance: int = 2,
    downmix: bool = True,
    effect_id: str = "imported",
    stem: str | None = None,
    latency: int | None = None,
    drift_check: bool = True,
    max_drift_ppm: float = 200.0,
    split: str | None = None,
) -> list[ImportReport]:
    """Align a clean file with its recording through an effect and write both, trimmed.

    When the clean file is a fxdist re-amp signal (its sidecar JSON beside it, see
    ``fxdist.data.reamp``), the latency and polarity come from the calibration blips' onsets,
    the clock drift from the start and end calibrations (corrected by resampling when within
    ``max_drift_ppm``, refused beyond), and the recording is cut into its ``train`` and
    ``validation`` sections, written as two tracks (``pair-<stem>-train``, ``-validation``)
    whose splits are recorded. Otherwise the latency is estimated by correlation near the
    first and the last loud part (waveforms, then onset envelopes); the pair is refused
    (DataError naming both files and the numbers, and what to pass) when: the sample rates
    differ; a file is NaN/undecodable/silent; the estimate is ambiguous or the two
    estimates disagree (``--latency``/``--no-drift-check``); the latency is negative (files
    swapped?) or beyond ``max_latency_ms``; or the lengths disagree by more than
    ``length_tolerance_ms``. ``latency`` skips the estimation. ``split`` puts every track of
    the pair in that split. Outputs: ``<out_root>/clean/<track>.wav`` and
    ``<out_root>/processed/<effect_id>/<track>.wav``, resampled to ``sample_rate`` (default:
    the files' rate). ``stem`` defaults to the clean file's stem without a trailing ``_clean``.
    """
    from fxdist.data.reamp import read_sidecar

    clean_path, processed_path, out_root = Path(clean_path), Path(processed_path), Path(out_root)
    if not _EFFECT_ID.fullmatch(effect_id):
        raise ConfigError(f"effect_id {effect_id!r} must match [a-z0-9_-]+")
    if split is not None and split not in SPLIT_NAMES:
        raise ConfigError(f"split {split!r} is not one of {', '.join(SPLIT_NAMES)}")
    track = f"pair-{sanitize_stem(stem if stem is not None else pair_stem(clean_path))}"
    names = f"{clean_path} / {processed_path}"

    clean, sr = read_audio(clean_path)
    processed, sr_p = read_audio(processed_path)
    if sr != sr_p:
        raise DataError(f"{clean_path}: sample rate {sr} Hz but {processed_path} has {sr_p} Hz; resample the recording to the clean file's rate (the re-amp signal is played at its own rate)")
    clean = to_mono(clean, clean_path, downmix)[0]
    processed = to_mono(processed, processed_path, downmix)[0]
    check_not_silent(clean, clean_path)
    check_not_silent(processed, processed_path)
    max_lag = int(round(max_latency_ms * sr / 1000))
    meta = read_sidecar(clean_path, clean)

    if meta is not None:
        found, processed = _calibrated(clean, processed, meta, sr, names, max_lag, max_latency_ms, latency,
                                       drift_check, max_drift_ppm)
    elif latency is not None:
        found = _Alignment(latency, float(latency), "given", 1, float("nan"), latency, float("nan"))
    else:
        found = _correlated(clean, processed, sr, names, max_lag, max_latency_ms, min_correlation, drift_tolerance,
                            drift_check, max_drift_ppm)
        if found.drift_corrected:
            processed = correct_drift(processed, found.drift_ppm).astype(np.float32)
            again = find_latency(clean, processed, max(2 * max_lag + 1, int(SEARCH_SECONDS * sr)),
                                 min(DEFAULT_SPAN, len(clean) // 4), energetic_offset(clean, min(DEFAULT_SPAN, len(clean) // 4)))
            found = dataclasses.replace(found, lag=again.lag, subsample=again.subsample_lag)

    lag = found.lag
    excess = len(processed) - lag - len(clean)
    tolerance = int(round(length_tolerance_ms * sr / 1000))
    if abs(excess) > tolerance and not (meta is not None and excess > 0):
        raise DataError(
            f"{names}: lengths {len(clean)} and {len(processed)} samples disagree by {excess} samples "
            f"({1000 * excess / sr:.1f} ms) after removing latency {lag}; tolerance {tolerance} "
            f"samples ({length_tolerance_ms} ms): a recording cut short, or of another take?"
        )
    clean_al, processed_al = align(clean, processed, lag)
    out_sr = sr if sample_rate is None else sample_rate
    if meta is None:
        pieces = [(track, 0, len(clean_al), split)]
    else:
        offset = max(0, -lag)  # align() dropped this many clean samples
        pieces = [(f"{track}-{sec['kind']}", sec["start"] - offset, sec["end"] - offset, split or sec["kind"])
                  for sec in meta["sections"] if sec["kind"] in ("train", "validation")]
    reports = []
    for name, lo, hi, chosen in pieces:
        lo, hi = max(0, lo), min(len(clean_al), hi)
        if hi - lo <= 0:
            raise DataError(f"{names}: section {name} lies outside the aligned recording (cut short?)")
        c = resample(clean_al[None, lo:hi], sr, out_sr)
        q = resample(processed_al[None, lo:hi], sr, out_sr)
        clean_out = out_root / "clean" / f"{name}.wav"
        processed_out = out_root / "processed" / effect_id / f"{name}.wav"
        write_audio(processed_out, q, out_sr)
        write_audio(clean_out, c, out_sr)
        reports.append(ImportReport(
            track_id=name, effect_id=effect_id, clean_source=clean_path, processed_source=processed_path,
            clean_out=clean_out, processed_out=processed_out, source_sample_rate=sr, sample_rate=out_sr,
            latency_samples=lag, latency_ms=1000 * lag / sr, latency_subsample=found.subsample,
            correlation=found.correlation, latency_end_samples=found.lag_end, correlation_end=found.correlation_end,
            clean_length=len(clean), processed_length=len(processed), length=c.shape[-1], method=found.method,
            polarity=found.polarity, drift_ppm=found.drift_ppm, drift_corrected=found.drift_corrected, split=chosen,
        ))
    record_splits(out_root, {r.track_id: r.split for r in reports})
    return reports


def _calibrated(clean, processed, meta, sr, names, max_lag, max_ms, latency, drift_check, max_drift_ppm):
    """Latency, polarity and drift from a re-amp signal's calibration blips -> (_Alignment, processed)."""
    from fxdist.data.align import blip_onsets, calibration_drift, correct_drift

    cfg = meta.get("config", {})
    lead = int(round(float(cfg.get("lead_seconds", 1.0)) * sr))
    starts, ends = meta["blips"]["calibration-start"], meta["blips"]["calibration-end"]
    sign = int(meta.get("blip_sign", 1))
    start = blip_onsets(processed, starts, max_lag, sr, lead, sign)
    if start is None and latency is None:
        raise DataError(
            f"{names}: no response to the calibration blips at the start (samples {starts[0]}..{starts[-1]}, searched "
            f"+-{max_ms} ms): is the processed file a recording of this re-amp signal, at a level above the noise? "
            "Raise --max-latency-ms if the device's latency is larger, or pass --latency SAMPLES if you know it"
        )
    end = blip_onsets(processed, ends, max_lag, sr, lead, sign)
    distance = ends[0] - starts[0]
    ppm, corrected = 0.0, False
    if drift_check and start is not None:
        section = next(sec for sec in meta["sections"] if sec["name"] == "calibration-start")
        lo = max(0, starts[0] + start.latency - int(0.01 * sr))
        max_shift = int(max_drift_ppm * 2e-6 * distance) + (abs(end.latency - start.latency) if end else 0) + 8
        drift, similar = calibration_drift(processed, lo, section["end"] - starts[0], distance, max_shift)
        if end is None and abs(similar) < 0.5:  # the sweeps still compare where the blips do not stand out
            raise DataError(
                f"{names}: no response to the calibration blips at the end (samples {ends[0]}..{ends[-1]}; the "
                f"recording has {len(processed)} samples), and the end calibration does not match the start's "
                f"(correlation {similar:.2f}): was the recording stopped early? Record the whole signal, or pass "
                "--no-drift-check to use the start calibration alone"
            )
        spread = _spread(start) + (_spread(end) if end else 0.0)  # a modulated device's own wander between blips
        if abs(drift) > max(0.5, spread):
            ppm = drift / distance * 1e6
            if abs(ppm) > max_drift_ppm:
                raise DataError(
                    f"{names}: latency {start.latency} samples at the start calibration but {end.latency} at the end, "
                    f"{distance} samples later: clock drift of {ppm:+.1f} ppm, beyond {max_drift_ppm} ppm. Record "
                    "with playback and recording on one clock (one interface), or pass --no-drift-check"
                )
            processed = correct_drift(processed, ppm).astype(np.float32)
            corrected = True
            start = blip_onsets(processed, starts, max_lag, sr, lead, sign) or start
            end = blip_onsets(processed, ends, max_lag, sr, lead, sign) or end
    lag = latency if latency is not None else start.latency
    polarity = start.polarity if start is not None else 1
    return _Alignment(
        lag=lag, subsample=float(lag if latency is not None else start.subsample),
        method="given" if latency is not None else "calibration", polarity=polarity,
        correlation=float(polarity), lag_end=end.latency if end is not None else lag,
        correlation_end=float(end.polarity if end is not None else polarity), drift_ppm=ppm, drift_corrected=corrected,
    ), processed


def _spread(onsets) -> float:
    usable = [o for o in onsets.onsets if o is not None]
    return float(max(usable) - min(usable)) if usable else 0.0


def _correlated(clean, processed, sr, names, max_lag, max_ms, min_correlation, drift_tolerance, drift_check,
                max_drift_ppm=200.0):
    """Latency by waveform correlation, then by onset envelopes, at the start and the end -> _Alignment."""
    from fxdist.data.align import find_latency_envelope

    span = min(DEFAULT_SPAN, len(clean) // 4)
    if span < 256:
        raise DataError(f"{names}: too short to align ({len(clean)} samples at {sr} Hz; need >= 1024)")
    # search far wider than allowed, so a too-large latency is seen and refused rather than
    # aliased onto a spurious in-range peak (sustained notes correlate with themselves)
    search = max(2 * max_lag + 1, int(SEARCH_SECONDS * sr))
    at = {"start": energetic_offset(clean, span), "end": energetic_offset(clean, span, from_end=True)}
    wave = {k: find_latency(clean, processed, search, span, o) for k, o in at.items()}
    env = {k: find_latency_envelope(clean, processed, search, sr, span, o) for k, o in at.items()}
    strong = {k: abs(w.correlation) >= min_correlation for k, w in wave.items()}
    env_tol = max(drift_tolerance, int(0.0005 * sr))  # envelopes are smoothed over 1 ms
    agree_w = abs(wave["end"].lag - wave["start"].lag) <= drift_tolerance or _explains(clean, processed, wave)
    agree_e = abs(env["end"].lag - env["start"].lag) <= env_tol
    env_ok = {k: e.correlation >= ENVELOPE_MIN_CORRELATION or _follows(clean, processed, e, sr) for k, e in env.items()}

    if strong["start"] and strong["end"] and not agree_w and drift_check:
        distance = wave["end"].offset - wave["start"].offset
        ppm = (wave["end"].subsample_lag - wave["start"].subsample_lag) / max(1, distance) * 1e6
        if distance > 0 and abs(ppm) <= max_drift_ppm and wave["start"].correlation * wave["end"].correlation > 0:
            est = wave["start"]
            _check_lag(est, "correlation", names, sr, max_lag, max_ms)
            return _Alignment(est.lag, est.subsample_lag, "correlation", -1 if est.correlation < 0 else 1,
                              est.correlation, wave["end"].lag, wave["end"].correlation, ppm, True)
        if distance > 0 and abs(ppm) > max_drift_ppm:
            raise DataError(
                f"{names}: latency {wave['start'].lag} samples near the start (offset {wave['start'].offset}, correlation "
                f"{wave['start'].correlation:.3f}) but {wave['end'].lag} near the end (offset {wave['end'].offset}, "
                f"correlation {wave['end'].correlation:.3f}): clock drift of {ppm:+.1f} ppm, beyond {max_drift_ppm} ppm, "
                "or a mismatched recording. Record with playback and recording on one clock, or pass --no-drift-check"
            )
    if strong["start"] and (strong["end"] and agree_w or not drift_check):
        est, method = wave["start"], "correlation"
    elif env_ok["start"] and (env_ok["end"] and agree_e or not drift_check):
        est, method = _refine(clean, processed, env["start"], env_tol, min_correlation), "envelope"
    else:
        found = "; ".join(
            f"near the {k} (offset {wave[k].offset}): waveform lag {wave[k].lag} (correlation {wave[k].correlation:.3f}), "
            f"onset-envelope lag {env[k].lag} (correlation {env[k].correlation:.3f})" for k in at)
        if not (strong["start"] or strong["end"] or env_ok["start"] or env_ok["end"]):
            raise DataError(
                f"{names}: the recording does not line up with the clean file anywhere: {found}. Unrelated audio, "
                "or the wrong pair? If you know the latency, pass --latency SAMPLES"
            )
        guess = wave["start"].lag if strong["start"] else env["start"].lag
        raise DataError(
            f"{names}: alignment ambiguous: {found}. The estimates disagree (a modulated or time-varying effect, "
            f"or clock drift). Pass --latency SAMPLES if you know the latency (the start suggests {guess}), or "
            "--no-drift-check to accept the start's estimate; re-amping with `fxdist data reamp`'s signal "
            "measures latency and drift from its calibration instead"
        )
    _check_lag(est, method, names, sr, max_lag, max_ms)
    end = wave["end"] if method == "correlation" else env["end"]
    return _Alignment(est.lag, est.subsample_lag, method, -1 if est.correlation < 0 else 1, est.correlation,
                      end.lag, end.correlation)


def _explains(clean, processed, wave: dict[str, LatencyEstimate]) -> bool:
    """The start's lag lines up the end span nearly as well as the end's own peak: periodic or
    sustained content has several near-equal peaks, and one of them is no clock drift."""
    from fxdist.data.align import correlation_at

    start, end = wave["start"], wave["end"]
    at_start_lag = correlation_at(clean, processed, end.offset, end.span, start.lag)
    return at_start_lag * end.correlation > 0 and abs(at_start_lag) >= EXPLAINS_FRACTION * abs(end.correlation)


def _check_lag(est: LatencyEstimate, method: str, names: str, sr: int, max_lag: int, max_ms: float) -> None:
    if est.lag < 0:
        raise DataError(
            f"{names}: the processed file leads the clean one by {-est.lag} samples ({-1000 * est.lag / sr:.1f} ms; "
            f"correlation {est.correlation:.3f}, {method}): files swapped? Pass them as clean then processed, or "
            "pass --latency SAMPLES if the device really outputs early"
        )
    if est.lag > max_lag or est.at_edge:
        raise DataError(
            f"{names}: latency {est.lag} samples ({1000 * est.lag / sr:.1f} ms) exceeds max {max_ms} ms ({max_lag} "
            "samples); raise --max-latency-ms if the device is that slow"
        )


def _follows(clean, processed, est: LatencyEstimate, sr: int) -> bool:
    """The processed span at the estimated lag keeps the clean span's notes and rests (frame levels)."""
    from fxdist.data.align import level_similarity

    lo = est.offset + est.lag
    if lo < 0 or lo + est.span > len(processed):
        return False
    return level_similarity(clean[est.offset : est.offset + est.span], processed[lo : lo + est.span], sr) >= LEVELS_MIN_SIMILARITY


def _refine(clean, processed, coarse: LatencyEstimate, window: int, min_correlation: float) -> LatencyEstimate:
    """The waveform peak within +-``window`` of an envelope estimate, when it stands out; else the envelope's."""
    shifted = np.concatenate([np.zeros(max(0, -coarse.lag)), processed[max(0, coarse.lag):]])
    fine = find_latency(clean, shifted, window, coarse.span, coarse.offset)
    if abs(fine.correlation) >= 0.5 * min_correlation and not fine.at_edge:
        return LatencyEstimate(coarse.lag + fine.lag, fine.correlation, coarse.lag + fine.subsample_lag,
                               coarse.offset, coarse.span, coarse.at_edge)
    return coarse


def record_splits(root: str | Path, splits: dict[str, str | None]) -> None:
    """Merge chosen splits (track id -> split) into ``<root>/splits.json``; None removes a choice."""
    import json

    from fxdist.fsutil import write_text_atomic

    path = Path(root) / SPLITS_FILE
    current = read_splits(root)
    for track, chosen in splits.items():
        if chosen is None:
            current.pop(track, None)
        else:
            current[track] = chosen
    if current or path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(dict(sorted(current.items())), indent=1))


def read_splits(root: str | Path) -> dict[str, str]:
    """The chosen splits of a dataset root (track id -> train/validation/test), {} when none."""
    import json

    path = Path(root) / SPLITS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); fix or delete it (splits then follow hash order)") from exc
    bad = {k: v for k, v in data.items() if v not in SPLIT_NAMES} if isinstance(data, dict) else data
    if not isinstance(data, dict) or bad:
        raise DataError(f"{path}: must map track ids to one of {', '.join(SPLIT_NAMES)}; bad entries: {bad}")
    return data


def pair_stem(path: Path) -> str:
    """``name`` for ``name_clean.wav`` / ``name_processed.wav``; else the plain stem."""
    for suffix in ("_clean", "_processed"):
        if path.stem.endswith(suffix) and len(path.stem) > len(suffix):
            return path.stem[: -len(suffix)]
    return path.stem


def find_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """(clean, processed) files of a pairs folder, sorted by name. Two conventions:

    - ``folder/clean/<stem>.<ext>`` with ``folder/processed/<stem>.<ext>`` (used when both
      subfolders exist);
    - otherwise ``folder/<name>_clean.<ext>`` with ``folder/<name>_processed.<ext>``.

    Any audio file without its partner, or a name used twice, raises DataError naming it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of recorded pairs")
    if (folder / "clean").is_dir() and (folder / "processed").is_dir():
        sides = {side: _by_stem(folder / side) for side in ("clean", "processed")}
    else:
        sides = {"clean": {}, "processed": {}}
        for path in _listed_audio(folder):
            side = next((s for s in sides if path.stem.endswith(f"_{s}") and path.stem != f"_{s}"), None)
            if side is None:
                raise DataError(f"{path}: not named <name>_clean or <name>_processed (pairs folder {folder})")
            _add_unique(sides[side], pair_stem(path), path)
    clean, processed = sides["clean"], sides["processed"]
    for name in sorted(set(clean) ^ set(processed)):
        lone = clean.get(name) or processed.get(name)
        raise DataError(f"{lone}: no matching {'processed' if name in clean else 'clean'} file for pair {name!r}")
    if not clean:
        raise DataError(f"{folder}: no recorded pairs found")
    return [(clean[name], processed[name]) for name in sorted(clean)]


def _listed_audio(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in AUDIO_SUFFIXES)


def _by_stem(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in _listed_audio(folder):
        _add_unique(out, path.stem, path)
    return out


def _add_unique(table: dict[str, Path], name: str, path: Path) -> None:
    if name in table:
        raise DataError(f"{path}: pair name {name!r} already used by {table[name]}")
    table[name] = path


def import_pairs(
    pairs: str | Path | Iterable[tuple[str | Path, str | Path]],
    out_root: str | Path,
    **kwargs,
) -> list[ImportReport]:
    """Import every pair of a pairs folder (see ``find_pairs``) or of a list of (clean, processed)
    paths, with ``import_pair``'s keyword arguments. Stops at the first refused pair (DataError);
    pairs whose sanitized names clash are refused before anything is written."""
    if "stem" in kwargs:
        raise TypeError("import_pairs names each pair itself; 'stem' is only for import_pair")
    listed = find_pairs(pairs) if isinstance(pairs, (str, Path)) else [(Path(c), Path(p)) for c, p in pairs]
    seen: dict[str, Path] = {}
    for clean_path, _ in listed:
        name = sanitize_stem(pair_stem(clean_path))
        if name.lower() in seen:
            raise DataError(f"{clean_path}: pair id 'pair-{name}' clashes with {seen[name.lower()]}")
        seen[name.lower()] = clean_path
    return [report for c, p in listed for report in import_pair(c, p, out_root, **kwargs)]


__all__ = [
    "DEFAULT_SPAN",
    "ImportReport",
    "IngestResult",
    "LatencyEstimate",
    "SkippedFile",
    "align",
    "energetic_offset",
    "find_latency",
    "find_pairs",
    "import_pair",
    "import_pairs",
    "ingest_folder",
    "load_mono",
    "pair_stem",
    "sanitize_stem",
]
