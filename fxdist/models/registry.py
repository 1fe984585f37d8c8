"""Model families by name: register, look up, build from config dicts, and back.

A model config dict is ``{"family": "lstm", ...fields of that family's config...}``; the
same dict, from ``model_config_dict``, goes into checkpoints.
"""

from __future__ import annotations

import dataclasses
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from fxdist.config import from_dict, load_yaml, to_dict
from fxdist.errors import ConfigError, ModelError
from fxdist.models.base import EffectModel

_REGISTRY: dict[str, type[EffectModel]] = {}
_NAME = re.compile(r"[a-z0-9_-]+")


def register(cls: type[EffectModel]) -> type[EffectModel]:
    """Class decorator adding a family under ``cls.family``; a taken name raises ModelError."""
    family = getattr(cls, "family", None)
    if not isinstance(family, str) or not _NAME.fullmatch(family):
        raise ModelError(f"{cls.__name__}: family must be a name matching [a-z0-9_-]+, got {family!r}")
    config_cls = getattr(cls, "config_cls", None)
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        raise ModelError(f"{cls.__name__}: config_cls must be a dataclass, got {config_cls!r}")
    if family in _REGISTRY and _REGISTRY[family] is not cls:
        raise ModelError(
            f"model family {family!r} is already registered by {_REGISTRY[family].__qualname__}; "
            f"cannot register {cls.__qualname__} under the same name"
        )
    _REGISTRY[family] = cls
    return cls


def unregister(family: str) -> type[EffectModel]:
    """Remove ``family`` from the registry and return its class; unknown names raise ModelError."""
    cls = get(family)
    del _REGISTRY[family]
    return cls


@contextmanager
def registered(cls: type[EffectModel]) -> Iterator[type[EffectModel]]:
    """``cls`` registered for the duration of a ``with`` block (a family defined in a test)."""
    register(cls)
    try:
        yield cls
    finally:
        unregister(cls.family)


def families() -> list[str]:
    """Registered family names, sorted."""
    return sorted(_REGISTRY)


def get(family: str) -> type[EffectModel]:
    """The model class of ``family``; unknown names raise ModelError listing known ones."""
    try:
        return _REGISTRY[family]
    except (KeyError, TypeError):
        raise ModelError(f"unknown model family {family!r}; known families: {', '.join(families())}") from None


def build_model(cfg_dict: dict[str, Any], source: str = "<config>") -> EffectModel:
    """Build a model from ``{"family": ..., **fields}``, strictly (fxdist.config.from_dict).

    Unknown family -> ModelError; missing/bad 'family', unknown key, wrong type or range ->
    ConfigError naming ``source``.
    """
    if not isinstance(cfg_dict, dict):
        raise ConfigError(f"{source}: model config must be a mapping with a 'family' key, got {cfg_dict!r}")
    if "family" not in cfg_dict:
        raise ConfigError(f"{source}: model config has no 'family' key; known families: {', '.join(families())}")
    family = cfg_dict["family"]
    if not isinstance(family, str):
        raise ConfigError(f"{source}: family: expected str, got {type(family).__name__} {family!r}")
    try:
        cls = get(family)
    except ModelError as exc:
        raise ModelError(f"{source}: {exc}") from None
    rest = {k: v for k, v in cfg_dict.items() if k != "family"}
    return cls(from_dict(cls.config_cls, rest, source))


def build_model_from_yaml(path: str | Path) -> EffectModel:
    """Build a model from a preset file such as ``fxdist/presets/model/lstm-small.yaml``."""
    return build_model(load_yaml(path) or {}, source=str(path))


def model_config_dict(model: EffectModel) -> dict[str, Any]:
    """The inverse of build_model: ``{"family": ..., **fields}`` as plain data."""
    return {"family": model.family, **to_dict(model.cfg)}
