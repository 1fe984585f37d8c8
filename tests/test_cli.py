"""The `fxdist` command as a user runs it: real subprocesses, real files, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def fxdist(*args: str, cwd: Path = REPO, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "fxdist", *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
def test_data_steps_then_train_then_process(tmp_path):
    root = tmp_path / "data"
    out = fxdist("data", "generate", str(root), "--tracks", "4", "--segments", "1", "--sample-rate", "16000", "--set", "segment_seconds=2.0")
    assert "4 track(s)" in out.stdout
    assert "rendered 4 track(s)" in fxdist("data", "render", str(root), "--effect", "fuzz", "--no-progress").stdout
    assert "skipped 4 existing" in fxdist("data", "render", str(root), "--effect", "fuzz", "--no-progress").stdout
    fxdist("data", "shard", str(root), "--effect", "fuzz", "--set", "row_samples=4000")
    assert "checksums match" in fxdist("data", "verify", str(root / "shards" / "fuzz")).stdout
    run = tmp_path / "run"
    result = json.loads(fxdist("train", "configs/train/tiny.yaml", "--shards", str(root / "shards" / "fuzz"), "--out", str(run), "--set", "steps=6", "--set", "val_every=3").stdout)
    assert result["step"] == 6 and Path(result["best_checkpoint"]).is_file()
    resumed = json.loads(fxdist("train", "configs/train/tiny.yaml", "--shards", str(root / "shards" / "fuzz"), "--out", str(run), "--set", "steps=6", "--set", "val_every=3", "--resume").stdout)
    assert resumed["step"] == 6  # nothing left to do: resume found the finished run
    sf.write(tmp_path / "in.wav", 0.3 * np.sin(np.arange(8000) / 10.0).astype(np.float32), 16000, subtype="FLOAT")
    msg = fxdist("process", result["best_checkpoint"], str(tmp_path / "in.wav"), str(tmp_path / "out.wav")).stdout
    assert "x real time" in msg and sf.info(tmp_path / "out.wav").frames == 8000


@pytest.mark.slow
def test_pipeline_runs_and_resumes(tmp_path):
    out = fxdist("pipeline", "configs/pipeline/tiny.yaml", "--set", f"root={tmp_path}").stdout
    assert "best validation ESR" in out and "do-nothing baseline" in out
    again = fxdist("pipeline", "configs/pipeline/tiny.yaml", "--set", f"root={tmp_path}").stdout
    assert "skipped 5 existing" in again  # render resumed, nothing redone


@pytest.mark.slow
def test_pipeline_with_a_sweep_pulls_the_best_and_resumes(tmp_path):
    out = fxdist("pipeline", "configs/pipeline/tiny-sweep.yaml", "--set", f"root={tmp_path}").stdout
    assert "sweep: configs/sweep/tiny.yaml on local Ray" in out
    assert "best validation ESR" in out and "do-nothing baseline" in out
    pulled = list((tmp_path / "best").glob("*/best.pt"))
    assert len(pulled) == 1
    again = fxdist("pipeline", "configs/pipeline/tiny-sweep.yaml", "--set", f"root={tmp_path}").stdout
    assert "sweep: resuming" in again and "best validation ESR" in again


def test_errors_are_one_line_with_exit_code_2(tmp_path):
    proc = fxdist("data", "render", str(tmp_path), "--effect", "wahwah", ok=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("fxdist: error: unknown effect preset 'wahwah'")
    assert "Traceback" not in proc.stderr
    proc = fxdist("data", "verify", str(tmp_path / "nothing"), ok=False)
    assert proc.returncode == 2 and "no manifest at" in proc.stderr
    proc = fxdist("train", "configs/train/tiny.yaml", "--set", "optim.lrr=1", ok=False)
    assert proc.returncode == 2 and "'lrr'" in proc.stderr and "allowed keys" in proc.stderr


def test_corrupt_shard_is_reported_by_verify(tiny_shards, tmp_path):
    import shutil

    dest = tmp_path / "copy"
    shutil.copytree(tiny_shards, dest)
    shard = next(dest.glob("train/*.parquet"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    proc = fxdist("data", "verify", str(dest), ok=False)
    assert proc.returncode == 2 and shard.name in proc.stderr and "sha256" in proc.stderr


@pytest.mark.slow
def test_train_compressor_config_recovers_the_preset(tmp_path):
    """configs/train/compressor.yaml as a user runs it (48 kHz, as its model preset): the fit
    finds the compression preset's settings (-40 dB, 20:1, 0.5 ms, 60 ms, +30 dB)."""
    from tests.datasets import make_dataset

    shards = make_dataset(tmp_path / "data", effect="compression", sample_rate=48000, tracks=4, seconds=2.0)
    proc = fxdist("train", "configs/train/compressor.yaml", "--shards", str(shards), "--out", str(tmp_path / "run"),
                  "--set", "steps=2", "--set", "val_every=2")
    fit = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert fit["fit"] is True and fit["val_esr"] < 1e-6 < 0.05 < fit["baseline_val_esr"], fit
    values = fit["values"]
    assert abs(values["threshold_db"] + 40) < 0.5 and abs(values["makeup_db"] - 30) < 0.5, values
    assert abs(values["attack_ms"] / 0.5 - 1) < 0.1 and abs(values["release_ms"] / 60 - 1) < 0.1, values
    assert json.loads(proc.stdout)["best_val_esr"] <= fit["val_esr"]


@pytest.mark.slow
def test_train_wh_config_fits_the_amp_preset(tmp_path):
    """configs/train/wh.yaml as a user runs it (48 kHz): the fit finds amp_cab's 90 Hz input
    high-pass and its 26 dB drive (tanh gain 19.95) and models the preset to ESR < 1e-4."""
    from tests.datasets import make_dataset

    shards = make_dataset(tmp_path / "data", effect="amp_cab", sample_rate=48000, tracks=4, seconds=2.0)
    proc = fxdist("train", "configs/train/wh.yaml", "--shards", str(shards), "--out", str(tmp_path / "run"),
                  "--set", "steps=2", "--set", "val_every=2", "--set", "data.output_len=2048")
    fit = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert fit["fit"] is True and fit["val_esr"] < 1e-4 < 0.5 < fit["baseline_val_esr"], fit
    values = fit["values"]
    assert abs(values["cutoff_hz"] / 90 - 1) < 0.1 and abs(values["gain"] / 19.95 - 1) < 0.1, values
    assert json.loads(proc.stdout)["best_val_esr"] <= fit["val_esr"]


def test_train_fit_config_fits_then_fine_tunes(tmp_path):
    """configs/train/fir.yaml as a user runs it: the least-squares fit is step 0 of the history."""
    from tests.datasets import make_dataset

    shards = make_dataset(tmp_path / "data", effect="lowpass", tracks=4, seconds=2.0)
    proc = fxdist("train", "configs/train/fir.yaml", "--shards", str(shards), "--out", str(tmp_path / "run"),
                  "--set", "model=fir-tiny", "--set", "steps=2", "--set", "val_every=2", "--set", "data.output_len=2048")
    result = json.loads(proc.stdout)
    fit = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert fit["fit"] is True and fit["val_esr"] < 0.05 < fit["baseline_val_esr"]
    assert "fit (fir)" in proc.stderr
    assert result["step"] == 2 and result["best_val_esr"] <= fit["val_esr"]


def test_train_pvpitch_config_is_the_fit_alone(tmp_path):
    """configs/train/pvpitch.yaml as a user runs it (48 kHz, pedalboard's Rubber Band octave down):
    steps: 0 keeps the fit alone as best.pt, with its latency a whole number of hops, and on the
    validation tracks it is at least 2x closer to the effect than doing nothing by MR-STFT."""
    from fxdist.checkpoint import load_model
    from fxdist.data.stream import iter_tracks
    from fxdist.metrics import best_gain, mrstft_distance
    from fxdist.process import predict
    from tests.datasets import make_dataset

    shards = make_dataset(tmp_path / "data", effect="pitch", sample_rate=48000, tracks=4, seconds=2.0)
    proc = fxdist("train", "configs/train/pvpitch.yaml", "--shards", str(shards), "--out", str(tmp_path / "run"))
    result = json.loads(proc.stdout)
    fit, = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert fit["fit"] is True and result["step"] == 0 and "fit (pvpitch)" in proc.stderr
    model, _ = load_model(result["best_checkpoint"])
    assert model.latency == fit["values"]["latency"] and model.latency % 64 == 0, fit["values"]
    tracks = list(iter_tracks(shards, "validation"))
    assert tracks
    for name, clean, target in tracks:
        got = mrstft_distance(predict(model, clean), target, 48000)
        nothing = mrstft_distance(best_gain(clean, target) * clean, target, 48000)
        assert got < 0.5 * nothing, (name, got, nothing)  # measured: 0.73 vs 3.78
