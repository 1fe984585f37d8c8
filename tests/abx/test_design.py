"""The ABX design: faded excerpts from the loud parts, a balanced seeded trial plan, config ranges."""

from __future__ import annotations

import numpy as np
import pytest

from fxdist import abx
from fxdist.config import from_dict
from fxdist.errors import ConfigError, DataError
from tests.abx.common import SR


def test_excerpt_fades_and_pick_starts():
    x = np.ones(SR * 2, dtype=np.float32)
    seg = abx.excerpt(x, SR, 0.5, 1.0, fade_s=0.1)
    assert seg.size == SR and seg.dtype == np.float32
    assert seg[0] < 0.001 and seg[-1] < 0.001 and np.all(seg[800:-800] == 1)
    assert np.all(np.diff(seg[:800]) > 0)  # a monotone fade-in
    with pytest.raises(DataError, match="outside"):
        abx.excerpt(x, SR, 5.0, 1.0)
    # loud windows are picked, silence is not
    track = np.zeros(SR * 8)
    track[SR * 2 : SR * 3] = 1.0
    track[SR * 6 : SR * 7] = 0.5
    assert abx.pick_starts(track, SR, 2, 1.0, seed=0) == [2.0, 6.0]
    assert abx.pick_starts(track[:100], SR, 3, 1.0) == [0.0]


def test_make_trials_design_is_balanced_and_seeded():
    trials = abx.make_trials(n_excerpts=4, n_trials=12, control_fraction=0.25, seed=3)
    kinds = [t.kind for t in trials]
    assert kinds.count("control") == 3 and kinds.count("model") == 9
    assert sorted(t.excerpt for t in trials if t.kind == "model") == [0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert {t.a_source for t in trials} == {"clean", "effect"}  # both sides occur
    assert [t.trial_id for t in trials] == [f"t{i:02d}" for i in range(1, 13)]
    assert len({t.token for t in trials}) == 12
    again = abx.make_trials(4, 12, 0.25, seed=3)
    assert [(t.excerpt, t.a_source, t.x_source) for t in again] == [(t.excerpt, t.a_source, t.x_source) for t in trials]
    assert {t.token for t in again}.isdisjoint(t.token for t in trials)  # tokens never repeat


def test_config_checks_ranges():
    with pytest.raises(ConfigError, match="control_fraction"):
        from_dict(abx.AbxConfig, {"control_fraction": 1.0}, "abx.yaml")
    assert from_dict(abx.AbxConfig, {"n_trials": 4}, "abx.yaml").n_trials == 4
