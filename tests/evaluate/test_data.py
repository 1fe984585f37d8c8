"""Evaluation data: rates conformed or refused, unmatched pairs and unknown paths named."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from fxdist.errors import DataError
from fxdist.evaluate import evaluate, load_data
from tests.evaluate.common import gain_pairs, zero_lstm


def test_sample_rate_mismatch_is_refused_unless_resampling(tmp_path, capsys):
    ckpt = zero_lstm(tmp_path / "id16k.pt", 16000)
    pairs = gain_pairs(tmp_path / "pairs", sr=8000)
    with pytest.raises(DataError, match=r"chord_clean\.wav: data at 8000 Hz but model .*id16k\.pt works at 16000 Hz.*resample"):
        evaluate(ckpt, pairs, tmp_path / "out")
    report = evaluate(ckpt, pairs, tmp_path / "out", resample=True, plots=False)
    assert "resampled 2 track(s)" in capsys.readouterr().err
    assert report.tracks["riff"]["samples"] == 8000 and report.data["resampled_from"] == [8000]
    assert report.overall["esr"] == pytest.approx(0.25, rel=1e-4)  # resampling is linear: still 2x


def test_unmatched_pair_and_unknown_data_name_the_file(tmp_path):
    ckpt = zero_lstm(tmp_path / "id.pt", 8000)
    pairs = gain_pairs(tmp_path / "pairs")
    sf.write(pairs / "solo_clean.wav", np.zeros(800, np.float32) + 0.1, 8000)
    with pytest.raises(DataError, match=r"solo_clean\.wav: no matching processed file"):
        evaluate(ckpt, pairs, tmp_path / "out")
    with pytest.raises(DataError, match=r"nowhere: neither a shard set"):
        load_data(tmp_path / "nowhere")
