"""Families cnn (large-window, one output per window) and fcn (fully convolutional)."""

import pytest
import torch

from fxdist.errors import ConfigError
from fxdist.models import build_model, build_model_from_yaml, cnn

from .common import PRESETS, ModelContract, checkpointing_differences, preset, saved_bytes


class TestCNN(ModelContract):
    config = preset("cnn-tiny")


class TestCNNAvgPoolLinearHeadNoSkip(ModelContract):
    config = preset("cnn-tiny", pool_type="avg", hidden=0, input_skip=False, pool=3)


class TestFCN(ModelContract):
    config = preset("fcn-tiny")


class TestFCNTanhNoSkip(ModelContract):
    config = preset("fcn-tiny", activation="tanh", input_skip=False, kernel_size=4, dilations=[1, 3, 1])


@pytest.mark.parametrize("name", ["cnn-tiny", "fcn-tiny"])
def test_untrained_skip_model_is_exactly_the_identity(name):
    model = build_model(preset(name))
    x = torch.randn(2, 1, model.receptive_field + 30)
    assert torch.equal(model(x)[0], x[..., model.receptive_field - 1 :])


def test_chunked_inference_equals_the_training_path(monkeypatch):
    model = build_model(preset("cnn-tiny", input_skip=False))
    x = torch.randn(2, 1, 64 + 99)
    y_grad, _ = model(x)
    monkeypatch.setattr(cnn, "INFERENCE_CHUNK", 7)
    with torch.no_grad():
        y_chunks, _ = model(x)
    assert (y_grad - y_chunks).abs().max() < 1e-6


def test_window_too_short_for_the_stages_is_a_config_error():
    with pytest.raises(
        ConfigError, match=r"m.yaml: .*window 32 too short: stage 2 conv gets 1 samples but kernel_size is 5"
    ):
        build_model(preset("cnn-tiny", window=32, channels=[4, 4, 4]), source="m.yaml")


def test_large_preset_has_the_study_window():
    model = build_model_from_yaml(PRESETS / "cnn-large.yaml")
    assert 4000 <= model.receptive_field <= 6000


class TestCNNCheckpointed(ModelContract):
    """checkpoint_activations: the whole contract (gradient checks included) on the recomputed path."""

    config = preset("cnn-tiny", checkpoint_activations=True)


@pytest.mark.parametrize(
    "chunk, outputs, batch",
    [(7, 30, 3), (7, 3, 5), (64, 30, 3)],
    ids=["runs-of-one-sequence", "groups-of-sequences", "one-chunk-per-group"],
)
def test_checkpointed_cnn_has_the_same_outputs_and_gradients(monkeypatch, chunk, outputs, batch):
    """Every chunking branch, with a partial last chunk; float64 so only the math is compared."""
    monkeypatch.setattr(cnn, "CHECKPOINT_CHUNK", chunk)
    d_out, d_grad = checkpointing_differences(preset("cnn-tiny"), 64 - 1 + outputs, batch)
    assert d_out < 1e-6 and d_grad < 1e-6, (d_out, d_grad)


def test_checkpointed_cnn_in_float32_differs_only_by_summation_order(monkeypatch):
    """Chunks sum the weight gradient in another order: float32 rounding, no more."""
    monkeypatch.setattr(cnn, "CHECKPOINT_CHUNK", 7)
    d_out, d_grad = checkpointing_differences(preset("cnn-tiny"), 64 - 1 + 30, 3, dtype=torch.float32)
    assert d_out < 1e-6 and d_grad < 1e-5, (d_out, d_grad)


def test_checkpointed_cnn_keeps_no_activations_and_only_when_training(monkeypatch):
    """Backward keeps only the input's views (no per-window activations); eval or no_grad runs
    the plain path, so streaming and export see the same model."""
    monkeypatch.setattr(cnn, "CHECKPOINT_CHUNK", 16)
    x = torch.randn(2, 1, 64 - 1 + 100)
    plain = build_model(preset("cnn-tiny"))
    ckpt = build_model(preset("cnn-tiny", checkpoint_activations=True))
    ckpt.load_state_dict(plain.state_dict())
    assert saved_bytes(ckpt, x) < saved_bytes(plain, x) / 20
    plain.eval(), ckpt.eval()
    assert saved_bytes(ckpt, x) == saved_bytes(plain, x)
    with torch.no_grad():
        assert torch.equal(ckpt.stream_block(x)[0], plain.stream_block(x)[0])


def test_study_window_preset_is_5000_samples():
    model = build_model_from_yaml(PRESETS / "cnn-5k.yaml")
    assert model.receptive_field == 5000 and not model.cfg.checkpoint_activations
