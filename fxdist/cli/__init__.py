"""The ``fxdist`` command: a thin layer over the library.

Each area registers its subcommands from its own module (``fxdist.cli.data``, ...);
a module's ``register(subparsers)`` adds parsers whose ``func(args) -> int`` calls one
library function and prints its result. FxdistError becomes a one-line message, exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from fxdist import __version__
from fxdist.errors import FxdistError

# Modules that add subcommands; each must define register(subparsers).
COMMAND_MODULES = ("data", "train", "pipeline", "evaluate", "export", "sweep", "submit", "raynode")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fxdist", description="Learn audio effects from clean/processed pairs.")
    parser.add_argument("--version", action="version", version=f"fxdist {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"fxdist.cli.{name}").register(sub)
    return parser


def parse_overrides(items: list[str] | None) -> dict:
    """Turn ``["optim.lr=1e-3", "model.name=lstm"]`` into ``{"optim.lr": 0.001, ...}`` (YAML-typed values)."""
    from fxdist.config import parse_yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise FxdistError(f"override {item!r} is not KEY=VALUE (e.g. optim.lr=1e-3)")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_yaml(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FxdistError as exc:
        print(f"fxdist: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fxdist: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
