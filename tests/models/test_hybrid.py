"""Family ``hybrid``: a fitted gray-box stage plus a network trained beside it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fxdist.errors import ModelError
from fxdist.models import build_model
from tests.models.common import ModelContract, preset


class _Residual(ModelContract):
    def make(self, seed: int = 0, scrambled: bool = False):
        model = super().make(seed, scrambled)
        with torch.no_grad():
            model.alpha.fill_(0.5)  # the residual path on, so that its receptive field shows
        return model

    def test_macs_match_counted_layers(self):
        """The WaveNet stage's layers are counted; the FIR stage's taps are not nn layers."""
        model = self.make()
        assert model.macs_per_sample() == model.gray.macs_per_sample() + model.residual.macs_per_sample() + 1


class TestHybridPost(_Residual):
    config = preset("hybrid-tiny")


class TestHybridParallel(_Residual):
    config = {**preset("hybrid-tiny"), "residual_input": "clean", "gray": {"family": "fir", "length": 40}}


def test_receptive_fields_of_both_wirings():
    post = build_model(preset("hybrid-tiny"))
    parallel = build_model({**preset("hybrid-tiny"), "residual_input": "clean"})
    assert post.receptive_field == 64 + 15 - 1 and parallel.receptive_field == 64


def test_after_the_fit_it_is_exactly_the_gray_stage():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(8000).astype(np.float32)
    y = np.convolve(x, [0.5, 0.3, -0.2])[: len(x)].astype(np.float32)
    model = build_model(preset("hybrid-tiny"))
    with torch.no_grad():
        model.alpha.fill_(1.0)
    model.fit([(x, y)], log=lambda *a, **k: None)
    assert float(model.alpha.detach()) == 0.0
    t = torch.from_numpy(x).view(1, 1, -1)
    with torch.no_grad():
        out, _ = model(t)
        gray, _ = model.gray(t[..., t.shape[-1] - (out.shape[-1] + model.gray.receptive_field - 1):])
    assert torch.equal(out, gray)
    esr = float(((out[0, 0] - torch.from_numpy(y[-out.shape[-1]:])) ** 2).sum() / (torch.from_numpy(y) ** 2).sum())
    assert esr < 1e-6  # an LTI target: the least-squares FIR stage holds it


@pytest.mark.parametrize("change, match", [
    ({"gray": "lstm-tiny"}, "hybrid.gray: lstm is stateful"),
    ({"gray": "wavenet-tiny"}, "hybrid.gray: wavenet has no direct fit"),
    ({"residual": "lstm-tiny"}, "hybrid.residual: lstm is stateful"),
    ({"gray": 3}, "hybrid.gray: a model preset name or a mapping"),
])
def test_stages_that_cannot_serve_are_refused(change, match):
    with pytest.raises(ModelError, match=match):
        build_model({**preset("hybrid-tiny"), **change})


def test_joint_steps_beat_the_fit_on_a_nonlinear_effect(tiny_shards, tmp_path):
    """On the distortion preset an FIR stage alone stays far from the target; the residual
    network trained after the fit takes validation ESR well below the fit's."""
    from tests.train.test_trainer import tiny_config
    from fxdist.train import train

    cfg = tiny_config(tiny_shards, tmp_path / "run", model="hybrid-tiny", fit=True, steps=300, val_every=100)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=0.01))
    result = train(cfg)
    fit_val = result.history[0]["val_esr"]
    assert result.history[0].get("fit")
    # measured: fit 0.714 (the first 2 s of each validation track are quiet, where the drive's
    # small-signal gain is far above what one FIR fitted to loud audio gives), after 300 steps
    # 0.093 (do-nothing 0.126)
    print(f"fit {fit_val:.3g}, after {result.step} steps {result.best_val_esr:.3g} (do-nothing {result.baseline_val_esr:.3g})")
    assert result.best_val_esr < 0.6 * fit_val, (fit_val, result.best_val_esr)


@pytest.mark.parametrize("wiring", ["clean", "gray"])
def test_wh_stage_streams_and_exports_in_both_wirings(wiring, tmp_path):
    """The 48 kHz preset's WH stage (FFT filters, a bias, so silence gives a DC) streams block by
    block as forward over the signal after zeros, and round-trips through TorchScript and ONNX."""
    from fxdist.export import ExportMetadata, export_model

    model = build_model({**preset("hybrid"), "residual_input": wiring, "gray": {"family": "wh", "pre_length": 64,
                                                                               "post_length": 300}}).eval()
    with torch.no_grad():
        model.alpha.fill_(0.7)
        model.gray.bias.fill_(0.3)
    sig = torch.randn(1, 1, 2500, generator=torch.Generator().manual_seed(1)) * 0.5
    with torch.no_grad():
        whole, _ = model(torch.cat([torch.zeros(1, 1, model.receptive_field - 1), sig], -1))
        stream = model.stream_module()
        state, outs = stream.initial_state(1), []
        for block in torch.split(sig, [1, 63, 700, 1000, 736], -1):
            y, state = stream(block, state)
            outs.append(y)
    assert torch.max(torch.abs(torch.cat(outs, -1) - whole)) < 1e-5
    meta = ExportMetadata(name="hybrid", sample_rate=48000, loudness_db=-20.0, gain=1.0, validation_esr=0.01)
    for fmt, suffix in (("torchscript", ".pt"), ("onnx", ".onnx")):
        report = export_model(model, fmt, tmp_path / f"h-{wiring}{suffix}", meta)
        assert report.max_abs_error < 1e-4
