"""Registry and presets: lookup errors, strict configs, checkpoint dicts, every preset builds."""

from dataclasses import dataclass

import pytest
import torch

from fxdist.errors import ConfigError, ModelError
from fxdist.models import EffectModel, build_model, build_model_from_yaml, families, get, register, registry
from fxdist.models.lstm import LSTMConfig, LSTMModel

from .common import PRESETS

FAMILIES = ["chorus", "cnn", "compressor", "fcn", "fir", "grainpitch", "hybrid", "lstm", "nebula", "pvpitch", "tcn", "wavenet",
            "wh"]


def test_all_families_are_registered():
    assert families() == FAMILIES
    assert get("lstm") is LSTMModel


def test_unknown_family_lists_known_ones_and_the_source():
    with pytest.raises(
        ModelError,
        match=r"m.yaml: unknown model family 'transformer'; known families: " + ", ".join(FAMILIES),
    ):
        build_model({"family": "transformer"}, source="m.yaml")
    with pytest.raises(ModelError, match="known families"):
        get("gru")


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"hidden_size": 4}, r"m.yaml: model config has no 'family' key; known families: chorus, cnn"),
        ({"family": 3}, r"m.yaml: family: expected str, got int 3"),
        ([1, 2], r"m.yaml: model config must be a mapping"),
    ],
)
def test_missing_or_bad_family_is_a_config_error(data, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_model(data, source="m.yaml")


def test_duplicate_registration_raises():
    @dataclass
    class Cfg:
        """No fields: only the registry is under test."""

    class First(EffectModel):
        family = "test-dup"
        config_cls = Cfg

    class Second(EffectModel):
        family = "test-dup"
        config_cls = Cfg

    try:
        register(First)
        register(First)  # the same class again (e.g. a re-import) is harmless
        with pytest.raises(
            ModelError, match=r"'test-dup' is already registered by .*First; cannot register .*Second"
        ):
            register(Second)
    finally:
        registry._REGISTRY.pop("test-dup", None)
    assert families() == FAMILIES


def test_register_rejects_bad_names_and_configs():
    class BadName(EffectModel):
        family = "Bad Name"
        config_cls = LSTMConfig

    class NoDataclass(EffectModel):
        family = "nodc"
        config_cls = dict

    with pytest.raises(ModelError, match="family must be a name"):
        register(BadName)
    with pytest.raises(ModelError, match="config_cls must be a dataclass"):
        register(NoDataclass)
    with pytest.raises(ModelError, match="LSTMModel needs a LSTMConfig, got dict"):
        LSTMModel({"hidden_size": 3})


def test_unknown_key_names_allowed_keys():
    with pytest.raises(
        ConfigError, match=r"m.yaml: .*'hiden_size'.*allowed keys: cell, hidden_size, input_skip, num_layers"
    ):
        build_model({"family": "lstm", "hiden_size": 8}, source="m.yaml")
    with pytest.raises(
        ConfigError, match=r"stacks\[0\].*'dilation'.*allowed keys: channels, dilations, kernel_size"
    ):
        build_model({"family": "wavenet", "stacks": [{"dilation": [1]}]}, source="m.yaml")


@pytest.mark.parametrize(
    "cfg, fragment",
    [
        ({"family": "lstm", "hidden_size": 0}, "hidden_size must be >= 1, got 0"),
        ({"family": "lstm", "cell": "rnn"}, "cell: 'rnn' is not one of 'lstm', 'gru'"),
        ({"family": "wavenet", "stacks": [{"kernel_size": 0}]}, "kernel_size must be >= 1, got 0"),
        ({"family": "wavenet", "stacks": [{"dilations": [1, 0]}]}, r"dilations\[1\] must be >= 1, got 0"),
        ({"family": "wavenet", "stacks": []}, "stacks must not be empty"),
        ({"family": "wavenet", "gated": "yes"}, "gated: expected bool"),
        ({"family": "wavenet", "head_channels": -1}, "head_channels must be >= 0"),
        ({"family": "tcn", "dilation_growth": 0}, "dilation_growth must be >= 1, got 0"),
        ({"family": "fcn", "dilations": []}, "dilations must not be empty"),
        ({"family": "cnn", "pool": 0}, "pool must be >= 1, got 0"),
        ({"family": "cnn", "direct_taps": 2000}, "direct_taps 2000 exceeds window 1024"),
    ],
)
def test_bad_values_are_config_errors_naming_the_source(cfg, fragment):
    with pytest.raises(ConfigError, match=fragment) as err:
        build_model(cfg, source="m.yaml")
    assert str(err.value).startswith("m.yaml")


# Gray-box families of a fixed structure (a handful of physical parameters, or filter lengths
# set by the effect's duration) have one preset, ``<family>.yaml``, instead of three sizes.
UNSIZED = {"compressor", "hybrid", "nebula", "pvpitch", "wh"}


def test_presets_cover_every_family_and_size():
    names = {p.stem for p in PRESETS.glob("*.yaml")}
    wanted = {f"{f}-{size}" for f in FAMILIES if f not in UNSIZED for size in ("tiny", "small", "large")}
    wanted |= UNSIZED & set(FAMILIES)
    assert wanted <= names, sorted(wanted - names)
    assert all(name.split("-")[0] in FAMILIES for name in names), sorted(names)


@pytest.mark.parametrize("path", sorted(PRESETS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_preset_builds_reports_and_runs(path):
    model = build_model_from_yaml(path)
    rf, params, macs = model.receptive_field, model.num_parameters(), model.macs_per_sample()
    print(f"{path.stem}: receptive_field={rf} ({rf / 48:.1f} ms at 48 kHz) params={params} macs/sample={macs}")
    assert rf >= 1 and params > 0 and macs > 0
    assert model.family == path.stem.rsplit("-", 1)[0]
    if path.stem.endswith("-tiny"):
        assert params < 1000
    with torch.no_grad():
        y, _ = model.stream_block(torch.randn(1, 1, 16) * 0.1)
    assert y.shape == (1, 1, 16) and torch.all(torch.isfinite(y))
