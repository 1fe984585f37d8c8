"""The plain-words verdict: does a model imitate its effect, by the project's rule?

A model imitates the effect when its ESR is at most ``1 / SUCCESS_FACTOR`` of the do-nothing
baseline's (the clean input at its best gain); a model whose output need not follow the
waveform (``EffectModel.spectral_output``) when its MR-STFT distance is at most
``1 / SPECTRAL_FACTOR`` of doing nothing's.
"""

from __future__ import annotations

import math

# The project's success rule: the model's ESR must be this many times below the baseline's.
SUCCESS_FACTOR = 10.0
# Models whose output need not follow the waveform (pitch shifters) are judged by MR-STFT
# distance, this many times below doing nothing's.
SPECTRAL_FACTOR = 3.0
TINY = 1e-9


def verdict(m: dict, spectral: bool = False) -> tuple[str, str]:
    """(level, sentence) for overall metrics: level is good, partial, bad or gain-only.

    The project's rule: a model "models the effect" when its ESR is at most a tenth of
    the do-nothing baseline's (the clean input at its best gain). ``spectral`` (a model whose
    output need not follow the waveform, e.g. a pitch shifter): judged instead by MR-STFT
    distance, at least ``SPECTRAL_FACTOR`` times below doing nothing's.
    """
    if spectral:
        return _spectral_verdict(float(m["mrstft"]), float(m["baseline_mrstft"]))
    e, b = float(m["esr"]), float(m["baseline_esr"])
    below = f"{-10 * math.log10(max(e, 1e-20)):.1f} dB below the effect"
    if b <= TINY:
        return "gain-only", (
            "This effect only changes the volume: the clean input at the right level already matches it "
            f"(do-nothing error {b:.2g}), so the tenfold rule cannot be applied. "
            f"The model's error is ESR {e:.3g} ({below})."
        )
    if m.get("models_effect", e <= b / SUCCESS_FACTOR):
        times = "infinitely" if e <= 0 else f"{b / e:.0f}×"
        return "good", (
            f"The model imitates the effect: its error (ESR {e:.3g}, {below}) is {times} smaller than "
            f"doing nothing (the clean input at the best volume, ESR {b:.3g}). The project asks for 10×."
        )
    if e < b:
        gain = b / e
        return "partial", (
            f"Not there yet: the model is closer to the effect than doing nothing, but only {gain:.1f}× "
            f"(ESR {e:.3g} vs {b:.3g}). The project asks for 10×, so its error must still shrink "
            f"{SUCCESS_FACTOR / gain:.1f}× (to ESR {b / SUCCESS_FACTOR:.3g})."
        )
    return "bad", (
        f"The model does not imitate the effect: its error (ESR {e:.3g}) is {e / b:.1f}× that of doing "
        f"nothing (ESR {b:.3g}). The project asks for 10× smaller, so its error must shrink "
        f"{SUCCESS_FACTOR * e / b:.0f}× (to ESR {b / SUCCESS_FACTOR:.3g})."
    )


def _spectral_verdict(d: float, b: float) -> tuple[str, str]:
    why = ("Its output need not follow the effect's waveform (a pitch shifter's phases are its own), "
           "so it is judged by how close its spectrogram is (MR-STFT distance), not by ESR.")
    gain = b / d if d > 0 else math.inf
    if gain >= SPECTRAL_FACTOR:
        return "good", (f"The model imitates the effect's sound: its MR-STFT distance ({d:.3g}) is {gain:.1f}× smaller "
                        f"than doing nothing's ({b:.3g}); fxdist asks for {SPECTRAL_FACTOR:g}×. {why}")
    if gain > 1:
        return "partial", (f"Not there yet: the model's MR-STFT distance ({d:.3g}) is {gain:.1f}× smaller than doing "
                           f"nothing's ({b:.3g}); fxdist asks for {SPECTRAL_FACTOR:g}× (to {b / SPECTRAL_FACTOR:.3g}). {why}")
    return "bad", (f"The model does not imitate the effect's sound: its MR-STFT distance ({d:.3g}) is not below doing "
                   f"nothing's ({b:.3g}); fxdist asks for {SPECTRAL_FACTOR:g}× smaller. {why}")

