"""Effect chains: the physics of every shipped preset, shapes, rates, round trips.

Signals are 1 s at 16 kHz. Presets that run an external program (sox, a LADSPA plugin)
are skipped with the reason when that program or plugin is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

from fxdist.dsp import do_nothing_esr
from fxdist.effects import EFFECT_KINDS, Chain, load_effect, load_effect_config
from fxdist.errors import EffectError
from fxdist.presets import effects_dir
from tests.effects.common import (
    PRESETS, SR, band, noise, plucks, preset_or_skip, rms_db, sine, spectrum, stage_param, thd,
)


REQUIRED_KINDS = ("distortion", "fuzz", "compression", "amp_cab", "highpass", "lowpass", "pitch", "chorus", "delay", "reverb")


# ----------------------------------------------------------------------------- catalogue


def test_catalogue_covers_every_effect_kind():
    kinds = {load_effect_config(n).family for n in PRESETS}
    assert set(REQUIRED_KINDS) <= kinds, f"missing presets for {set(REQUIRED_KINDS) - kinds}"
    for name in PRESETS:
        assert load_effect_config(name).name == name, f"{name}.yaml: name field differs from file name"


# ----------------------------------------------------------------------------- physics per effect kind


def check_lowpass(chain: Chain) -> None:
    cutoff = min(stage_param(chain.config, "LowpassFilter", "cutoff_frequency_hz"))
    x = noise()
    y = chain(x, SR)
    keep = band(y, 20, cutoff / 2) / band(x, 20, cutoff / 2)
    cut = band(y, 2 * cutoff, SR / 2) / band(x, 2 * cutoff, SR / 2)
    assert cut < 0.05 * keep, f"energy ratio above {2 * cutoff} Hz {cut:.4f} vs below {cutoff / 2} Hz {keep:.4f}"


def check_highpass(chain: Chain) -> None:
    cutoff = max(stage_param(chain.config, "HighpassFilter", "cutoff_frequency_hz"))
    x = noise()
    y = chain(x, SR)
    cut = band(y, 20, cutoff / 2) / band(x, 20, cutoff / 2)
    keep = band(y, 2 * cutoff, SR / 2) / band(x, 2 * cutoff, SR / 2)
    assert cut < 0.05 * keep, f"energy ratio below {cutoff / 2} Hz {cut:.4f} vs above {2 * cutoff} Hz {keep:.4f}"


def check_distortion(chain: Chain) -> None:
    x = sine(220)
    y = chain(x, SR)
    assert thd(x, 220) < 0.01
    assert thd(y, 220) > 0.2, f"THD {thd(y, 220):.3f}: too few harmonics for a {chain.effect_kind} preset"


def check_amp_cab(chain: Chain) -> None:
    check_distortion(chain)
    x = sine(220)
    no_cab = Chain.from_config(dict(chain.to_dict(), chain=[s for s in chain.to_dict()["chain"] if "cabinet_ir" not in s]))

    def hf_fraction(y: np.ndarray) -> float:
        f, p = spectrum(y)
        return float(p[f > 6000].sum() / p.sum())

    with_cab, without = hf_fraction(chain(x, SR)), hf_fraction(no_cab(x, SR))
    assert with_cab < 0.1 * without, f"energy share above 6 kHz {with_cab:.2e} with cabinet vs {without:.2e} without"


def check_compression(chain: Chain) -> None:
    x = np.concatenate([sine(330, 0.8, 0.5), sine(330, 0.02, 0.5)], axis=1)
    y = chain(x, SR)
    range_in = rms_db(x, 0.2, 0.45) - rms_db(x, 0.7, 0.95)
    range_out = rms_db(y, 0.2, 0.45) - rms_db(y, 0.7, 0.95)
    assert range_out < range_in - 15, f"loud/quiet level difference {range_in:.1f} dB in, {range_out:.1f} dB out"


def check_delay(chain: Chain) -> None:
    delay_s = stage_param(chain.config, "Delay", "delay_seconds")[0]
    x = np.zeros((1, SR), np.float32)
    x[0, 1600:1920] = noise(0.02, 0.5, seed=1)[0]
    y = chain(x, SR)
    xcorr = np.fft.irfft(np.fft.rfft(y[0], 2 * SR) * np.conj(np.fft.rfft(x[0], 2 * SR)))[:SR]
    lag = int(np.argmax(xcorr[int(0.005 * SR) :])) + int(0.005 * SR)
    assert abs(lag - delay_s * SR) <= 2, f"echo at {lag / SR * 1000:.1f} ms, expected {delay_s * 1000:.0f} ms"


def check_reverb(chain: Chain) -> None:
    burst = int(0.2 * SR)
    x = np.zeros((1, int(1.6 * SR)), np.float32)
    x[0, :burst] = noise(0.2, 0.5, seed=2)[0]
    y = chain(x, SR)[0].astype(np.float64)
    tail_db = 10 * np.log10(np.sum(y[burst + 800 : burst + 5600] ** 2) / np.sum(x[0, :burst].astype(np.float64) ** 2))
    assert tail_db > -20, f"tail 50-350 ms after the burst is {tail_db:.1f} dB below the burst"
    decay = np.cumsum((y[burst:] ** 2)[::-1])[::-1]
    level = 10 * np.log10(decay / decay[0])
    t5, t20 = np.argmax(level < -5) / SR, np.argmax(level < -20) / SR
    assert t20 > t5 > 0, "tail does not decay"
    rt60 = 60 * (t20 - t5) / 15
    assert 0.5 < rt60 < 20, f"RT60 about {rt60:.2f} s"


def check_chorus(chain: Chain) -> None:
    x = sine(440, 0.5, 1.0)
    y = chain(x, SR)
    frame, hop = 1024, 512
    win = np.hanning(frame)
    probe = win * np.exp(-2j * np.pi * 440 * np.arange(frame) / SR)
    ratios = np.array([
        (y[0, i : i + frame] @ probe) / (x[0, i : i + frame] @ probe)
        for i in range(int(0.1 * SR), SR - frame, hop)
    ])
    wobble = np.std(ratios) / np.abs(np.mean(ratios))
    assert wobble > 0.1, f"output/input transfer at 440 Hz varies by only {wobble:.3f} over time"


def check_pitch(chain: Chain) -> None:
    semitones = stage_param(chain.config, "PitchShift", "semitones")[0]
    y = chain(sine(440), SR)
    f, p = spectrum(y)
    peak, want = f[np.argmax(p)], 440 * 2 ** (semitones / 12)
    assert abs(peak - want) < 0.03 * want, f"peak at {peak:.1f} Hz, expected {want:.1f} Hz"
    # latency compensated: a tone burst starting at 0.25 s comes out starting there too
    burst = sine(440, 0.5, 1.0)
    burst[0, : SR // 4] = 0
    env = np.abs(chain(burst, SR)[0])
    onset = np.argmax(env > 0.1 * env.max()) / SR
    assert abs(onset - 0.25) < 0.03, f"tone starting at 250 ms comes out at {onset * 1000:.0f} ms"


def check_other(chain: Chain) -> None:
    x = plucks(1.0)
    assert not np.allclose(chain(x, SR), x, atol=1e-3)


CHECKS = {
    "lowpass": check_lowpass, "highpass": check_highpass, "distortion": check_distortion, "fuzz": check_distortion,
    "amp_cab": check_amp_cab, "compression": check_compression, "delay": check_delay, "reverb": check_reverb,
    "chorus": check_chorus, "pitch": check_pitch, "other": check_other,
}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_physics(name):
    chain = preset_or_skip(name)
    CHECKS[chain.effect_kind](chain)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_strong_shape_and_deterministic(name):
    chain = preset_or_skip(name)
    x = plucks(2.0)
    y = chain(x, SR)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.isfinite(y).all()
    esr = do_nothing_esr(x, y)
    assert esr >= 0.1, f"{name}: do-nothing baseline ESR {esr:.3f} < 0.1: too mild to judge a model by"
    assert np.array_equal(chain(x, SR), y), "same chain, same input, different output"
    assert np.array_equal(load_effect(name)(x, SR), y), "a rebuilt chain renders differently"


def test_effect_kinds_are_the_documented_ones():
    assert set(CHECKS) == set(EFFECT_KINDS)


# ----------------------------------------------------------------------------- chain behaviour


def test_mono_1d_and_stereo_shapes():
    chain = load_effect("chorus")
    x = plucks(0.5)
    assert chain(x[0], SR).shape == x.shape  # (N,) is read as (1, N)
    stereo = np.vstack([x, 0.5 * x])
    assert chain(stereo, SR).shape == stereo.shape


def test_rate_changes_between_calls():
    chain = load_effect("amp_cab")
    for sr in (8000, 16000, 22050):
        x = sine(220, sr=sr, seconds=0.3)
        assert chain(x, sr).shape == x.shape


def test_bad_audio_shape_raises():
    with pytest.raises(EffectError, match="shape"):
        load_effect("distortion")(np.zeros((1, 2, 3), np.float32), SR)
    with pytest.raises(EffectError, match="N > 0"):
        load_effect("distortion")(np.zeros((1, 0), np.float32), SR)


def test_to_dict_round_trip_and_name_or_path():
    by_name = load_effect("amp_cab")
    by_path = load_effect(effects_dir() / "amp_cab.yaml")
    assert by_name.to_dict() == by_path.to_dict()
    rebuilt = Chain.from_config(by_name.to_dict())
    assert rebuilt.to_dict() == by_name.to_dict()
    x = plucks(0.5)
    assert np.array_equal(rebuilt(x, SR), by_name(x, SR))


def test_unknown_preset_lists_shipped_ones():
    with pytest.raises(EffectError, match="distortion") as err:
        load_effect("no_such_effect")
    assert "no_such_effect" in str(err.value)
    with pytest.raises(EffectError, match="not found"):
        load_effect("/nonexistent/effect.yaml")


def test_yaml_file_loads(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nfamily: other\nchain:\n  - builtin: Gain\n    params: {gain_db: -6}\n")
    y = load_effect(path)(sine(220), SR)
    np.testing.assert_allclose(y, sine(220) * 10 ** (-6 / 20), rtol=1e-5, atol=1e-6)
