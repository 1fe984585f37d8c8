"""Reading and writing audio files with checks that name the file and the problem.

Arrays are float32 of shape (C, N): channels first, even for mono (C = 1).
float32 holds every 24-bit PCM value exactly (k / 2**23 needs 24 significant bits),
so reading a 24-bit file and writing it back as PCM_24 is lossless.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from fxdist.errors import DataError
from fxdist.fsutil import atomic_path

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 (C, N) and its sample rate.

    Raises DataError naming the file and the problem when it is missing, empty, truncated (a
    WAV whose header promises more audio than the file holds), cannot be decoded, or holds
    NaN/Inf.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such audio file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file (a folder?); give the path of an audio file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); export or copy it again")
    check_wav_length(path)
    try:
        with _quiet_stderr():  # libmpg123 prints "Note: ..." lines for damaged MP3s
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise DataError(
            f"{path}: cannot decode audio ({_decoder_reason(exc, path)}); the file is damaged or not in a "
            f"format fxdist reads ({' '.join(AUDIO_SUFFIXES)}): export it again as WAV or FLAC"
        ) from exc
    audio = np.ascontiguousarray(data.T)
    check_finite(audio, path)
    return audio, int(sr)


def _decoder_reason(exc: Exception, path: Path) -> str:
    """libsndfile's message without its "Error opening 'x': " prefix and its misleading
    "File does not exist" (what it says of an undecodable MP3 stream)."""
    text = str(exc).replace(f"Error opening {str(path)!r}: ", "").strip()
    if "does not exist" in text:
        return "no decodable audio stream in it"
    return text.rstrip(".") or type(exc).__name__


@contextlib.contextmanager
def _quiet_stderr():
    """Send file descriptor 2 to /dev/null for the duration (C libraries' chatter)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_wav_length(path: str | Path) -> None:
    """Refuse a RIFF/WAVE file whose ``data`` chunk size is larger than the bytes that follow it.

    libsndfile reads such a truncated file silently, as the audio it still holds. Files
    without a size (streamed WAVs, RF64: 0 or 0xFFFFFFFF) and other formats pass.
    """
    path = Path(path)
    if path.suffix.lower() != ".wav":
        return
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        block_align = None
        while True:
            chunk = fh.read(8)
            if len(chunk) < 8:
                return
            cid, length = chunk[:4], int.from_bytes(chunk[4:], "little")
            if cid == b"fmt ":
                fmt = fh.read(min(length, 16))
                if len(fmt) >= 14:
                    block_align = int.from_bytes(fmt[12:14], "little")
                fh.seek(length - len(fmt) + (length & 1), 1)
                continue
            if cid == b"data":
                if length in (0, 0xFFFFFFFF):
                    return
                have = size - fh.tell()
                if length > have:
                    frames = f" ({length // block_align} frames, the file holds {have // block_align})" if block_align else ""
                    raise DataError(
                        f"{path}: truncated WAV: its header promises {length} bytes of audio{frames} but only "
                        f"{have} follow; the copy or recording was cut off: copy or export it again"
                    )
                return
            fh.seek(length + (length & 1), 1)


def check_finite(audio: np.ndarray, path: str | Path) -> None:
    """Raise DataError if ``audio`` holds NaN or Inf, with the first bad sample index."""
    bad = ~np.isfinite(audio)
    if bad.any():
        ch, idx = np.argwhere(bad)[0] if audio.ndim == 2 else (0, int(np.argmax(bad)))
        kind = "NaN" if np.isnan(audio[bad]).any() else "Inf"
        raise DataError(f"{path}: {kind} sample(s) found ({int(bad.sum())} in all; first at channel {ch}, sample {idx})")


def check_not_silent(audio: np.ndarray, path: str | Path, floor_db: float = -90.0) -> None:
    """Raise DataError if the peak of ``audio`` is below ``floor_db`` dBFS."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= 10 ** (floor_db / 20):
        level = "-inf" if peak == 0 else f"{20 * np.log10(peak):.1f}"
        raise DataError(f"{path}: audio is silent (peak {level} dBFS, floor {floor_db} dBFS)")


def to_mono(audio: np.ndarray, path: str | Path, downmix: bool) -> np.ndarray:
    """Return (1, N) audio; average channels when ``downmix``, else refuse stereo."""
    if audio.shape[0] == 1:
        return audio
    if not downmix:
        raise DataError(f"{path}: expected mono audio, got {audio.shape[0]} channels (enable downmix to average them)")
    return audio.mean(axis=0, keepdims=True).astype(np.float32)


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample (C, N) float32 audio from ``sr_in`` to ``sr_out`` (polyphase, soxr quality)."""
    if sr_in == sr_out:
        return audio
    import librosa

    return librosa.resample(audio, orig_sr=sr_in, target_sr=sr_out, res_type="soxr_hq", axis=-1).astype(np.float32)


def write_audio(path: str | Path, audio: np.ndarray, sr: int, subtype: str = "FLOAT") -> Path:
    """Write (C, N) or (N,) float audio atomically. ``subtype`` e.g. FLOAT, PCM_24, PCM_16."""
    path = Path(path)
    audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    check_finite(audio, path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        with sf.SoundFile(str(tmp), "w", sr, audio.shape[0], subtype=subtype, format=_format_for(path)) as fh:
            _no_peak_chunk(fh)
            fh.write(audio.T)
    return path


def _no_peak_chunk(fh: sf.SoundFile) -> None:
    """Stop libsndfile adding a PEAK chunk to float WAV/AIFF files.

    That chunk holds the wall-clock time of the write, so equal audio would give
    different bytes (and different shard checksums). Must run before any write.
    """
    SFC_SET_ADD_PEAK_CHUNK = 0x1050
    sf._snd.sf_command(fh._file, SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, 0)


def _format_for(path: Path) -> str:
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".aiff": "AIFF", ".aif": "AIFF"}.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: cannot write audio with suffix {path.suffix!r}; use one of .wav .flac .ogg .aiff")
    return fmt
