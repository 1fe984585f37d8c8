"""Evaluation figures: each writes a real, sensible PNG atomically and shows its data."""

import numpy as np
import pytest
from matplotlib.image import imread
from scipy.signal import chirp, lfilter

from fxdist import plots as P
from fxdist.errors import DataError

SR = 8000


def sweep_through_tanh(drive):
    t = np.arange(SR) / SR
    clean = 0.8 * chirp(t, 60, t[-1], 2000, method="logarithmic")
    target = np.tanh(6 * clean) / np.tanh(6)
    pred = np.tanh(drive * clean) / np.tanh(drive)
    return clean, pred, target


def feedback_delay_ir(feedback):
    """Response of y[n] = x[n] + feedback * y[n - 100 ms] to a click."""
    a = np.zeros(int(0.1 * SR) + 1)
    a[0], a[-1] = 1.0, -feedback
    return lfilter([1.0], a, P.impulse_input(SR, 0.6))


def draw(kind, tmp_path, name, drive=4.0):
    clean, pred, target = sweep_through_tanh(drive)
    path = tmp_path / f"{name}.png"
    if kind == "spectrograms":
        return P.spectrograms(clean, pred, target, SR, path, "test")
    if kind == "waveforms":
        return P.waveforms(clean, pred, target, SR, path, span_s=(0.2, 0.05))
    if kind == "error_spectrum":
        return P.error_spectrum(pred, target, SR, path)
    if kind == "transfer_curve":
        return P.transfer_curve(clean, pred, target, path)
    if kind == "impulse_responses":
        return P.impulse_responses(feedback_delay_ir(0.6), feedback_delay_ir(drive / 10), SR, path)
    table = [{"model": "a", "esr_ratio": 0.1 * drive}, {"model": "b", "esr_ratio": 1.5}]
    return P.compare_bar(table, "esr_ratio", path)


KINDS = ["spectrograms", "waveforms", "error_spectrum", "transfer_curve", "impulse_responses", "compare_bar"]


@pytest.mark.parametrize("kind", KINDS)
def test_writes_a_sensible_png_atomically_and_shows_the_data(kind, tmp_path):
    first = draw(kind, tmp_path, "first")
    assert first == tmp_path / "first.png"
    image = imread(first)
    height, width = image.shape[:2]
    assert 300 <= height <= 1200 and 800 <= width <= 2000, image.shape
    assert image[..., :3].std() > 0.05  # not a blank canvas
    # different data, different picture; same data, same picture
    second = imread(draw(kind, tmp_path, "second", drive=2.0))
    again = imread(draw(kind, tmp_path, "again"))
    assert second.shape != image.shape or not np.array_equal(second, image)
    assert np.array_equal(again, image)
    # atomic: only the three finished files are left, no temp files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.png", "first.png", "second.png"]


def test_waveforms_default_span_and_zoom(tmp_path):
    clean, pred, target = sweep_through_tanh(4.0)
    assert imread(P.waveforms(clean, pred, target, SR, tmp_path / "w.png")).shape[1] > 800


def test_period_estimate_finds_a_sine_period():
    t = np.arange(SR // 4) / SR
    assert P._period_s(np.sin(2 * np.pi * 200 * t), SR) == pytest.approx(1 / 200, abs=1 / SR)
    assert P._period_s(np.zeros(1000), SR) is None


def test_bad_input_raises_data_error(tmp_path):
    clean, pred, target = sweep_through_tanh(4.0)
    with pytest.raises(DataError, match="differ in length"):
        P.spectrograms(clean, pred[:-1], target, SR, tmp_path / "x.png")
    with pytest.raises(DataError, match="outside"):
        P.waveforms(clean, pred, target, SR, tmp_path / "x.png", span_s=(5.0, 0.1))
    with pytest.raises(DataError, match="no row has metric"):
        P.compare_bar([{"model": "a", "esr": 1.0}], "mrstft", tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []
