"""Family wh: Wiener-Hammerstein (FIR -> tanh(gain u + bias) -> FIR) and its direct fit."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from fxdist.checkpoint import Checkpoint, load_model, save_checkpoint
from fxdist.errors import ConfigError, ModelError
from fxdist.models import build_model, build_model_from_yaml, families, model_config_dict
from fxdist.models.wh import _assemble, _chunk_correlations, highpass_taps

from .common import PRESETS, ModelContract

REPO = Path(__file__).resolve().parents[2]


class TestWH(ModelContract):
    """Short filters on the direct path: exact windows, streaming in irregular blocks, learning."""

    config = {"family": "wh", "pre_length": 5, "post_length": 12, "method": "direct"}

    def test_macs_match_counted_layers(self):
        """No Conv1d/Linear modules to count: one MAC per tap of each filter and one for the gain."""
        assert self.make().macs_per_sample() == 5 + 12 + 1


class TestWHFFT(ModelContract):
    """Both filters on the FFT path: streaming equals one pass to float rounding."""

    config = {"family": "wh", "pre_length": 40, "post_length": 200, "method": "fft"}
    learn_lr = 3e-3

    def test_perturbing_one_sample_changes_only_its_window(self):
        pytest.skip("FFT output carries ~1e-7 rounding everywhere; see test_fft_matches_direct")

    def test_receptive_field_is_exact_by_gradient(self):
        pytest.skip("FFT gradients carry ~1e-7 rounding everywhere; see test_fft_matches_direct")

    def test_macs_match_counted_layers(self):
        assert self.make().macs_per_sample() == 241


def run(model, x: np.ndarray) -> np.ndarray:
    """The model over x (N,) preceded by silence -> (N,) (what the effect did from its start)."""
    rf = model.receptive_field
    with torch.no_grad():
        y, _ = model(torch.from_numpy(np.r_[np.zeros(rf - 1), x].astype(np.float32)).view(1, 1, -1))
    return y.view(-1).numpy().astype(np.float64)


def esr(target: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sum((target - pred) ** 2) / np.sum(target**2))


def level_noise(n: int, sr: int, seed: int) -> np.ndarray:
    """Band-limited noise whose level steps every 0.1 s over 36 dB: probes the whole curve."""
    rng = np.random.default_rng(seed)
    x = lfilter([1.0], [1.0, -0.5], rng.standard_normal(n))
    steps = 10 ** (rng.uniform(-36, 0, n // (sr // 10) + 1) / 20)
    return (0.3 * x * np.repeat(steps, sr // 10)[:n]).astype(np.float32)


def plucks(n: int, sr: int, seed: int) -> np.ndarray:
    """Another kind of audio: decaying harmonic notes (5 partials) at random pitches and levels."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n)
    t = np.arange(sr) / sr
    for start in range(0, n, sr // 4):
        f0, amp = rng.uniform(80, 600), 10 ** rng.uniform(-1.5, -0.2)
        note = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6) if k * f0 < 0.45 * sr)
        seg = amp * note * np.exp(-t / rng.uniform(0.05, 0.4))
        end = min(n, start + sr)
        out[start:end] += seg[: end - start]
    return out.astype(np.float32)


def test_registered_and_preset_builds():
    assert "wh" in families()
    model = build_model_from_yaml(PRESETS / "wh.yaml")
    assert (model.cfg.pre_length, model.cfg.post_length, model.cfg.sample_rate) == (1024, 4800, 48000)
    assert model.receptive_field == 1024 + 4800 - 1


def test_deltas_give_tanh_of_the_aligned_input():
    """pre and post deltas, gain g, bias b: output i == tanh(g x[i + RF - 1] + b), on both paths."""
    x = torch.randn(2, 1, 400)
    for method, tol in (("direct", 0.0), ("fft", 1e-6)):
        model = build_model({"family": "wh", "pre_length": 150, "post_length": 140, "method": method})
        pre, post = np.zeros(150), np.zeros(140)
        pre[0] = post[0] = 1.0
        model.set_weights(pre, 3.0, 0.25, post)
        with torch.no_grad():
            y, state = model(x)
        assert state is None and y.shape == (2, 1, 400 - 289 + 1)
        assert (y - torch.tanh(3.0 * x[..., 288:] + 0.25)).abs().max() <= tol + 1e-7, method


def test_delayed_taps_shift_the_output_by_their_lags():
    """A pre delay of 3 and a post delay of 5 with a scale: y[n] = 2 tanh(g x[n - 8])."""
    model = build_model({"family": "wh", "pre_length": 4, "post_length": 6, "method": "direct"})
    pre, post = np.zeros(4), np.zeros(6)
    pre[3], post[5] = 1.0, 2.0
    model.set_weights(pre, 1.5, 0.0, post)
    x = np.random.default_rng(0).standard_normal(50).astype(np.float32)
    y = run(model, x)
    assert np.allclose(y[8:], 2 * np.tanh(1.5 * x[:-8]), atol=1e-6) and np.all(y[:8] == 0)


def test_fft_matches_direct():
    torch.manual_seed(0)
    direct = build_model({"family": "wh", "pre_length": 150, "post_length": 300, "method": "direct"})
    fft = build_model({"family": "wh", "pre_length": 150, "post_length": 300, "method": "fft"})
    with torch.no_grad():
        for p in direct.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    fft.load_state_dict(direct.state_dict())
    x = torch.randn(2, 1, 1000)
    with torch.no_grad():
        assert (fft(x)[0] - direct(x)[0]).abs().max() < 1e-4


def test_highpass_taps_are_the_one_pole_response():
    """Bilinear prewarped one-pole (JUCE/pedalboard's first-order HighpassFilter); 0 Hz is a delta."""
    k = math.tan(math.pi * 90 / 16000)
    impulse = np.r_[1.0, np.zeros(99)]
    expected = lfilter([1 / (1 + k), -1 / (1 + k)], [1, (k - 1) / (k + 1)], impulse)
    assert np.allclose(highpass_taps(90, 16000, 100), expected, atol=1e-15)
    assert np.array_equal(highpass_taps(0, 16000, 5), [1.0, 0, 0, 0, 0])


def test_chunk_normal_equations_are_the_exact_least_squares_ones():
    rng = np.random.default_rng(0)
    for q, n in ((7, 50), (1, 20), (3, 3)):
        w, t = rng.standard_normal(n + q - 1), rng.standard_normal(n)
        rows = np.stack([w[np.arange(n) + q - 1 - k] for k in range(q)], axis=1)  # rows[n, k] = w[n+q-1-k]
        r, p = _assemble(*_chunk_correlations(w, t, q))
        assert np.allclose(r, rows.T @ rows, atol=1e-12) and np.allclose(p, rows.T @ t, atol=1e-12)


def numpy_wh(x: np.ndarray, sr: int, cutoff: float, gain: float, bias: float, fir: np.ndarray) -> np.ndarray:
    k = math.tan(math.pi * cutoff / sr)
    u = lfilter([1 / (1 + k), -1 / (1 + k)], [1, (k - 1) / (k + 1)], x.astype(np.float64))
    return lfilter(fir, [1.0], np.tanh(gain * u + bias))


def test_fit_recovers_a_known_wiener_hammerstein_system():
    """One-pole HP at 110 Hz (between grid points) -> tanh(20 x + 0.2) -> a decaying 60-tap FIR at
    8 kHz: fit finds the cutoff, drive and bias, and predicts other audio (measured: train ESR
    1.1e-7, held-out 3.0e-5; 110 -> 109.9 Hz, 20 -> 20.01, 0.2 -> 0.2002)."""
    sr = 8000
    fir = np.random.default_rng(1).standard_normal(60) * np.exp(-np.arange(60) / 12)
    train = [level_noise(n, sr, seed) for seed, n in ((2, 12000), (3, 8000))]
    pairs = [(x, numpy_wh(x, sr, 110, 20, 0.2, fir).astype(np.float32)) for x in train]
    model = build_model({"family": "wh", "pre_length": 256, "post_length": 80, "sample_rate": sr,
                         "search_seconds": 2.0, "search_chunks": 4})
    logged = []
    values = model.fit(pairs, log=logged.append)
    print("fit:", values)
    assert len(logged) == 3 and "train ESR" in logged[-1]
    assert values["cutoff_hz"] == pytest.approx(110, rel=0.02)
    assert values["gain"] == pytest.approx(20, rel=0.02) and values["bias"] == pytest.approx(0.2, abs=0.01)
    assert values["train_esr"] < 1e-5
    x = plucks(8000, sr, 4)
    test_esr = esr(numpy_wh(x, sr, 110, 20, 0.2, fir), run(model, x))
    print("held-out ESR", test_esr)
    assert test_esr < 1e-4


@pytest.mark.slow
def test_fit_matches_the_amp_cab_preset_on_other_audio():
    """fxdist/presets/effects/amp_cab.yaml at 16 kHz (HP 90 Hz -> Distortion 26 dB -> peak -> shelf -> 40 ms
    cabinet IR -> -9 dB), fitted on generated tracks, tested on struck sine/square notes
    (measured: held-out ESR 5.0e-6; 90.3 Hz, gain 20.03 for 19.95)."""
    from fxdist.data.generate import GenerateConfig, generate_track
    from fxdist.effects import load_effect

    sr = 16000
    chain = load_effect("amp_cab")
    train_cfg = GenerateConfig(seed=1, sample_rate=sr, tracks=2, segments_per_track=2, segment_seconds=1.5)
    test_cfg = GenerateConfig(seed=7, sample_rate=sr, tracks=1, segments_per_track=2, segment_seconds=1.5,
                              kinds={"sine": 1.0, "square": 1.0}, decay_probability=1.0)
    pairs = [(x, chain(x, sr)[0]) for x in (generate_track(train_cfg, i) for i in range(2))]
    model = build_model({"family": "wh", "pre_length": 256, "post_length": 1024, "sample_rate": sr,
                         "search_post_length": 512, "refine_evals": 40})
    values = model.fit(pairs, log=lambda *a: None)
    print("fit:", values)
    assert values["cutoff_hz"] == pytest.approx(90, rel=0.05) and values["gain"] == pytest.approx(10 ** (26 / 20), rel=0.05)
    x = generate_track(test_cfg, 0)
    test_esr = esr(chain(x, sr)[0].astype(np.float64), run(model, x))
    print("held-out ESR", test_esr)
    assert test_esr < 0.01


def test_adam_steps_after_a_perturbed_init_lower_the_loss():
    """The whole model is differentiable: from the true weights perturbed, 30 Adam steps help."""
    torch.manual_seed(0)
    sr = 8000
    fir = np.exp(-np.arange(24) / 5) * np.cos(np.arange(24))
    x = level_noise(4000, sr, 5)
    y = torch.from_numpy(numpy_wh(x, sr, 100, 8, 0.1, fir)[64 + 24 - 2 :].astype(np.float32)).view(1, 1, -1)
    model = build_model({"family": "wh", "pre_length": 64, "post_length": 24, "sample_rate": sr})
    model.set_weights(highpass_taps(100, sr, 64) + 0.02 * np.random.default_rng(0).standard_normal(64),
                      5.0, -0.1, fir * 0.8)
    xt = torch.from_numpy(x).view(1, 1, -1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = torch.mean((model(xt)[0] - y) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::5]


def test_checkpoint_round_trip(tmp_path):
    model = build_model({"family": "wh", "pre_length": 30, "post_length": 200, "sample_rate": 16000})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = save_checkpoint(tmp_path / "wh.pt", Checkpoint(
        model_config=model_config_dict(model), model_state=model.state_dict(), sample_rate=16000,
        receptive_field=model.receptive_field))
    again, ckpt = load_model(path)
    assert ckpt.model_config["family"] == "wh" and type(again) is type(model)
    x = torch.randn(1, 1, 500)
    with torch.no_grad():
        assert torch.equal(again(x)[0], model(x)[0])


@pytest.mark.parametrize("change, match", [
    ({"pre_length": 0}, "pre_length must be >= 1, got 0"),
    ({"post_length": -3}, "post_length must be >= 1, got -3"),
    ({"nonlinearity": "relu"}, "nonlinearity"),
    ({"method": "fast"}, "method"),
    ({"sample_rate": 500}, "sample_rate must be >= 1000 Hz, got 500"),
    ({"search_seconds": 0.0}, "search_seconds must be in"),
    ({"refine_evals": -1}, "refine_evals must be >= 0, got -1"),
    ({"taps": 3}, "taps"),
])
def test_bad_config_raises_config_error(change, match):
    with pytest.raises(ConfigError, match=match):
        build_model({"family": "wh", **change})


def test_fit_and_set_weights_refuse_bad_input():
    model = build_model({"family": "wh", "pre_length": 4, "post_length": 8, "sample_rate": 8000})
    with pytest.raises(ModelError, match="clean has 10 samples but its target has 9"):
        model.fit([(np.ones(10), np.ones(9))])
    with pytest.raises(ModelError, match="non-silent target"):
        model.fit([(np.ones(100), np.zeros(100))])
    with pytest.raises(ModelError, match="NaN"):
        model.fit([(np.full(100, np.nan), np.ones(100))])
    with pytest.raises(ModelError, match=r"pre taps must have shape \(4,\)"):
        model.set_weights(np.zeros(3), 1.0, 0.0, np.zeros(8))
    with pytest.raises(ModelError, match="gain must be finite and > 0"):
        model.set_weights(np.zeros(4), 0.0, 0.0, np.zeros(8))


@pytest.mark.slow
def test_trainer_fit_on_tiny_amp_cab_shards(tmp_path):
    """fxdist train with fit: true: the fit alone is far below do-nothing, and Adam steps follow."""
    from fxdist.config import load
    from fxdist.train import TrainConfig, Trainer

    from tests.datasets import make_dataset

    shards = make_dataset(tmp_path / "data", effect="amp_cab", tracks=4, seconds=2.0)
    cfg = load(TrainConfig, REPO / "configs/train/tiny.yaml")
    cfg = dataclasses.replace(
        cfg, out_dir=str(tmp_path / "run"), data=dataclasses.replace(cfg.data, shards=str(shards)), steps=2,
        val_every=2, fit=True,
        model={"family": "wh", "pre_length": 128, "post_length": 512, "sample_rate": 16000,
               "search_post_length": 256, "refine_evals": 30},
    )
    result = Trainer(cfg).run()
    fit = result.history[0]
    print("trainer fit:", fit)
    assert fit["fit"] is True and fit["values"]["gain"] > 5
    assert fit["val_esr"] < 0.01 * fit["baseline_val_esr"]
    assert result.step == 2 and result.best_val_esr <= fit["val_esr"]
