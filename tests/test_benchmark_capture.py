"""benchmarks/capture.py --quick: two third-party suite effects rendered with short test pieces,
``fxdist capture`` on each within 30 s (no NAM), both scored by the one scorer. The table has a
row per effect whose numbers are finite and match the JSON rows; a row without a model says why.

Skips, naming the apt package, when sox, fluidsynth, the soundfont or a plugin is missing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[str, list[dict]]:
    tmp = tmp_path_factory.mktemp("capture-bench")
    rows = tmp / "rows.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "capture.py"), "--quick", "--work", str(tmp / "work"),
                           "--json", str(rows)], cwd=REPO, capture_output=True, text=True, timeout=900)
    if proc.returncode == 2 and "cannot render the suite" in proc.stderr:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "CAPTURE BENCHMARK" in proc.stdout, proc.stdout[-3000:]
    print(proc.stdout[proc.stdout.index("CAPTURE BENCHMARK"):])
    return proc.stdout, json.loads(rows.read_text())


def _line(stdout: str, effect: str) -> str:
    table = stdout[stdout.index("CAPTURE BENCHMARK"):].splitlines()
    lines = [line for line in table if line.startswith(effect + " ")]
    assert len(lines) == 1, table
    return lines[0]


@pytest.mark.slow
def test_a_row_per_effect_with_finite_numbers(quick):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from capture import QUICK_EFFECTS

    stdout, rows = quick
    assert [r["effect"] for r in rows] == list(QUICK_EFFECTS)
    for r in rows:
        line = _line(stdout, r["effect"])
        nothing = r["do-nothing"]
        assert math.isfinite(nothing["esr"]) and 0 <= nothing["esr"] <= 1 and math.isfinite(nothing["mrstft"])
        assert f"{nothing['esr']:.4g}" in line
        assert r["nam"] is None and any("NAM skipped" in n for n in r["notes"])
        if r["fxdist"] is None:
            assert r["verdict"].startswith("miss: no fxdist model ("), r
            continue
        fx = r["fxdist"]
        assert all(math.isfinite(v) for v in fx.values()), fx
        assert fx["baseline_esr"] == pytest.approx(nothing["esr"]) and fx["baseline_mrstft"] == pytest.approx(nothing["mrstft"])
        assert f"{fx['esr']:.4g}" in line and f"{nothing['esr'] / fx['esr']:.1f}x" in line
        assert r["params"] > 0 and r["verdict"] in line
        assert r["verdict"].startswith(("pass", "miss: "))


@pytest.mark.slow
def test_at_least_one_effect_gets_a_model(quick):
    _, rows = quick
    assert any(r["fxdist"] is not None for r in rows), [r["verdict"] for r in rows]


def test_bars_follow_the_effect_kind():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from capture import DRIVE, MODULATION, PITCH, TIME, bar_of, verdict

    assert bar_of("amp_cab", "amp + cabinet") == DRIVE and bar_of("compression", "compressor") == DRIVE
    assert bar_of("delay", "feedback delay") == TIME and bar_of("other", "phaser") == MODULATION
    assert bar_of("pitch", "octave divider") == PITCH and bar_of("other", "10-band graphic EQ") is None
    good = {"esr": 0.01, "baseline_esr": 0.5, "mrstft": 0.5, "baseline_mrstft": 1.0}
    assert verdict(DRIVE, good, {"esr": 0.05}) == "pass"
    assert "below NAM's (bar 3x)" in verdict(DRIVE, good, {"esr": 0.02})
    assert "not checked" in verdict(DRIVE, good, None)
    assert "above do-nothing's" in verdict(DRIVE, {**good, "mrstft": 1.2}, {"esr": 1.0})
    assert verdict(MODULATION, {**good, "esr": 0.2, "mrstft": 0.1}, None) == "pass"
    assert verdict(PITCH, {**good, "mrstft": 0.5}, None).startswith("miss: MR-STFT only 2.0x")
