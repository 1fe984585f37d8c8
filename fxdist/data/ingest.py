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

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf
from scipy.signal import correlate

from fxdist.audio import AUDIO_SUFFIXES, check_finite, check_not_silent, read_audio, resample, to_mono
from fxdist.audio import write_audio
from fxdist.errors import ConfigError, DataError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EFFECT_ID = re.compile(r"[a-z0-9_-]+")
DEFAULT_SPAN = 1 << 16  # samples correlated per latency estimate (1.4 s at 48 kHz)
SEARCH_SECONDS = 1.0  # import_pair looks for the latency within +-max(2 * max latency, this)


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
# Latency between a clean signal and its recorded, processed version
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyEstimate:
    """Where processed lines up with clean.

    lag: samples, positive = processed is late (processed[n + lag] ~ clean[n]).
    correlation: normalised cross-correlation at ``lag`` in [-1, 1] (negative: inverted polarity).
    subsample_lag: parabolic refinement of ``lag`` (reported only; alignment uses ``lag``).
    offset, span: the part of clean that was correlated, clean[offset : offset + span].
    at_edge: the peak sits at +-max_lag, so the true latency may lie beyond the search range.
    """

    lag: int
    correlation: float
    subsample_lag: float
    offset: int
    span: int
    at_edge: bool


def find_latency(
    clean: np.ndarray,
    processed: np.ndarray,
    max_lag: int,
    span: int = DEFAULT_SPAN,
    offset: int | None = None,
) -> LatencyEstimate:
    """Estimate the lag of ``processed`` (M,) behind ``clean`` (N,) within +-``max_lag`` samples.

    Correlates ``span`` samples of clean, from ``offset`` (default: the first frame with
    enough energy) against processed around the same place, by FFT, so the cost is
    O((span + max_lag) log) whatever the file length.
    """
    clean = np.asarray(clean, dtype=np.float64)
    processed = np.asarray(processed, dtype=np.float64)
    if clean.ndim != 1 or processed.ndim != 1:
        raise ValueError(f"find_latency expects 1-D signals, got shapes {clean.shape} and {processed.shape}")
    if max_lag < 0 or span < 1:
        raise ValueError(f"need max_lag >= 0 and span >= 1, got {max_lag}, {span}")
    span = min(span, len(clean))
    if offset is None:
        offset = energetic_offset(clean, span)
    offset = int(np.clip(offset, 0, len(clean) - span))
    x = clean[offset : offset + span]
    y = _window(processed, offset - max_lag, span + 2 * max_lag)
    xc = correlate(y, x, mode="valid", method="fft")  # xc[k] <-> lag k - max_lag
    k = int(np.argmax(np.abs(xc)))
    energy = np.concatenate([[0.0], np.cumsum(y * y)])
    denom = np.sqrt(np.dot(x, x) * (energy[k + span] - energy[k]))
    correlation = float(xc[k] / denom) if denom > 0 else 0.0
    return LatencyEstimate(
        lag=k - max_lag,
        correlation=float(np.clip(correlation, -1.0, 1.0)),
        subsample_lag=k - max_lag + _parabolic(np.abs(xc), k),
        offset=offset,
        span=span,
        at_edge=max_lag > 0 and k in (0, len(xc) - 1),
    )


def energetic_offset(x: np.ndarray, span: int, from_end: bool = False, floor_db: float = -30.0) -> int:
    """Start of a ``span``-long window of ``x`` (N,) that begins (or, ``from_end``, ends) at the
    first (last) frame whose RMS is within ``floor_db`` of the loudest frame."""
    frame = max(1, min(1024, span // 8))
    n_frames = len(x) // frame
    if n_frames == 0:
        return 0
    rms = np.sqrt(np.mean(x[: n_frames * frame].reshape(n_frames, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (floor_db / 20))
    start = (loud[-1] + 1) * frame - span if from_end else loud[0] * frame
    return int(np.clip(start, 0, max(0, len(x) - span)))


def _window(x: np.ndarray, start: int, length: int) -> np.ndarray:
    """x[start : start + length], zero-padded where that runs off either end."""
    out = np.zeros(length)
    lo, hi = max(start, 0), min(start + length, len(x))
    if hi > lo:
        out[lo - start : hi - start] = x[lo:hi]
    return out


def _parabolic(y: np.ndarray, k: int) -> float:
    """Offset in (-0.5, 0.5) of the vertex of the parabola through y[k-1], y[k], y[k+1]."""
    if k == 0 or k == len(y) - 1:
        return 0.0
    a, b, c = y[k - 1], y[k], y[k + 1]
    curvature = a - 2 * b + c
    return float(0.5 * (a - c) / curvature) if curvature < 0 else 0.0


# ---------------------------------------------------------------------------------------
# Recorded pairs (re-amping through hardware)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportReport:
    """One imported pair. Latency and input lengths at ``source_sample_rate``; ``length`` (the
    trimmed, aligned length of both outputs) at ``sample_rate``."""

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
) -> ImportReport:
    """Align a clean file with its recording through an effect and write both, trimmed.

    The latency is estimated on the first and on the last loud part of the file; the pair is
    refused (DataError naming both files and the numbers) when: the sample rates differ;
    either file is NaN/undecodable/silent; the correlation peak is below ``min_correlation``
    in magnitude (wrong pair, or alignment ambiguous); the latency exceeds
    ``max_latency_ms``; the two estimates differ by more than ``drift_tolerance`` samples
    (clock drift between playback and recording); or len(processed) - latency differs from
    len(clean) by more than ``length_tolerance_ms``. Otherwise processed is shifted by the
    latency, both are cut to their common length, resampled to ``sample_rate`` (default: keep
    the files' rate), and written to ``<out_root>/clean/pair-<stem>.wav`` and
    ``<out_root>/processed/<effect_id>/pair-<stem>.wav``. ``stem`` defaults to the clean
    file's stem without a trailing ``_clean``.
    """
    clean_path, processed_path, out_root = Path(clean_path), Path(processed_path), Path(out_root)
    if not _EFFECT_ID.fullmatch(effect_id):
        raise ConfigError(f"effect_id {effect_id!r} must match [a-z0-9_-]+")
    track = f"pair-{sanitize_stem(stem if stem is not None else pair_stem(clean_path))}"
    names = f"{clean_path} / {processed_path}"

    clean, sr = read_audio(clean_path)
    processed, sr_p = read_audio(processed_path)
    if sr != sr_p:
        raise DataError(f"{clean_path}: sample rate {sr} Hz but {processed_path} has {sr_p} Hz")
    clean = to_mono(clean, clean_path, downmix)[0]
    processed = to_mono(processed, processed_path, downmix)[0]
    check_not_silent(clean, clean_path)
    check_not_silent(processed, processed_path)

    max_lag = int(round(max_latency_ms * sr / 1000))
    span = min(DEFAULT_SPAN, len(clean) // 4)
    if span < 256:
        raise DataError(f"{names}: too short to align ({len(clean)} samples at {sr} Hz; need >= 1024)")
    # search far wider than allowed, so a too-large latency is seen and refused rather than
    # aliased onto a spurious in-range peak (sustained notes correlate with themselves)
    search = max(2 * max_lag + 1, int(SEARCH_SECONDS * sr))
    start = find_latency(clean, processed, search, span, energetic_offset(clean, span))
    _check_estimate(start, "start", names, min_correlation, max_lag, max_latency_ms, sr)
    end = find_latency(clean, processed, search, span, energetic_offset(clean, span, from_end=True))
    if abs(end.correlation) < min_correlation or abs(end.lag - start.lag) > drift_tolerance:
        raise DataError(
            f"{names}: latency {start.lag} samples near the start (offset {start.offset}, correlation "
            f"{start.correlation:.3f}) but {end.lag} samples near the end (offset {end.offset}, correlation "
            f"{end.correlation:.3f}); more than {drift_tolerance} samples apart: clock drift or mismatched recording"
        )

    lag = start.lag
    excess = len(processed) - lag - len(clean)
    tolerance = int(round(length_tolerance_ms * sr / 1000))
    if abs(excess) > tolerance:
        raise DataError(
            f"{names}: lengths {len(clean)} and {len(processed)} samples disagree by {excess} samples "
            f"({1000 * excess / sr:.1f} ms) after removing latency {lag}; tolerance {tolerance} "
            f"samples ({length_tolerance_ms} ms)"
        )
    clean_al, processed_al = align(clean, processed, lag)
    out_sr = sr if sample_rate is None else sample_rate
    clean_al = resample(clean_al[None], sr, out_sr)
    processed_al = resample(processed_al[None], sr, out_sr)

    clean_out = out_root / "clean" / f"{track}.wav"
    processed_out = out_root / "processed" / effect_id / f"{track}.wav"
    write_audio(processed_out, processed_al, out_sr)
    write_audio(clean_out, clean_al, out_sr)
    return ImportReport(
        track_id=track,
        effect_id=effect_id,
        clean_source=clean_path,
        processed_source=processed_path,
        clean_out=clean_out,
        processed_out=processed_out,
        source_sample_rate=sr,
        sample_rate=out_sr,
        latency_samples=lag,
        latency_ms=1000 * lag / sr,
        latency_subsample=start.subsample_lag,
        correlation=start.correlation,
        latency_end_samples=end.lag,
        correlation_end=end.correlation,
        clean_length=len(clean),
        processed_length=len(processed),
        length=clean_al.shape[-1],
    )


def _check_estimate(
    est: LatencyEstimate, where: str, names: str, min_correlation: float, max_lag: int, max_ms: float, sr: int
) -> None:
    if abs(est.correlation) < min_correlation:
        raise DataError(
            f"{names}: correlation peak {est.correlation:.3f} at lag {est.lag} near the {where} "
            f"(offset {est.offset}, {est.span} samples) is below {min_correlation}: alignment "
            f"ambiguous (wrong pair, or latency beyond {max_ms} ms?)"
        )
    if abs(est.lag) > max_lag or est.at_edge:
        raise DataError(
            f"{names}: latency {est.lag} samples ({1000 * est.lag / sr:.1f} ms) exceeds max "
            f"{max_ms} ms ({max_lag} samples)"
        )


def align(clean: np.ndarray, processed: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Shift processed (M,) by ``lag`` (positive = late) against clean (N,); cut both to their
    common length L. Returns (clean[a : a + L], processed[b : b + L])."""
    a, b = max(0, -lag), max(0, lag)
    n = min(len(clean) - a, len(processed) - b)
    if n <= 0:
        raise DataError(f"no overlap between clean ({len(clean)}) and processed ({len(processed)}) at lag {lag}")
    return clean[a : a + n], processed[b : b + n]


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
    return [import_pair(c, p, out_root, **kwargs) for c, p in listed]


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
