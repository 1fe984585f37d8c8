"""Excerpts, sessions and an all-hearing listener for the ABX tests."""

from __future__ import annotations

import numpy as np

from fxdist import abx

SR = 8000


def triples(n=3, seconds=1.0):
    """n excerpts: clean sines, a tanh 'effect', a close 'model'."""
    t = np.arange(int(seconds * SR)) / SR
    out = []
    for i in range(n):
        clean = 0.5 * np.sin(2 * np.pi * (150 + 50 * i) * t)
        out.append((clean, np.tanh(4 * clean), np.tanh(3.8 * clean)))
    return out


def make_session(tmp_path, n_trials=6, control_fraction=1 / 3, seed=1):
    cfg = abx.AbxConfig(n_trials=n_trials, control_fraction=control_fraction, seed=seed, excerpt_s=1.0)
    return abx.AbxSession.create(triples(), SR, tmp_path / "abx", cfg)


def oracle(trial, model_says_effect=True):
    """A listener who hears everything: right on controls, model heard as chosen."""
    target = trial.x_source if trial.kind == "control" else ("effect" if model_says_effect else "clean")
    return "A" if trial.a_source == target else "B"
