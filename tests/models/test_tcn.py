"""Family tcn: fast-growing dilations reach hundreds of ms at little cost."""

from fxdist.models import build_model, build_model_from_yaml

from .common import PRESETS, ModelContract, preset


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
