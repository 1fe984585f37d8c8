"""Family nebula: impulse responses at K input levels crossfaded by an RMS envelope, and its LS fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from fxdist.checkpoint import load_model
from fxdist.errors import ConfigError, ModelError
from fxdist.export import ExportError, ExportMetadata, export_model, offline_output, read_back
from fxdist.models import build_model, build_model_from_yaml, families
from fxdist.models.fir import fit_least_squares
from fxdist.models.nebula import fit_ranges, hat_weights, level_position
from fxdist.realtime import Streamer
from fxdist.train import train
from tests.train.test_trainer import tiny_config

from .common import PRESETS, ModelContract

SR = 16000


class TestNebula(ModelContract):
    """Short responses on the direct path; the envelope window (32) is longer than the taps (16)."""

    config = {"family": "nebula", "taps": 16, "levels": 3, "min_db": -40.0, "max_db": 6.0, "envelope_ms": 2.0,
              "sample_rate": SR}
    # Level-dependent linear responses cannot learn tanh(2x) of steady noise; a gain halves the error.
    learn_factor = 1.6

    def test_macs_match_counted_layers(self):
        """No Conv1d/Linear modules to count: K L taps, the W-sample envelope window and K weights."""
        assert self.make().macs_per_sample() == 3 * 16 + 32 + 3


class TestNebulaFFT(ModelContract):
    """Long responses on the FFT path: streaming equals one pass to float rounding."""

    config = {"family": "nebula", "taps": 200, "levels": 4, "envelope_ms": 5.0, "sample_rate": SR, "method": "fft"}
    learn_factor = 1.6
    learn_lr = 3e-3

    def test_perturbing_one_sample_changes_only_its_window(self):
        pytest.skip("FFT output carries ~1e-7 rounding everywhere; the direct path checks exact windows")

    def test_receptive_field_is_exact_by_gradient(self):
        pytest.skip("FFT gradients carry ~1e-7 rounding everywhere; the direct path checks exact windows")

    def test_macs_match_counted_layers(self):
        assert self.make().macs_per_sample() == 4 * 200 + 80 + 4


def box_rms_db(x: np.ndarray, window: int) -> np.ndarray:
    """dBFS RMS over the last ``window`` samples, zeros before the start (float64 running sums)."""
    c = np.concatenate([[0.0], np.cumsum(np.asarray(x, np.float64) ** 2)])
    lo = np.maximum(np.arange(1, x.size + 1) - window, 0)
    power = (c[1:] - c[lo]) / window
    return 10 * np.log10(np.maximum(power, 1e-30))


def level_noise(n: int, seed: int, lo_db: float = -66.0, hi_db: float = 6.0) -> np.ndarray:
    """Coloured noise whose RMS steps every 50 ms to a level uniform in [lo_db, hi_db] dBFS."""
    rng = np.random.default_rng(seed)
    x = lfilter([1.0], [1.0, -0.5], rng.standard_normal(n))
    x /= np.sqrt(np.mean(x**2))
    step = SR // 20
    levels = 10 ** (rng.uniform(lo_db, hi_db, n // step + 1) / 20)
    return (x * np.repeat(levels, step)[:n]).astype(np.float32)


def run(model, x: np.ndarray) -> np.ndarray:
    """The model over x (N,) preceded by silence -> (N,) float64."""
    with torch.no_grad():
        y, _ = model(torch.from_numpy(np.r_[np.zeros(model.receptive_field - 1), x].astype(np.float32)).view(1, 1, -1))
    return y.view(-1).numpy().astype(np.float64)


def esr(target: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sum((target - pred) ** 2) / np.sum(target**2))


# Filter A (quiet): a one-pole low-pass cut at 32 taps; filter B (loud): an attenuated dry path
# with a 20-sample echo. The crossfade is linear in dB from -60 to 0 dBFS.
FILTER_A = 0.3 * 0.7 ** np.arange(32)
FILTER_B = np.r_[0.5, np.zeros(19), -0.25]
TINY = {"family": "nebula", "taps": 64, "levels": 4, "min_db": -60.0, "max_db": 0.0, "envelope_ms": 5.0,
        "sample_rate": SR}


def crossfaded_system(x: np.ndarray) -> np.ndarray:
    """A when the 5 ms RMS is at or below -60 dBFS, B at or above 0 dBFS, linear in dB between."""
    a = np.clip((box_rms_db(x, 80) + 60.0) / 60.0, 0.0, 1.0)
    xa = np.convolve(x, FILTER_A)[: x.size]
    xb = np.convolve(x, FILTER_B)[: x.size]
    return (1 - a) * xa + a * xb


def test_registered_and_presets_build():
    assert "nebula" in families()
    model = build_model_from_yaml(PRESETS / "nebula.yaml")
    assert (model.cfg.taps, model.cfg.levels, model.cfg.sample_rate, model.receptive_field) == (512, 6, 48000, 512)
    assert model.num_parameters() == 3072
    np.testing.assert_allclose(model.level_db(), [-60, -48, -36, -24, -12, 0])
    tiny = build_model_from_yaml(PRESETS / "nebula-tiny.yaml")
    assert tiny.cfg.sample_rate == SR and tiny.receptive_field == 80 and tiny.num_parameters() == 256


@pytest.mark.parametrize("fields, fragment", [
    ({"levels": 0}, "levels must be >= 1, got 0"),
    ({"min_db": 0.0, "max_db": -60.0}, "min_db < max_db"),
    ({"envelope_ms": 0.0}, "envelope_ms must be > 0"),
    ({"fit_seconds": 0.0}, r"fit_seconds must be in \[0.01, 3600\]"),
    ({"init": "random"}, "init: 'random' is not one of"),
    ({"tapss": 8}, "tapss"),
])
def test_bad_config_values_are_config_errors(fields, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_model({"family": "nebula", **fields}, source="m.yaml")


def test_identity_init_passes_the_input_and_zeros_init_silences_it():
    x = torch.randn(2, 1, 500)
    y, _ = build_model(dict(TINY))(x)
    assert torch.allclose(y, x[..., 79:], atol=1e-6)
    y, _ = build_model({**TINY, "init": "zeros"})(x)
    assert y.abs().max() == 0


def test_hat_weights_sum_to_one_and_pick_the_two_neighbours():
    u = torch.linspace(0, 4, 4001).view(1, 1, -1)
    w = hat_weights(u, 5)[0]  # (5, 4001)
    assert torch.allclose(w.sum(0), torch.ones(4001), atol=1e-6)
    lo = torch.floor(u[0, 0]).clamp(max=3).long()  # the lower neighbour (the last pair at u = 4)
    k = torch.arange(5)[:, None]
    assert (w[(k != lo) & (k != lo + 1)] == 0).all()
    frac = u[0, 0] - lo
    assert torch.allclose(w[lo, torch.arange(4001)], 1 - frac, atol=1e-6)
    assert torch.allclose(w[lo + 1, torch.arange(4001)], frac, atol=1e-6)


@pytest.mark.parametrize("db, want", [
    (-37.0, {1: 7 / 15, 2: 8 / 15}),  # levels -60, -45, -30, -15, 0: between -45 and -30
    (-45.0, {1: 1.0}),
    (-80.0, {0: 1.0}),  # below min_db: the first level
    (None, {0: 1.0}),  # silence
    (6.0, {4: 1.0}),  # above max_db: the last level
])
def test_a_steady_level_weighs_its_neighbours_and_clamps_outside_the_range(db, want):
    amplitude = 0.0 if db is None else 10 ** (db / 20)
    x = torch.full((1, 1, 200), amplitude, dtype=torch.float64)  # a DC level: its RMS is its amplitude
    w = hat_weights(level_position(x, 50, -60.0, 0.0, 5), 5)[0]
    expected = torch.zeros(5, 151, dtype=torch.float64)
    for k, value in want.items():
        expected[k] = value
    assert torch.allclose(w, expected, atol=1e-9)


def test_model_weights_follow_the_rms_of_the_last_window():
    """The model's level weights equal the hats of an independent running-sum RMS in dB."""
    model = build_model(dict(TINY))
    x = level_noise(SR, seed=3)
    u = np.clip((box_rms_db(x, 80) + 60.0) / 20.0, 0.0, 3.0)
    want = np.maximum(0.0, 1.0 - np.abs(u[None, :] - np.arange(4)[:, None]))
    with torch.no_grad():
        got = model.weights(torch.from_numpy(np.r_[np.zeros(79), x].astype(np.float32)).view(1, 1, -1))[0].numpy()
    assert got.shape == (4, SR)
    assert np.max(np.abs(got - want)) < 1e-3  # float32 power vs float64 running sums, near -60 dB


def test_fit_recovers_a_level_dependent_system():
    """Filter A when quiet, B when loud, crossfaded by the same envelope: the kernels at the four
    levels are the crossfade's mixtures of A and B, and an unseen signal's ESR is ~float rounding."""
    train_pairs = [(x, crossfaded_system(x)) for x in (level_noise(3 * SR, 0), level_noise(2 * SR, 1))]
    model = build_model(dict(TINY))
    values = model.fit(train_pairs, log=lambda *a: None)
    a = np.r_[FILTER_A, np.zeros(32)]
    b = np.r_[FILTER_B, np.zeros(43)]
    want = np.stack([(1 - k / 3) * a + k / 3 * b for k in range(4)])
    got = model.kernels.detach().numpy()
    test = level_noise(2 * SR, 7)
    err = esr(crossfaded_system(test), run(model, test))
    print(f"nebula fit of the crossfaded A/B system: train ESR {values['train_esr']:.3g}, unseen ESR {err:.3g}, "
          f"max kernel error {np.max(np.abs(got - want)):.3g}")
    assert values["train_esr"] < 1e-8 and err < 1e-8
    assert np.max(np.abs(got - want)) < 1e-4
    # A single FIR (one level) cannot follow the crossfade
    fir = fit_least_squares(train_pairs, 64)
    fir_err = esr(crossfaded_system(test), np.convolve(test, fir)[: test.size])
    assert fir_err > 1e-3 > 1e4 * err


def test_fit_of_an_lti_filter_is_the_fir_least_squares_at_every_level():
    """A one-pole low-pass (no level dependence): every kernel is fir's least-squares response."""
    pairs = [(x, lfilter([0.2], [1, -0.8], x)) for x in (level_noise(3 * SR, 4), level_noise(2 * SR, 5))]
    model = build_model(dict(TINY))
    model.fit(pairs, log=lambda *a: None)
    fir = fit_least_squares(pairs, 64)
    kernels = model.kernels.detach().numpy()
    spread = np.max(np.abs(kernels - fir[None, :]))
    print(f"nebula fit of a one-pole low-pass: max |h_k - fir LS| {spread:.3g}")
    assert spread < 1e-4
    assert np.allclose(fir, 0.2 * 0.8 ** np.arange(64), atol=1e-4)


def test_fit_gives_a_level_the_tracks_never_reach_its_neighbours_response():
    """Audio between -30 and -20 dBFS only: levels -60 and -40 (never reached) take the -20 dB
    response through the difference penalty instead of falling to silence."""
    x = level_noise(3 * SR, 6, lo_db=-27.0, hi_db=-23.0)
    pairs = [(x, lfilter([0.2], [1, -0.8], x))]
    model = build_model(dict(TINY))
    model.fit(pairs, log=lambda *a: None)
    kernels = model.kernels.detach().numpy()
    for k in (0, 1, 3):
        assert np.max(np.abs(kernels[k] - kernels[2])) < 0.02 * np.max(np.abs(kernels[2])), k


def test_fit_sums_at_most_fit_seconds_of_rows_spread_over_the_tracks():
    assert fit_ranges([100, 50], 200, 10) == [(0, 0, 100), (1, 0, 50)]
    ranges = fit_ranges([1000, 1000, 1000], 300, 100)
    assert [r[2] - r[1] for r in ranges] == [100, 100, 100]
    assert ranges[0] == (0, 0, 100) and ranges[-1] == (2, 900, 1000)
    pairs = [(level_noise(3 * SR, 8), level_noise(3 * SR, 9)) for _ in range(2)]
    values = build_model({**TINY, "fit_seconds": 1.5}).fit(pairs, log=lambda *a: None)
    assert values["rows_seconds"] == pytest.approx(1.5, abs=1 / SR)


def test_fit_refuses_bad_tracks():
    model = build_model(dict(TINY))
    with pytest.raises(ModelError, match="samples but its target"):
        model.fit([(np.ones(100), np.ones(99))])
    with pytest.raises(ModelError, match="non-silent"):
        model.fit([(np.zeros(100), np.ones(100))])
    with pytest.raises(ModelError, match="NaN"):
        model.fit([(np.full(100, np.nan), np.ones(100))])
    with pytest.raises(ModelError, match=r"shape \(4, 64\)"):
        model.set_kernels(np.zeros((3, 64)))


@pytest.mark.parametrize("config", [TINY, {**TINY, "taps": 300, "envelope_ms": 2.0}], ids=["direct", "fft"])
def test_streaming_in_blocks_equals_the_offline_output(config):
    """The streaming module (plain and scripted) and stream_block, in blocks of several sizes
    (shorter and longer than the receptive field), equal forward over the whole signal."""
    torch.manual_seed(0)
    model = build_model(dict(config)).eval()
    with torch.no_grad():
        model.kernels.add_(torch.randn_like(model.kernels) / config["taps"] ** 0.5)  # gains ~1
    x = torch.from_numpy(np.stack([level_noise(SR, 10, hi_db=-6.0), level_noise(SR, 11, hi_db=-6.0)])).view(2, 1, -1)
    with torch.no_grad():
        whole, _ = model(torch.cat([x.new_zeros(2, 1, model.receptive_field - 1), x], dim=-1))
    worst = 0.0
    for size in (1, 37, 64, 256, 1000, 4096):
        for kind in ("module", "scripted", "stream_block"):
            parts, state, streamer = [], None, None
            if kind != "stream_block":
                streamer = Streamer(model, batch=2, scripted=kind == "scripted")
            for start in range(0, x.shape[-1], size):
                block = x[..., start : start + size]
                if streamer is not None:
                    parts.append(streamer(block))
                else:
                    with torch.no_grad():
                        y, state = model.stream_block(block, state)
                    parts.append(y)
            err = float((torch.cat(parts, dim=-1) - whole).abs().max())
            worst = max(worst, err)
            assert err < 1e-5, (size, kind, err)
    print(f"nebula streaming ({config['taps']} taps) vs offline: max abs error {worst:.3g}, "
          f"output peak {float(whole.abs().max()):.3g}")
    assert float(whole.abs().max()) > 0.1  # not a comparison of near-zeros


def test_trains_with_fit_on_tiny_shards_and_exports_what_it_claims(tiny_shards, tmp_path):
    """fit: true on the tiny distortion shards, a few gradient steps, then every format the
    family claims (TorchScript, ONNX) written, read back by its own reader and equal."""
    cfg = tiny_config(tiny_shards, tmp_path / "run", model="nebula-tiny", steps=4, val_every=2, checkpoint_every=2,
                      fit=True)
    result = train(cfg)
    fit, *rest = result.history
    print(f"nebula-tiny on the tiny shards: fit val ESR {fit['val_esr']:.4g} "
          f"(do-nothing {fit['baseline_val_esr']:.4g}), "
          f"after {result.step} steps {result.last_val_esr:.4g}")
    assert fit["fit"] is True and fit["step"] == 0 and rest and result.step == 4
    assert fit["val_esr"] < 0.6 * fit["baseline_val_esr"]  # measured: 0.45 of it
    assert result.best_val_esr <= fit["val_esr"] and result.last_val_esr < fit["baseline_val_esr"]
    model, ckpt = load_model(result.best_checkpoint)
    assert model.family == "nebula" and ckpt.receptive_field == model.receptive_field == 80

    support = model.export_formats()
    claimed = sorted(fmt for fmt, why in support.items() if why is None)
    assert claimed == ["onnx", "torchscript"]
    assert "input level" in support["ir"] and "none of them" in support["nam"]
    meta = ExportMetadata(name="nebula", sample_rate=int(ckpt.sample_rate))
    signal = level_noise(SR // 2, 12)
    for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".pt")):
        report = export_model(model, fmt, tmp_path / f"nebula{suffix}", meta)
        assert report.family == "nebula" and report.max_abs_error < 1e-5
        got = read_back(fmt, tmp_path / f"nebula{suffix}", signal)
        np.testing.assert_allclose(got, offline_output(model, signal), atol=1e-5, rtol=0)
    with pytest.raises(ExportError, match="switches between 4 impulse responses"):
        export_model(model, "ir", tmp_path / "nebula.wav", meta)
