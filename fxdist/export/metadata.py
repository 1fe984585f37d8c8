"""What an export carries besides the weights: the metadata players show, and the report of a write."""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from typing import Any

from fxdist.errors import ExportError

NAM_GEAR_TYPES = ("amp", "pedal", "pedal_amp", "amp_cab", "amp_pedal_cab", "preamp", "studio")
NAM_TONE_TYPES = ("clean", "overdrive", "crunch", "hi_gain", "fuzz")


@dataclass
class ExportMetadata:
    """What players show or use: name, rate, loudness (dB RMS of the output on the reference)."""

    name: str
    sample_rate: int
    loudness_db: float | None = None
    gain: float | None = None  # NAM's 0..1 "how much gain/compression" estimate
    validation_esr: float | None = None
    gear_type: str | None = None
    gear_make: str | None = None
    gear_model: str | None = None
    tone_type: str | None = None
    modeled_by: str | None = None
    effect_id: str | None = None
    date: str = field(default_factory=lambda: _dt.datetime.now().replace(microsecond=0).isoformat())

    def __post_init__(self):
        if self.gear_type is not None and self.gear_type not in NAM_GEAR_TYPES:
            raise ExportError(f"gear type {self.gear_type!r} is not one of NAM's: {', '.join(NAM_GEAR_TYPES)}")
        if self.tone_type is not None and self.tone_type not in NAM_TONE_TYPES:
            raise ExportError(f"tone type {self.tone_type!r} is not one of NAM's: {', '.join(NAM_TONE_TYPES)}")


@dataclass
class ExportReport:
    format: str
    path: str
    family: str
    max_abs_error: float
    checked_samples: int
    metadata: dict[str, Any]
    notes: list[str]


def meta_dict(meta: ExportMetadata) -> dict[str, Any]:
    """The metadata fields that are set, as plain data."""
    return {k: v for k, v in asdict(meta).items() if v is not None}
