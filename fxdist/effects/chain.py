"""An effect chain built from its config and called like pedalboard: ``chain(x, sr) -> y``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fxdist.config import load_yaml
from fxdist.effects.config import EffectConfig, effect_config_from_dict, resolve_effect_path
from fxdist.effects.stages import _build_stage
from fxdist.errors import EffectError


class Chain:
    """An effect chain: ``chain(x, sr) -> y``, x float32 (C, N) (or (N,), read as (1, N)).

    Returns float32 (C', N): same length; (1, N) for mono input. Build it with
    :meth:`from_config` or :func:`load_effect`; rebuild it in other processes from
    :meth:`to_dict` rather than pickling plugins.
    """

    def __init__(self, config: EffectConfig, source: str = "<effect>") -> None:
        self.config = config
        self.source = source
        self._stages = []
        for i, stage in enumerate(config.chain):
            try:
                self._stages.append(_build_stage(stage))
            except EffectError as exc:
                raise EffectError(f"{source}: effect {config.name!r} chain[{i}]: {exc}") from exc

    @classmethod
    def from_config(cls, config: EffectConfig | dict[str, Any], source: str = "<effect>") -> Chain:
        """Build from an EffectConfig or its plain-data form; ``source`` names it in errors."""
        if isinstance(config, dict):
            config = effect_config_from_dict(config, source)
        return cls(config, source)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def effect_kind(self) -> str:
        """The config's ``family`` key: distortion, fuzz, delay, ... (see ``EFFECT_KINDS``)."""
        return self.config.family

    def to_dict(self) -> dict[str, Any]:
        """Plain data of the effect config (for manifests and ``effect.yaml``)."""
        return self.config.to_dict()

    def __repr__(self) -> str:
        return f"Chain({self.name!r}: {' -> '.join(s.describe() for s in self.config.chain)})"

    def __call__(self, x: np.ndarray, sr: int, label: str = "<audio>") -> np.ndarray:
        """Apply every stage; ``label`` (a track name) goes into error messages."""
        y = np.asarray(x, dtype=np.float32)
        if y.ndim == 1:
            y = y[None, :]
        if y.ndim != 2 or y.shape[1] == 0:
            raise EffectError(f"{label}: effect {self.name} needs (C, N) audio with N > 0, got shape {np.shape(x)}")
        if isinstance(sr, (float, np.floating)) and float(sr).is_integer():
            sr = int(sr)
        if not (isinstance(sr, (int, np.integer)) and sr > 0):
            raise EffectError(f"{label}: sample rate must be a positive integer, got {sr!r}")
        channels, n = y.shape
        y = np.ascontiguousarray(y)
        for i, (stage, cfg) in enumerate(zip(self._stages, self.config.chain)):
            y = np.asarray(stage(y, int(sr), label), dtype=np.float32)
            if y.ndim != 2 or y.shape[1] != n:
                raise EffectError(
                    f"{label}: effect {self.name} stage {i} ({cfg.describe()}) returned shape {y.shape} "
                    f"for input of {n} samples"
                )
        if channels == 1 and y.shape[0] > 1:
            y = y.mean(axis=0, keepdims=True)
        return np.ascontiguousarray(y, dtype=np.float32)


def load_effect(name_or_path: str | Path | EffectConfig | Chain) -> Chain:
    """A Chain from a preset name, a YAML path, an EffectConfig or a Chain (returned as is)."""
    if isinstance(name_or_path, Chain):
        return name_or_path
    if isinstance(name_or_path, EffectConfig):
        return Chain(name_or_path)
    path = resolve_effect_path(name_or_path)
    return Chain(effect_config_from_dict(load_yaml(path), source=str(path)), source=str(path))
