"""What can go where: the formats, each model's answer (``EffectModel.export_formats``), and the
family-by-format table built from the model registry."""

from __future__ import annotations

import functools

import torch

from fxdist.errors import ExportError
from fxdist.models import registry
from fxdist.models.base import EffectModel

FORMATS = ("nam", "onnx", "torchscript", "rtneural", "ir")
SUFFIXES = {"nam": ".nam", "onnx": ".onnx", "torchscript": ".pt", "rtneural": ".json", "ir": ".wav"}
# Column order of the family-by-format table: the streaming formats every conv family can use first.
TABLE_ORDER = ("onnx", "torchscript", "nam", "rtneural", "ir")


def export_support(model: EffectModel) -> dict[str, str | None]:
    """format -> None if ``model`` can be written in it, else the reason it cannot."""
    support = model.export_formats()
    missing = [f for f in FORMATS if f not in support]
    if missing:
        raise ExportError(f"{model.describe()}: export_formats() does not answer for {', '.join(missing)}")
    return support


def check_format(model: EffectModel, fmt: str) -> None:
    """Raise ExportError naming the formats this model's family can use if ``fmt`` is not one."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    support = export_support(model)
    if support[fmt] is not None:
        ok = [f for f, why in support.items() if why is None]
        raise ExportError(
            f"cannot export a {model.describe()} model as {fmt}: {support[fmt]}. "
            f"Formats this model can use: {', '.join(ok) or 'none'}. By family: {format_table()}"
        )


def family_formats() -> dict[str, list[tuple[str, str | None]]]:
    """family -> [(format, None or the variant label it needs)] in table order, for every registered
    family: its default config's formats, then those a variant (``export_variants``) adds."""
    rows = _family_formats(tuple((f, registry.get(f)) for f in registry.families()))
    return {family: list(entries) for family, entries in rows.items()}


@functools.lru_cache(maxsize=8)
def _family_formats(classes: tuple[tuple[str, type[EffectModel]], ...]) -> dict[str, list[tuple[str, str | None]]]:
    out: dict[str, list[tuple[str, str | None]]] = {}
    with torch.random.fork_rng(devices=[]):  # building models must not move the caller's RNG
        for family, cls in classes:
            default = _supported(cls, {})
            entries: list[tuple[str, str | None]] = [(f, None) for f in TABLE_ORDER if f in default]
            for label, fields in cls.export_variants():
                opened = _supported(cls, fields) - {f for f, _ in entries}
                entries += [(f, label) for f in TABLE_ORDER if f in opened]
            out[family] = entries
    return out


def _supported(cls: type[EffectModel], fields: dict) -> set[str]:
    support = export_support(cls(cls.config_cls(**fields)))
    return {f for f, why in support.items() if why is None}


def format_table(markdown: bool = False) -> str:
    """Formats by family: one line (``wavenet: onnx, torchscript, nam (layout nam); ...``) or a
    markdown table (one row per family, one column per format)."""
    rows = family_formats()
    if not markdown:
        return "; ".join(
            f"{family}: " + (", ".join(f if label is None else f"{f} ({label})" for f, label in entries) or "none")
            for family, entries in rows.items()
        )
    lines = ["| model family | " + " | ".join(TABLE_ORDER) + " |", "|---" * (len(TABLE_ORDER) + 1) + "|"]
    for family, entries in rows.items():
        cell = {f: ("yes" if label is None else label) for f, label in entries}
        lines.append(f"| {family} | " + " | ".join(cell.get(f, "-") for f in TABLE_ORDER) + " |")
    return "\n".join(lines)
