"""Effect chains: the physics of every shipped preset, config validation, stage errors.

Signals are 1 s at 16 kHz. Presets that run an external program (sox, a LADSPA plugin)
are skipped with the reason when that program or plugin is not installed.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fxdist.effects import (
    EFFECT_KINDS,
    Chain,
    EffectConfig,
    builtin_parameters,
    builtin_plugins,
    cabinet_ir,
    effect_config_from_dict,
    load_effect,
    load_effect_config,
)
from fxdist.dsp import do_nothing_esr
from fxdist.errors import ConfigError, EffectError
from fxdist.presets import effects_dir, list_effect_presets

SR = 16000
PRESETS = list_effect_presets()
REQUIRED_KINDS = ("distortion", "fuzz", "compression", "amp_cab", "highpass", "lowpass", "pitch", "chorus", "delay", "reverb")


# ----------------------------------------------------------------------------- signals


def sine(freq: float, amp: float = 0.5, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)[None, :]


def noise(seconds: float = 1.0, amp: float = 0.1, seed: int = 0) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal((1, int(seconds * SR)))).astype(np.float32)


def plucks(seconds: float = 2.0, seed: int = 0, sr: int = SR) -> np.ndarray:
    """Guitar-like plucked notes (8 harmonics, exponential decay) at -30..0 dB, (1, N)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros(n)
    t0 = 0
    while t0 < n:
        f0 = float(np.exp(rng.uniform(np.log(82), np.log(660))))
        t = np.arange(min(int(rng.uniform(0.15, 0.6) * sr), n - t0)) / sr
        note = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.28)) / k for k in range(1, 9) if k * f0 < 0.45 * sr)
        env = np.minimum(t / 0.003, 1.0) * np.exp(-t / rng.uniform(0.08, 0.4))
        out[t0 : t0 + len(t)] += 10 ** (rng.uniform(-30, 0) / 20) * env * note
        t0 += len(t)
    return (0.9 * out / np.max(np.abs(out)))[None, :].astype(np.float32)


def spectrum(y: np.ndarray, skip_s: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed power spectrum of channel 0 after ``skip_s`` (filter start-up left out)."""
    seg = np.asarray(y, dtype=np.float64)[0, int(skip_s * SR) :]
    power = np.abs(np.fft.rfft(seg * np.hanning(len(seg)))) ** 2
    return np.fft.rfftfreq(len(seg), 1 / SR), power


def band(y: np.ndarray, lo: float, hi: float) -> float:
    f, p = spectrum(y, skip_s=0.0)
    return float(p[(f >= lo) & (f < hi)].sum())


def thd(y: np.ndarray, f0: float) -> float:
    """sqrt(energy at harmonics 2f0, 3f0, ... below Nyquist / energy at f0)."""
    f, p = spectrum(y)

    def at(freq: float) -> float:
        return float(p[np.abs(f - freq) <= 3].sum())

    harmonics = sum(at(k * f0) for k in range(2, int(0.49 * SR / f0) + 1))
    return float(np.sqrt(harmonics / at(f0)))


def rms_db(y: np.ndarray, start_s: float, end_s: float) -> float:
    seg = y[0, int(start_s * SR) : int(end_s * SR)].astype(np.float64)
    return float(10 * np.log10(np.mean(seg**2)))


# ----------------------------------------------------------------------------- helpers


def missing_tools(cfg: EffectConfig) -> str | None:
    """Why ``cfg`` cannot run here (a program or LADSPA plugin it needs is absent), else None."""
    for stage in cfg.chain:
        if stage.command is None:
            continue
        if shutil.which(stage.command[0]) is None:
            return f"{cfg.name}: needs program {stage.command[0]!r}, not installed (apt-get install {stage.command[0]})"
        if "ladspa" in stage.command:
            module = stage.command[stage.command.index("ladspa") + 1]
            folder = stage.env.get("LADSPA_PATH", os.environ.get("LADSPA_PATH", "/usr/lib/ladspa"))
            if not (Path(module).is_file() or (Path(folder) / f"{module}.so").is_file()):
                return f"{cfg.name}: needs LADSPA plugin {module} in {folder}, not installed (apt-get install swh-plugins)"
    return None


def preset_or_skip(name: str) -> Chain:
    cfg = load_effect_config(name)
    reason = missing_tools(cfg)
    if reason:
        print(f"SKIP {reason}")
        pytest.skip(reason)
    return Chain(cfg)


def stage_param(cfg: EffectConfig, builtin: str, param: str) -> list[float]:
    return [s.params[param] for s in cfg.chain if s.builtin == builtin and param in s.params]


def cfg_dict(*stages: dict, name: str = "test") -> dict:
    return {"name": name, "family": "other", "chain": list(stages)}


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


# ----------------------------------------------------------------------------- config and built-in errors


def test_unknown_builtin_lists_available():
    with pytest.raises(EffectError, match="Distortion") as err:
        Chain.from_config(cfg_dict({"builtin": "Distorshun"}))
    assert "Distorshun" in str(err.value) and "Reverb" in str(err.value)


def test_unknown_param_lists_plugin_params():
    with pytest.raises(EffectError, match=r"unknown parameter\(s\) drive; Distortion takes: drive_db") as err:
        Chain.from_config(cfg_dict({"builtin": "Distortion", "params": {"drive": 20}}), source="fx.yaml")
    assert "fx.yaml" in str(err.value) and "chain[0]" in str(err.value)


def test_bad_param_value_raises():
    with pytest.raises(EffectError, match="drive_db"):
        Chain.from_config(cfg_dict({"builtin": "Distortion", "params": {"drive_db": "loud"}}))


def test_enum_param_by_member_name():
    chain = Chain.from_config(cfg_dict({"builtin": "LadderFilter", "params": {"mode": "HPF24", "cutoff_hz": 2000}}))
    y = chain(noise(), SR)
    assert band(y, 20, 500) < 0.05 * band(noise(), 20, 500)
    with pytest.raises(EffectError, match="LPF12"):
        Chain.from_config(cfg_dict({"builtin": "LadderFilter", "params": {"mode": "XYZ"}}))


def test_every_builtin_has_parsed_parameters():
    plugins = builtin_plugins()
    assert {"Distortion", "Reverb", "Chorus", "Compressor", "PitchShift", "Convolution"} <= set(plugins)
    assert builtin_parameters(plugins["Compressor"]) == {
        "threshold_db": "float", "ratio": "float", "attack_ms": "float", "release_ms": "float"}
    assert "Pedalboard" not in plugins and "VST3Plugin" not in plugins


@pytest.mark.parametrize(
    "stage, match",
    [
        ({"builtin": "Gain", "vst3": "/x.vst3"}, "exactly one"),
        ({}, "exactly one"),
        ({"builtin": "Gain", "gian": 1}, "unknown key"),
        ({"cabinet_ir": {"seed": 1, "lenght_ms": 30}}, "lenght_ms"),
        ({"cabinet_ir": {"length_ms": 0.1}}, "length_ms"),
        ({"command": ["sox", "{input}", "out.wav"]}, r"\{output\}"),
        ({"command": ["true", "{input}", "{output}"], "params": {"a": 1}}, "params"),
        ({"command": ["true", "{input}", "{output}"], "timeout_s": 0}, "timeout_s"),
        ({"builtin": "Gain", "timeout_s": 5}, "belong.* to command stages"),
    ],
)
def test_bad_stage_config(stage, match):
    with pytest.raises(ConfigError, match=match):
        effect_config_from_dict(cfg_dict(stage), source="fx.yaml")


def test_bad_effect_config():
    with pytest.raises(ConfigError, match="not one of"):
        effect_config_from_dict({"name": "x", "family": "wah", "chain": [{"builtin": "Gain"}]})
    with pytest.raises(ConfigError, match=r"\[a-z0-9_-\]"):
        effect_config_from_dict({"name": "Bad Name", "chain": [{"builtin": "Gain"}]})
    with pytest.raises(ConfigError, match="empty"):
        effect_config_from_dict({"name": "x", "chain": []})


# ----------------------------------------------------------------------------- VST3


def test_missing_vst3_raises(tmp_path):
    with pytest.raises(EffectError, match="not found"):
        Chain.from_config(cfg_dict({"vst3": str(tmp_path / "Nope.vst3")}))


def test_non_plugin_vst3_raises(tmp_path):
    """No VST3 plugin is installable here (Debian ships VST2 only), so only errors are tested."""
    fake = tmp_path / "Fake.vst3"
    fake.write_text("not a plugin")
    with pytest.raises(EffectError, match="cannot load as a VST3"):
        Chain.from_config(cfg_dict({"vst3": str(fake), "params": {"gain": 1}}))


# ----------------------------------------------------------------------------- external commands

PY = sys.executable


def py_command(code: str, **extra) -> dict:
    """A command stage running ``code`` with sys.argv[1:] = input, output (soundfile available)."""
    return {"command": [PY, "-c", code, "{input}", "{output}"], **extra}


COPY_WITH = (
    "import sys, soundfile as sf, numpy as np\n"
    "x, sr = sf.read(sys.argv[1], dtype='float32')\n"
    "sf.write(sys.argv[2], {expr}, {rate}, subtype='FLOAT')\n"
)


def test_command_round_trip_is_exact():
    stage = py_command(COPY_WITH.format(expr="-x", rate="sr"))
    x = plucks(0.5)
    assert np.array_equal(Chain.from_config(cfg_dict(stage))(x, SR), -x)


def test_failing_command_reports_exit_code_and_stderr():
    stage = {"command": ["sh", "-c", "echo boom-from-effect >&2; exit 3", "{input}", "{output}"]}
    with pytest.raises(EffectError, match="exit code 3") as err:
        Chain.from_config(cfg_dict(stage))(sine(220), SR, label="track-7")
    assert "boom-from-effect" in str(err.value) and "track-7" in str(err.value)
    with pytest.raises(EffectError, match="exit code 1"):
        Chain.from_config(cfg_dict({"command": ["false", "{input}", "{output}"]}))(sine(220), SR)


def test_hanging_command_is_killed_after_timeout():
    stage = {"command": ["sh", "-c", "sleep 30", "{input}", "{output}"], "timeout_s": 1}
    start = time.monotonic()
    with pytest.raises(EffectError, match="timed out after 1 s") as err:
        Chain.from_config(cfg_dict(stage))(sine(220), SR, label="track-9")
    assert time.monotonic() - start < 10
    assert "sleep 30" in str(err.value) and "track-9" in str(err.value)


def test_command_without_output_file():
    with pytest.raises(EffectError, match="wrote no output"):
        Chain.from_config(cfg_dict({"command": ["true", "{input}", "{output}"]}))(sine(220), SR)


def test_command_not_on_path():
    with pytest.raises(EffectError, match="not found on PATH"):
        Chain.from_config(cfg_dict({"command": ["no-such-program-fxdist", "{input}", "{output}"]}))


def test_command_wrong_rate_is_refused():
    stage = py_command(COPY_WITH.format(expr="x", rate="8000"))
    with pytest.raises(EffectError, match="8000 Hz audio for 16000 Hz"):
        Chain.from_config(cfg_dict(stage))(sine(220), SR)


def test_command_length_rules():
    x = sine(220, seconds=0.5)
    short = COPY_WITH.format(expr="x[:-3]", rate="sr")
    longer = COPY_WITH.format(expr="np.concatenate([x, x])", rate="sr")
    with pytest.raises(EffectError, match="returned 7997 samples for 8000"):
        Chain.from_config(cfg_dict(py_command(short)))(x, SR)
    padded = Chain.from_config(cfg_dict(py_command(short, length_tolerance=4)))(x, SR)
    assert padded.shape == x.shape and np.all(padded[0, -3:] == 0) and np.array_equal(padded[0, :-3], x[0, :-3])
    with pytest.raises(EffectError, match="returned 16000 samples"):
        Chain.from_config(cfg_dict(py_command(longer, length_tolerance=4)))(x, SR)
    trimmed = Chain.from_config(cfg_dict(py_command(longer, trim_tail=True)))(x, SR)
    assert np.array_equal(trimmed, x)


def test_command_env_is_passed():
    code = "import os, sys, shutil; assert os.environ['FXDIST_T'] == 'yes'; shutil.copy(sys.argv[1], sys.argv[2])"
    x = sine(220)
    assert np.array_equal(Chain.from_config(cfg_dict(py_command(code, env={"FXDIST_T": "yes"})))(x, SR), x)


# ----------------------------------------------------------------------------- cabinet IR


def test_cabinet_ir_deterministic_band_limited_front_loaded():
    sr = 48000
    ir = cabinet_ir(sr, seed=3, length_ms=40)
    assert ir.dtype == np.float32 and ir.shape == (1920,)
    assert np.array_equal(ir, cabinet_ir(sr, seed=3, length_ms=40))
    assert not np.allclose(ir, cabinet_ir(sr, seed=4, length_ms=40))
    power = np.abs(np.fft.rfft(ir, 1 << 16)) ** 2
    f = np.fft.rfftfreq(1 << 16, 1 / sr)
    assert power[f > 6000].sum() < 0.01 * power.sum()
    assert power[f < 50].sum() < 0.01 * power.sum()
    energy = np.sum(ir.astype(np.float64) ** 2)
    assert np.sum(ir[: len(ir) // 4].astype(np.float64) ** 2) > 0.8 * energy


def test_cabinet_ir_gain_does_not_depend_on_rate():
    """0 dB mean power gain over the pass band, at every rate (the level of a chain stays put)."""
    for sr in (8000, 16000, 48000):
        ir = cabinet_ir(sr, seed=3).astype(np.float64)
        power = np.abs(np.fft.rfft(ir, 1 << 16)) ** 2
        f = np.fft.rfftfreq(1 << 16, 1 / sr)
        mid_db = 10 * np.log10(power[(f >= 200) & (f <= 3000)].mean())
        assert abs(mid_db) < 1.5, f"{sr} Hz: mean gain 200 Hz-3 kHz {mid_db:.2f} dB"


def test_cabinet_stage_applies_the_ir_exactly():
    """The stage undoes JUCE's IR normalisation: output == numpy convolution with the IR."""
    chain = Chain.from_config(cfg_dict({"cabinet_ir": {"seed": 1}}))
    x = noise(0.5, 0.1)
    want = np.convolve(x[0].astype(np.float64), cabinet_ir(SR, seed=1).astype(np.float64))[: x.shape[1]]
    np.testing.assert_allclose(chain(x, SR)[0], want, atol=1e-5 * np.abs(want).max())


def test_filter_cutoff_above_nyquist_is_refused():
    chain = Chain.from_config(cfg_dict({"builtin": "LowpassFilter", "params": {"cutoff_frequency_hz": 6000}}))
    with pytest.raises(EffectError, match=r"6000 Hz is at or above Nyquist \(4000 Hz\) of this 8000 Hz audio"):
        chain(sine(220, sr=8000), 8000, label="t.wav")
    for name in PRESETS:  # every shipped preset runs at 8 kHz, the lowest test rate
        cfg = load_effect_config(name)
        if missing_tools(cfg) is None:
            x = sine(220, seconds=0.25, sr=8000)
            assert np.isfinite(Chain(cfg)(x, 8000)).all(), name
