"""Generated cabinet IRs: deterministic, band-limited, front-loaded, 0 dB at every rate."""

from __future__ import annotations

import numpy as np

from fxdist.effects import Chain, cabinet_ir
from tests.effects.common import SR, cfg_dict, noise


# ----------------------------------------------------------------------------- cabinet IR


def test_cabinet_ir_deterministic_band_limited_front_loaded():
    sr = 48000
    ir = cabinet_ir(sr, seed=3, length_ms=40)
    assert ir.dtype == np.float32 and ir.shape == (1920,)
    assert np.array_equal(ir, cabinet_ir(sr, seed=3, length_ms=40))
    assert not np.allclose(ir, cabinet_ir(sr, seed=4, length_ms=40))
    power = np.abs(np.fft.rfft(ir, 1 << 16)) ** 2
    f = np.fft.rfftfreq(1 << 16, 1 / sr)
    assert power[f > 6000].sum() < 0.01 * power.sum()
    assert power[f < 50].sum() < 0.01 * power.sum()
    energy = np.sum(ir.astype(np.float64) ** 2)
    assert np.sum(ir[: len(ir) // 4].astype(np.float64) ** 2) > 0.8 * energy


def test_cabinet_ir_gain_does_not_depend_on_rate():
    """0 dB mean power gain over the pass band, at every rate (the level of a chain stays put)."""
    for sr in (8000, 16000, 48000):
        ir = cabinet_ir(sr, seed=3).astype(np.float64)
        power = np.abs(np.fft.rfft(ir, 1 << 16)) ** 2
        f = np.fft.rfftfreq(1 << 16, 1 / sr)
        mid_db = 10 * np.log10(power[(f >= 200) & (f <= 3000)].mean())
        assert abs(mid_db) < 1.5, f"{sr} Hz: mean gain 200 Hz-3 kHz {mid_db:.2f} dB"


def test_cabinet_stage_applies_the_ir_exactly():
    """The stage undoes JUCE's IR normalisation: output == numpy convolution with the IR."""
    chain = Chain.from_config(cfg_dict({"cabinet_ir": {"seed": 1}}))
    x = noise(0.5, 0.1)
    want = np.convolve(x[0].astype(np.float64), cabinet_ir(SR, seed=1).astype(np.float64))[: x.shape[1]]
    np.testing.assert_allclose(chain(x, SR)[0], want, atol=1e-5 * np.abs(want).max())
