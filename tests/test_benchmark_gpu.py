"""The GPU benchmarks on a machine without one: gpu_packing's --dry-run plan, and a clear refusal (exit 2)
from it and from the --device cuda options of train_throughput and realtime."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_gpu_packing_dry_run_prints_the_plan():
    proc = run("gpu_packing.py", "--dry-run", "--packing", "1", "2", "4", "8", "--rounds", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for k, share, trials in ((1, "1", 2), (2, "0.5", 4), (4, "0.25", 8), (8, "0.125", 16)):
        assert f"packing {k}/GPU: gpus_per_worker {share}, {trials} trials, {k} at a time" in out
    assert "capture: first validation with ESR <= 1.25 x median best ESR" in out
    assert "saturation: batch [16, 64, 256, 1024] x window [1024, 4096, 16384]" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the refusal is for machines without")
@pytest.mark.parametrize("script, args", [
    ("gpu_packing.py", ()),
    ("train_throughput.py", ("--quick", "--device", "cuda")),
    ("realtime.py", ("--quick", "--device", "cuda")),
])
def test_gpu_benchmarks_refuse_to_run_without_cuda(script, args):
    proc = run(script, *args)
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
    assert "CUDA device" in proc.stderr
