"""Discretized mixture of logistics: exact small cases, 24-bit stability, sampling."""

import math

import pytest
import torch

from fxdist.errors import ModelError
from fxdist.models.mol import log_scale_min, mol_mean, mol_nll, mol_sample


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _params(logits, means, log_scales, length=1):
    """(1, 3K, length) from per-component lists, the same at every time step."""
    col = torch.tensor([*logits, *means, *log_scales], dtype=torch.float32)
    return col.view(1, -1, 1).expand(1, -1, length).contiguous()


def test_single_component_probabilities_by_hand():
    """bits=2: levels -1, -0.5, 0, 0.5, bins of width 0.5; mu 0, scale 1."""
    params = _params([0.0], [0.0], [0.0], length=4)
    target = torch.tensor([-1.0, -0.5, 0.0, 0.5]).view(1, 1, 4)
    probs = torch.exp(-mol_nll(params, target, bits=2, reduction="none"))[0].tolist()
    expected = [
        _sigmoid(-0.75),  # lowest bin takes the left tail
        _sigmoid(-0.25) - _sigmoid(-0.75),
        _sigmoid(0.25) - _sigmoid(-0.25),
        1.0 - _sigmoid(0.25),  # highest bin takes the right tail
    ]
    assert probs == pytest.approx(expected, rel=1e-6)
    assert sum(probs) == pytest.approx(1.0, abs=1e-6)


def test_24bit_bin_probability_is_exact_where_naive_float32_gives_zero():
    """P(0) = sigmoid(2^-24) - sigmoid(-2^-24) = tanh(2^-25): nll = 25 ln 2 to float32 accuracy.

    float32 sigmoid(2^-24) rounds to 0.5, so the naive difference is 0 (nll = inf)."""
    assert torch.sigmoid(torch.tensor(2.0**-24)) - torch.sigmoid(torch.tensor(-(2.0**-24))) == 0
    nll = mol_nll(_params([0.0], [0.0], [0.0]), torch.zeros(1, 1, 1), bits=24)
    assert nll.item() == pytest.approx(-math.log(math.tanh(2.0**-25)), rel=1e-6)
    # An off-centre target under a narrow component, against float64 by hand.
    mu, scale, x = 0.3, 0.01, 0.3125  # x = 2621440 / 2^23, a 24-bit level
    params = _params([0.0], [mu], [math.log(scale)])
    p64 = _sigmoid((x - mu + 2.0**-24) / scale) - _sigmoid((x - mu - 2.0**-24) / scale)
    got = mol_nll(params, torch.full((1, 1, 1), x), bits=24).item()
    assert got == pytest.approx(-math.log(p64), rel=1e-6)


def test_mixture_probabilities_over_all_levels_sum_to_one():
    bits, levels = 6, 64
    params = _params([0.3, -1.0, 0.8], [-0.4, 0.1, 0.9], [-2.0, -4.0, -1.0], length=levels)
    target = (torch.arange(levels, dtype=torch.float32) - 32).div(32).view(1, 1, levels)
    probs = torch.exp(-mol_nll(params, target, bits=bits, reduction="none"))
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_sharp_component_mean_and_samples_equal_its_location():
    loc = 1035187 / 2**23  # a 24-bit level
    params = _params([0.0], [loc], [-40.0], length=1000)  # clamped to the sharpest scale allowed
    assert torch.all(mol_mean(params) == loc)
    samples = mol_sample(params, torch.Generator().manual_seed(0))
    assert samples.shape == (1, 1, 1000) and torch.all(samples == loc)
    assert mol_nll(params, torch.full((1, 1, 1000), loc)).item() < 1e-3  # nearly all mass in the bin


def test_samples_follow_the_mixture_weights_and_the_generator():
    params = _params([math.log(0.25), math.log(0.75)], [-0.5, 0.5], [-30.0, -30.0], length=4000)
    a = mol_sample(params, torch.Generator().manual_seed(5))
    b = mol_sample(params, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) == {-0.5, 0.5}
    assert (a == 0.5).float().mean().item() == pytest.approx(0.75, abs=0.03)
    levels = mol_sample(_params([0.0], [0.0], [-1.0], length=2000), torch.Generator().manual_seed(1))
    assert torch.equal(levels * 2**23, torch.round(levels * 2**23))  # always 24-bit levels
    assert levels.min() >= -1 and levels.max() <= 1 - 2.0**-23


def test_extreme_values_give_finite_loss_and_gradients():
    params = torch.tensor(
        [
            [
                [0.0, 50.0, -50.0, 0.0],  # logits (K = 1, T = 4)
                [5.0, -5.0, 0.9999, -1.0],  # means: far outside, near the edges
                [-60.0, 60.0, -60.0, 0.0],
            ]
        ],
        requires_grad=True,
    )  # log-scales
    target = torch.tensor([[[-1.0, 1.0, 1 - 2.0**-23, 0.25]]])
    nll = mol_nll(params, target, bits=24)
    nll.backward()
    assert torch.isfinite(nll) and torch.all(torch.isfinite(params.grad))
    assert log_scale_min(24) < math.log(2.0**-24)


def test_nll_of_a_learnable_target_decreases():
    """Fitting one mixture to samples of a skewed distribution lowers the NLL a lot."""
    gen = torch.Generator().manual_seed(0)
    target = torch.round(torch.tanh(torch.randn(1, 1, 512, generator=gen) * 0.3 + 0.2) * 2**23) / 2**23
    free = torch.zeros(1, 6, 1, requires_grad=True)
    opt = torch.optim.Adam([free], lr=0.1)
    losses = []
    for _ in range(60):
        loss = mol_nll(free.expand(1, 6, 512), target, bits=24)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 1.0


@pytest.mark.parametrize(
    "params, target, fragment",
    [
        (torch.zeros(1, 4, 5), torch.zeros(1, 1, 5), r"shape \(B, 3K, T\)"),
        (torch.zeros(1, 3, 5), torch.zeros(1, 1, 4), r"target must have shape \(1, 1, 5\)"),
        (torch.zeros(3, 5), torch.zeros(1, 1, 5), r"shape \(B, 3K, T\)"),
    ],
)
def test_bad_shapes_raise_model_error(params, target, fragment):
    with pytest.raises(ModelError, match=fragment):
        mol_nll(params, target)
