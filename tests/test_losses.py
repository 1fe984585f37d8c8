"""Losses against hand-computable cases."""

import math

import pytest
import torch

from fxdist.config import from_dict
from fxdist.errors import ConfigError
from fxdist.losses import CombinedLoss, LossConfig, dc_loss, esr, pre_emphasis


def test_esr_known_values():
    t = torch.randn(2, 1, 1000)
    assert esr(t, t) == 0
    # a gain error g gives ESR (1 - g)^2 exactly
    assert esr(0.5 * t, t).item() == pytest.approx(0.25, rel=1e-5)
    assert esr(torch.zeros_like(t), t).item() == pytest.approx(1.0, rel=1e-6)


def test_esr_mask_excludes_samples():
    t = torch.ones(1, 1, 10)
    p = t.clone()
    p[..., :4] = 100.0  # garbage during warm-up
    mask = torch.ones_like(t)
    mask[..., :4] = 0
    assert esr(p, t, mask) == 0


def test_pre_emphasis_is_first_difference_for_coeff_one_minus():
    x = torch.tensor([1.0, 2.0, 4.0])
    assert pre_emphasis(x, 0.5).tolist() == [1.5, 3.0]
    assert pre_emphasis(x, 0.0) is x


def test_dc_loss_sees_offset_only():
    t = torch.sin(torch.linspace(0, 20 * math.pi, 2000)).view(1, 1, -1)
    assert dc_loss(t, t) == 0
    energy = (t**2).mean()
    assert dc_loss(t + 0.1, t).item() == pytest.approx(0.01 / energy.item(), rel=1e-4)


def test_combined_loss_weights_and_parts():
    t = torch.randn(2, 1, 4096)
    p = 0.9 * t
    cfg = LossConfig(esr=1.0, dc=2.0, mrstft=0.5)
    total, parts = CombinedLoss(cfg, sample_rate=16000)(p, t)
    assert set(parts) == {"esr", "dc", "mrstft"}
    expected = parts["esr"] + 2.0 * parts["dc"] + 0.5 * parts["mrstft"]
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert parts["esr"] == pytest.approx(0.01, rel=1e-4)  # gain error survives pre-emphasis
    zero, _ = CombinedLoss(cfg)(t, t)
    assert zero.item() == pytest.approx(0.0, abs=1e-5)


def test_bad_loss_config_refused():
    with pytest.raises(ConfigError, match="at least one loss weight"):
        from_dict(LossConfig, {"esr": 0.0})
    with pytest.raises(ConfigError, match="differ in length"):
        from_dict(LossConfig, {"mrstft_fft_sizes": [256]})
