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


@pytest.mark.slow
def test_quality_quick(tmp_path):
    """One effect per recipe kind: WaveNet, least-squares FIR, MR-STFT gray-box pitch shifter, LFO fit, fit + Adam."""
    out = tmp_path / "table.md"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "quality.py"), "--quick", "--threads", "1",
         "--effects", "distortion", "lowpass", "pitch", "chorus", "compression", "--out", str(out), "--json", str(tmp_path / "rows.json")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, f"quality.py --quick exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert "QUALITY TABLE" in proc.stdout
    table = out.read_text()
    for effect in ("distortion", "lowpass", "pitch", "chorus", "compression"):
        assert f"| {effect} |" in table
    assert table.count("PASS") + table.count("MISS") == 5
    pitch_row = next(line for line in table.splitlines() if line.startswith("| pitch |"))
    assert pitch_row.split(" | ")[10].endswith("x"), pitch_row  # the effect-itself reference, MR-STFT rows only
    merged = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "quality.py"), "--merge", str(tmp_path / "rows.json")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert merged.returncode == 0 and merged.stdout == table


@pytest.mark.slow
def test_memory_per_worker_quick():
    """Rows for 1, 2 and 4 workers per model and checkpoint setting. At one global batch a worker
    of 4 holds a quarter of the batch, so its peak (above base, and in all) is below one worker's."""
    out = run_quick("memory_per_worker.py")
    assert "EXTRAPOLATION to 16 GiB machines" in out
    table = out.split("PEAK MEMORY PER WORKER")[1].split("EXTRAPOLATION")[0]
    peak, peak_rss = {}, {}
    for line in table.splitlines():
        f = line.split()
        if len(f) == 13 and f[0] in ("cnn-5k", "wavenet-mol24") and f[1] in ("off", "on"):
            key = (f[0], f[1], int(f[2]))
            peak[key], peak_rss[key] = float(f[7]), float(f[10])
    for model in ("cnn-5k", "wavenet-mol24"):
        for ckpt in ("off", "on"):
            assert {n for m, c, n in peak if (m, c) == (model, ckpt)} == {1, 2, 4}, (model, ckpt, sorted(peak))
            assert peak[model, ckpt, 4] < peak[model, ckpt, 1], (model, ckpt, peak)
            assert peak_rss[model, ckpt, 4] < peak_rss[model, ckpt, 1], (model, ckpt, peak_rss)


def test_quality_verdict_needs_every_test_material():
    """A row passes only if the pooled figure and each material's figure meet the target."""
    from benchmarks.quality import per_material, verdict

    good, bad = {"esr": 0.004, "mrstft": 0.5, "baseline_mrstft": 2.0}, {"esr": 0.02, "mrstft": 1.0, "baseline_mrstft": 2.0}
    pooled = {"esr": 0.008, "mrstft": 0.7, "baseline_mrstft": 2.0}
    assert verdict(("esr", 0.01), {**pooled, "by_material": {"pluck": good, "struck": good}}) == ("ESR <= 0.01", "PASS")
    assert verdict(("esr", 0.01), {**pooled, "by_material": {"pluck": good, "struck": bad}})[1] == "MISS"
    assert verdict(("mrstft", 3.0), {**pooled, "by_material": {"pluck": good, "struck": bad}})[1] == "MISS"
    assert verdict(("mrstft", 2.0), {**pooled, "by_material": {"pluck": good, "struck": bad}})[1] == "PASS"
    assert per_material(("esr", 0.01), {**pooled, "by_material": {"pluck": good, "struck": bad}}) == "0.004 / 0.02"
    assert per_material(("mrstft", 3.0), {**pooled, "by_material": {"pluck": good, "struck": bad}}) == "4x / 2x"


def test_effect_itself_is_exact_for_an_lti_preset_and_not_for_the_pitch_shifter():
    """The reference row renders the test input again, delayed; a filter is shift-invariant
    (distance ~0), Rubber Band's frame grid is not (clearly above 0)."""
    from benchmarks.quality import effect_itself, make_test

    sr = 16000
    for effect, check in (("lowpass", lambda d: d < 1e-3), ("pitch", lambda d: d > 0.05)):
        tests = [t for t in make_test(effect, sr, 1.5) if t[0].endswith("s101") or t[0].endswith("s201")]
        got = effect_itself(effect, tests, sr, shift=64)
        assert set(got["by_material"]) == {"pluck", "struck"}
        assert check(got["mrstft"]), (effect, got)
        assert got["baseline_mrstft"] > 0.1, (effect, got)


def _worker_that_stalls(rank, world, setup, port, out_dir):
    """Stands in for memory_per_worker.worker (started by fork, so it need not be importable):
    rank 0 writes its results and exits; rank 1 writes them only for preset "write-then-hang",
    then hangs."""
    import json
    import time

    from benchmarks.memory_per_worker import arm_stack_dump

    arm_stack_dump()
    if rank == 0 or setup.preset == "write-then-hang":
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"rank": rank}))
    while rank == 1:
        time.sleep(0.05)


@pytest.mark.parametrize("preset", ["hang", "write-then-hang"])
def test_memory_per_worker_reports_a_stalled_run_with_its_stacks(monkeypatch, capfd, preset):
    """A run whose worker does not exit is stopped at the deadline, its stack is printed, and its
    results are kept only if every rank wrote them (a hang in shutdown, as seen in CI)."""
    import benchmarks.memory_per_worker as mpw

    monkeypatch.setattr(mpw, "worker", _worker_that_stalls)
    setup = mpw.Setup(preset, global_batch=2, window=8, checkpoint=False, steps=1, threads=1)
    res, why = mpw.run_once(setup, 2, "fork", timeout_s=2.0)
    assert "ranks [1] of 2 still running after 2 s" in why, why
    if preset == "hang":
        assert res is None and "ranks [0] had written" in why, (res, why)
    else:
        assert [r["rank"] for r in res] == [0, 1] and "ranks [0, 1] had written" in why, (res, why)
    assert "in _worker_that_stalls" in capfd.readouterr().err


def test_quality_table_in_docs_has_the_scripts_columns_and_row_order():
    """docs/quality.md shows the table as benchmarks/quality.py writes it: the same header, one
    row per recipe in the script's order, each with one cell per column."""
    import itertools

    import benchmarks.quality as quality

    lines = (REPO / "docs" / "quality.md").read_text().splitlines()
    header = quality.table([]).splitlines()
    start = lines.index(header[0])
    assert lines[start + 1] == header[1]
    rows = list(itertools.takewhile(lambda line: line.startswith("| "), lines[start + 2:]))
    assert rows and all(len(row.split(" | ")) == len(quality.COLUMNS) for row in rows)
    effects = [row[2:].split(" | ")[0] for row in rows]
    assert effects == [e for e in quality.RECIPES if e in effects] and set(effects) == set(quality.RECIPES)
