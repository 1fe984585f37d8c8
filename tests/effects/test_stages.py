"""Stages: built-in plugin errors, VST3 loading, external commands, the Nyquist check."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from fxdist.effects import Chain, builtin_parameters, builtin_plugins, load_effect_config
from fxdist.errors import EffectError
from tests.effects.common import PRESETS, SR, band, cfg_dict, missing_tools, noise, plucks, sine


# ----------------------------------------------------------------------------- built-in errors


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


def test_filter_cutoff_above_nyquist_is_refused():
    chain = Chain.from_config(cfg_dict({"builtin": "LowpassFilter", "params": {"cutoff_frequency_hz": 6000}}))
    with pytest.raises(EffectError, match=r"6000 Hz is at or above Nyquist \(4000 Hz\) of this 8000 Hz audio"):
        chain(sine(220, sr=8000), 8000, label="t.wav")
    for name in PRESETS:  # every shipped preset runs at 8 kHz, the lowest test rate
        cfg = load_effect_config(name)
        if missing_tools(cfg) is None:
            x = sine(220, seconds=0.25, sr=8000)
            assert np.isfinite(Chain(cfg)(x, 8000)).all(), name
