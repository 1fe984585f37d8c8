"""Family fir: a learnable impulse response by FFT (or direct) convolution, and its LS fit."""

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from fxdist.errors import ModelError
from fxdist.models import build_model, build_model_from_yaml, families
from fxdist.models.fir import _fast_size, fft_convolve_valid, fit_least_squares

from .common import PRESETS, ModelContract


class TestFIR(ModelContract):
    """Short response: the direct path, exact to the bit outside the window."""

    config = {"family": "fir", "length": 16}
    # An LTI model cannot learn tanh(2x); the best linear gain only halves the error.
    learn_factor = 1.6

    def test_macs_match_counted_layers(self):
        """No Conv1d/Linear modules to count: the direct form costs one MAC per tap."""
        assert self.make().macs_per_sample() == 16


class TestFIRFFTStreaming(ModelContract):
    """Long response on the FFT path: streaming in blocks equals one pass (to float rounding)."""

    config = {"family": "fir", "length": 300, "method": "fft"}
    learn_factor = 1.6
    learn_lr = 3e-3  # Adam moves every tap by ~lr per step: 300 noisy taps need a smaller step

    # FFT rounding touches every output: exactness outside the window is the direct path's test.
    def test_perturbing_one_sample_changes_only_its_window(self):
        pytest.skip("FFT output carries ~1e-7 rounding everywhere; see test_fft_matches_direct")

    def test_receptive_field_is_exact_by_gradient(self):
        pytest.skip("FFT gradients carry ~1e-7 rounding everywhere; see test_fft_matches_direct")

    def test_macs_match_counted_layers(self):
        assert self.make().macs_per_sample() == 300


def test_registered_and_presets_build():
    assert "fir" in families()
    assert build_model_from_yaml(PRESETS / "fir-small.yaml").receptive_field == 2400
    assert build_model_from_yaml(PRESETS / "fir-large.yaml").receptive_field == 72000


def test_identity_init_passes_the_input_and_zeros_init_silences_it():
    x = torch.randn(2, 1, 500)
    y, _ = build_model({"family": "fir", "length": 200})(x)
    assert torch.allclose(y, x[..., 199:], atol=1e-6)
    y, _ = build_model({"family": "fir", "length": 200, "init": "zeros"})(x)
    assert y.abs().max() == 0


def test_fft_matches_direct_values_and_gradients():
    torch.manual_seed(0)
    x = torch.randn(3, 1, 1000)
    taps = torch.randn(257, requires_grad=True)
    fft = fft_convolve_valid(x, taps)
    direct = torch.nn.functional.conv1d(x, taps.flip(0).view(1, 1, -1))
    assert fft.shape == direct.shape == (3, 1, 744)
    assert (fft - direct).abs().max() < 1e-4
    (g_fft,) = torch.autograd.grad(fft.square().sum(), taps)
    (g_dir,) = torch.autograd.grad(direct.square().sum(), taps)
    assert (g_fft - g_dir).abs().max() / g_dir.abs().max() < 1e-5


def test_fast_size_is_smooth_and_not_smaller():
    for n in (1, 7, 1000, 48001, 96257):
        m = _fast_size(n)
        assert m >= n and m < 2 * n or n == 1
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        assert m == 1


def test_least_squares_recovers_an_iir_filter_and_an_echo():
    """A one-pole low-pass and an echo with feedback (both LTI) are recovered from noise pairs."""
    rng = np.random.default_rng(0)
    clean = [rng.standard_normal(n).astype(np.float32) for n in (4000, 3000)]
    lowpass = [lfilter([0.2], [1, -0.8], c) for c in clean]
    h = fit_least_squares(list(zip(clean, lowpass)), 64)
    assert np.allclose(h, 0.2 * 0.8 ** np.arange(64), atol=1e-3)
    echo = [lfilter([0.5, *[0] * 99, 0.5], [1, *[0] * 99, -0.3], c) for c in clean]  # 100-sample echo
    h = fit_least_squares(list(zip(clean, echo)), 400)
    assert abs(h[0] - 0.5) < 1e-3 and abs(h[100] - (0.5 + 0.15)) < 1e-2 and abs(h[200] - 0.195) < 1e-2
    model = build_model({"family": "fir", "length": 400})
    model.set_taps(h)
    with torch.no_grad():
        x = torch.from_numpy(np.r_[np.zeros(399, np.float32), clean[0]]).view(1, 1, -1)
        pred = model(x)[0].view(-1).numpy()
    esr = np.sum((echo[0] - pred) ** 2) / np.sum(echo[0] ** 2)
    assert esr < 1e-3


def test_least_squares_and_set_taps_refuse_bad_input():
    with pytest.raises(ModelError, match="samples but its target"):
        fit_least_squares([(np.ones(10), np.ones(9))], 4)
    with pytest.raises(ModelError, match="silent"):
        fit_least_squares([(np.zeros(10), np.ones(10))], 4)
    with pytest.raises(ModelError, match=r"shape \(8,\)"):
        build_model({"family": "fir", "length": 8}).set_taps(np.zeros(7))
