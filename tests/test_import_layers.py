"""The package's import graph flows one way: ground floor -> data -> models -> train -> tune/slurm/...

Every ``import``/``from ... import`` in fxdist/ counts, the ones inside functions too (a lazy import
is still a dependency). Parsed with ``ast``: nothing is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fxdist"

GROUND = ("fxdist.config", "fxdist.errors", "fxdist.audio", "fxdist.fsutil", "fxdist.storage", "fxdist.dsp")
ABOVE_DATA = ("fxdist.train", "fxdist.tune", "fxdist.slurm", "fxdist.evaluate", "fxdist.export", "fxdist.cli",
              "fxdist.pipeline", "fxdist.capture")
ABOVE_MODELS = ("fxdist.metrics", "fxdist.evaluate", "fxdist.train", "fxdist.tune", "fxdist.slurm",
                "fxdist.export", "fxdist.realtime", "fxdist.cli", "fxdist.pipeline", "fxdist.capture")

# (importer prefix, forbidden prefixes, why)
RULES = [
    ("fxdist.data", ABOVE_DATA, "data never imports training, sweeps, SLURM, evaluation, export or the CLI"),
    ("fxdist.models", ABOVE_MODELS, "models never import metrics, evaluation, training, sweeps or export"),
    ("fxdist.config", ("fxdist.",), "the ground floor imports only the ground floor"),
    ("fxdist.errors", ("fxdist.",), "the ground floor imports only the ground floor"),
    ("fxdist.dsp", ("fxdist.",), "the ground floor imports only the ground floor"),
    ("fxdist.storage", ("fxdist.",), "the ground floor imports only the ground floor"),
    ("fxdist.fsutil", ("fxdist.",), "the ground floor imports only the ground floor"),
    ("fxdist.audio", ("fxdist.",), "the ground floor imports only the ground floor"),
    ("fxdist", ("fxdist.cli",), "nothing imports the CLI"),
]
EXEMPT = {"fxdist.cli": "the CLI's own modules", "fxdist.__main__": "python -m fxdist runs the CLI"}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Absolute names of every module ``source`` imports, relative imports resolved."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from fxdist import cli`
    return found


def _under(name: str, prefix: str) -> bool:
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


def violations(modules: dict[str, set[str]]) -> list[str]:
    out = []
    for module, imports in sorted(modules.items()):
        if any(_under(module, exempt) for exempt in EXEMPT):
            continue
        for importer, forbidden, why in RULES:
            if not _under(module, importer):
                continue
            for name in sorted(imports):
                if not name.startswith("fxdist."):
                    continue
                if importer in GROUND and any(_under(name, g) for g in GROUND):
                    continue
                if any(_under(name, f) for f in forbidden) and not _under(name, module):
                    out.append(f"{module} imports {name}: {why}")
    return out


def package_imports() -> dict[str, set[str]]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        modules[name] = imported_modules(path.read_text(), name, path.name == "__init__.py")
    return modules


def test_the_package_imports_flow_one_way():
    modules = package_imports()
    for layer in ("fxdist.data", "fxdist.models", "fxdist.tune", "fxdist.slurm", "fxdist.evaluate", "fxdist.export"):
        assert any(_under(m, layer) for m in modules), f"{layer} not found: the rules would check nothing"
    bad = violations(modules)
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("fxdist.data.shards", "def f():\n    from fxdist.train import train\n", "fxdist.data.shards imports fxdist.train"),
        ("fxdist.models.lstm", "import fxdist.metrics as m\n", "fxdist.models.lstm imports fxdist.metrics"),
        ("fxdist.models.lstm", "from ..evaluate import score\n", "fxdist.models.lstm imports fxdist.evaluate"),
        ("fxdist.process", "from fxdist import cli\n", "fxdist.process imports fxdist.cli"),
        ("fxdist.dsp", "from fxdist.models import registry\n", "fxdist.dsp imports fxdist.models"),
    ],
)
def test_the_check_finds_an_import_against_the_layering(module, source, expected):
    bad = violations({module: imported_modules(source, module)})
    assert any(line.startswith(expected) for line in bad), bad


def test_allowed_imports_pass():
    allowed = {
        "fxdist.train": imported_modules("from fxdist.data import stream\nfrom fxdist.models import registry\n", "fxdist.train"),
        "fxdist.cli.train": imported_modules("from fxdist.cli import parse_overrides\n", "fxdist.cli.train"),
        "fxdist.storage": imported_modules("from fxdist.errors import ShardError\n", "fxdist.storage"),
        "fxdist.models.wh": imported_modules("from .fir import fit_least_squares\n", "fxdist.models.wh"),
    }
    assert violations(allowed) == []
