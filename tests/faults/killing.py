"""SIGKILL a real `python -m fxdist ...` process at a chosen moment, for the kill -9 tests.

The moment is a filesystem condition polled every millisecond (a temp file appearing, a
folder being created, N outputs written), plus an optional delay: the tests kill inside a
write, not at a guessed time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Killed:
    """How one run ended: ``killed`` (SIGKILLed by us) or exited by itself with ``returncode``."""

    killed: bool
    returncode: int
    log: str


def fxdist(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m fxdist ARGS` to the end."""
    return subprocess.run([sys.executable, "-m", "fxdist", *args], cwd=cwd or REPO, capture_output=True, text=True,
                          timeout=timeout, env=_env(), check=False)


def kill_when(args: list[str], when: Callable[[], bool], delay: float = 0.0, timeout: float = 60, cwd: Path | None = None) -> Killed:
    """Start `python -m fxdist ARGS` in its own session; once ``when()`` holds, wait ``delay`` s and
    SIGKILL the whole group (worker processes too). If it exits first, say so."""
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fxdist-kill-{os.getpid()}-{time.monotonic_ns()}.log"
    with open(log_path, "w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "fxdist", *args], cwd=cwd or REPO, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=_env())
        deadline = time.monotonic() + timeout
        killed = False
        try:
            while proc.poll() is None:
                if when():
                    if delay:
                        time.sleep(delay)
                    if proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGKILL)
                        killed = True
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"{' '.join(args)}: condition not reached in {timeout:g} s")
                time.sleep(0.001)
        finally:
            if proc.poll() is None and not killed:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # any worker left of the group
            except ProcessLookupError:
                pass
        log.seek(0)
        text = log.read()
    log_path.unlink(missing_ok=True)
    return Killed(killed, proc.returncode, text)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
