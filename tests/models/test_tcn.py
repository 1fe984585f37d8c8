"""Family tcn: fast-growing dilations reach hundreds of ms at little cost."""

import pytest
import torch

from fxdist.models import build_model, build_model_from_yaml

from .common import PRESETS, ModelContract, checkpointing_differences, preset, saved_bytes


class TestTCN(ModelContract):
    config = preset("tcn-tiny")


class TestTCNTanhWithSkip(ModelContract):
    config = preset("tcn-tiny", activation="tanh", input_skip=True, kernel_size=5, dilation_growth=3)


def test_dilations_grow_geometrically_and_set_the_receptive_field():
    model = build_model({"family": "tcn", "kernel_size": 13, "num_layers": 4, "dilation_growth": 10})
    assert model.cfg.dilations == [1, 10, 100, 1000]
    assert model.receptive_field == 1 + 12 * 1111


def test_large_preset_reaches_about_300_ms_at_48k_cheaply():
    model = build_model_from_yaml(PRESETS / "tcn-large.yaml")
    assert 0.25 <= model.receptive_field / 48000 <= 0.35
    assert model.macs_per_sample() < 100_000


class TestTCNCheckpointed(ModelContract):
    """checkpoint_activations: the whole contract (gradient checks included) on the recomputed path."""

    config = preset("tcn-tiny", checkpoint_activations=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_checkpointed_tcn_has_the_same_outputs_and_gradients(dtype):
    """Recomputing a block runs the same kernels on the same input: equal to the last bit."""
    d_out, d_grad = checkpointing_differences(preset("tcn-tiny"), 43 + 50, dtype=dtype)
    assert d_out == 0 and d_grad == 0, (d_out, d_grad)


def test_checkpointed_tcn_keeps_less_for_backward_and_only_when_training():
    x = torch.randn(2, 1, 43 + 200)
    plain = build_model(preset("tcn-tiny"))
    ckpt = build_model(preset("tcn-tiny", checkpoint_activations=True))
    ckpt.load_state_dict(plain.state_dict())
    assert saved_bytes(ckpt, x) < 0.7 * saved_bytes(plain, x)
    plain.eval(), ckpt.eval()
    assert saved_bytes(ckpt, x) == saved_bytes(plain, x)
