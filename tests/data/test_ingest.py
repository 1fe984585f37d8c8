"""Ingesting a music folder and importing recorded (re-amped) pairs with latency alignment."""

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import firwin, lfilter, resample_poly, sosfiltfilt, butter

from fxdist.data.generate import GenerateConfig, generate_track
from fxdist.data.align import find_latency
from fxdist.data.ingest import (
    find_pairs,
    import_pair,
    import_pairs,
    ingest_folder,
    sanitize_stem,
)
from fxdist.errors import DataError

SR = 8000
LAG = 137


def _tone(n, sr, freq=220.0, amp=0.5):
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


def _write(path, audio, sr, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, sr, **kw)
    return path


def _mp3_writable():
    return "MP3" in sf.available_formats()


# ---------------------------------------------------------------------------- ingest_folder


def test_ingest_formats_rates_stereo_and_name_clashes(tmp_path):
    src, root = tmp_path / "src", tmp_path / "data"
    mono = _tone(SR, SR)
    stereo = np.stack([_tone(SR, SR, 330), _tone(SR, SR, 440, 0.2)], axis=1)
    _write(src / "a.wav", mono, SR, subtype="FLOAT")
    _write(src / "b stereo.flac", stereo, SR)
    _write(src / "c.ogg", _tone(22050, 22050), 22050)
    _write(src / "d.aiff", mono, SR)
    _write(src / "sub" / "a.wav", mono * 0.5, SR, subtype="FLOAT")  # same stem in a subfolder
    _write(src / ".hidden.wav", mono, SR)
    (src / "notes.txt").write_text("not audio")
    if _mp3_writable():
        _write(src / "e.mp3", _tone(SR, SR), SR, format="MP3", subtype="MPEG_LAYER_III")

    result = ingest_folder(src, root, sample_rate=SR)
    names = sorted(p.name for p in result.outputs)
    assert not result.skipped
    assert "music-b_stereo.wav" in names and "music-c.wav" in names and "music-d.wav" in names
    clashes = [n for n in names if n.startswith("music-a-")]
    assert len(clashes) == 2 and "music-a.wav" not in names  # both clashing stems get a path hash
    assert ("music-e.wav" in names) == _mp3_writable()
    assert sorted(p.name for p in (root / "clean").iterdir()) == names  # nothing else (no temp files)

    for out in result.outputs:
        info = sf.info(out)
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "FLOAT")
    by_source = {s.relative_to(src).as_posix(): o for s, o in zip(result.sources, result.outputs)}
    np.testing.assert_array_equal(sf.read(by_source["a.wav"], dtype="float32")[0], mono)  # same rate: bit-exact
    np.testing.assert_array_equal(sf.read(by_source["sub/a.wav"], dtype="float32")[0], mono * 0.5)
    flac_in = sf.read(src / "b stereo.flac", dtype="float32")[0]
    np.testing.assert_allclose(sf.read(by_source["b stereo.flac"], dtype="float32")[0], flac_in.mean(axis=1), atol=1e-7)
    resampled = sf.read(by_source["c.ogg"], dtype="float32")[0]
    assert len(resampled) == SR  # 1 s at 22050 -> 1 s at 8000

    again = ingest_folder(src, root, sample_rate=SR)  # deterministic names, existing outputs kept
    assert sorted(p.name for p in again.outputs) == names


def test_outputs_inside_the_source_folder_are_not_ingested_again(tmp_path):
    src = tmp_path / "src"
    _write(src / "a.wav", _tone(SR, SR), SR, subtype="FLOAT")
    first = ingest_folder(src, src / "dataset", sample_rate=SR)
    second = ingest_folder(src, src / "dataset", sample_rate=SR, overwrite=True)
    assert first.outputs == second.outputs == [src / "dataset" / "clean" / "music-a.wav"]


def test_ingest_stereo_refused_without_downmix(tmp_path):
    _write(tmp_path / "src" / "wide.wav", np.zeros((100, 2), np.float32) + 0.1, SR)
    with pytest.raises(DataError, match="wide.wav: expected mono audio, got 2 channels"):
        ingest_folder(tmp_path / "src", tmp_path / "data", sample_rate=SR, downmix=False)


def _bad_files(folder):
    nan = _tone(SR, SR)
    nan[100] = np.nan
    _write(folder / "nan.wav", nan, SR, subtype="FLOAT")
    _write(folder / "silent.wav", np.zeros(SR, np.float32), SR, subtype="FLOAT")
    (folder / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    return {"nan.wav": "NaN", "silent.wav": "silent", "corrupt.wav": "cannot decode"}


@pytest.mark.parametrize("name", ["nan.wav", "silent.wav", "corrupt.wav"])
def test_each_bad_file_raises_data_error_naming_it(tmp_path, name):
    everything = tmp_path / "all"
    expected = _bad_files(everything)
    src = tmp_path / "src"
    src.mkdir()
    (src / name).write_bytes((everything / name).read_bytes())
    with pytest.raises(DataError, match=f"{name}: .*{expected[name]}"):
        ingest_folder(src, tmp_path / "data", sample_rate=SR)
    assert not list((tmp_path / "data").rglob("*.wav*"))  # nothing half-written


def test_skip_bad_reports_reasons_and_keeps_good_files(tmp_path):
    src = tmp_path / "src"
    expected = _bad_files(src)
    _write(src / "good.wav", _tone(SR, SR), SR, subtype="FLOAT")
    result = ingest_folder(src, tmp_path / "data", sample_rate=SR, skip_bad=True)
    assert [p.name for p in result.outputs] == ["music-good.wav"]
    reasons = {s.path.name: s.reason for s in result.skipped}
    assert set(reasons) == set(expected)
    for name, words in expected.items():
        assert name in reasons[name] and words in reasons[name]
    assert [p.name for p in (tmp_path / "data" / "clean").iterdir()] == ["music-good.wav"]


def test_empty_or_missing_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no audio files found"):
        ingest_folder(tmp_path / "empty", tmp_path / "data")
    with pytest.raises(DataError, match="nope: not a folder"):
        ingest_folder(tmp_path / "nope", tmp_path / "data")


def test_sanitize_stem():
    assert sanitize_stem("My Song (live)!") == "My_Song_live"
    assert sanitize_stem("..") == "track"
    assert sanitize_stem("über-take.2") == "ber-take.2"


# ---------------------------------------------------------------------------- latency


@pytest.fixture(scope="module")
def clean():
    """4 s of synthetic guitar-range material at 8 kHz, float64 (N,)."""
    cfg = GenerateConfig(seed=7, sample_rate=SR, segments_per_track=4, segment_seconds=1.0)
    return generate_track(cfg, 0).astype(np.float64)


def _delayed(x, lag, tail=0):
    return np.concatenate([np.zeros(lag), x, np.zeros(tail)])


_LOWPASS = butter(4, 1000, fs=SR, output="sos")
_FIR = firwin(41, 1500, fs=SR)  # linear phase: delay (41 - 1) / 2 = 20 samples


@pytest.mark.parametrize(
    "effect,extra",
    [
        (lambda x: np.tanh(8 * x), 0),
        (lambda x: np.clip(20 * x, -0.5, 0.5), 0),  # hard-clipping fuzz
        (lambda x: sosfiltfilt(_LOWPASS, x), 0),  # zero-phase low-pass
        (lambda x: lfilter(_FIR, 1.0, x), 20),  # linear-phase low-pass adds its own delay
        (lambda x: -np.tanh(3 * x), 0),  # polarity-inverting rig
    ],
    ids=["tanh", "hardclip", "lowpass", "fir", "inverted"],
)
def test_find_latency_is_exact_through_nonlinear_and_filtering_effects(clean, effect, extra):
    est = find_latency(clean, _delayed(effect(clean), LAG), max_lag=800, span=8000)
    assert est.lag == LAG + extra
    assert abs(est.correlation) > 0.7 and not est.at_edge
    assert abs(est.subsample_lag - est.lag) < 0.5


def test_find_latency_negative_lag_and_edge(clean):
    est = find_latency(clean, clean[50:], max_lag=100, span=4000)
    assert est.lag == -50 and est.correlation > 0.99  # the first 50 samples have no partner
    far = find_latency(clean, _delayed(clean, 300), max_lag=400, span=4000, offset=8000)
    assert far.lag == 300 and far.offset == 8000 and not far.at_edge


# ---------------------------------------------------------------------------- import_pair


def _pair(tmp_path, clean, processed, sr=SR, sr_p=None, name="take"):
    c = _write(tmp_path / "in" / f"{name}_clean.wav", clean.astype(np.float32), sr, subtype="FLOAT")
    p = _write(tmp_path / "in" / f"{name}_processed.wav", processed.astype(np.float32), sr_p or sr, subtype="FLOAT")
    return c, p


def test_import_pair_aligns_sample_exactly(tmp_path, clean):
    wet = np.tanh(6 * clean).astype(np.float32)
    c, p = _pair(tmp_path, clean, _delayed(wet, LAG, tail=200))
    [report] = import_pair(c, p, tmp_path / "data", effect_id="fuzz")
    assert report.track_id == "pair-take"
    assert report.latency_samples == LAG and report.latency_end_samples == LAG
    assert report.latency_ms == pytest.approx(1000 * LAG / SR)
    assert report.length == len(clean) and report.sample_rate == SR
    assert report.clean_out == tmp_path / "data" / "clean" / "pair-take.wav"
    assert report.processed_out == tmp_path / "data" / "processed" / "fuzz" / "pair-take.wav"
    out_clean = sf.read(report.clean_out, dtype="float32")[0]
    out_wet = sf.read(report.processed_out, dtype="float32")[0]
    np.testing.assert_array_equal(out_clean, clean.astype(np.float32))
    np.testing.assert_array_equal(out_wet, wet)


def test_import_pair_recording_cut_at_clean_length_and_resampled(tmp_path, clean):
    wet = sosfiltfilt(_LOWPASS, clean)
    c, p = _pair(tmp_path, clean, _delayed(wet, LAG)[: len(clean)])  # recorder stopped with the playback
    [report] = import_pair(c, p, tmp_path / "data", sample_rate=16000)
    assert report.latency_samples == LAG and report.sample_rate == 16000
    assert report.length == 2 * (len(clean) - LAG)
    assert sf.info(report.clean_out).samplerate == 16000
    assert sf.info(report.processed_out).frames == report.length
    assert report.processed_out.parent.name == "imported"


def test_import_refuses_rate_mismatch(tmp_path, clean):
    c, p = _pair(tmp_path, clean, _delayed(clean, LAG), sr_p=16000)
    with pytest.raises(DataError, match=r"take_clean.wav: sample rate 8000 Hz but .*take_processed.wav has 16000 Hz"):
        import_pair(c, p, tmp_path / "data")


def test_import_refuses_length_mismatch(tmp_path, clean):
    c, p = _pair(tmp_path, clean, _delayed(clean, LAG, tail=SR))  # 1 s too long
    with pytest.raises(DataError, match=r"take_clean.wav / .*take_processed.wav: lengths 32000 and 40137 samples disagree by 8000"):
        import_pair(c, p, tmp_path / "data")


@pytest.mark.parametrize("lag", [1200, 2400])  # 150 ms, and 300 ms: beyond twice the max
def test_import_refuses_latency_beyond_max(tmp_path, clean, lag):
    c, p = _pair(tmp_path, clean, _delayed(np.tanh(4 * clean), lag))
    with pytest.raises(DataError, match=rf"latency {lag} samples \({lag / 8:.1f} ms\) exceeds max 100.0 ms"):
        import_pair(c, p, tmp_path / "data")


def test_import_refuses_clock_drift(tmp_path, clean):
    drifted = resample_poly(clean, 2001, 2000)  # playback and recording clocks 500 ppm apart
    c, p = _pair(tmp_path, clean, _delayed(drifted, LAG)[: len(clean) + LAG])
    with pytest.raises(DataError, match=r"latency 1[34]\d samples near the start .* but 15\d near the end .*clock drift of "
                                         r"\+[45]\d\d\.\d ppm, beyond 200.0 ppm.*--no-drift-check"):
        import_pair(c, p, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_import_measures_and_corrects_a_small_drift_without_calibration(tmp_path, clean):
    from fxdist.data.align import correct_drift

    long = np.concatenate([clean] * 8)  # 32 s: 20 ppm is 5 samples over it
    drifted = correct_drift(np.tanh(3 * long), -20.0)
    c, p = _pair(tmp_path, long, _delayed(drifted, LAG)[: len(long) + LAG])
    [r] = import_pair(c, p, tmp_path / "data")
    assert r.method == "correlation" and r.drift_corrected and r.latency_samples == LAG
    assert r.drift_ppm == pytest.approx(20.0, abs=5.0)


def test_import_refuses_unrelated_and_silent_targets(tmp_path, clean):
    noise = np.random.default_rng(1).standard_normal(len(clean)) * 0.1
    c, p = _pair(tmp_path, clean, noise)
    with pytest.raises(DataError, match=r"does not line up with the clean file anywhere: .*correlation 0\.0\d.*Unrelated audio"):
        import_pair(c, p, tmp_path / "data")
    assert not (tmp_path / "data").exists()
    c, p = _pair(tmp_path, clean, np.zeros(len(clean)), name="quiet")
    with pytest.raises(DataError, match="quiet_processed.wav: audio is silent"):
        import_pair(c, p, tmp_path / "data")


def test_import_pairs_from_folder_conventions(tmp_path, clean):
    a, b = clean[: 2 * SR], clean[2 * SR :]
    _pair(tmp_path / "flat", a, _delayed(np.tanh(3 * a), LAG), name="a")
    _pair(tmp_path / "flat", b, _delayed(np.tanh(3 * b), 40), name="b")
    reports = import_pairs(tmp_path / "flat" / "in", tmp_path / "data", effect_id="dist")
    assert [(r.track_id, r.latency_samples) for r in reports] == [("pair-a", LAG), ("pair-b", 40)]

    split = tmp_path / "split"
    _write(split / "clean" / "x.wav", a.astype(np.float32), SR, subtype="FLOAT")
    _write(split / "processed" / "x.wav", _delayed(a, 10).astype(np.float32), SR, subtype="FLOAT")
    assert find_pairs(split) == [(split / "clean" / "x.wav", split / "processed" / "x.wav")]
    assert import_pairs(split, tmp_path / "data")[0].latency_samples == 10


def test_import_pairs_unmatched_file_is_named(tmp_path, clean):
    c, p = _pair(tmp_path, clean[:SR], clean[:SR], name="ok")
    _write(c.parent / "lonely_clean.wav", clean[:SR].astype(np.float32), SR)
    with pytest.raises(DataError, match="lonely_clean.wav: no matching processed file"):
        import_pairs(c.parent, tmp_path / "data")
    (c.parent / "lonely_clean.wav").unlink()
    _write(c.parent / "stray.wav", clean[:SR].astype(np.float32), SR)
    with pytest.raises(DataError, match="stray.wav: not named <name>_clean or <name>_processed"):
        import_pairs(c.parent, tmp_path / "data")


def test_periodic_content_is_not_taken_for_clock_drift(tmp_path):
    """Generated sines and chirps through a distortion correlate at several lags near the end;
    the start's lag lines the end up about as well as the end's own peak, so it is no drift."""
    from tests.datasets import recorded_pairs

    pairs = recorded_pairs(tmp_path)  # take2 was once refused as +3230 ppm of drift
    reports = import_pairs(pairs, tmp_path / "root", effect_id="dist")
    assert [r.latency_samples for r in reports] == [0, 0, 0]
    assert not any(r.drift_corrected for r in reports)
