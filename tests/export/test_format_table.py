"""The family-by-format table is generated from the registry, and README and --help show it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fxdist.cli import main as cli_main
from fxdist.export import FORMATS, export_support, family_formats, format_table
from fxdist.models import families, get

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"<!-- export-formats:begin -->\n(.*?)\n<!-- export-formats:end -->", re.S)


def _support(family: str, fields: dict) -> dict[str, str | None]:
    cls = get(family)
    return export_support(cls(cls.config_cls(**fields)))


def test_every_family_answers_for_every_format():
    for family in families():
        support = _support(family, {})
        assert set(support) == set(FORMATS), family
        assert all(why is None or why.strip() for why in support.values()), family


def test_the_table_holds_what_each_model_and_variant_says():
    rows = family_formats()
    assert list(rows) == families()
    for family, entries in rows.items():
        variants = dict(get(family).export_variants())
        for fmt, label in entries:
            assert _support(family, {} if label is None else variants[label])[fmt] is None, (family, fmt)
        listed = {fmt for fmt, _ in entries}
        for fields in [{}, *variants.values()]:
            assert all(why is not None for fmt, why in _support(family, fields).items() if fmt not in listed)


def test_the_one_line_table_names_the_variants():
    line = format_table()
    assert "wavenet: onnx, torchscript, nam (layout nam)" in line
    assert "lstm: onnx, torchscript, rtneural, nam (cell lstm, input_skip false)" in line
    assert "fir: onnx, torchscript, ir" in line and "cnn: none" in line


def test_readme_block_is_the_generated_table():
    block = BLOCK.search(README.read_text())
    assert block, f"{README} has no <!-- export-formats:begin --> ... <!-- export-formats:end --> block"
    assert block.group(1) == format_table(markdown=True), (
        "README's family-by-format table differs from the registry's; paste "
        "`python -c 'from fxdist.export import format_table; print(format_table(markdown=True))'`"
    )


def test_export_help_shows_the_table(capsys):
    with pytest.raises(SystemExit):
        cli_main(["export", "--help"])
    assert format_table(markdown=True) in capsys.readouterr().out
