"""Families cnn (large-window, one output per window) and fcn (fully convolutional)."""

import pytest
import torch

from fxdist.errors import ConfigError
from fxdist.models import build_model, build_model_from_yaml, cnn

from .common import PRESETS, ModelContract, preset


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
