"""Latency, polarity and drift from the re-amp signal's calibration; correlation for other pairs."""

from __future__ import annotations

import numpy as np
import pedalboard as pb
import pytest
from scipy.signal import fftconvolve

from fxdist.data.align import (
    blip_onsets,
    calibration_drift,
    correct_drift,
    find_latency,
    find_latency_envelope,
    level_similarity,
)
from fxdist.data.reamp import ReampConfig, reamp_signal

SR = 48000
MAX_LAG = int(0.2 * SR)
ADDED = (0, 1, 37, 480, 4000)


@pytest.fixture(scope="module")
def signal():
    return reamp_signal(ReampConfig(seconds=8))


def _room(x):
    rng = np.random.default_rng(0)
    n = int(1.5 * SR)
    ir = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.3 * SR))
    return (0.05 * fftconvolve(x, ir)[: len(x)]).astype(np.float32)


EFFECTS = {
    "inverting amp": lambda x: -pb.Pedalboard([pb.Distortion(20), pb.LowpassFilter(3500)])(x, SR),
    "lowpass": lambda x: pb.Pedalboard([pb.LowpassFilter(250)])(x, SR),
    "fuzz": lambda x: pb.Pedalboard([pb.Distortion(45)])(x, SR),
    "compressor": lambda x: pb.Pedalboard([pb.Compressor(-30, 8, 1, 100)])(x, SR),
    "wet chorus": lambda x: pb.Pedalboard([pb.Chorus(rate_hz=1.5, depth=0.5, centre_delay_ms=8, mix=1.0)])(x, SR),
    "wet reverb": lambda x: pb.Pedalboard([pb.Reverb(room_size=0.8, wet_level=0.8, dry_level=0.0)])(x, SR),
    "octave up": lambda x: pb.Pedalboard([pb.PitchShift(12)])(x, SR),
    "room": _room,
}


@pytest.mark.parametrize("name", list(EFFECTS))
def test_calibration_finds_any_added_latency_to_the_sample(signal, name):
    rendered = EFFECTS[name](signal.audio)
    found = {}
    for added in ADDED:
        y = np.concatenate([np.zeros(added, np.float32), rendered])
        start = blip_onsets(y, signal.blips["calibration-start"], MAX_LAG, SR, SR)
        end = blip_onsets(y, signal.blips["calibration-end"], MAX_LAG, SR, SR)
        assert start is not None and end is not None, (name, added)
        found[added] = (start.latency, end.latency)
    base = found[0]
    for added, (s, e) in found.items():
        assert abs(s - base[0] - added) <= 1 and abs(e - base[1] - added) <= 1, (name, found)


def test_sample_aligned_devices_measure_zero_latency(signal):
    for name in ("inverting amp", "lowpass", "fuzz", "compressor", "room"):
        start = blip_onsets(EFFECTS[name](signal.audio), signal.blips["calibration-start"], MAX_LAG, SR, SR)
        assert abs(start.latency) <= 2, (name, start)


def test_polarity_is_reported(signal):
    starts = signal.blips["calibration-start"]
    assert blip_onsets(signal.audio, starts, MAX_LAG, SR, SR).polarity == 1
    assert blip_onsets(EFFECTS["inverting amp"](signal.audio), starts, MAX_LAG, SR, SR).polarity == -1


@pytest.mark.parametrize("name", ["fuzz", "wet reverb", "octave up"])
@pytest.mark.parametrize("ppm", [20.0, -20.0])
def test_a_20_ppm_clock_drift_is_measured_and_corrected(signal, name, ppm):
    recorded = correct_drift(EFFECTS[name](signal.audio), -ppm).astype(np.float32)  # runs ppm long
    starts, ends = signal.blips["calibration-start"], signal.blips["calibration-end"]
    section = signal.sections[0]
    distance = ends[0] - starts[0]
    drift, similar = calibration_drift(recorded, starts[0] - 480, section.end - starts[0], distance, 200)
    assert drift / distance * 1e6 == pytest.approx(ppm, abs=1.0) and similar > 0.5
    fixed = correct_drift(recorded, drift / distance * 1e6)
    assert abs(calibration_drift(fixed, starts[0] - 480, section.end - starts[0], distance, 200)[0]) < 0.5


def test_no_response_to_the_blips_is_none(signal):
    noise = 0.1 * np.random.default_rng(1).standard_normal(signal.audio.size)
    assert blip_onsets(noise, signal.blips["calibration-start"], MAX_LAG, SR, SR) is None


def test_envelope_correlation_finds_the_lag_of_a_phase_scrambling_effect(signal):
    x = signal.audio[signal.sections[1].start : signal.sections[1].end].astype(np.float64)
    y = np.concatenate([np.zeros(300), EFFECTS["wet chorus"](x.astype(np.float32))])[: len(x)]
    env = find_latency_envelope(x, y, 2000, SR, span=SR)
    centre = 300 + 8 * SR // 1000  # the added latency plus the chorus's centre delay
    assert abs(env.lag - centre) <= 8 * SR // 1000 and level_similarity(x, y, SR) > 0.6


def test_unrelated_audio_neither_correlates_nor_follows(signal):
    x = signal.audio[signal.sections[1].start : signal.sections[1].end].astype(np.float64)
    noise = 0.1 * np.random.default_rng(2).standard_normal(len(x))
    assert abs(find_latency(x, noise, 2000, SR).correlation) < 0.1
    assert level_similarity(x, noise, SR) < 0.3
    assert level_similarity(x, EFFECTS["octave up"](x.astype(np.float32)), SR) > 0.6
