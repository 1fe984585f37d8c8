"""Held-out test material: General MIDI riffs written here, played by a packaged soundfont.

Real sampled instruments (FluidR3_GM from Debian's fluid-soundfont-gm, played by fluidsynth)
rather than fxdist's own signal generator, so a model is judged on audio it was not built
around. The MIDI files are written by a small Standard MIDI File writer below from a fixed
seed; fluidsynth renders them with its reverb and chorus off, at 48 kHz, and the stereo
result is averaged to mono float32 ``(N,)`` and scaled to peak at ``PEAK``.

Split: one instrument+riff pair (``VALIDATION``) is the training-side validation set; every
other instrument on every other riff is the held-out test set, so the test set shares
neither instrument nor riff with validation.
"""

from __future__ import annotations

import random
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 48000
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SEED = 20
TICKS = 480          # ticks per quarter note
TEMPO_BPM = 100
PEAK = 0.5          # every piece peaks at -6 dBFS, a DI guitar's level into an interface


@dataclass(frozen=True)
class Instrument:
    name: str
    program: int     # General MIDI program, 0-based
    low: int         # MIDI note of the lowest note the riffs may use
    velocity: int


INSTRUMENTS = (
    Instrument("clean_guitar", 27, 40, 96),      # Electric Guitar (clean)
    Instrument("jazz_guitar", 26, 40, 96),       # Electric Guitar (jazz)
    Instrument("steel_guitar", 25, 40, 92),      # Acoustic Guitar (steel)
    Instrument("nylon_guitar", 24, 40, 92),      # Acoustic Guitar (nylon)
    Instrument("muted_guitar", 28, 40, 100),     # Electric Guitar (muted)
    Instrument("electric_bass", 33, 28, 100),    # Electric Bass (finger)
    Instrument("electric_piano", 4, 43, 90),     # Electric Piano 1
    Instrument("drawbar_organ", 16, 43, 80),     # Drawbar Organ
)
RIFFS = ("chords", "lead", "staccato", "arpeggio")
VALIDATION = (("nylon_guitar", "arpeggio"),)
TEST = tuple((i.name, r) for i in INSTRUMENTS for r in RIFFS
             if i.name != VALIDATION[0][0] and r != VALIDATION[0][1])

# Chord shapes as semitones above the instrument's lowest note (E, A, D, C, G shapes).
_CHORDS = ((0, 7, 12, 16, 19, 24), (5, 12, 17, 21, 24), (10, 17, 22, 26), (8, 12, 15, 20, 24), (3, 10, 15, 19, 22, 27))
_PENTATONIC = (0, 3, 5, 7, 10)


def _notes(riff: str, inst: Instrument, seconds: float, rng: random.Random) -> list[tuple[int, int, int, int]]:
    """(start tick, length ticks, note, velocity) for ``seconds`` of ``riff`` on ``inst``."""
    total = int(seconds * TEMPO_BPM / 60 * TICKS)
    out: list[tuple[int, int, int, int]] = []
    t = 0
    bass = inst.program == 33
    while t < total:
        if riff == "chords":
            shape = rng.choice(_CHORDS)
            if bass:
                shape = shape[:1]
            hold = rng.choice((TICKS, 2 * TICKS))
            for k, step in enumerate(shape):      # a strum: strings a few ms apart
                out.append((t + 8 * k, hold - 8 * k - 20, inst.low + step, inst.velocity - 4 * k))
            t += hold
        elif riff == "lead":
            octave = 12 * rng.choice((1, 2)) if not bass else 12 * rng.choice((0, 1))
            note = inst.low + octave + rng.choice(_PENTATONIC)
            hold = rng.choice((TICKS // 4, TICKS // 2, TICKS // 2, 3 * TICKS // 4, TICKS))
            out.append((t, hold - 10, note, inst.velocity + rng.randint(-12, 8)))
            t += hold
        elif riff == "staccato":
            note = inst.low + rng.choice((0, 0, 0, 2, 3, 5, 7))
            hold = TICKS // 4 if rng.random() < 0.7 else TICKS // 2
            out.append((t, TICKS // 10, note, inst.velocity + rng.randint(-20, 10)))
            t += hold
        elif riff == "arpeggio":
            shape = rng.choice(_CHORDS)
            for step in shape + shape[-2:0:-1]:
                out.append((t, TICKS // 2, inst.low + step, inst.velocity - 10))
                t += TICKS // 4
        else:
            raise ValueError(f"unknown riff {riff!r}; riffs: {', '.join(RIFFS)}")
    return [(s, max(l, 10), min(n, 100), max(1, min(v, 127))) for s, l, n, v in out if s < total]


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def midi_bytes(notes: list[tuple[int, int, int, int]], program: int) -> bytes:
    """A type-0 Standard MIDI File: tempo, program change on channel 0, then the notes."""
    events = []
    for start, length, note, vel in notes:
        events.append((start, 1, bytes((0x90, note, vel))))
        events.append((start + length, 0, bytes((0x80, note, 0))))   # offs before ons at one tick
    events.sort(key=lambda e: (e[0], e[1]))
    track = bytearray(_vlq(0) + b"\xff\x51\x03" + (60_000_000 // TEMPO_BPM).to_bytes(3, "big"))
    track += _vlq(0) + bytes((0xC0, program))
    now = 0
    for tick, _, data in events:
        track += _vlq(tick - now) + data
        now = tick
    track += _vlq(TICKS) + b"\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS) + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def piece_midi(instrument: str, riff: str, seconds: float) -> bytes:
    """The MIDI file of one (instrument, riff) piece; the same arguments give the same bytes."""
    inst = next((i for i in INSTRUMENTS if i.name == instrument), None)
    if inst is None:
        raise ValueError(f"unknown instrument {instrument!r}; instruments: {', '.join(i.name for i in INSTRUMENTS)}")
    rng = random.Random(f"{SEED}:{instrument}:{riff}")
    return midi_bytes(_notes(riff, inst, seconds, rng), inst.program)


def render_piece(instrument: str, riff: str, seconds: float, dst: Path, soundfont: Path = SOUNDFONT) -> np.ndarray:
    """Render one piece with fluidsynth to ``dst`` (mono FLOAT WAV, exactly ``seconds`` long)."""
    n = int(round(seconds * SAMPLE_RATE))
    with tempfile.TemporaryDirectory(prefix="fxdist-gm-") as tmp:
        mid, wav = Path(tmp) / "piece.mid", Path(tmp) / "piece.wav"
        mid.write_bytes(piece_midi(instrument, riff, seconds))
        cmd = ["fluidsynth", "-n", "-i", "-q", "-R", "0", "-C", "0", "-g", "0.6", "-r", str(SAMPLE_RATE),
               "-O", "float", "-T", "wav", "-F", str(wav), str(soundfont), str(mid)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not wav.exists():
            raise RuntimeError(f"fluidsynth failed on {instrument}/{riff} ({proc.returncode}): {proc.stderr[-500:]}")
        audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    if sr != SAMPLE_RATE:
        raise RuntimeError(f"fluidsynth wrote {sr} Hz, expected {SAMPLE_RATE}")
    mono = audio.mean(axis=1)
    mono = np.pad(mono, (0, max(0, n - mono.size)))[:n]
    peak = float(np.max(np.abs(mono)))
    if peak <= 0:
        raise RuntimeError(f"fluidsynth rendered silence for {instrument}/{riff}")
    mono = (mono * (PEAK / peak)).astype(np.float32)
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(dst, mono, SAMPLE_RATE, subtype="FLOAT")
    return mono
