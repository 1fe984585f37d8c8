"""Family pvpitch: the phase-vocoder pitch shifter (pitch moved, streaming exact, gains fitted)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fxdist.checkpoint import Checkpoint, load_model, save_checkpoint
from fxdist.errors import ConfigError, ModelError
from fxdist.models import build_model, build_model_from_yaml, model_config_dict
from fxdist.realtime import Streamer
from fxdist.process import predict

from .common import PRESETS, ModelContract

SR = 16000
TINY = {"family": "pvpitch", "n_fft": 32, "hop": 4}


class TestPVPitch(ModelContract):
    config = TINY  # noqa: RUF012

    # The vocoder answers one frame late: input j reaches the output only in the grain of the
    # first frame that ends after j, so the contract's "a recurrent model answers at once" checks
    # are replaced by "never earlier than j, and within one hop".
    def test_perturbing_one_sample_changes_only_its_window(self):
        model = self.make(scrambled=True)
        hop = model.cfg.hop
        x = torch.randn(1, 1, 120)
        with torch.no_grad():
            y = model(x)[0][0, 0]
            for j in (0, 7, 50, 100):
                x2 = x.clone()
                x2[0, 0, j] += 0.5
                changed = (model(x2)[0][0, 0] != y).nonzero().flatten().tolist()
                assert changed and j < min(changed) <= j + hop + 1, (j, changed[:3])

    def test_receptive_field_is_exact_by_gradient(self):
        model = self.make(scrambled=True)
        n = 160
        x = torch.randn(1, 1, n, requires_grad=True)
        y = model(x)[0][0, 0]
        jac = torch.stack([torch.autograd.grad(y[i], x, retain_graph=True)[0][0, 0] for i in range(n)])
        future = torch.arange(n)[None, :] >= torch.arange(n)[:, None]
        assert torch.all(jac[future] == 0), "an output depends on its own or a later input"
        reach = model.cfg.n_fft + model.cfg.grain  # the oldest frame whose grain still sounds
        assert jac[n - 1, : n - reach].abs().sum() == 0, "an output reaches back beyond window + grain"
        assert jac[n - 1, n - reach : n - 1].abs().sum() > 0

    def test_learns_tanh(self):
        """(Replaces the contract's tanh check, which no pitch shifter can fit.) The learnt part
        is the output spectrum: Adam from unit gains recovers a low-pass tone by MSE."""
        model = self.make()
        truth = self.make()
        with torch.no_grad():
            truth.log_gain.copy_(torch.linspace(0.5, -3.0, truth.cfg.bins))
        gen = torch.Generator().manual_seed(2)
        opt = torch.optim.Adam(model.parameters(), lr=3e-2)
        losses = []
        for _ in range(150):
            x = torch.rand(4, 1, 256, generator=gen) * 2 - 1
            with torch.no_grad():
                want, _ = truth(x)
            y, _ = model(x)
            loss = F.mse_loss(y, want)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert sum(losses[-5:]) / 5 < losses[0] / 20, (losses[0], losses[-5:])


def test_octave_down_and_up_move_a_sine():
    t = np.arange(SR) / SR
    x = (0.5 * np.sin(2 * math.pi * 880 * t)).astype(np.float32)
    for semitones, want in ((-12.0, 440.0), (12.0, 1760.0), (-7.0, 880 * 2 ** (-7 / 12))):
        model = build_model({"family": "pvpitch", "semitones": semitones, "n_fft": 512, "hop": 64})
        y = predict(model, x)[SR // 4 :]
        spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
        peak = np.argmax(spectrum) * SR / y.size
        assert abs(peak - want) < 3.0, (semitones, peak, want)
        assert spectrum.max() > 100 * np.median(spectrum)


def test_streaming_lanes_and_streamer_equal_one_pass():
    model = build_model({"family": "pvpitch", "n_fft": 64, "hop": 8})
    x = torch.randn(2, 1, 1500) * 0.3
    with torch.no_grad():
        whole, _ = model(x)
        streamer = Streamer(model, batch=2)
        rng = np.random.default_rng(0)
        parts, start = [], 0
        while start < x.shape[-1]:
            size = int(rng.integers(0, 90))
            parts.append(streamer(x[..., start : start + size]))
            start += size
    assert (torch.cat(parts, dim=-1) - whole).abs().max() < 1e-6
    with pytest.raises(ModelError, match="pvpitch: .*cannot be scripted"):
        Streamer(model, scripted=True)


def test_fit_recovers_an_output_tone_and_the_alignment():
    """Tracks rendered offline by the same vocoder with known gains and a known latency (the
    target leads the raw output by 48 samples): the fit finds both; the gains where the signal
    has energy (the log-magnitude ratio per bin is exact for equal phases)."""
    truth = build_model({"family": "pvpitch", "n_fft": 128, "hop": 16})
    k = truth.cfg.bins
    want = torch.linspace(0.4, -1.5, k)
    with torch.no_grad():
        truth.log_gain.copy_(want)
        truth.latency_samples.fill_(48)
    rng = np.random.default_rng(1)
    pairs = []
    for _ in range(2):
        clean = (rng.standard_normal(SR) * 0.3).astype(np.float32)
        pairs.append((clean, predict(truth, clean)))
    model = build_model({"family": "pvpitch", "n_fft": 128, "hop": 16})
    lines = []
    values = model.fit(pairs, log=lines.append)
    assert lines and "pvpitch fit" in lines[0] and values["samples"] == 2 * SR
    assert model.latency == values["latency"] == 48, lines
    assert "latency 48 samples" in lines[0]
    got = model.log_gain.detach()
    assert (got[2:-2] - want[2:-2]).abs().max() < 0.05, (got - want).abs().max()
    with pytest.raises(ModelError, match="no track longer than the grain"):
        model.fit([(np.zeros(10, np.float32), np.zeros(10, np.float32))])


def test_offline_rendering_compensates_the_latency_and_streaming_keeps_it():
    """predict and process_array move the output ``latency`` samples earlier (running the input
    on into zeros); the real-time streamer cannot look ahead and reports the delay instead."""
    from fxdist.process import process_array

    model = build_model(TINY)
    model.latency_samples.fill_(40)
    x = (torch.randn(1, 1, 3001) * 0.2)
    with torch.no_grad():
        raw = model(F.pad(x, (0, 40)))[0].view(-1).numpy()
    streamer = Streamer(model)
    assert streamer.latency == 40
    streamed = torch.cat([streamer(x[..., :1000]), streamer(x[..., 1000:])], dim=-1).view(-1).numpy()
    np.testing.assert_allclose(predict(model, x.view(-1).numpy(), block=700), raw[40:], atol=1e-6)
    np.testing.assert_allclose(process_array(model, x.view(1, -1).numpy(), block_size=333)[0], raw[40:], atol=1e-6)
    np.testing.assert_allclose(streamed, raw[:3001], atol=1e-6)
    assert predict(model, np.zeros(0, np.float32)).shape == (0,)


def test_preset_checkpoint_round_trip(tmp_path):
    model = build_model_from_yaml(PRESETS / "pvpitch.yaml")
    assert model_config_dict(model) == {"family": "pvpitch", "semitones": -12.0, "n_fft": 512, "hop": 64}
    assert model.cfg.grain == 1024 and model.cfg.bins == 257 and model.receptive_field == 1
    with torch.no_grad():
        model.log_gain.copy_(torch.linspace(0, -2, 257))
        model.latency_samples.fill_(320)
    path = tmp_path / "pv.pt"
    save_checkpoint(path, Checkpoint(model_config=model_config_dict(model), model_state=model.state_dict(),
                                     sample_rate=48000, receptive_field=1))
    loaded, _ = load_model(path)
    x = torch.randn(1, 1, 3000) * 0.2
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], model(x)[0])
    assert loaded.latency == 320
    # a checkpoint from before the fitted latency (no latency_samples) renders uncompensated
    older = {k: v for k, v in model.state_dict().items() if k != "latency_samples"}
    save_checkpoint(path, Checkpoint(model_config=model_config_dict(model), model_state=older,
                                     sample_rate=48000, receptive_field=1))
    assert load_model(path)[0].latency == 0


def test_macs_count_one_frame_per_hop():
    """Every ``hop`` samples: window, rfft, phase update and gain, irfft, synthesis window and
    overlap-add; halving the hop doubles the cost."""
    one = build_model({"family": "pvpitch", "n_fft": 512, "hop": 64})
    two = build_model({"family": "pvpitch", "n_fft": 512, "hop": 32})
    n, m, k = 512, 1024, 257
    per_frame = n + 2 * n * 9 + 5 * k + 2 * m * 10 + 2 * m
    assert one.macs_per_sample() == math.ceil(per_frame / 64)
    assert two.macs_per_sample() == math.ceil(per_frame / 32)


def test_state_is_checked():
    model = build_model(TINY)
    with pytest.raises(ModelError, match=r"pvpitch: state must be 5 tensors of shapes \[\(1, 32\)"):
        model(torch.zeros(1, 1, 8), (torch.zeros(1, 31),))


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"semitones": 0.0}, "semitones must be nonzero and within"),
        ({"n_fft": 33}, "n_fft must be even and >= 16, got 33"),
        ({"n_fft": 64, "hop": 32}, "hop must be <= n_fft / 4 .* got hop 32 for n_fft 64"),
        ({"hop": 0}, "hop must be >= 1, got 0"),
    ],
)
def test_bad_config_is_refused(bad, match):
    with pytest.raises(ConfigError, match=match):
        build_model({**TINY, **bad}, source="m.yaml")
