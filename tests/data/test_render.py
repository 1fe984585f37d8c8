"""Rendering processed targets: outputs, resumability, config guard, silence, parallel == serial."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from fxdist.audio import read_audio, write_audio
from fxdist.data.render import EFFECT_FILE, RenderReport, render
from fxdist.effects import Chain, load_effect
from fxdist.errors import DataError, EffectError

SR = 16000
TRACKS = ("synth-s0-0000", "synth-s0-0001", "synth-s0-0002")


@pytest.fixture
def clean_dir(tmp_path):
    """Three 0.5 s mono tracks: decaying harmonic notes of different pitch and level."""
    folder = tmp_path / "clean"
    t = np.arange(SR // 2) / SR
    for i, track in enumerate(TRACKS):
        f0, amp = 110 * (i + 1), 0.8 / (i + 1)
        note = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) * np.exp(-t / 0.2)
        write_audio(folder / f"{track}.wav", (amp * note / 2)[None, :], SR)
    return folder


def outputs(folder):
    return sorted(p.name for p in folder.glob("*.wav"))


def test_render_writes_effect_output_for_every_track(clean_dir, tmp_path):
    out = tmp_path / "processed" / "distortion"
    report = render(clean_dir, "distortion", out, workers=1, progress=False)
    assert isinstance(report, RenderReport)
    assert (report.rendered, report.skipped) == (3, 0)
    assert report.audio_seconds == pytest.approx(1.5)
    assert report.throughput > 0 and "rendered 3" in str(report)
    assert outputs(out) == [f"{t}.wav" for t in TRACKS]
    chain = load_effect("distortion")
    for track in TRACKS:
        assert sf.info(str(out / f"{track}.wav")).subtype == "FLOAT"
        x, sr = read_audio(clean_dir / f"{track}.wav")
        y, sr_out = read_audio(out / f"{track}.wav")
        assert sr_out == sr == SR and y.shape == x.shape
        assert np.array_equal(y, chain(x, sr))
    assert yaml.safe_load((out / EFFECT_FILE).read_text()) == chain.to_dict()


def test_render_is_resumable(clean_dir, tmp_path):
    out = tmp_path / "fuzz"
    render(clean_dir, "fuzz", out, workers=1, progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")}

    again = render(clean_dir, "fuzz", out, workers=1, progress=False)
    assert (again.rendered, again.skipped, again.audio_seconds) == (0, 3, 0.0)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")} == stamps

    (out / f"{TRACKS[1]}.wav").unlink()
    third = render(clean_dir, "fuzz", out, workers=1, progress=False)
    assert (third.rendered, third.skipped) == (1, 2)
    now = {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")}
    assert [n for n in now if now[n] != stamps.get(n)] == [f"{TRACKS[1]}.wav"]

    forced = render(clean_dir, "fuzz", out, workers=1, overwrite=True, progress=False)
    assert (forced.rendered, forced.skipped) == (3, 0)


def test_refuses_to_mix_effect_configs(clean_dir, tmp_path):
    out = tmp_path / "fx"
    render(clean_dir, "distortion", out, workers=1, progress=False)
    with pytest.raises(EffectError, match="distortion") as err:
        render(clean_dir, "fuzz", out, workers=1, progress=False)
    assert "fuzz" in str(err.value) and str(out) in str(err.value)

    tweaked = load_effect("distortion").to_dict()
    tweaked["chain"][1]["params"]["drive_db"] = 12
    with pytest.raises(EffectError, match=r"drive_db: 30 there vs 12 now"):
        render(clean_dir, Chain.from_config(tweaked), out, workers=1, progress=False)

    tweaked = load_effect("distortion").to_dict()
    tweaked["description"] = "reworded"
    assert render(clean_dir, Chain.from_config(tweaked), out, workers=1, progress=False).skipped == 3


def test_silent_target_is_refused(clean_dir, tmp_path):
    mute = {"name": "mute", "chain": [{"builtin": "Gain", "params": {"gain_db": -200}}]}
    with pytest.raises(DataError, match=r"effect mute turned this track into silence .*check the effect's settings") as err:
        render(clean_dir, Chain.from_config(mute), tmp_path / "mute", workers=1, progress=False)
    named = re.search(r"^(\S+\.wav): ", str(err.value)).group(1)
    assert Path(named).is_file() and TRACKS[0] in named  # the clean track, a file that exists
    assert outputs(tmp_path / "mute") == []


def test_silent_clean_track_is_named_as_the_clean_track(clean_dir, tmp_path):
    write_audio(clean_dir / "quiet.wav", np.zeros((1, 4000), np.float32), 16000)
    with pytest.raises(DataError, match=r"quiet.wav: audio is silent .*a silent clean track gives the effect nothing"):
        render(clean_dir, Chain.from_config({"name": "g", "chain": [{"builtin": "Gain", "params": {"gain_db": 3}}]}),
               tmp_path / "g", workers=1, progress=False)


def test_non_finite_output_is_refused(clean_dir, tmp_path):
    blow_up = {"name": "blow-up", "chain": [{"builtin": "Gain", "params": {"gain_db": 900}}]}
    with pytest.raises(DataError, match="Inf|NaN") as err:
        render(clean_dir, Chain.from_config(blow_up), tmp_path / "inf", workers=1, progress=False)
    assert TRACKS[0] in str(err.value)


def test_parallel_render_equals_serial_bit_exactly(clean_dir, tmp_path):
    stateful = {
        "name": "stateful",
        "chain": [
            {"builtin": "Chorus", "params": {"rate_hz": 2.0, "depth": 0.5, "mix": 0.5}},
            {"cabinet_ir": {"seed": 5}},
            {"builtin": "Reverb", "params": {"room_size": 0.8}},
        ],
    }
    serial = render(clean_dir, Chain.from_config(stateful), tmp_path / "serial", workers=1, progress=False)
    parallel = render(clean_dir, Chain.from_config(stateful), tmp_path / "parallel", workers=2, progress=False)
    assert serial.rendered == parallel.rendered == 3
    for track in TRACKS:
        assert (tmp_path / "serial" / f"{track}.wav").read_bytes() == (tmp_path / "parallel" / f"{track}.wav").read_bytes()


def test_parallel_error_reaches_caller(clean_dir, tmp_path):
    mute = {"name": "mute", "chain": [{"builtin": "Gain", "params": {"gain_db": -200}}]}
    with pytest.raises(DataError, match="turned this track into silence"):
        render(clean_dir, Chain.from_config(mute), tmp_path / "mute", workers=2, progress=False)


def test_input_folder_problems(tmp_path):
    with pytest.raises(DataError, match="not found"):
        render(tmp_path / "nope", "distortion", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".synth-s0-0000.wav.x.tmp.wav").write_bytes(b"partial")  # a temp file is not a track
    with pytest.raises(DataError, match="no .wav files"):
        render(tmp_path / "empty", "distortion", tmp_path / "out", progress=False)


def test_unreadable_clean_track_is_named(clean_dir, tmp_path):
    (clean_dir / "broken.wav").write_bytes(b"RIFF not really")
    with pytest.raises(DataError, match="broken.wav"):
        render(clean_dir, "distortion", tmp_path / "out", workers=1, progress=False)
