"""evaluate, compare and start_abx end to end: metrics.json, figures, audio, report.html, CLI.

Hand-computable cases use an exact identity model (an LSTM with every weight zero and
its input skip: output = input) and an exact silent model (the same without the skip).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import soundfile as sf
import torch

from fxdist.checkpoint import Checkpoint, save_checkpoint
from fxdist.cli import main as cli_main
from fxdist.errors import CheckpointError, ModelError
from fxdist.evaluate import COMPARE_METRICS, best_checkpoint, compare, evaluate, load_data, run_model
from fxdist.metrics import METRIC_NAMES, evaluate_pair
from fxdist.models.registry import build_model, model_config_dict
from tests.datasets import make_dataset
from tests.evaluate.common import ENV, PNG, gain_pairs, zero_lstm


# ---------------------------------------------------------------- evaluate on shards


def test_evaluate_tiny_shards_writes_metrics_figures_audio_and_report(trained, tiny_shards, tmp_path):
    from fxdist.data.manifest import read_manifest

    out = tmp_path / "eval"
    report = evaluate(trained, tiny_shards, out, max_seconds=1.5)
    test_ids = read_manifest(tiny_shards).split("test").tracks
    doc = json.loads((out / "metrics.json").read_text())

    assert list(doc["tracks"]) == test_ids and len(test_ids) >= 1
    assert set(METRIC_NAMES) <= set(doc["overall"]) and doc["overall"]["n_pairs"] == len(test_ids)
    assert {"checkpoint", "family", "params", "receptive_field", "sample_rate", "best_val_esr"} <= set(doc["model"])
    assert doc["model"]["family"] == "lstm" and doc["model"]["sample_rate"] == 16000 and doc["model"]["params"] > 0
    assert doc["data"]["kind"] == "shards" and doc["data"]["effect_id"] == "distortion" and doc["data"]["split"] == "test"
    assert doc["verdict"] == report.verdict and doc["impulse_response"] is None  # distortion is not time-based

    for t in doc["tracks"].values():
        assert set(METRIC_NAMES) <= set(t) and t["samples"] == 24000
        assert set(t["plots"]) == {"spectrograms", "waveforms", "error_spectrum", "transfer_curve"}
        for rel in t["plots"].values():
            assert (out / rel).read_bytes()[:8] == PNG and (out / rel).stat().st_size > 10_000
        # the written audio is what was scored: recomputing the metrics from the files agrees
        audio = {k: sf.read(out / rel, dtype="float32") for k, rel in t["audio"].items()}
        assert set(audio) == {"clean", "effect", "model"} and all(sr == 16000 for _, sr in audio.values())
        assert sf.info(out / t["audio"]["model"]).subtype == "FLOAT"
        again = evaluate_pair(audio["clean"][0], audio["effect"][0], audio["model"][0], 16000)
        assert again["esr"] == pytest.approx(t["esr"], rel=1e-9)
        assert again["baseline_esr"] == pytest.approx(t["baseline_esr"], rel=1e-9)

    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 * len(test_ids)
    assert page.count("<audio") == 3 * len(test_ids)
    assert not re.search(r"<img[^>]+src=['\"](?!data:)", page)  # every image is inline
    for src in re.findall(r"<audio[^>]+src='([^']+)'", page):
        assert not src.startswith(("/", "http")) and (out / src).is_file()  # relative, inside the folder
    overall = doc["overall"]
    assert f"{overall['baseline_esr']:.3g}" in page and f"{overall['esr']:.3g}" in page
    assert "Doing nothing" in page and report.verdict.split(":")[0] in page


# ---------------------------------------------------------------- hand-computable cases


@pytest.mark.parametrize("layout", ["suffix", "subfolders"])
def test_identity_model_on_doubled_pairs_gives_esr_one_quarter(tmp_path, layout):
    """pred = clean, target = 2 clean: ESR = |2c - c|^2 / |2c|^2 = 1/4 (and 1 for target = c/2).

    The do-nothing baseline (clean at its best gain, here 2) is exact, so its ESR is 0.
    """
    ckpt = zero_lstm(tmp_path / "id.pt", 8000)
    report = evaluate(ckpt, gain_pairs(tmp_path / "pairs", layout=layout), tmp_path / "out", plots=False)
    assert list(report.tracks) == ["chord", "riff"]
    for m in [*report.tracks.values(), report.overall]:
        assert m["esr"] == pytest.approx(0.25, rel=1e-9)
        assert m["baseline_esr"] == pytest.approx(0.0, abs=1e-9)
        assert m["snr_db"] == pytest.approx(10 * np.log10(4), rel=1e-9)
        assert m["lufs_diff"] == pytest.approx(-20 * np.log10(2), abs=0.01)  # the model is 6 dB quieter
    assert report.tracks["riff"]["samples"] == 4000 and report.overall["seconds"] == pytest.approx(1.25)
    assert report.verdict_level == "gain-only" and not report.overall["models_effect"]
    assert report.plots == {} and (tmp_path / "out" / "riff" / "model.wav").is_file()


def test_time_based_effect_gets_impulse_response_of_effect_and_model(tmp_path):
    """Delay preset (half wet, 250 ms, feedback 0.35): a click of 0.5 gives 0.25 dry + echoes.

    The identity model answers 0.5 at the click and nothing after: its error is 0.25 at
    the click plus every echo, which is exactly the effect's own energy, so the ESR is 1.
    """
    shards = make_dataset(tmp_path / "data", effect="delay", sample_rate=8000, tracks=3, seconds=2.0)
    report = evaluate(zero_lstm(tmp_path / "id.pt", 8000), shards, tmp_path / "out", max_seconds=1.0)
    assert report.impulse_png == tmp_path / "out" / "impulse_response.png"
    assert report.impulse_png.read_bytes()[:8] == PNG
    doc = json.loads(report.metrics_json.read_text())
    assert doc["data"]["effect_family"] == "delay"
    assert doc["impulse_response"]["esr"] == pytest.approx(1.0, abs=1e-4)
    assert all("transfer_curve" not in t["plots"] for t in doc["tracks"].values())  # no level curve for echoes
    assert "the answer to a single click" in report.report_html.read_text()


def test_evaluate_judges_a_pitch_shifter_by_mrstft(tmp_path):
    """A pvpitch model against pairs rendered by a pvpitch of other output gains."""
    sr = 8000
    truth = build_model({"family": "pvpitch", "n_fft": 64, "hop": 8})
    model = build_model({"family": "pvpitch", "n_fft": 64, "hop": 8})
    with torch.no_grad():
        truth.log_gain.copy_(torch.linspace(0.0, -1.0, truth.cfg.bins))
        model.log_gain.copy_(torch.linspace(0.1, -0.9, model.cfg.bins))
    rng = np.random.default_rng(3)
    folder = tmp_path / "pairs"
    for name in ("a", "b"):
        clean = (0.3 * rng.standard_normal(sr)).astype(np.float32)
        with torch.no_grad():
            target = truth(torch.from_numpy(clean).view(1, 1, -1))[0].view(-1).numpy()
        folder.mkdir(exist_ok=True)
        sf.write(folder / f"{name}_clean.wav", clean, sr, subtype="FLOAT")
        sf.write(folder / f"{name}_processed.wav", target, sr, subtype="FLOAT")
    ckpt = tmp_path / "pv.pt"
    save_checkpoint(ckpt, Checkpoint(model_config_dict(model), model.state_dict(), sr, 1))
    report = evaluate(ckpt, folder, tmp_path / "eval", write_audio=False, plots=False)
    doc = json.loads(report.metrics_json.read_text())
    assert doc["judged_by"] == "mrstft" and report.verdict_level == "good", report.verdict
    assert report.overall["mrstft"] * 3 <= report.overall["baseline_mrstft"]
    assert "MR-STFT distance" in report.report_html.read_text()


# ---------------------------------------------------------------- bad input


def test_non_checkpoint_file_is_refused_with_its_name(tmp_path, capsys):
    pairs = gain_pairs(tmp_path / "pairs")
    bogus = tmp_path / "notes.pt"
    bogus.write_text("not a model")
    with pytest.raises(CheckpointError, match=r"notes\.pt: not an fxdist checkpoint"):
        evaluate(bogus, pairs, tmp_path / "out")
    assert cli_main(["evaluate", str(bogus), "--data", str(pairs), "--out", str(tmp_path / "out")]) == 2
    assert re.search(r"fxdist: error: .*notes\.pt: not an fxdist checkpoint", capsys.readouterr().err)


def test_model_that_outputs_nan_is_named(tmp_path):
    model = build_model({"family": "lstm", "hidden_size": 4})
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.head.bias.fill_(float("nan"))
    save_checkpoint(tmp_path / "nan.pt", Checkpoint(model_config_dict(model), model.state_dict(), 8000, 1))
    with pytest.raises(ModelError, match=r"nan\.pt: output for track chord holds NaN/Inf \(first at sample 0\)"):
        evaluate(tmp_path / "nan.pt", gain_pairs(tmp_path / "pairs"), tmp_path / "out")


# ---------------------------------------------------------------- compare


def test_compare_experiment_folder_ranks_models_by_esr(tmp_path, capsys):
    exp = tmp_path / "exp"
    zero_lstm(exp / "1-silent" / "best.pt", 8000, skip=False, best_val_esr=0.5)  # makes the folders
    zero_lstm(exp / "2-identity" / "best.pt", 8000, best_val_esr=0.75)
    pairs = gain_pairs(tmp_path / "pairs")
    result = compare(exp, pairs, tmp_path / "cmp")
    assert [r["model"] for r in result.rows] == ["2-identity", "1-silent"]
    assert [r["rank"] for r in result.rows] == [1, 2]
    assert result.rows[0]["esr"] == pytest.approx(0.25, rel=1e-9) and result.rows[1]["esr"] == pytest.approx(1.0)
    doc = json.loads(result.compare_json.read_text())
    assert [r["model"] for r in doc["rows"]] == ["2-identity", "1-silent"]
    assert set(result.plots) == set(COMPARE_METRICS)
    assert all(p.read_bytes()[:8] == PNG for p in result.plots.values())
    assert result.report_html.read_text().count("data:image/png;base64,") == len(COMPARE_METRICS)
    # the CLI prints the same ranking
    assert cli_main(["compare", str(exp / "1-silent" / "best.pt"), str(exp / "2-identity" / "best.pt"),
                     "--data", str(pairs), "--out", str(tmp_path / "cmp2")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "2-identity" in lines[1] and "1-silent" in lines[2]
    assert best_checkpoint(exp) == exp / "1-silent" / "best.pt"  # lowest stored validation ESR


# ---------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_evaluate_prints_metrics_beside_baseline_and_report_path(tmp_path):
    ckpt = zero_lstm(tmp_path / "id.pt", 8000)
    pairs = gain_pairs(tmp_path / "pairs")
    proc = subprocess.run([sys.executable, "-m", "fxdist", "evaluate", str(ckpt), "--data", str(pairs), "--no-plots"],
                          capture_output=True, text=True, env=ENV, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    report = tmp_path / "id-eval" / "report.html"  # default: beside the checkpoint
    assert f"report: {report}" in proc.stdout and report.is_file()
    esr_line = next(line for line in proc.stdout.splitlines() if line.strip().startswith("ESR "))
    assert esr_line.split()[1:3] == ["0.25", "0"]  # model, do-nothing


@pytest.mark.slow
def test_cli_abx_serves_until_the_session_is_complete(tmp_path):
    ckpt = zero_lstm(tmp_path / "id.pt", 8000)
    pairs = gain_pairs(tmp_path / "pairs")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fxdist", "abx", str(ckpt), "--data", str(pairs), "--trials", "4",
         "--out", str(tmp_path / "abx")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )
    try:
        line = proc.stdout.readline()
        url = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
        assert url, f"no URL in {line!r}"
        base = url.group(1)
        page = urllib.request.urlopen(base, timeout=10).read().decode()
        session_token = re.search(r'name="fxdist-session" content="([^"]+)"', page).group(1)
        for _ in range(4):
            state = json.loads(urllib.request.urlopen(base + "state", timeout=10).read())
            body = json.dumps({"token": state["token"], "choice": "A", "plays": {"X": 1}}).encode()
            req = urllib.request.Request(base + "answer", data=body, headers={"Content-Type": "application/json", "X-Fxdist-Token": session_token})
            urllib.request.urlopen(req, timeout=10).read()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    results = tmp_path / "abx" / "abx_results.json"
    assert f"results: {results}" in out and "attention checks right" in out
    doc = json.loads(results.read_text())
    assert doc["complete"] and doc["answered"] == 4 and doc["checkpoint"] == str(ckpt.resolve())


def test_run_model_streams_in_blocks_exactly(trained, tiny_shards):
    """Any block size gives the same output as one pass (the report's audio does not depend on it)."""
    clean = load_data(tiny_shards, max_seconds=0.5).tracks[0].clean
    from fxdist.checkpoint import load_model

    model, _ = load_model(trained)
    np.testing.assert_array_equal(run_model(model, clean, block=1000), run_model(model, clean, block=65536))
