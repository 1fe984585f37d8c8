"""The re-amp signal, and importing a recording of it: calibrated latency, polarity, drift, splits."""

from __future__ import annotations

import json

import numpy as np
import pedalboard as pb
import pytest
import soundfile as sf

from fxdist.audio import read_audio
from fxdist.cli import main
from fxdist.data.align import correct_drift
from fxdist.data.ingest import import_pair, read_splits
from fxdist.data.reamp import ReampConfig, read_sidecar, reamp_signal, write_reamp
from fxdist.data.shards import ShardConfig, write_shards
from fxdist.dsp import esr
from fxdist.errors import DataError

CFG = ReampConfig(seconds=8)


def test_signal_layout_is_deterministic_and_described(tmp_path):
    a, b = reamp_signal(CFG), reamp_signal(CFG)
    np.testing.assert_array_equal(a.audio, b.audio)
    kinds = [s.kind for s in a.sections]
    assert kinds == ["calibration", "train", "validation", "calibration"]
    assert all(s.start < s.end for s in a.sections) and a.sections[-1].end == a.audio.size
    for name, positions in a.blips.items():
        section = next(s for s in a.sections if s.name == name)
        assert all(section.start < p < section.end for p in positions)
        assert all(a.audio[p] > 0.4 for p in positions)
        before = a.audio[positions[0] - CFG.sample_rate // 2 : positions[0]]
        assert not before.any()  # silence before the first blip: the noise floor is read there
    assert np.max(np.abs(a.audio)) <= 1.0


def test_write_reamp_writes_a_sidecar_that_names_the_samples(tmp_path):
    out = tmp_path / "reamp.wav"
    write_reamp(out, CFG)
    audio, sr = read_audio(out)
    meta = read_sidecar(out, audio[0])
    assert meta["sample_rate"] == sr == 48000 and meta["samples"] == audio.shape[1]
    assert sf.info(str(out)).subtype == "PCM_24"
    with pytest.raises(DataError, match="exists .*pass --overwrite"):
        write_reamp(out, CFG)
    with pytest.raises(DataError, match=r"name the file \.wav"):
        write_reamp(tmp_path / "x.flac", CFG)
    edited = tmp_path / "edited.wav"
    sf.write(str(edited), audio[0, :-100], sr, subtype="PCM_24")
    (tmp_path / "edited.json").write_text((tmp_path / "reamp.json").read_text())
    with pytest.raises(DataError, match="describes another signal .*resampled or edited"):
        read_sidecar(edited, read_audio(edited)[0][0])


def _record(tmp_path, effect, latency=0, ppm=0.0):
    clean = tmp_path / "pairs" / "clean" / "take.wav"
    clean.parent.mkdir(parents=True)
    signal = write_reamp(clean, CFG)
    y = effect(signal.audio)
    y = np.concatenate([np.zeros(latency, np.float32), y])
    if ppm:
        y = correct_drift(y, -ppm)  # the recorder's clock runs ppm fast
    processed = tmp_path / "pairs" / "processed" / "take.wav"
    processed.parent.mkdir(parents=True)
    sf.write(str(processed), np.asarray(y, np.float32), 48000, subtype="FLOAT")
    return clean, processed


def test_import_of_a_recording_measures_latency_polarity_and_drift_and_keeps_its_sections(tmp_path):
    amp = lambda x: -pb.Pedalboard([pb.Distortion(25), pb.LowpassFilter(3000)])(x, 48000)  # noqa: E731
    clean, processed = _record(tmp_path, amp, latency=37, ppm=20.0)
    reports = import_pair(clean, processed, tmp_path / "root", effect_id="amp")
    assert [r.track_id for r in reports] == ["pair-take-train", "pair-take-validation"]
    for r in reports:
        assert r.method == "calibration" and r.latency_samples == 37 and r.polarity == -1
        assert r.drift_corrected and r.drift_ppm == pytest.approx(20.0, abs=1.0)
    assert read_splits(tmp_path / "root") == {"pair-take-train": "train", "pair-take-validation": "validation"}
    x, _ = read_audio(tmp_path / "root" / "clean" / "pair-take-train.wav")
    y, _ = read_audio(tmp_path / "root" / "processed" / "amp" / "pair-take-train.wav")
    want = amp(x[0])
    assert esr(y[0], want) < 1e-4  # sample-aligned after latency and drift removal (resampling leaves a trace)
    m = write_shards(tmp_path / "root", tmp_path / "shards", "amp", ShardConfig())
    assert m.splits["train"].tracks == ["pair-take-train"]
    assert m.splits["validation"].tracks == ["pair-take-validation"]


def test_a_drift_beyond_the_limit_is_refused_with_the_numbers(tmp_path):
    clean, processed = _record(tmp_path, lambda x: x, ppm=500.0)
    with pytest.raises(DataError, match=r"clock drift of \+5\d\d\.\d ppm, beyond 200.0 ppm.*--no-drift-check"):
        import_pair(clean, processed, tmp_path / "root", effect_id="x")
    assert not (tmp_path / "root").exists()


def test_a_recording_of_something_else_is_refused(tmp_path):
    clean, processed = _record(tmp_path, lambda x: 0.1 * np.random.default_rng(0).standard_normal(x.size).astype(np.float32))
    with pytest.raises(DataError, match="no response to the calibration blips at the start"):
        import_pair(clean, processed, tmp_path / "root", effect_id="x")


def test_cli_reamp_then_import_with_an_explicit_split(tmp_path, capsys):
    out = tmp_path / "pairs" / "clean" / "take.wav"
    assert main(["data", "reamp", str(out), "--seconds", "8"]) == 0
    assert "calibration-start" in capsys.readouterr().out
    signal, sr = read_audio(out)
    (tmp_path / "pairs" / "processed").mkdir()
    sf.write(str(tmp_path / "pairs" / "processed" / "take.wav"), np.tanh(3 * signal[0]), sr, subtype="FLOAT")
    assert main(["data", "import", str(tmp_path / "pairs"), str(tmp_path / "root"), "--effect-id", "drive",
                 "--split", "test"]) == 0
    printed = capsys.readouterr().out
    assert "pair-take-train: latency 0 samples (0.00 ms) from the calibration blips, polarity normal" in printed
    assert json.loads((tmp_path / "root" / "splits.json").read_text()) == {
        "pair-take-train": "test", "pair-take-validation": "test"}


def test_swapped_files_are_named_as_such(tmp_path):
    rng = np.random.default_rng(4)
    x = np.convolve(rng.standard_normal(48000), np.ones(8) / 8, mode="same").astype(np.float32) * 0.3
    pairs = tmp_path / "pairs"
    (pairs / "clean").mkdir(parents=True)
    (pairs / "processed").mkdir()
    sf.write(str(pairs / "clean" / "a.wav"), np.concatenate([np.zeros(300, np.float32), x]), 48000)  # the recording
    sf.write(str(pairs / "processed" / "a.wav"), np.concatenate([x, np.zeros(300, np.float32)]), 48000)
    with pytest.raises(DataError, match=r"leads the clean one by 300 samples .*files swapped\?"):
        import_pair(pairs / "clean" / "a.wav", pairs / "processed" / "a.wav", tmp_path / "root")
