"""Synthetic guitar-range tracks: determinism, band limits, structure, levels."""

import dataclasses
import hashlib

import numpy as np
import pytest
import soundfile as sf

from fxdist.config import from_dict
from fxdist.data.generate import (
    GenerateConfig,
    bandlimited_table,
    decay,
    envelope,
    generate,
    generate_track,
    wavetable_read,
)
from fxdist.errors import ConfigError

SMALL = GenerateConfig(sample_rate=8000, tracks=3, segments_per_track=3, segment_seconds=1.0)


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_gives_byte_identical_files_serial_or_parallel(tmp_path):
    paths = generate(SMALL, tmp_path / "a")
    generate(SMALL, tmp_path / "b", workers=2)
    assert [p.name for p in paths] == ["synth-s0-0000.wav", "synth-s0-0001.wav", "synth-s0-0002.wav"]
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    # libsndfile's PEAK chunk holds the wall-clock time of the write: it must be absent,
    # or files written in different seconds would differ.
    assert all(b"PEAK" not in p.read_bytes()[:256] for p in paths)
    audio, sr = sf.read(paths[0], dtype="float32")
    assert sr == 8000 and audio.dtype == np.float32 and audio.ndim == 1
    assert sf.info(paths[0]).subtype == "FLOAT"
    np.testing.assert_array_equal(audio, generate_track(SMALL, 0))


def test_different_seeds_and_indices_differ(tmp_path):
    generate(SMALL, tmp_path / "a")
    generate(dataclasses.replace(SMALL, seed=1), tmp_path / "b")
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert len(set(a.values()) | set(b.values())) == 6
    assert not np.array_equal(generate_track(SMALL, 0), generate_track(SMALL, 1))


def test_track_depends_on_seed_and_index_only():
    more = dataclasses.replace(SMALL, tracks=50)
    np.testing.assert_array_equal(generate_track(SMALL, 2), generate_track(more, 2))


def test_resumes_without_rewriting_unless_overwrite(tmp_path):
    paths = generate(SMALL, tmp_path)
    paths[1].write_bytes(b"placeholder")
    generate(SMALL, tmp_path)
    assert paths[1].read_bytes() == b"placeholder"
    generate(SMALL, tmp_path, overwrite=True)
    np.testing.assert_array_equal(sf.read(paths[1], dtype="float32")[0], generate_track(SMALL, 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths]  # no temp files left


@pytest.mark.parametrize("sr", [8000, 16000, 44100])
def test_length_and_peak_at_any_sample_rate(sr):
    cfg = GenerateConfig(sample_rate=sr, segments_per_track=3, segment_seconds=0.5)
    x = generate_track(cfg, 0)
    assert x.dtype == np.float32 and x.shape == (3 * sr // 2,)
    assert np.all(np.isfinite(x))
    assert np.max(np.abs(x)) == pytest.approx(0.9, abs=1e-6)  # loudest segment peaks at cfg.peak, no clipping


def _stft_power(x, n=2048):
    hop = n // 2
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * np.hanning(n)
    return np.abs(np.fft.rfft(frames, axis=1)) ** 2


def test_fundamentals_stay_within_min_and_max_freq():
    sr = 8000
    cfg = GenerateConfig(sample_rate=sr, segments_per_track=4, segment_seconds=2.0, min_freq=200.0, max_freq=500.0)
    freqs = np.fft.rfftfreq(2048, 1 / sr)
    # all kinds: the strongest component of every sounding frame is a fundamental
    power = _stft_power(generate_track(cfg, 0).astype(np.float64))
    loud = power.sum(axis=1) > power.sum(axis=1).max() * 1e-4
    peaks = freqs[np.argmax(power[loud], axis=1)]
    assert loud.sum() > 10 and np.all((peaks >= 190) & (peaks <= 510))
    # sines and chirps only: (almost) no energy outside the band at all
    pure = dataclasses.replace(cfg, kinds={"sine": 1.0, "chirp": 1.0})
    power = _stft_power(generate_track(pure, 0).astype(np.float64)).sum(axis=0)
    outside = (freqs < 180) | (freqs > 520)
    assert power[outside].sum() < 1e-3 * power.sum()


@pytest.mark.parametrize("kind,freq", [("square", 1130.0), ("saw", 437.3), ("saw", 81.0)])
def test_square_and_saw_are_band_limited_at_8khz(kind, freq):
    sr, n = 8000, 16000
    x = wavetable_read(bandlimited_table(kind, freq, sr), freq / sr * np.arange(n))
    spectrum = np.abs(np.fft.rfft(x * np.hanning(n)))
    f = np.fft.rfftfreq(n, 1 / sr)
    harmonic = np.abs(f - np.round(f / freq) * freq) < 8  # Hann leakage is < -100 dB 16 bins out
    assert spectrum[~harmonic].max() < spectrum.max() * 1e-4  # aliases would land between harmonics
    strong = f[harmonic & (spectrum > spectrum.max() * 1e-3)]
    assert strong.max() > 3000 and strong.max() < 0.45 * sr + 8  # rich up to, never past, the ceiling
    assert np.max(np.abs(x)) == pytest.approx(1.0, abs=1e-3)


def test_envelope_starts_and_ends_at_zero_without_steps():
    env = envelope(1000, 50, 100)
    assert env[0] == 0 and env[-1] == 0 and env[500] == 1
    assert np.max(np.abs(np.diff(env))) <= np.pi / (2 * 50) + 1e-9
    short = envelope(3, 50, 100)  # ramps shrink to fit tiny notes
    assert short[0] == 0 and short[-1] == 0 and short.shape == (3,)


def _note_halves_db(decay_probability):
    """Level drop (dB) from the first to the second half of each 1 s held sine note."""
    sr = 8000
    cfg = GenerateConfig(
        sample_rate=sr, segments_per_track=2, segment_seconds=4.0, kinds={"sine": 1.0}, max_density=1,
        min_note_seconds=1.0, max_note_seconds=1.0, max_gap_probability=0.0, min_phrase_seconds=4.0,
        max_phrase_seconds=4.0, decay_probability=decay_probability, min_decay_seconds=0.1, max_decay_seconds=0.1,
    )
    notes = generate_track(cfg, 0).astype(np.float64).reshape(-1, sr)  # one note per row
    first, second = (np.sqrt(np.mean(notes[:, a:b] ** 2, axis=1)) for a, b in ((400, 3600), (4400, 7600)))
    return 20 * np.log10(first / second)


def test_struck_notes_decay_and_held_notes_do_not():
    # tau 0.1 s: 0.5 s later the level is 0.5 / 0.1 * 8.69 = 43 dB lower
    assert np.all(_note_halves_db(1.0) > 35)
    assert np.all(np.abs(_note_halves_db(0.0)) < 1)
    assert np.array_equal(decay(5, 2, 1.0), np.exp(-np.array([0.0, 0, 0, 1, 2])))


def test_decay_off_draws_nothing_so_seeds_keep_their_tracks():
    # Samples of SMALL's track 0 as made before decay_probability existed (commit 87c092c).
    x = generate_track(SMALL, 0).astype(np.float64)
    at = [38, 633, 1241, 1844, 2445, 3137]
    np.testing.assert_allclose(x[at], [0.060683, -0.078283, 0.065672, 0.38542, -0.370395, -0.134671], atol=2e-6)
    assert np.abs(x).sum() == pytest.approx(4496.7574, abs=1e-2)
    assert not np.array_equal(x, generate_track(dataclasses.replace(SMALL, decay_probability=0.5), 0))


def _segments(x, cfg):
    return x.reshape(cfg.segments_per_track, cfg.segment_samples)


def test_segments_vary_in_level_density_and_gaps():
    sr = 8000
    cfg = GenerateConfig(
        sample_rate=sr, segments_per_track=6, segment_seconds=3.0, kinds={"sine": 1.0}, note_level_range_db=0.0,
        min_note_seconds=0.6, max_note_seconds=1.0, min_freq=100.0, max_freq=1000.0, max_gap_probability=1.0,
    )
    segs = _segments(generate_track(cfg, 0).astype(np.float64), cfg)
    peaks_db = 20 * np.log10(np.max(np.abs(segs), axis=1))
    assert peaks_db.max() == pytest.approx(20 * np.log10(0.9), abs=1e-4)
    assert peaks_db.max() - peaks_db.min() > 6  # loudness differs across segments

    # density: spectral peaks of equal-level sines per frame, typical count per segment
    counts = []
    for seg in segs:
        power = _stft_power(seg)
        power = power[power.sum(axis=1) > 1e-6 * power.sum(axis=1).max()]
        mid = power[:, 1:-1]
        is_peak = (mid > power[:, :-2]) & (mid > power[:, 2:]) & (mid > 0.03 * mid.max(axis=1, keepdims=True))
        counts.append(int(np.median(is_peak.sum(axis=1))))
    assert min(counts) >= 1 and max(counts) <= cfg.max_density
    assert len(set(counts)) > 1, counts

    # gaps: exact silences between phrases, more in some segments than others
    silent = np.abs(segs) < 1e-7
    frac = silent.mean(axis=1)
    assert frac.max() > 0.1 and frac.max() - frac.min() > 0.1, frac
    run = max(_longest_run(row) for row in silent)
    assert run > 0.1 * sr


def _longest_run(mask):
    best = cur = 0
    for v in mask:
        cur = cur + 1 if v else 0
        best = max(best, cur)
    return best


def test_one_minute_at_48k_has_its_length_and_peak():
    """Generation speed is a benchmark figure (benchmarks/data_throughput.py, its "setup" line),
    not a timed test: a loaded CI machine made a wall-clock bound here fail."""
    cfg = GenerateConfig(segments_per_track=6, segment_seconds=10.0, decay_probability=0.5)
    x = generate_track(cfg, 0)
    assert x.shape == (48000 * 60,) and x.dtype == np.float32
    assert np.max(np.abs(x)) == pytest.approx(cfg.peak, abs=1e-6)


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"min_freq": 500.0, "max_freq": 400.0}, "min_freq < max_freq"),
        ({"max_freq": 4000.0, "sample_rate": 8000}, "max_freq 4000.0 Hz must be below"),
        ({"max_density": 0}, "max_density"),
        ({"kinds": {"sine": 1.0, "noise": 1.0}}, "unknown note kind"),
        ({"kinds": {"sine": 0.0}}, "must not all be 0"),
        ({"peak": 1.5}, "peak"),
        ({"max_gap_probability": 2}, "max_gap_probability"),
        ({"min_note_seconds": 3.0}, "min_note_seconds <= max_note_seconds"),
        ({"decay_probability": 1.5}, "decay_probability must be in"),
        ({"min_decay_seconds": 3.0}, "min_decay_seconds <= max_decay_seconds"),
    ],
)
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        GenerateConfig(**bad)
    with pytest.raises(ConfigError, match=match):
        from_dict(GenerateConfig, bad, source="gen.yaml")


def test_config_from_yaml_data_accepts_int_weights():
    cfg = from_dict(GenerateConfig, {"seed": 3, "kinds": {"saw": 2, "chirp": 1}}, source="gen.yaml")
    assert cfg.kinds == {"saw": 2.0, "chirp": 1.0}
