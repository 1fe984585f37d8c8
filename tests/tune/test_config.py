"""Sweep configs: bad input fails fast with the key and value named; space keys over a model preset."""

from __future__ import annotations

import pytest

from fxdist.errors import ConfigError
from fxdist.tune import load_sweep_config, trial_train_config
from tests.tune.sweeps import write_sweep


def test_unknown_key_in_sweep_yaml(tmp_path, tiny_shards):
    with pytest.raises(ConfigError, match="num_sample"):
        load_sweep_config(write_sweep(tmp_path, tiny_shards, num_sample=3))


def test_unknown_dotted_key_in_space(tmp_path, tiny_shards):
    with pytest.raises(ConfigError, match=r"space\.optim\.lrr.*lrr"):
        load_sweep_config(write_sweep(tmp_path, tiny_shards, space={"optim.lrr": {"choice": [0.1]}}))
    with pytest.raises(ConfigError, match=r"space\.model\.hidden_sise"):
        load_sweep_config(write_sweep(tmp_path, tiny_shards, space={"model.hidden_sise": {"choice": [8]}}))
    with pytest.raises(ConfigError, match=r"space\.model.*no preset"):
        load_sweep_config(write_sweep(tmp_path, tiny_shards, space={"model": {"choice": ["lstm-tiny", "lstm-huge"]}}))


@pytest.mark.parametrize("spec, match", [
    ({"loguniform": [0, 0.1]}, "loguniform needs 0 < lo < hi"),
    ({"uniform": [0.1, 0.01]}, "uniform needs lo < hi"),
    ({"randint": [1.5, 4]}, "randint needs integers"),
    ({"choice": []}, "non-empty list"),
    ({"normal": [0, 1]}, "unknown kind 'normal'"),
    ({"choice": [1], "grid": [2]}, "exactly one"),
])
def test_bad_space_spec(tmp_path, tiny_shards, spec, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_sweep_config(write_sweep(tmp_path, tiny_shards, space={"optim.lr": spec}))
    assert "space.optim.lr" in str(info.value)


def test_wrong_value_type_for_key(tmp_path, tiny_shards):
    """uniform samples floats; data.output_len must be an int."""
    with pytest.raises(ConfigError, match=r"space\.data\.output_len.*expected int"):
        load_sweep_config(write_sweep(tmp_path, tiny_shards, space={"data.output_len": {"uniform": [512, 1024]}}))


def test_pbt_with_ray_train_workers_is_refused(tmp_path, tiny_shards):
    with pytest.raises(ConfigError, match="pbt"):
        load_sweep_config(write_sweep(tmp_path, tiny_shards, scheduler={"kind": "pbt"}, resources={"workers": 2}))


def test_model_field_keys_expand_a_preset(tmp_path):
    base = {"model": "lstm-tiny", "data": {"shards": str(tmp_path)}}
    cfg = trial_train_config(base, {"model.hidden_size": 12, "optim.lr": 0.002}, tmp_path / "run")
    assert cfg.model["family"] == "lstm" and cfg.model["hidden_size"] == 12
    assert cfg.optim.lr == 0.002 and cfg.resume and cfg.out_dir == str(tmp_path / "run")


def test_variant_applies_several_keys_together(tmp_path, tiny_shards):
    variants = [{"model": "lstm-tiny", "optim.lr": 0.002, "max_seconds": 5.0},
                {"model": "fir-tiny", "fit": True, "model.length": 64}]
    cfg = load_sweep_config(write_sweep(tmp_path, tiny_shards, space={"variant": {"grid": variants}}))
    base = {"model": "lstm-tiny", "data": {"shards": str(tiny_shards)}}
    one = trial_train_config(base, {"variant": variants[0]}, tmp_path / "a")
    two = trial_train_config(base, {"variant": variants[1]}, tmp_path / "b")
    assert one.model == "lstm-tiny" and one.optim.lr == 0.002 and one.max_seconds == 5.0 and not one.fit
    assert two.model["family"] == "fir" and two.model["length"] == 64 and two.fit and two.optim.lr == 5e-3
    assert cfg.space["variant"]["grid"][1]["fit"] is True


@pytest.mark.parametrize("spec, match", [
    ({"uniform": [0, 1]}, "grid.*or.*choice"),
    ({"grid": [{"model": "lstm-tiny"}, 3]}, "mapping of dotted"),
    ({"grid": [{}]}, "non-empty mapping"),
    ({"grid": [{"optim.lrr": 0.1}]}, r"space\.variant.*lrr"),
])
def test_bad_variant_is_refused_with_the_value(tmp_path, tiny_shards, spec, match):
    with pytest.raises(ConfigError, match=match):
        load_sweep_config(write_sweep(tmp_path, tiny_shards, space={"variant": spec}))
