"""SIGKILL a real `python -m fxdist ...` process at a chosen moment, for the kill -9 tests.

The moment is a filesystem condition polled every millisecond (a temp file appearing, a
folder being created, N outputs written), plus an optional delay: the tests kill inside a
write, not at a guessed time.

The process runs in its own session, and the kill reaches every process of that session:
Ray's workers (trial actors among them) put themselves in process groups of their own, so
a kill of the driver's group alone leaves a trial training on, writing into the sweep folder
beside the resume that follows.
"""

from __future__ import annotations

import contextlib
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
    """Run `python -m fxdist ARGS` to the end; past ``timeout`` its whole session is killed
    (its Ray too) and TimeoutExpired raised."""
    proc = subprocess.Popen([sys.executable, "-m", "fxdist", *args], cwd=cwd or REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=_env())
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(proc.pid)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def kill_when(args: list[str], when: Callable[[], bool], delay: float = 0.0, timeout: float = 60, cwd: Path | None = None) -> Killed:
    """Start `python -m fxdist ARGS` in its own session; once ``when()`` holds, wait ``delay`` s and
    SIGKILL the whole session (Ray and worker processes too). If it exits first, say so."""
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
            kill_session(proc.pid)  # any process left of it, in whatever process group
            proc.wait(30)
        log.seek(0)
        text = log.read()
    log_path.unlink(missing_ok=True)
    return Killed(killed, proc.returncode, text)


def kill_session(sid: int, wait: float = 10.0) -> None:
    """SIGKILL every process of session ``sid`` and wait up to ``wait`` s until none runs."""
    deadline = time.monotonic() + wait
    while (pids := _session_pids(sid)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _session_pids(sid: int) -> list[int]:
    """Live (not zombie) processes whose session is ``sid``, from /proc."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        state, _ppid, _pgrp, session = stat[stat.rindex(")") + 2:].split()[:4]
        if int(session) == sid and state != "Z":
            pids.append(int(entry.name))
    return pids


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
