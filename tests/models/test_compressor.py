"""Family compressor: JUCE's dsp::Compressor (pedalboard's) as a differentiable gray box, and its fit."""

import dataclasses

import numpy as np
import pedalboard
import pytest
import torch

from fxdist.checkpoint import Checkpoint, load_model, save_checkpoint
from fxdist.errors import ConfigError, ModelError
from fxdist.models import (
    build_model,
    build_model_from_yaml,
    families,
    model_config_dict,
)
from fxdist.models.compressor import detector, fit_compressor, time_constant

from .common import PRESETS, ModelContract

SR = 16000
PRESET = {"threshold_db": -40.0, "ratio": 20.0, "attack_ms": 0.5, "release_ms": 60.0, "makeup_db": 30.0}


def plucks(seconds: float, seed: int, sr: int = SR) -> np.ndarray:
    """Decaying sine plucks at levels over 60 dB with short gaps: float32 (N,)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    x = np.zeros(n)
    pos = 0
    while pos < n:
        seg = np.arange(min(int(rng.uniform(0.15, 0.5) * sr), n - pos)) / sr
        amp, freq, tau = 10 ** rng.uniform(-3, 0), rng.uniform(80, 800), rng.uniform(0.03, 0.3)
        x[pos : pos + seg.size] = amp * np.exp(-seg / tau) * np.sin(2 * np.pi * freq * seg)
        pos += seg.size + int(rng.uniform(0, 0.1) * sr)
    return x.astype(np.float32)


def render(x: np.ndarray, sr: int = SR, **values: float) -> np.ndarray:
    """pedalboard Compressor then Gain (the compression preset's chain): (N,) -> (N,)."""
    v = {**PRESET, **values}
    board = pedalboard.Pedalboard([
        pedalboard.Compressor(threshold_db=v["threshold_db"], ratio=v["ratio"], attack_ms=v["attack_ms"],
                              release_ms=v["release_ms"]),
        pedalboard.Gain(gain_db=v["makeup_db"]),
    ])
    return board(x[None, :], sr)[0]


def run(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        y, _ = model(torch.from_numpy(x).view(1, 1, -1))
    return y.view(-1).numpy()


def esr(target: np.ndarray, pred: np.ndarray) -> float:
    t, p = target.astype(np.float64), pred.astype(np.float64)
    return float(np.sum((t - p) ** 2) / np.sum(t * t))


def preset_model(**cfg) -> torch.nn.Module:
    model = build_model({"family": "compressor", "sample_rate": SR, **cfg})
    model.set_values(**PRESET)
    return model


class TestCompressor(ModelContract):
    config = {"family": "compressor", "sample_rate": 8000}  # noqa: RUF012


def test_registered_preset_and_values_round_trip():
    assert "compressor" in families()
    model = build_model_from_yaml(PRESETS / "compressor.yaml")
    assert model.cfg.sample_rate == 48000 and model.cfg.detector == "peak" and model.receptive_field == 1
    assert model.values() == pytest.approx({"threshold_db": -20, "ratio": 4, "attack_ms": 5, "release_ms": 100,
                                            "makeup_db": 0})
    model.set_values(**PRESET)
    assert model.values() == pytest.approx(PRESET)
    assert model.macs_per_sample() == 5
    assert build_model({"family": "compressor", "detector": "rms", "knee_db": 6.0}).macs_per_sample() == 8


def test_matches_pedalboard_compressor_and_gain():
    """The preset's values reproduce pedalboard's chain to float32 rounding (seen: ESR 7e-15)."""
    x = plucks(3.0, seed=0)
    target = render(x)
    pred = run(preset_model(), x)
    assert esr(target, pred) < 1e-10
    # a 17 % longer release costs only ESR ~1e-5 here: the bound must be far below that
    assert esr(target, render(x, release_ms=70.0)) > 1e-6


def test_rms_detector_and_soft_knee_match_a_numpy_reference():
    """rms detector (mean square, sqrt at the output) and a 12 dB soft knee, sample by sample."""
    x = plucks(1.0, seed=1).astype(np.float64)
    thr, ratio, knee, makeup = -30.0, 5.0, 12.0, 6.0
    cat, crl = float(time_constant(2.0, SR)), float(time_constant(80.0, SR))
    ref, e = np.empty_like(x), 0.0
    for n, v in enumerate(x):
        a = v * v
        e = a + (cat if a > e else crl) * (e - a)
        over = 20 * np.log10(max(np.sqrt(e), 1e-10)) - thr
        if 2 * over <= -knee:
            g = 0.0
        elif 2 * over >= knee:
            g = (1 / ratio - 1) * over
        else:
            g = (1 / ratio - 1) * (over + knee / 2) ** 2 / (2 * knee)
        ref[n] = v * 10 ** ((g + makeup) / 20)
    model = build_model({"family": "compressor", "sample_rate": SR, "detector": "rms", "knee_db": knee})
    model.set_values(threshold_db=thr, ratio=ratio, attack_ms=2.0, release_ms=80.0, makeup_db=makeup)
    assert esr(ref, run(model, x.astype(np.float32))) < 1e-12
    hard = build_model({"family": "compressor", "sample_rate": SR, "detector": "rms"})
    hard.set_values(threshold_db=thr, ratio=ratio, attack_ms=2.0, release_ms=80.0, makeup_db=makeup)
    assert esr(ref, run(hard, x.astype(np.float32))) > 1e-6  # the knee matters


def test_streaming_in_irregular_blocks_equals_one_pass():
    model = preset_model()
    x = torch.from_numpy(np.stack([plucks(0.5, seed=2), plucks(0.5, seed=3)]))[:, None, :]
    gen = np.random.default_rng(4)
    with torch.no_grad():
        whole, end = model(x)
        parts, state, start = [], None, 0
        while start < x.shape[-1]:
            size = int(gen.choice([0, 1, 2, 7, 100, 1500]))
            y, state = model.stream_block(x[..., start : start + size], state)
            parts.append(y)
            start += size
    assert (torch.cat(parts, -1) - whole).abs().max() <= 1e-7
    assert torch.equal(state, end) and state.shape == (2, 1)


def test_state_and_input_are_checked():
    model = preset_model()
    with pytest.raises(ModelError, match=r"shape \(2, 1\)"):
        model(torch.zeros(2, 1, 10), torch.zeros(3, 1))
    with pytest.raises(ModelError, match=r"shape \(B, 1, T\)"):
        model(torch.zeros(1, 2, 10))
    y, state = model(torch.ones(2, 1, 5), (torch.zeros(2, 1),))  # a state restored as a 1-tuple
    assert state.shape == (2, 1) and y.shape == (2, 1, 5)
    with pytest.raises(ModelError, match="ratio must be > 1"):
        model.set_values(ratio=1.0)
    with pytest.raises(ModelError, match="unknown parameter 'gain'"):
        model.set_values(gain=1.0)


def test_detector_gradcheck():
    """The adjoint recursion against finite differences (a > 0 random, y0 > 0: no a == e ties)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 12, generator=gen, dtype=torch.float64).requires_grad_()
    y0 = (torch.rand(2, generator=gen, dtype=torch.float64) * 0.5).requires_grad_()
    cat = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    crl = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(detector, (a, y0, cat, crl))


def test_model_gradcheck_over_every_parameter():
    model = build_model({"family": "compressor", "sample_rate": 8000, "knee_db": 6.0}).double()
    model.set_values(threshold_db=-12.0, ratio=3.0, attack_ms=0.7, release_ms=4.0, makeup_db=2.0)
    x = torch.randn(2, 1, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    names = [n for n, _ in model.named_parameters()]

    def f(*params):
        return torch.func.functional_call(model, dict(zip(names, params)), (x,))[0]

    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(f, params)


def test_adam_steps_from_a_perturbed_init_lower_the_loss():
    x = plucks(1.0, seed=5)
    target = torch.from_numpy(render(x)).view(1, 1, -1)
    xt = torch.from_numpy(x).view(1, 1, -1)
    model = build_model({"family": "compressor", "sample_rate": SR})
    model.set_values(threshold_db=-34.0, ratio=10.0, attack_ms=1.0, release_ms=100.0, makeup_db=26.0)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(25):
        y, _ = model(xt)
        loss = (y - target).square().sum() / target.square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(p.grad is not None and torch.isfinite(p.grad) for p in model.parameters())
    assert min(losses[-5:]) < 0.5 * losses[0], losses


def test_fit_recovers_the_preset_from_pedalboard_audio():
    """From the default init, without knowing the preset (a small grid: ~2 s; seen exact to 1e-4)."""
    pairs = [(x, render(x)) for x in (plucks(2.5, seed=6), plucks(2.5, seed=7))]
    model = build_model({"family": "compressor", "sample_rate": SR})
    got = fit_compressor(model, pairs, ratios=(3.0, 30.0), attacks_ms=(0.2, 2.0, 20.0),
                         releases_ms=(20.0, 200.0), starts=2, log=lambda _msg: None)
    assert got["threshold_db"] == pytest.approx(-40.0, abs=1.0)
    assert got["attack_ms"] == pytest.approx(0.5, rel=0.1)
    assert got["release_ms"] == pytest.approx(60.0, rel=0.1)
    assert got["makeup_db"] == pytest.approx(30.0, abs=1.0)
    assert got["ratio"] > 5
    held_out = plucks(2.0, seed=8)
    assert esr(render(held_out), run(model, held_out)) < 1e-3


def test_fit_refuses_bad_pairs():
    model = build_model({"family": "compressor", "sample_rate": SR})
    with pytest.raises(ModelError, match="at least one"):
        model.fit([])
    with pytest.raises(ModelError, match="clean has 10 samples but its target has 9"):
        model.fit([(np.ones(10, np.float32), np.ones(9, np.float32))])
    with pytest.raises(ModelError, match="non-silent"):
        model.fit([(np.zeros(10, np.float32), np.zeros(10, np.float32))])


def test_checkpoint_round_trip(tmp_path):
    model = preset_model(detector="rms", knee_db=3.0)
    ckpt = Checkpoint(model_config=model_config_dict(model), model_state=model.state_dict(), sample_rate=SR,
                      receptive_field=1)
    again, loaded = load_model(save_checkpoint(tmp_path / "c.pt", ckpt))
    assert loaded.model_config == {"family": "compressor", "sample_rate": SR, "detector": "rms", "knee_db": 3.0,
                                   "threshold_db": -20.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 100.0,
                                   "makeup_db": 0.0}
    assert again.values() == model.values()
    x = plucks(0.3, seed=9)
    assert np.array_equal(run(model, x), run(again, x))


@pytest.mark.parametrize("bad, match", [
    ({"ratio": 1.0}, "ratio must be > 1"), ({"attack_ms": 0.0}, "attack_ms must be > 0"),
    ({"release_ms": -5.0}, "release_ms must be > 0"), ({"knee_db": -1.0}, "knee_db must be in"),
    ({"threshold_db": 80.0}, "threshold_db must be in"), ({"sample_rate": 0}, "sample_rate"),
    ({"detector": "hilbert"}, "detector"), ({"gain_db": 3.0}, "gain_db"),
])
def test_bad_config_is_refused(bad, match):
    with pytest.raises(ConfigError, match=match):
        build_model({"family": "compressor", **bad})


@pytest.mark.slow
def test_trainer_fit_then_sequential_steps(tmp_path):
    """fxdist train with fit: true on tiny pedalboard-rendered shards of the compression preset."""
    from fxdist.train import Trainer
    from tests.datasets import make_dataset
    from tests.train.test_trainer import tiny_config

    shards = make_dataset(tmp_path / "data", effect="compression", tracks=4, seconds=2.0)
    cfg = tiny_config(shards, tmp_path / "run", model={"family": "compressor", "sample_rate": SR}, steps=2,
                      val_every=2, fit=True)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=1e-3))
    trainer = Trainer(cfg)
    assert trainer.mode == "sequential"
    result = trainer.run()
    fit = result.history[0]
    assert fit["fit"] is True and fit["val_esr"] < 1e-3 < fit["baseline_val_esr"]
    assert fit["values"]["attack_ms"] == pytest.approx(0.5, rel=0.2)
    assert fit["values"]["release_ms"] == pytest.approx(60.0, rel=0.2)
    assert result.step == 2 and result.best_val_esr < 1e-3
