"""An ABX session: blind audio on disk, answers scored, the results JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from fxdist import abx
from fxdist.abx.design import _level
from tests.abx.common import SR, make_session, oracle, triples


def test_session_writes_blind_audio_and_scores_answers(tmp_path):
    session = make_session(tmp_path)
    excerpts = [_level(t, -1.0) for t in triples()]
    for trial in session.trials:
        for role in abx.ROLES:
            data, sr = sf.read(session.audio_path(trial.token, role), dtype="float32")
            assert sr == SR
            expected = dict(zip(("clean", "effect", "model"), excerpts[trial.excerpt]))[trial.source(role)]
            assert np.max(np.abs(data - expected)) <= 1 / 32768  # PCM_16
        x = session.audio_path(trial.token, "X").read_bytes()
        if trial.kind == "control":  # X is an exact copy of A or B
            assert x == session.audio_path(trial.token, "A" if trial.x_source == trial.a_source else "B").read_bytes()
    # one joint gain per excerpt: peaks at -1 dBFS and the effect stays louder than clean
    peak = max(np.max(np.abs(x)) for x in excerpts[0])
    assert 20 * np.log10(peak) == pytest.approx(-1.0, abs=1e-4)
    assert np.mean(excerpts[0][1] ** 2) > np.mean(excerpts[0][0] ** 2)

    model_trials = [t for t in session.trials if t.kind == "model"]
    for trial in session.trials:
        says_effect = trial is not model_trials[0]  # the listener misses one model trial
        state = session.answer(trial.token, oracle(trial, says_effect), plays={"A": 1, "B": 1, "X": 2})
    assert state["done"] and session.finished.is_set()
    with pytest.raises(abx.StaleAnswer):
        session.answer(trial.token, "A")
    res = json.loads(session.results_json.read_text())
    assert res == session.results()
    assert res["complete"] and res["answered"] == 6
    assert (res["model_trials"], res["model_judged_effect"], res["control_correct"]) == (4, 3, 2)
    assert res["model_judged_effect_rate"] == 0.75 and res["control_correct_rate"] == 1.0
    assert res["p_value"] == pytest.approx(5 / 16)  # P(K >= 3 | n = 4, p = 1/2)
    assert "not clearly more often than chance" in res["verdict"]
