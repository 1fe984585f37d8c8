"""benchmarks/sweep_load.py --quick: 12 tiny trials, 2 at a time, on a local Ray started by the
sweep. Every trial finishes and the driver's memory stays flat (a lenient bound: the figures
are printed, this only catches growth per trial); Ray's temp folders must be gone after."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run() -> str:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "sweep_load.py"), "--quick"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert "SWEEP LOAD" in proc.stdout, f"exit {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    print(proc.stdout[proc.stdout.index("SWEEP LOAD"):])
    return proc.stdout


def test_every_trial_finishes_and_driver_memory_stays_flat(quick_run):
    assert re.search(r"^trials finished\s+12 / 12", quick_run, re.MULTILINE), quick_run[-2000:]
    ratio = float(re.search(r"^RSS ratio 12/4\s+([\d.]+)", quick_run, re.MULTILINE).group(1))
    assert ratio <= 1.5, quick_run[-1000:]


def test_ray_temp_folders_are_removed(quick_run):
    assert re.search(r"^Ray temp left\s+0 ", quick_run, re.MULTILINE), quick_run[-1000:]
