"""The re-amp signal: what a user plays through their pedal or amp and records back.

One mono file with a sidecar JSON (``OUT.json``) that says where each section lies:

- ``calibration-start`` and ``calibration-end``: silence, ``blips`` single-sample impulses
  ``blip_spacing_seconds`` apart, silence, a logarithmic sweep, silence. Import measures the
  latency and polarity from the blips' onsets (a known stimulus after silence, whatever the
  effect does to it) and the clock drift from the two calibrations' latencies;
- ``train``: the generator's guitar-range content (chirps, sines, square/saw bursts, struck
  notes that decay, rests for release and tails) and level ramps across the dynamic range,
  then music from a folder when one is given;
- ``validation``: the same kinds of content from another seed (and the rest of the music),
  which training never sees: one recording gives both splits.

Every section is separated by ``gap_seconds`` of silence, and the end calibration follows
``tail_seconds`` of silence so that reverb tails have died away before its blips.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fxdist.audio import write_audio
from fxdist.errors import DataError
from fxdist.fsutil import write_text_atomic

FORMAT = "fxdist-reamp"
FORMAT_VERSION = 1
SECTION_KINDS = ("calibration", "train", "validation")


@dataclass
class ReampConfig:
    """How the re-amp signal is laid out. Times in seconds, levels in dBFS."""

    seconds: float = 180.0  # train + validation content; calibrations and gaps come on top
    sample_rate: int = 48000
    seed: int = 0
    validation_fraction: float = 0.15
    music: str | None = None  # folder of DI/real music, appended to the content
    blips: int = 4
    blip_spacing_seconds: float = 0.5
    blip_level_db: float = -6.0
    sweep_seconds: float = 1.0
    sweep_level_db: float = -12.0
    gap_seconds: float = 0.5
    lead_seconds: float = 1.0  # silence before the first blip: the noise floor is read there
    tail_seconds: float = 5.0
    ramp_seconds: float = 4.0  # one level ramp, -60 dB -> 0 dB, per ramp frequency
    ramp_frequencies: tuple[float, ...] = (110.0, 330.0, 880.0)

    def __post_init__(self) -> None:
        checks = [
            (self.seconds >= 4, f"seconds must be >= 4, got {self.seconds}"),
            (self.sample_rate >= 8000, f"sample_rate must be >= 8000, got {self.sample_rate}"),
            (0 < self.validation_fraction < 0.5, f"validation_fraction must be in (0, 0.5), got {self.validation_fraction}"),
            (self.blips >= 2, f"blips must be >= 2, got {self.blips}"),
            (self.blip_spacing_seconds >= 0.1, f"blip_spacing_seconds must be >= 0.1, got {self.blip_spacing_seconds}"),
            (self.blip_level_db <= 0 and self.sweep_level_db <= 0, "blip_level_db and sweep_level_db must be <= 0 dBFS"),
            (self.lead_seconds >= 0.2 and self.gap_seconds >= 0.1, "lead_seconds must be >= 0.2 and gap_seconds >= 0.1"),
            (self.tail_seconds >= self.gap_seconds, f"tail_seconds must be >= gap_seconds, got {self.tail_seconds}"),
            (self.sweep_seconds > 0 and self.ramp_seconds > 0, "sweep_seconds and ramp_seconds must be > 0"),
            (all(0 < f < 0.45 * self.sample_rate for f in self.ramp_frequencies),
             f"ramp_frequencies must lie in (0, 0.45 * sample_rate), got {self.ramp_frequencies}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass(frozen=True)
class Section:
    name: str
    kind: str  # calibration | train | validation
    start: int  # samples, [start, end)
    end: int


@dataclass
class ReampSignal:
    """The signal (N,) float32 and where its sections, blips and sweeps lie (sample indices)."""

    audio: np.ndarray
    sample_rate: int
    sections: list[Section]
    blips: dict[str, list[int]]  # calibration section name -> blip positions
    blip_sign: int
    config: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "sample_rate": self.sample_rate,
            "samples": int(self.audio.size),
            "sha256": audio_digest(self.audio),
            "sections": [dataclasses.asdict(s) for s in self.sections],
            "blips": self.blips,
            "blip_sign": self.blip_sign,
            "config": self.config,
        }


def audio_digest(audio: np.ndarray) -> str:
    """sha256 of the float32 samples: identifies the signal whatever file format carries it."""
    return hashlib.sha256(np.ascontiguousarray(audio, dtype="<f4").tobytes()).hexdigest()


def log_sweep(seconds: float, sample_rate: int, f0: float = 20.0, f1: float | None = None) -> np.ndarray:
    """Exponential sine sweep from ``f0`` to ``f1`` (default 0.45 * rate), 10 ms fades -> (N,) float64."""
    f1 = 0.45 * sample_rate if f1 is None else f1
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    k = np.log(f1 / f0)
    x = np.sin(2 * np.pi * f0 * seconds / k * (np.exp(t / seconds * k) - 1))
    fade = min(n // 2, int(0.01 * sample_rate))
    if fade:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        x[:fade] *= ramp
        x[n - fade :] *= ramp[::-1]
    return x


def level_ramp(seconds: float, sample_rate: int, freq: float, low_db: float = -60.0) -> np.ndarray:
    """A sine whose level rises linearly in dB from ``low_db`` to 0 dBFS over ``seconds`` -> (N,)."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    gain = 10 ** (np.linspace(low_db, 0.0, n) / 20)
    return gain * np.sin(2 * np.pi * freq * t)


def calibration(cfg: ReampConfig) -> tuple[np.ndarray, list[int]]:
    """lead silence, blips, gap, sweep, gap -> (audio (N,), blip positions in it)."""
    sr = cfg.sample_rate
    lead, gap, spacing = (int(round(s * sr)) for s in (cfg.lead_seconds, cfg.gap_seconds, cfg.blip_spacing_seconds))
    blips = np.zeros(cfg.blips * spacing)
    positions = [lead + i * spacing for i in range(cfg.blips)]
    blips[:: spacing] = 10 ** (cfg.blip_level_db / 20)
    sweep = 10 ** (cfg.sweep_level_db / 20) * log_sweep(cfg.sweep_seconds, sr)
    audio = np.concatenate([np.zeros(lead), blips, np.zeros(gap), sweep, np.zeros(gap)])
    return audio, positions


def _generated(cfg: ReampConfig, seconds: float, seed: int) -> np.ndarray:
    """Generator content of about ``seconds``: segments of 10 s (or shorter), struck notes decaying."""
    from fxdist.data.generate import GenerateConfig, generate_track

    segment = min(10.0, seconds)
    segments = max(1, int(round(seconds / segment)))
    gen = GenerateConfig(seed=seed, sample_rate=cfg.sample_rate, tracks=1, segments_per_track=segments,
                         segment_seconds=segment, decay_probability=0.5)
    return generate_track(gen, 0).astype(np.float64)


def _ramps(cfg: ReampConfig) -> np.ndarray:
    gap = np.zeros(int(round(cfg.gap_seconds * cfg.sample_rate)))
    parts = []
    for f in cfg.ramp_frequencies:
        parts += [0.9 * level_ramp(cfg.ramp_seconds, cfg.sample_rate, f), gap]
    return np.concatenate(parts)


def _music(cfg: ReampConfig) -> np.ndarray:
    if cfg.music is None:
        return np.zeros(0)
    from fxdist.data.ingest import _audio_files, load_mono

    folder = Path(cfg.music)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of music (--music takes a folder of audio files)")
    files = _audio_files(folder, folder / ".none", recursive=True)
    if not files:
        raise DataError(f"{folder}: no audio files in the music folder")
    gap = np.zeros(int(round(cfg.gap_seconds * cfg.sample_rate)))
    parts = []
    for rel in files:
        audio = load_mono(folder / rel, cfg.sample_rate)[0].astype(np.float64)
        parts += [0.9 * audio / max(1e-9, float(np.max(np.abs(audio)))), gap]
    return np.concatenate(parts)


def reamp_signal(cfg: ReampConfig | None = None) -> ReampSignal:
    """Build the re-amp signal of ``cfg`` (deterministic: same config, same samples)."""
    cfg = cfg or ReampConfig()
    sr = cfg.sample_rate
    gap = np.zeros(int(round(cfg.gap_seconds * sr)))
    tail = np.zeros(int(round(cfg.tail_seconds * sr)))
    music = _music(cfg)
    cut = int(round(len(music) * (1 - cfg.validation_fraction)))
    ramps = _ramps(cfg)
    generated = max(2.0, cfg.seconds - len(ramps) / sr - len(music) / sr)
    train = np.concatenate([_generated(cfg, generated * (1 - cfg.validation_fraction), cfg.seed), gap, ramps, music[:cut]])
    validation = np.concatenate([_generated(cfg, generated * cfg.validation_fraction, cfg.seed + 1), gap, music[cut:]])
    cal_start, blips_start = calibration(cfg)
    cal_end, blips_end = calibration(cfg)

    pieces = [("calibration-start", "calibration", cal_start), ("train", "train", train), ("gap", None, gap),
              ("validation", "validation", validation), ("tail", None, tail), ("calibration-end", "calibration", cal_end)]
    sections, blips, pos, chunks = [], {}, 0, []
    for name, kind, audio in pieces:
        if kind is not None:
            sections.append(Section(name, kind, pos, pos + len(audio)))
        if name == "calibration-start":
            blips[name] = [pos + p for p in blips_start]
        elif name == "calibration-end":
            blips[name] = [pos + p for p in blips_end]
        chunks.append(audio)
        pos += len(audio)
    audio = np.concatenate(chunks).astype(np.float32)
    config = dataclasses.asdict(cfg)
    config["ramp_frequencies"] = list(cfg.ramp_frequencies)
    return ReampSignal(audio, sr, sections, blips, 1, config)


def sidecar_path(wav: str | Path) -> Path:
    """``x.wav`` -> ``x.json``: where the section map of a re-amp signal lives."""
    return Path(wav).with_suffix(".json")


def write_reamp(out: str | Path, cfg: ReampConfig | None = None, overwrite: bool = False) -> ReampSignal:
    """Write the signal as 24-bit WAV (float32 holds it exactly) and its sidecar JSON, atomically.

    An existing ``out`` is refused unless ``overwrite``: it may be the file a recording was made from.
    """
    out = Path(out)
    if out.suffix.lower() != ".wav":
        raise DataError(f"{out}: the re-amp signal is written as WAV; name the file .wav")
    if out.exists() and not overwrite:
        raise DataError(f"{out}: exists (a recording may have been made from it); pass --overwrite to replace it")
    from fxdist.audio import read_audio

    signal = reamp_signal(cfg)
    write_audio(out, signal.audio[None], signal.sample_rate, subtype="PCM_24")
    signal.audio = read_audio(out)[0][0]  # the samples as 24-bit holds them: what the digest names
    write_text_atomic(sidecar_path(out), json.dumps(signal.describe(), indent=1))
    return signal


def read_sidecar(wav: str | Path, audio: np.ndarray | None = None) -> dict[str, Any] | None:
    """The section map of ``wav`` if it is a fxdist re-amp signal, else None.

    With ``audio`` (the file's samples, (N,)), the map is used only when the samples are the
    ones it was written for (a resampled or edited copy has lost its calibration positions).
    """
    path = sidecar_path(wav)
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable re-amp sidecar ({exc}); write the signal again with `fxdist data reamp`") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return None
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path}: re-amp sidecar version {meta.get('format_version')} is not {FORMAT_VERSION}")
    if audio is not None and (int(meta.get("samples", -1)) != audio.size or meta.get("sha256") != audio_digest(audio)):
        raise DataError(
            f"{wav}: its sidecar {path.name} describes another signal ({meta.get('samples')} samples, this file has "
            f"{audio.size}); the file was resampled or edited after `fxdist data reamp` wrote it. Record from the "
            "file as written, or delete the sidecar to align without calibration"
        )
    return meta


__all__ = [
    "FORMAT", "ReampConfig", "ReampSignal", "Section", "audio_digest", "calibration", "level_ramp", "log_sweep",
    "read_sidecar", "reamp_signal", "sidecar_path", "write_reamp",
]
