"""Bounded waiting for the real-SLURM tests: fail with a diagnosis instead of hanging."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest


def poll(what: str, check: Callable[[], Any], timeout: float, diagnose: Callable[[], str], interval: float = 0.2) -> Any:
    """Call ``check`` until it returns a truthy value; after ``timeout`` s fail with ``diagnose()``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached after {timeout:.0f} s (last: {value!r})\n{diagnose()}")
        time.sleep(interval)
