"""The do-nothing baseline: the clean input at its best gain, its ESR and its zero handling."""

from __future__ import annotations

import numpy as np
import pytest

from fxdist.dsp import best_gain, do_nothing_esr, do_nothing_esr_from_sums, esr
from fxdist.errors import DataError


def tone(n: int = 8000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal(n)).astype(np.float32)


def test_a_scaled_copy_is_matched_by_doing_nothing():
    c = tone()
    for g in (0.3, -2.0, 1.0):
        assert do_nothing_esr(c, g * c) == 0.0  # clamped at 0, never a rounding -1e-17
    assert do_nothing_esr(c[None, :], (0.5 * c)[None, :]) == 0.0  # (1, N) is mono too


def test_an_uncorrelated_output_is_not_explained_at_all():
    c = tone()
    assert do_nothing_esr(c, tone(seed=5)) == pytest.approx(1.0, abs=0.05)
    other = tone(seed=7).astype(np.float64)
    orth = other - np.dot(other, c) / np.dot(c, c) * c  # exactly orthogonal to c
    assert do_nothing_esr(c, orth) == pytest.approx(1.0, abs=1e-9)


def test_it_equals_the_esr_of_the_clean_input_at_its_best_gain():
    c = tone().astype(np.float64)
    t = np.tanh(4 * c) + 0.1 * c
    assert do_nothing_esr(c, t) == pytest.approx(esr(best_gain(c, t) * c, t), rel=1e-9)


def test_zero_handling():
    c = tone()
    silent = np.zeros_like(c)
    assert do_nothing_esr(c, silent) == 0.0  # g* = 0 reproduces a silent target exactly
    assert do_nothing_esr(silent, c) == 1.0  # doing nothing is silence: as wrong as predicting nothing
    assert do_nothing_esr(silent, silent) == 0.0
    assert do_nothing_esr_from_sums(0.0, 0.0, 0.0) == 0.0
    assert do_nothing_esr_from_sums(0.0, 2.0, 0.0) == 1.0


def test_the_sums_form_equals_the_array_form_over_tracks():
    """Validation pools tracks by summing <c, c>, <t, t>, <c, t>: the same as one long track."""
    tracks = [(tone(3000, s), np.tanh(3 * tone(3000, s)) + 0.01 * tone(3000, s + 9)) for s in range(3)]
    cc = sum(float(np.dot(c.astype(np.float64), c)) for c, _ in tracks)
    tt = sum(float(np.dot(t.astype(np.float64), t)) for _, t in tracks)
    ct = sum(float(np.dot(c.astype(np.float64), t)) for c, t in tracks)
    whole = do_nothing_esr(np.concatenate([c for c, _ in tracks]), np.concatenate([t for _, t in tracks]))
    assert do_nothing_esr_from_sums(cc, tt, ct) == pytest.approx(whole, rel=1e-12)
    c, t = (a.astype(np.float64) for a in tracks[0])
    one = do_nothing_esr_from_sums(float(c @ c), float(t @ t), float(c @ t))
    assert one == pytest.approx(do_nothing_esr(c, t), rel=1e-12)


def test_mismatched_lengths_are_refused_with_both_counts():
    c = tone()
    with pytest.raises(DataError, match="clean has 8000 samples but target has 7999"):
        do_nothing_esr(c, c[:-1])
