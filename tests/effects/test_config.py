"""Effect configs: unknown keys, bad ranges and bad names are refused with the key path."""

from __future__ import annotations

import pytest

from fxdist.effects import effect_config_from_dict
from fxdist.errors import ConfigError
from tests.effects.common import cfg_dict


@pytest.mark.parametrize(
    "stage, match",
    [
        ({"builtin": "Gain", "vst3": "/x.vst3"}, "exactly one"),
        ({}, "exactly one"),
        ({"builtin": "Gain", "gian": 1}, "unknown key"),
        ({"cabinet_ir": {"seed": 1, "lenght_ms": 30}}, "lenght_ms"),
        ({"cabinet_ir": {"length_ms": 0.1}}, "length_ms"),
        ({"command": ["sox", "{input}", "out.wav"]}, r"\{output\}"),
        ({"command": ["true", "{input}", "{output}"], "params": {"a": 1}}, "params"),
        ({"command": ["true", "{input}", "{output}"], "timeout_s": 0}, "timeout_s"),
        ({"builtin": "Gain", "timeout_s": 5}, "belong.* to command stages"),
    ],
)
def test_bad_stage_config(stage, match):
    with pytest.raises(ConfigError, match=match):
        effect_config_from_dict(cfg_dict(stage), source="fx.yaml")


def test_bad_effect_config():
    with pytest.raises(ConfigError, match="not one of"):
        effect_config_from_dict({"name": "x", "family": "wah", "chain": [{"builtin": "Gain"}]})
    with pytest.raises(ConfigError, match=r"\[a-z0-9_-\]"):
        effect_config_from_dict({"name": "Bad Name", "chain": [{"builtin": "Gain"}]})
    with pytest.raises(ConfigError, match="empty"):
        effect_config_from_dict({"name": "x", "chain": []})
