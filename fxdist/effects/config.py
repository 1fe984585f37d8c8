"""Effect configs: the typed, strictly checked form of an effect YAML, and finding one by name."""

from __future__ import annotations

import os
import re
import shlex
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fxdist.config import from_dict, load_yaml, to_dict
from fxdist.errors import EffectError
from fxdist.presets import effect_preset

# The effect kinds an effect config's ``family`` key may name.
EffectKind = Literal[
    "distortion", "fuzz", "compression", "amp_cab", "highpass", "lowpass",
    "pitch", "chorus", "delay", "reverb", "other",
]
EFFECT_KINDS: tuple[str, ...] = typing.get_args(EffectKind)
EFFECT_NAME = re.compile(r"^[a-z0-9_-]+$")
STAGE_KINDS = ("builtin", "cabinet_ir", "vst3", "command")
COMMAND_DEFAULTS = {"timeout_s": 60.0, "env": {}, "length_tolerance": 0, "trim_tail": False}


@dataclass
class CabinetIRConfig:
    """Settings of a generated cabinet impulse response (see :func:`cabinet_ir`)."""

    seed: int = 0
    length_ms: float = 40.0
    low_hz: float = 80.0
    high_hz: float = 4500.0
    resonances: int = 4
    decay_ms: float = 6.0

    def __post_init__(self) -> None:
        if not 1.0 <= self.length_ms <= 1000.0:
            raise ValueError(f"cabinet_ir.length_ms must be in [1, 1000], got {self.length_ms}")
        if not 0.0 < self.low_hz < self.high_hz:
            raise ValueError(f"cabinet_ir needs 0 < low_hz < high_hz, got low_hz={self.low_hz}, high_hz={self.high_hz}")
        if not 0 <= self.resonances <= 16:
            raise ValueError(f"cabinet_ir.resonances must be in [0, 16], got {self.resonances}")
        if not 0.1 <= self.decay_ms <= self.length_ms:
            raise ValueError(f"cabinet_ir.decay_ms must be in [0.1, length_ms={self.length_ms}], got {self.decay_ms}")


@dataclass
class StageConfig:
    """One stage of a chain: exactly one of builtin / cabinet_ir / vst3 / command.

    ``params`` belongs to builtin and vst3 stages; ``timeout_s``, ``env``,
    ``length_tolerance`` and ``trim_tail`` to command stages.
    """

    builtin: str | None = None
    cabinet_ir: CabinetIRConfig | None = None
    vst3: str | None = None
    command: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 60.0
    env: dict[str, str] = field(default_factory=dict)
    length_tolerance: int = 0
    trim_tail: bool = False

    def __post_init__(self) -> None:
        given = [k for k in STAGE_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a stage needs exactly one of {', '.join(STAGE_KINDS)}; got {given or 'none'}")
        if self.params and self.kind not in ("builtin", "vst3"):
            raise ValueError(f"params belong to builtin and vst3 stages, not to a {self.kind} stage")
        stray = [k for k, default in COMMAND_DEFAULTS.items() if getattr(self, k) != default]
        if stray and self.kind != "command":
            raise ValueError(f"{', '.join(stray)} belong(s) to command stages, not to a {self.kind} stage")
        if self.kind == "command":
            if not self.command:
                raise ValueError("command stage: the command list is empty")
            joined = " ".join(self.command)
            missing = [p for p in ("{input}", "{output}") if p not in joined]
            if missing:
                raise ValueError(f"command {self.command}: missing placeholder(s) {', '.join(missing)}")
        if not 0 < self.timeout_s <= 86400:
            raise ValueError(f"timeout_s must be in (0, 86400], got {self.timeout_s}")
        if self.length_tolerance < 0:
            raise ValueError(f"length_tolerance must be >= 0, got {self.length_tolerance}")

    @property
    def kind(self) -> str:
        return next(k for k in STAGE_KINDS if getattr(self, k) is not None)

    def describe(self) -> str:
        """Short label for messages: ``builtin Distortion``, ``command sox ...``."""
        if self.kind == "command":
            return f"command `{shlex.join(self.command)}`"
        if self.kind == "cabinet_ir":
            return f"cabinet_ir seed={self.cabinet_ir.seed}"
        return f"{self.kind} {getattr(self, self.kind)}"

    def to_dict(self) -> dict[str, Any]:
        """Only the keys that matter for this kind (what a user would write)."""
        out: dict[str, Any] = {self.kind: to_dict(getattr(self, self.kind))}
        if self.kind in ("builtin", "vst3"):
            out["params"] = dict(self.params)
        if self.kind == "command":
            out.update(timeout_s=self.timeout_s, env=dict(self.env),
                       length_tolerance=self.length_tolerance, trim_tail=self.trim_tail)
        return out


@dataclass
class EffectConfig:
    """An effect: its id, its effect kind (YAML key ``family``), a description and its stages in order."""

    name: str
    chain: list[StageConfig]
    family: EffectKind = "other"
    description: str = ""

    def __post_init__(self) -> None:
        if not EFFECT_NAME.match(self.name):
            raise ValueError(f"effect name {self.name!r} must match [a-z0-9_-]+ (it names folders)")
        if not self.chain:
            raise ValueError(f"effect {self.name!r}: chain is empty")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "chain": [s.to_dict() for s in self.chain],
        }


def effect_config_from_dict(data: Any, source: str = "<effect>") -> EffectConfig:
    """Build an EffectConfig strictly; errors name ``source`` and the key path."""
    return from_dict(EffectConfig, data, source)


def load_effect_config(name_or_path: str | Path) -> EffectConfig:
    """Resolve a preset name (:func:`fxdist.presets.effect_preset`) or a YAML path to its config.

    A value with a path separator or a .yaml/.yml suffix, or naming an existing file,
    is a path; anything else a preset name. Unknown names raise EffectError listing the
    shipped presets.
    """
    path = resolve_effect_path(name_or_path)
    return effect_config_from_dict(load_yaml(path), source=str(path))


def resolve_effect_path(name_or_path: str | Path) -> Path:
    """The YAML file of a preset name or path (rules in :func:`load_effect_config`)."""
    text = str(name_or_path)
    path = Path(text)
    is_path = isinstance(name_or_path, Path) or os.sep in text or path.suffix in (".yaml", ".yml") or path.is_file()
    if not is_path:
        path = effect_preset(text)
    elif not path.is_file():
        raise EffectError(f"{path}: effect config file not found")
    return path
