"""`fxdist capture`: the budget plan, the pick, and the whole command on a tiny recorded pair set."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fxdist.capture import CandidateResult, CaptureConfig, _why_not, candidate_table, pick, plan_seconds
from fxdist.checkpoint import load_checkpoint
from fxdist.config import from_dict
from fxdist.errors import ConfigError
from tests.datasets import recorded_pairs
from tests.faults.killing import REPO, fxdist, kill_when


def _makespan(seconds, cores, overhead):
    free = [0.0] * cores
    for s in seconds:
        i = free.index(min(free))
        free[i] += overhead + s
    return max(free)


@pytest.mark.parametrize("weights, cores", [([1, 1, 0.25, 0.25, 0.25], 2), ([1, 1, 0.25, 0.25, 0.25], 1), ([1, 0.25], 4)])
def test_plan_fills_the_budget_in_proportion(weights, cores):
    seconds = plan_seconds(weights, cores, 200.0, overhead=5.0)
    span = _makespan(seconds, cores, 5.0)
    assert 199.0 <= span <= 200.0 or len(weights) <= cores and max(seconds) == pytest.approx(195.0, abs=1.0)
    assert all(s / w == pytest.approx(seconds[0] / weights[0]) for s, w in zip(seconds, weights))


def test_plan_refuses_a_budget_that_holds_only_start_ups():
    with pytest.raises(ConfigError, match=r"budget of 12 s.*5 candidate\(s\) on 1 core.*raise --budget"):
        plan_seconds([1, 1, 1, 1, 1], 1, 12.0, overhead=5.0)


def _row(name, esr, mrstft, base_esr=0.5, base_mrstft=2.0):
    row = {"esr": esr, "baseline_esr": base_esr, "mrstft": mrstft, "baseline_mrstft": base_mrstft}
    why = _why_not(row)
    return CandidateResult(name, name, 10, 100, 5.0, esr, base_esr, mrstft, base_mrstft, why is None, why)


def test_a_candidate_worse_than_doing_nothing_is_never_picked():
    lowest_esr_bad_spectrum = _row("a", 0.01, 2.5)  # lower ESR than any, but sounds worse than the dry signal
    worse_esr = _row("b", 0.7, 0.5)
    fine = _row("c", 0.05, 1.0)
    assert not lowest_esr_bad_spectrum.eligible and "MR-STFT 2.5 is not below do-nothing's 2" in lowest_esr_bad_spectrum.why_not
    assert not worse_esr.eligible and "ESR 0.7 is not below do-nothing's 0.5" in worse_esr.why_not
    assert pick([lowest_esr_bad_spectrum, worse_esr, fine]) is fine
    assert pick([lowest_esr_bad_spectrum, worse_esr]) is None
    assert pick([_row("nan", float("nan"), 1.0)]) is None
    table = candidate_table([lowest_esr_bad_spectrum, fine])
    assert "no: validation MR-STFT" in table and "50.0x" in table


@pytest.mark.parametrize("data, match", [
    ({"budget": 0}, "budget must be > 0"),
    ({"candidates": ["wavenet", "lstmm"]}, "unknown candidate.*lstmm.*known: fir"),
    ({"candidates": ["wh", "wh"]}, "named twice"),
    ({"threads": 0}, "threads must be >= 1"),
    ({"budjet": 5}, "budjet"),
])
def test_bad_capture_config_is_refused(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(CaptureConfig, data, "<command line>")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return recorded_pairs(tmp_path_factory.mktemp("recorded"))


def _run(*args: str, timeout: float = 400) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    done = fxdist(*args, timeout=timeout)
    return done, time.monotonic() - t0


@pytest.fixture(scope="module")
def reamp_recording(tmp_path_factory) -> tuple[Path, Path]:
    """fxdist's re-amp signal (20 s of content at 16 kHz) and its recording through the distortion preset."""
    import numpy as np
    import soundfile as sf

    from fxdist.effects import load_effect

    folder = tmp_path_factory.mktemp("reamp")
    signal = folder / "reamp.wav"
    made = fxdist("data", "reamp", str(signal), "--seconds", "20", "--sample-rate", "16000")
    assert made.returncode == 0, made.stderr
    x, sr = sf.read(signal, dtype="float32")
    sf.write(folder / "recording.wav", np.asarray(load_effect("distortion")(x, sr)).squeeze(), sr, subtype="PCM_24")
    return signal, folder / "recording.wav"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_capture_end_to_end_within_its_budget(reamp_recording, tmp_path):
    signal, recording = reamp_recording
    out = tmp_path / "cap"
    budget = 60.0
    done, wall = _run("capture", str(recording), "--signal", str(signal), "--out", str(out), "--budget", str(budget),
                      "--threads", "2", "--candidates", "lstm,wh,fir")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert wall <= 1.1 * budget, (wall, done.stdout[-2000:])  # the whole command, Python start included
    result = json.loads((out / "capture.json").read_text())
    assert result["wall_seconds"] >= 0.75 * budget  # and it used the time it was given
    rows = {r["name"]: r for r in result["candidates"]}
    assert set(rows) == {"lstm", "wh", "fir"}
    chosen = rows[result["chosen"]]
    assert chosen["chosen"] and chosen["eligible"]
    assert chosen["esr"] < chosen["baseline_esr"] and chosen["mrstft"] < chosen["baseline_mrstft"]
    assert chosen["esr"] == min(r["esr"] for r in rows.values() if r["eligible"])
    for r in rows.values():
        if r["esr"] is not None and (r["esr"] >= r["baseline_esr"] or r["mrstft"] >= r["baseline_mrstft"]):
            assert not r["chosen"] and r["why_not"]
        assert r["seconds"] is None or r["seconds"] <= 1.1 * budget
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.model_config["family"] == chosen["family"]
    assert (out / "report.html").is_file() and (out / "metrics.json").is_file()
    assert (out / "candidates" / "compare.html").is_file()
    assert all(Path(p).is_file() for p in result["exports"])
    for name in ("candidate", "val ESR", "do-nothing", "MR-STFT", f"chosen: {result['chosen']}"):
        assert name in done.stdout

    stamp = (out / "best.pt").stat().st_mtime_ns
    again, wall = _run("capture", str(recording), "--signal", str(signal), "--out", str(out), "--budget", str(budget))
    assert again.returncode == 0 and "this capture is complete" in again.stdout + again.stderr
    assert (out / "best.pt").stat().st_mtime_ns == stamp and wall < 30


@pytest.mark.slow
@pytest.mark.timeout(700)
def test_capture_resumes_after_its_driver_is_killed(pairs, tmp_path):
    out = tmp_path / "cap"
    exp = out / "work" / "1" / "sweeps" / "capture"

    def a_trial_checkpointed() -> bool:
        return any(exp.glob("*/checkpoint_000000/metrics.json"))

    args = ["capture", str(pairs), "--out", str(out), "--budget", "50", "--threads", "2", "--candidates", "lstm,wh"]
    run = kill_when(args, a_trial_checkpointed, timeout=200)
    assert run.killed, run.log[-3000:]
    assert not (out / "capture.json").exists() and not (out / "best.pt").exists()
    done, _ = _run(*args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "kept from the earlier start" in done.stdout
    result = json.loads((out / "capture.json").read_text())
    assert result["chosen"] in ("lstm", "wh")
    assert load_checkpoint(out / "best.pt").model_config["family"] == result["chosen"]
