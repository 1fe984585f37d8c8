"""Presets shipped inside the package: model configs (``model/<name>.yaml``) and the effect
catalogue (``effects/<name>.yaml``).

They are package data found with :mod:`importlib.resources`, so ``model: lstm-small`` and
``--effect distortion`` work from an installed wheel as from a checkout. Wheels install them as
plain files, so every lookup returns a real :class:`~pathlib.Path` (errors and ``source`` names
quote it).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fxdist.errors import ConfigError, EffectError


def model_dir() -> Path:
    """Folder of the shipped model presets."""
    return Path(files(__name__) / "model")


def effects_dir() -> Path:
    """Folder of the shipped effect presets."""
    return Path(files(__name__) / "effects")


def _names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def list_model_presets() -> list[str]:
    """Names of the shipped model presets, sorted."""
    return _names(model_dir())


def list_effect_presets() -> list[str]:
    """Names of the shipped effect presets, sorted."""
    return _names(effects_dir())


def model_preset(name: str) -> Path:
    """The YAML file of model preset ``name``; ConfigError listing the shipped ones if none."""
    path = model_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"model {name!r}: no preset or file {path}; presets: {', '.join(list_model_presets())}")
    return path


def effect_preset(name: str) -> Path:
    """The YAML file of effect preset ``name``; EffectError listing the shipped ones if none."""
    path = effects_dir() / f"{name}.yaml"
    if not path.is_file():
        raise EffectError(
            f"unknown effect preset {name!r}; shipped presets ({effects_dir()}): "
            f"{', '.join(list_effect_presets()) or 'none'}"
        )
    return path


__all__ = [
    "model_dir", "effects_dir", "list_model_presets", "list_effect_presets", "model_preset", "effect_preset",
]
