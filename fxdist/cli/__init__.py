"""The ``fxdist`` command: a thin layer over the library.

Each area registers its subcommands from its own module (``fxdist.cli.data``, ...);
a module's ``register(subparsers)`` adds parsers whose ``func(args) -> int`` calls one
library function and prints its result. FxdistError becomes a one-line message, exit 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import sys

from fxdist import __version__
from fxdist.errors import FxdistError

# Modules that add subcommands; each must define register(subparsers).
COMMAND_MODULES = ("data", "train", "pipeline", "capture", "evaluate", "export", "sweep", "submit", "raynode")


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


_OS_HINTS = {
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "it is a folder: give a file path",
    errno.EACCES: "no permission: choose a folder you can write to",
    errno.EPERM: "not permitted: choose a folder you can write to",
    errno.ENOSPC: "the disk is full: free space or choose another folder",
    errno.EROFS: "the file system is read-only: choose another folder",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "it already exists",
}


def os_error_message(exc: OSError) -> str:
    """``PATH: what failed; what to do`` for an OSError raised on a path the user gave."""
    errno_ = exc.errno
    if errno_ is None:  # pyarrow's filesystem errors: the path and errno are in the text
        found = re.search(r"\[errno (\d+)\]", str(exc))
        errno_ = int(found.group(1)) if found else None
    hint = _OS_HINTS.get(errno_ or -1)
    if errno_ == errno.EEXIST and exc.filename is not None and os.path.isfile(exc.filename):
        hint = _OS_HINTS[errno.ENOTDIR]  # mkdir(parents=True) met a file where a folder must go
    if exc.filename is None:
        text = exc.strerror or str(exc)
    else:
        path = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        text = f"{path}: {exc.strerror or exc}"
    return text + (f" ({hint})" if hint else "")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FxdistError as exc:
        print(f"fxdist: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the command was given cannot be written or read
        print(f"fxdist: error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fxdist: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
