"""Typed configuration: YAML -> dataclasses, rejecting unknown keys and wrong types.

Each part of fxdist owns its config dataclass (``GenerateConfig`` in ``data.generate``,
``TrainConfig`` in ``train`` ...); this module only knows how to fill any of them from
plain data, strictly, with messages that name the file, the key path and the allowed keys.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from fxdist.errors import ConfigError

T = TypeVar("T")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: ``1e-3`` and ``2E5`` are numbers, not strings."""


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in list(_Loader.yaml_implicit_resolvers):
    _Loader.yaml_implicit_resolvers[_first] = [
        (tag, regexp) for tag, regexp in _Loader.yaml_implicit_resolvers[_first] if tag != "tag:yaml.org,2002:float"
    ]
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` that reads every float a person writes (``1e-3``, ``3.0E+2``, ``.5``) as a float."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506  a SafeLoader subclass: no arbitrary objects


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file, raising ConfigError naming the file when it cannot be parsed."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from exc
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc


def load(cls: type[T], path: str | Path, overrides: dict[str, Any] | None = None) -> T:
    """Load dataclass ``cls`` from a YAML file, then apply dotted ``overrides``.

    >>> load(TrainConfig, "configs/train/tiny.yaml", {"optim.lr": 1e-3})  # doctest: +SKIP
    """
    data = load_yaml(path) or {}
    if overrides:
        data = apply_overrides(data, overrides)
    return from_dict(cls, data, source=str(path))


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``{"a.b": v}`` entries set at nested key paths."""
    out = _deep_copy(data)
    for dotted, value in overrides.items():
        node = out
        keys = dotted.split(".")
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[keys[-1]] = value
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def from_dict(cls: type[T], data: Any, source: str = "<config>", _path: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, strictly.

    Unknown keys, missing required keys and values of the wrong type raise ConfigError
    whose message names ``source``, the dotted key path and (for unknown keys) the
    allowed keys.
    """
    where = f"{source}: {_path or 'top level'}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__} {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} for {cls.__name__}; "
            f"allowed keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        key_path = f"{_path}.{name}" if _path else name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], source, key_path)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: {key_path}: required key missing for {cls.__name__}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ validation
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: {exc}") from exc


def _coerce(tp: Any, value: Any, source: str, path: str) -> Any:
    """Check ``value`` against type ``tp`` and convert where lossless (int -> float)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    bad = ConfigError(f"{source}: {path}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, source, path)
            except ConfigError as exc:
                errors.append((arg, exc))
        # A mapping meant for a dataclass arm: its own message (unknown key...) says more.
        for arg, exc in errors:
            if isinstance(value, dict) and dataclasses.is_dataclass(arg):
                raise exc
        raise bad
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {path}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise bad
            return tuple(_coerce(a, v, source, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_coerce(item, v, source, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        ktp, vtp = args if args else (Any, Any)
        return {_coerce(ktp, k, source, f"{path}.{k}"): _coerce(vtp, v, source, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise bad
        return value
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def to_dict(obj: Any) -> Any:
    """Turn a (nested) config dataclass into plain YAML/JSON-able data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
