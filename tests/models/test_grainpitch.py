"""Family grainpitch: a delay-line pitch shifter whose output sits at the shifted pitch."""

import numpy as np
import pytest
import torch

from fxdist.errors import ConfigError, ModelError
from fxdist.models import build_model, build_model_from_yaml, families

from .common import PRESETS, ModelContract


class TestGrainPitch(ModelContract):
    config = {"family": "grainpitch", "semitones": -12.0, "grain": 16, "post_taps": 4}

    def test_macs_match_counted_layers(self):
        """Functional ops only (no Conv1d modules): post taps + 3 per head + dry gain."""
        assert self.make().macs_per_sample() == 4 + 3 * 2 + 1


class TestGrainPitchUp(ModelContract):
    config = {"family": "grainpitch", "semitones": 7.0, "grain": 24, "post_taps": 3, "heads": 3}

    def test_macs_match_counted_layers(self):
        assert self.make().macs_per_sample() == 3 + 3 * 3 + 1


def peak_hz(y: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spec) * sr / len(y))


@pytest.mark.parametrize("semitones", [-12.0, 12.0, -5.0])
def test_a_sine_comes_out_at_the_shifted_pitch(semitones):
    sr, f = 16000, 440.0
    model = build_model({"family": "grainpitch", "semitones": semitones, "grain": 640, "post_taps": 1})
    x = np.sin(2 * np.pi * f * np.arange(2 * sr) / sr).astype(np.float32)
    with torch.no_grad():
        y, _ = model.stream_block(torch.from_numpy(x).view(1, 1, -1))
    got = peak_hz(y.view(-1).numpy()[sr // 2 :], sr)
    # the heads' jumps modulate the output at |1 - ratio| sr / grain Hz, blurring the line by that much
    jump_rate = abs(1 - model.cfg.ratio) * sr / model.cfg.grain
    assert abs(got - f * model.cfg.ratio) <= jump_rate, (got, jump_rate)
    assert abs(got - f) > 5 * jump_rate  # far from the input pitch


def test_preset_and_registry():
    assert "grainpitch" in families()
    model = build_model_from_yaml(PRESETS / "grainpitch-small.yaml")
    assert model.cfg.ratio == 0.5 and model.receptive_field == 2048 + 1 + 64


def test_bad_config_and_state_are_refused():
    with pytest.raises(ConfigError, match="heads must be >= 2"):
        build_model({"family": "grainpitch", "heads": 1})
    with pytest.raises(ConfigError, match="semitones must be nonzero"):
        build_model({"family": "grainpitch", "semitones": 0.0})
    model = build_model({"family": "grainpitch", "grain": 8, "post_taps": 2})
    with pytest.raises(ModelError, match="stream state must be"):
        model.stream_block(torch.zeros(1, 1, 4), torch.zeros(1, 1, 10))
