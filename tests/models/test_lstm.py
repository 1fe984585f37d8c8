"""Family lstm: recurrent state, GRU variant, attached state, MACs from the weights."""

import pytest
import torch

from fxdist.errors import ModelError
from fxdist.models import build_model, detach_state

from .common import ModelContract, preset


class TestLSTM(ModelContract):
    config = preset("lstm-tiny")


class TestGRU(ModelContract):
    config = preset("lstm-tiny", cell="gru")


class TestDeepLSTMWithoutSkip(ModelContract):
    config = preset("lstm-tiny", num_layers=2, input_skip=False)


@pytest.mark.parametrize("cell, n", [("lstm", 2), ("gru", 1)])
def test_state_is_attached_tuple_of_layer_batch_hidden(cell, n):
    model = build_model({"family": "lstm", "hidden_size": 5, "num_layers": 2, "cell": cell})
    x = torch.randn(3, 1, 10)
    _, state = model(x, model.initial_state(3, "cpu"))
    assert isinstance(state, tuple) and len(state) == n
    assert all(s.shape == (2, 3, 5) and s.requires_grad for s in state)
    detached = detach_state(state)
    assert all(not s.requires_grad for s in detached) and isinstance(detached, tuple)
    if cell == "gru":  # a bare hidden tensor also works
        assert torch.equal(model(x, state[0])[0], model(x, state)[0])
        assert torch.equal(model.reset_lanes(state[0], torch.tensor([True, False, True]))[0][:, 1], state[0][:, 1])
    with pytest.raises(ModelError, match=r"state must be a tuple of .* \(2, 3, 5\)"):
        model(x, tuple(s[:, :2] for s in state))


def test_input_skip_adds_the_input():
    model = build_model({"family": "lstm", "hidden_size": 4, "input_skip": True})
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    x = torch.randn(2, 1, 50)
    assert torch.equal(model(x)[0], x)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_macs_equal_weight_matrix_sizes(cell):
    model = build_model({"family": "lstm", "hidden_size": 7, "num_layers": 3, "cell": cell})
    weights = sum(p.numel() for name, p in model.named_parameters() if "weight" in name)
    assert model.macs_per_sample() == weights
