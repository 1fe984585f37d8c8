"""The success rule in plain words: tenfold below doing nothing by ESR, threefold by MR-STFT."""

from __future__ import annotations

from fxdist.evaluate import verdict


def test_verdict_follows_the_tenfold_rule():
    assert verdict({"esr": 0.01, "baseline_esr": 0.2, "models_effect": True})[0] == "good"
    level, text = verdict({"esr": 0.05, "baseline_esr": 0.2, "models_effect": False})
    assert level == "partial" and "4.0×" in text and "2.5×" in text  # 4x better, 2.5x to go
    level, text = verdict({"esr": 0.4, "baseline_esr": 0.2, "models_effect": False})
    assert level == "bad" and "2.0× that of doing nothing" in text and "shrink 20×" in text
    assert verdict({"esr": 0.25, "baseline_esr": 0.0, "models_effect": False})[0] == "gain-only"


def test_verdict_of_a_spectral_model_is_by_mrstft():
    """Pitch shifters (``spectral_output``) are judged by MR-STFT, 3x below doing nothing."""
    m = {"esr": 1.9, "baseline_esr": 1.0, "models_effect": False, "mrstft": 0.5, "baseline_mrstft": 2.0}
    level, text = verdict(m, spectral=True)
    assert level == "good" and "4.0× smaller" in text and "asks for 3×" in text and "not by ESR" in text
    assert verdict(m)[0] == "bad"  # by ESR the same figures fail
    level, text = verdict({**m, "mrstft": 1.0}, spectral=True)
    assert level == "partial" and "2.0×" in text and "to 0.667" in text
    assert verdict({**m, "mrstft": 2.5}, spectral=True)[0] == "bad"
