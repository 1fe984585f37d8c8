"""Family chorus: a modulated delay line with feedback whose LFO runs from the stream's start."""

import numpy as np
import pytest
import torch

from fxdist.errors import ConfigError, ModelError
from fxdist.models import build_model, families
from fxdist.models.chorus import fit_chorus

from .common import ModelContract

# Fast LFO and a delay range that reaches the clamp, so a short test sees the whole window.
SMALL = {"family": "chorus", "sample_rate": 8000, "max_delay_ms": 3.0, "feedback_terms": 2, "rate_hz": 300.0,
         "centre_ms": 2.5, "depth_ms": 1.0, "feedback": 0.3}


class TestChorus(ModelContract):
    config = SMALL

    def test_macs_match_counted_layers(self):
        """Functional ops only: 3 per delay read (3 reads), feedback and mix gains."""
        assert self.make().macs_per_sample() == 3 * 3 + 2


def test_receptive_field_and_registry():
    assert "chorus" in families()
    model = build_model({"family": "chorus", "sample_rate": 48000, "max_delay_ms": 30.0, "feedback_terms": 3})
    assert model.receptive_field == 4 * 1440 + 4


def test_without_modulation_it_is_an_echo_with_negative_feedback():
    """depth 0: y = dry x + wet w, w(n) = x(n - d) - fb w(n - d - 1), d = 2 ms = 16 samples at 8 kHz."""
    model = build_model({"family": "chorus", "sample_rate": 8000, "max_delay_ms": 5.0, "feedback_terms": 4,
                         "centre_ms": 2.0, "depth_ms": 0.0, "feedback": 0.5, "dry": 0.3, "wet": 0.7})
    x = torch.zeros(1, 1, 200)
    x[0, 0, 0] = 1.0
    with torch.no_grad():
        y, _ = model.stream_block(x)
    y = y.view(-1).numpy()
    assert y[0] == pytest.approx(0.3)
    assert y[16] == pytest.approx(0.7)
    assert y[33] == pytest.approx(0.7 * -0.5)
    assert y[50] == pytest.approx(0.7 * 0.25)
    assert np.count_nonzero(np.abs(y) > 1e-7) == 1 + 5  # dry + K + 1 = 5 echoes


def test_the_lfo_runs_from_the_stream_start():
    """forward_at(start) equals the matching slice of one pass from time 0."""
    model = build_model(SMALL)
    rf = model.receptive_field
    x = torch.randn(1, 1, 400)
    with torch.no_grad():
        whole, _ = model.stream_block(x)
        part = model.forward_at(x[..., 100 - (rf - 1) : 300], torch.tensor([100]))
    assert (part - whole[..., 100:300]).abs().max() < 1e-6


@pytest.mark.slow
def test_fit_recovers_a_chorus_from_pairs():
    """Low-passed noise (white noise decorrelates within a sample: no basin for the delay)."""
    from scipy.signal import lfilter

    sr = 8000
    truth = build_model({"family": "chorus", "sample_rate": sr, "max_delay_ms": 12.0, "rate_hz": 1.3, "phase": 2.0,
                         "centre_ms": 5.0, "depth_ms": 3.0, "feedback": 0.25, "dry": 0.6, "wet": 0.4})
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(3):
        clean = lfilter([0.05], [1, -0.95], rng.standard_normal(4 * sr)).astype(np.float32)
        with torch.no_grad():
            target, _ = truth.stream_block(torch.from_numpy(clean).view(1, 1, -1))
        pairs.append((clean, target.view(-1).numpy()))
    model = build_model({"family": "chorus", "sample_rate": sr, "max_delay_ms": 12.0})
    got = fit_chorus(model, pairs, rates=(0.8, 2.0, 15), phases=8, centres=(5.0,), depths=(0.6,),
                     stages=(1.0, 2.0, 0.0), steps_per_stage=150, window=2048, log=lambda _msg: None)
    assert got["rate_hz"] == pytest.approx(1.3, abs=0.002)
    assert got["depth_ms"] == pytest.approx(3.0, abs=0.1)
    clean, target = pairs[0]
    with torch.no_grad():
        pred, _ = model.stream_block(torch.from_numpy(clean).view(1, 1, -1))
    esr = float(np.sum((target - pred.view(-1).numpy()) ** 2) / np.sum(target**2))
    assert esr < 0.01


def test_bad_config_and_input_are_refused():
    with pytest.raises(ConfigError, match="max_delay_ms"):
        build_model({"family": "chorus", "max_delay_ms": 0.5})
    with pytest.raises(ModelError, match="at least one"):
        fit_chorus(build_model(SMALL), [])
