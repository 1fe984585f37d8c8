"""Shared model plumbing: stream-state checks, state detaching, activations."""

import pytest
import torch

from fxdist.errors import ModelError
from fxdist.models import build_model, detach_state
from fxdist.models.base import make_activation

from .common import preset


def test_conv_stream_state_must_be_the_history_shape():
    model = build_model(preset("tcn-tiny"))
    x = torch.randn(2, 1, 5)
    with pytest.raises(ModelError, match=r"stream state must be a tensor of shape \(2, 1, 42\), got \(2, 1, 41\)"):
        model.stream_block(x, torch.zeros(2, 1, 41))
    with pytest.raises(ModelError, match="conv models are stateless"):
        model(torch.randn(2, 1, 50), torch.zeros(2, 1, 42))
    _, history = model.stream_block(x)
    assert torch.equal(history[..., -5:], x) and torch.all(history[..., :-5] == 0)


def test_detach_state_keeps_structure():
    a = torch.ones(2, requires_grad=True) * 2
    out = detach_state((a, [a]))
    assert isinstance(out, tuple) and isinstance(out[1], list) and not out[0].requires_grad
    assert detach_state(None) is None
    with pytest.raises(ModelError, match="cannot detach a state of type dict"):
        detach_state({"h": a})


def test_unknown_activation_is_named():
    with pytest.raises(ModelError, match="unknown activation 'gelu'"):
        make_activation("gelu", 4)
