"""The benchmark scripts still run: each ``--quick`` smoke run exits 0 and prints its table.

Figures are not checked (timings and short-run quality mean nothing here); this only
keeps the scripts from rotting as the library changes under them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_quick(script: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--quick"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"{script} --quick exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.mark.slow
def test_train_throughput_quick():
    out = run_quick("train_throughput.py")
    assert "TRAIN THROUGHPUT (output samples/s)" in out
    assert "LOADER DETAIL" in out
    for family in ("cnn", "fcn", "lstm", "wavenet", "tcn"):
        assert f"\n{family}-tiny " in out
    assert "fastest preset" in out and ("PASS" in out or "FAIL" in out)


@pytest.mark.slow
def test_distortion_quality_quick():
    out = run_quick("distortion_quality.py")
    assert "VALIDATION ESR OVER TIME" in out
    assert "best validation ESR" in out and "test ESR of best.pt" in out
    assert "PASS" in out or "FAIL" in out
