"""Evaluation metrics against hand-computable cases."""

import json
import math

import numpy as np
import pytest

from fxdist import metrics as M
from fxdist.errors import DataError

SR = 16000


def sine(freq, seconds, sr=SR, amp=1.0):
    return amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)


@pytest.fixture(scope="module")
def pair():
    """A clean noise burst and a tanh distortion of it (1 s at 16 kHz)."""
    rng = np.random.default_rng(0)
    clean = 0.2 * rng.standard_normal(SR)
    return clean, np.tanh(6 * clean)


def test_esr_identical_and_gain_error():
    t = sine(440, 0.5)
    assert M.esr(t, t) == 0
    assert M.snr_db(t, t) == M.SNR_CAP_DB  # capped, not inf: stays valid JSON
    for g in (0.0, 0.5, 0.9, 1.3):
        assert M.esr(g * t, t) == pytest.approx((1 - g) ** 2, abs=1e-12)
        assert M.esr_pre_emphasis(g * t, t) == pytest.approx((1 - g) ** 2, abs=1e-12)


def test_pre_emphasis_weights_high_frequencies():
    """The same relative error costs more ESR_pre at 4 kHz than at 100 Hz when both are present."""
    low, high = sine(100, 0.5), 0.3 * sine(4000, 0.5)
    target = low + high
    err_low = M.esr_pre_emphasis(target - 0.1 * low, target)
    err_high = M.esr_pre_emphasis(target - 0.1 * high / 0.3, target)
    assert err_high > 10 * err_low
    assert M.pre_emphasis(np.array([1.0, 2.0, 4.0]), 0.5).tolist() == [1.5, 3.0]


def test_snr_of_added_noise_of_known_power():
    t = sine(440, 1.0)  # power 1/2
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(t.size)
    noise *= 0.05 / np.sqrt(np.mean(noise**2))  # power exactly 0.0025
    expected = 10 * math.log10(np.mean(t**2) / 0.0025)  # = 23.01 dB for an exact-period sine
    assert expected == pytest.approx(23.0103, abs=1e-3)
    assert M.snr_db(t + noise, t) == pytest.approx(expected, abs=1e-9)
    assert M.esr(t + noise, t) == pytest.approx(10 ** (-expected / 10), rel=1e-9)


def test_baseline_of_pure_gain_effect_is_zero(pair):
    clean, target = pair
    assert M.do_nothing_esr(clean, 0.5 * clean) == pytest.approx(0, abs=1e-12)
    assert M.do_nothing_esr(clean, -2.0 * clean) == pytest.approx(0, abs=1e-12)
    assert M.best_gain(clean, -2.0 * clean) == pytest.approx(-2.0)
    # and it is exactly the ESR of g* clean for a real effect
    g = M.best_gain(clean, target)
    assert M.do_nothing_esr(clean, target) == pytest.approx(M.esr(g * clean, target), rel=1e-9)
    # uncorrelated output: the baseline explains nothing
    other = np.random.default_rng(5).standard_normal(clean.size)
    assert M.do_nothing_esr(clean, other) == pytest.approx(1.0, abs=0.01)


def test_loudness_known_values():
    sr = 48000  # K-weighting coefficients are exact at 48 kHz
    full = sine(997, 3.0, sr)
    assert M.loudness_lufs(full, sr) == pytest.approx(-3.01, abs=0.01)
    assert M.loudness_lufs(0.1 * full, sr) == pytest.approx(-23.01, abs=0.01)
    # gating: 3 s of silence after 3 s of sine would lower the plain mean power by 3.01 dB;
    # the gates drop the silent blocks (only the few part-sine edge blocks still count)
    padded = np.concatenate([0.1 * full, np.zeros(3 * sr)])
    assert M.loudness_lufs(padded, sr) == pytest.approx(-23.01, abs=0.3)
    assert M.loudness_lufs(np.zeros(sr), sr) == M.LUFS_FLOOR
    # twice the amplitude is +6.02 LU
    assert M.loudness_diff_lu(0.2 * full, 0.1 * full, sr) == pytest.approx(6.02, abs=0.01)
    # shorter than one 400 ms block: still measured (ungated)
    assert M.loudness_lufs(0.1 * full[: sr // 10], sr) == pytest.approx(-23.01, abs=0.05)


def test_mrstft_zero_for_identical_and_grows_with_error(pair):
    clean, target = pair
    assert M.mrstft_distance(target, target, SR) == 0
    rng = np.random.default_rng(2)
    noise = rng.standard_normal(target.size)
    values = [M.mrstft_distance(target + s * noise, target, SR) for s in (0.001, 0.01, 0.1)]
    assert 0 < values[0] < values[1] < values[2]
    with pytest.raises(DataError, match="too short"):
        M.mrstft_distance(target[:100], target[:100], SR)


def test_log_mel_distance_reads_a_gain_in_db(pair):
    _, target = pair
    assert M.log_mel_distance(target, target, SR) == 0
    # -6.02 dB everywhere: every mel bin (above the floor) moves by 6.02 dB
    assert M.log_mel_distance(0.5 * target, target, SR) == pytest.approx(6.02, abs=0.05)


def test_closer_ratio(pair):
    clean, target = pair
    rng = np.random.default_rng(3)
    good = target + 0.01 * rng.standard_normal(target.size)
    for dist in ("esr", "mrstft"):
        assert M.closer_ratio(good, clean, target, dist, sr=SR) < 1
        assert M.closer_ratio(clean, clean, target, dist, sr=SR) > 1
    # for a callable distance the baseline is g* clean, so the best-gain clean scores exactly 1
    g = M.best_gain(clean, target)
    assert M.closer_ratio(g * clean, clean, target, lambda p, t: M.esr(p, t)) == pytest.approx(1.0)
    with pytest.raises(DataError, match="needs the sample rate"):
        M.closer_ratio(good, clean, target, "mrstft")


def test_evaluate_pair_keys_and_consistency(pair):
    clean, target = pair
    good = target + 0.003 * np.random.default_rng(4).standard_normal(target.size)
    m = M.evaluate_pair(clean, target, good, SR)
    assert tuple(m) == M.METRIC_NAMES
    assert m["models_effect"] is True
    assert m["esr_ratio"] == pytest.approx(m["esr"] / m["baseline_esr"])
    assert m["mrstft_ratio"] == pytest.approx(M.closer_ratio(good, clean, target, "mrstft", SR), rel=1e-6)
    assert m["snr_db"] == pytest.approx(-10 * math.log10(m["esr"]), rel=1e-9)
    assert abs(m["lufs_diff"]) < 0.1
    json.dumps(m, allow_nan=False)  # every value is JSON-safe
    bad = M.evaluate_pair(clean, target, clean, SR)
    assert bad["models_effect"] is False and bad["esr_ratio"] > 1


def test_bad_input_names_the_problem(pair):
    clean, target = pair
    with pytest.raises(DataError, match="16000 samples but target has 15999"):
        M.esr(clean, target[:-1])
    with pytest.raises(DataError, match="NaN"):
        M.esr(np.full(4, np.nan), np.ones(4))
    with pytest.raises(DataError, match="shape"):
        M.esr(np.ones((2, 4)), np.ones((2, 4)))
    assert M.esr(target[None, :], target) == 0  # (1, N) is accepted


def test_aggregate_weighted_means_and_derived_ratios():
    a = {"esr": 0.01, "baseline_esr": 0.2, "mrstft": 0.5, "baseline_mrstft": 1.0, "snr_db": 20.0, "models_effect": True}
    b = {"esr": 0.10, "baseline_esr": 0.2, "mrstft": 1.5, "baseline_mrstft": 1.0, "snr_db": 10.0, "models_effect": False}
    out = M.aggregate([a, b], weights=[3, 1])
    assert out["esr"] == pytest.approx((3 * 0.01 + 0.10) / 4)
    assert out["snr_db"] == pytest.approx(17.5)
    assert out["esr_ratio"] == pytest.approx(out["esr"] / 0.2)
    assert out["mrstft_ratio"] == pytest.approx(0.75)
    assert out["models_effect_fraction"] == pytest.approx(0.75)
    assert out["models_effect"] is False  # 0.0325 > 0.2 / 10
    assert out["n_pairs"] == 2
    assert M.aggregate([a])["esr"] == 0.01
    with pytest.raises(DataError, match="weights"):
        M.aggregate([a, b], weights=[1])
    with pytest.raises(DataError):
        M.aggregate([])
