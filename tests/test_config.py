"""The strict YAML -> dataclass loader: unknown keys, types, nesting, overrides."""

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from fxdist.config import apply_overrides, from_dict, load, to_dict
from fxdist.errors import ConfigError


@dataclass
class Inner:
    lr: float = 1e-3
    kind: Literal["adam", "sgd"] = "adam"


@dataclass
class Outer:
    name: str
    steps: int = 10
    tags: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    limit: Optional[int] = None
    extra: Optional[Inner] = None

    def __post_init__(self):
        if self.steps <= 0:
            raise ValueError(f"steps must be > 0, got {self.steps}")


def test_builds_nested_and_converts_int_to_float():
    cfg = from_dict(Outer, {"name": "a", "inner": {"lr": 1}, "tags": ["x"]})
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)
    assert cfg.tags == ["x"] and cfg.steps == 10 and cfg.limit is None


def test_unknown_key_names_allowed_keys_and_source():
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, {"name": "a", "stpes": 3}, source="cfg.yaml")
    msg = str(err.value)
    assert "cfg.yaml" in msg and "'stpes'" in msg
    assert "allowed keys: extra, inner, limit, name, steps, tags" in msg


def test_nested_unknown_key_has_dotted_path():
    with pytest.raises(ConfigError, match=r"inner.*'momentum'.*allowed keys: kind, lr"):
        from_dict(Outer, {"name": "a", "inner": {"momentum": 0.9}})


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"name": 3}, "name: expected str, got int 3"),
        ({"name": "a", "steps": 1.5}, "steps: expected int, got float 1.5"),
        ({"name": "a", "steps": True}, "steps: expected int, got bool True"),
        ({"name": "a", "inner": {"kind": "rmsprop"}}, "inner.kind: 'rmsprop' is not one of 'adam', 'sgd'"),
        ({"name": "a", "tags": "x"}, "tags: expected"),
        ({}, "name: required key missing"),
        ({"name": "a", "steps": 0}, "steps must be > 0, got 0"),
    ],
)
def test_bad_values_are_refused_with_the_value(data, fragment):
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, data)
    assert fragment in str(err.value)


def test_load_yaml_with_overrides_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: a\ninner:\n  lr: 0.01\n")
    cfg = load(Outer, path, {"inner.kind": "sgd", "steps": 5})
    assert (cfg.inner.kind, cfg.inner.lr, cfg.steps) == ("sgd", 0.01, 5)
    assert from_dict(Outer, to_dict(cfg)) == cfg


def test_unparsable_yaml_names_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load(Outer, path)
    with pytest.raises(ConfigError, match="missing.yaml: cannot read"):
        load(Outer, tmp_path / "missing.yaml")


def test_apply_overrides_does_not_mutate_input():
    data = {"a": {"b": 1}}
    out = apply_overrides(data, {"a.b": 2, "c.d": 3})
    assert data == {"a": {"b": 1}} and out == {"a": {"b": 2}, "c": {"d": 3}}


def test_optional_dataclass_reports_its_own_error():
    assert from_dict(Outer, {"name": "a", "extra": {"lr": 2}}).extra == Inner(lr=2.0)
    with pytest.raises(ConfigError, match=r"extra.*unknown key\(s\) 'lrr'.*allowed keys: kind, lr"):
        from_dict(Outer, {"name": "a", "extra": {"lrr": 2}})


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-3", 1e-3), ("1E5", 1e5), ("-2.5e+3", -2500.0), (".5", 0.5), ("3.0E-2", 0.03), ("1.5", 1.5), ("3", 3)],
)
def test_every_written_number_loads_as_a_number(tmp_path, text, value):
    path = tmp_path / "c.yaml"
    path.write_text(f"name: x\ninner:\n  lr: {text}\n")
    cfg = load(Outer, path)
    assert cfg.inner.lr == pytest.approx(value) and isinstance(cfg.inner.lr, float)


def test_overrides_and_lists_read_exponent_floats():
    from fxdist.cli import parse_overrides
    from fxdist.config import parse_yaml

    assert parse_overrides(["optim.lr=1e-3", "name=1e"]) == {"optim.lr": 1e-3, "name": "1e"}
    assert parse_yaml("loguniform: [1e-4, 1e-2]") == {"loguniform": [1e-4, 1e-2]}


def test_cli_override_with_exponent_sets_a_float_field(tmp_path):
    from fxdist.cli import parse_overrides

    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    cfg = load(Outer, path, parse_overrides(["inner.lr=1e-3"]))
    assert cfg.inner.lr == 1e-3
