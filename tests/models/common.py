"""The shared base test every model family passes (STYLE: a shared base test per family).

Subclass ``ModelContract`` in ``tests/models/test_<family>.py`` with a class attribute
``config`` (a build_model dict, usually a tiny preset): pytest collects the inherited tests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fxdist.config import load_yaml
from fxdist.errors import ModelError
from fxdist.models import EffectModel, build_model, model_config_dict
from fxdist.presets import model_dir

PRESETS = model_dir()


def preset(name: str, **overrides: Any) -> dict[str, Any]:
    """A model config dict from model preset ``name`` with top-level keys replaced."""
    return {**load_yaml(PRESETS / f"{name}.yaml"), **overrides}


def count_macs(model: EffectModel, x: torch.Tensor) -> int:
    """MACs of one forward, counted from the Conv1d/Linear output shapes (biases excluded)."""
    total = 0

    def hook(module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv1d):
            per_out = module.in_channels // module.groups * module.kernel_size[0]
        else:
            per_out = module.in_features
        total += out.numel() * per_out

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Linear))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def random_blocks(total: int, rf: int, gen: torch.Generator) -> list[int]:
    """Block sizes summing to ``total``: 1-sample and shorter-than-RF blocks first, then random."""
    sizes = [1, 1, max(rf - 1, 1), 2, rf, rf + 3]
    out, left = [], total
    while left > 0:
        size = sizes.pop(0) if sizes else int(torch.randint(1, rf + 8, (1,), generator=gen))
        size = min(size, left)
        out.append(size)
        left -= size
    return out


def _tensors(state: Any) -> list[torch.Tensor]:
    return list(state) if isinstance(state, (tuple, list)) else [state]


class ModelContract:
    """Interface guarantees: shapes, causality, exact RF, streaming, lanes, learning, registry."""

    config: dict[str, Any]
    learn_steps = 150
    learn_lr = 3e-2
    learn_factor = 5.0

    def make(self, seed: int = 0, scrambled: bool = False) -> EffectModel:
        """The model of ``config``; ``scrambled`` adds noise to every weight so that zero-initialised
        output layers (identity at start) do not hide the structure from gradient checks."""
        torch.manual_seed(seed)
        model = build_model(dict(self.config), source=f"{type(self).__name__}.config")
        if scrambled:
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p) * 0.2)
        return model

    def test_output_shape_state_and_reports(self):
        model = self.make()
        rf = model.receptive_field
        x = torch.randn(2, 1, rf + 20)
        y, state = model(x)
        assert y.shape == (2, 1, 21) and y.dtype == torch.float32
        assert (state is None) == (not model.stateful)
        assert model.initial_state(2, "cpu") is None or model.stateful
        assert model.num_parameters() == sum(p.numel() for p in model.parameters()) > 0
        assert isinstance(model.macs_per_sample(), int) and model.macs_per_sample() > 0
        with pytest.raises(ModelError, match=r"shape \(B, 1, T\)"):
            model(torch.randn(2, 2, rf + 20))
        if rf > 1:
            with pytest.raises(ModelError, match=f"receptive field is {rf}"):
                model(torch.randn(2, 1, rf - 1))

    def test_perturbing_one_sample_changes_only_its_window(self):
        """Input j may change only outputs aligned to j .. j+RF-1 (output i sees x[i : i+RF])."""
        model = self.make(scrambled=True)
        rf = model.receptive_field
        length = rf + 30
        x = torch.randn(1, 1, length)
        with torch.no_grad():
            y = model(x)[0][0, 0]
            for j in sorted({0, rf // 2, rf - 1, rf + 5, length - 1}):
                x2 = x.clone()
                x2[0, 0, j] += 0.5
                changed = (model(x2)[0][0, 0] != y).nonzero().flatten().tolist()
                if model.stateful:  # recurrent: every later output may change, no earlier one
                    assert changed and min(changed) == j
                else:
                    assert all(j - rf + 1 <= i <= j for i in changed), (j, changed)

    def test_receptive_field_is_exact_by_gradient(self):
        """d y[i] / d x[j] is zero outside the window and nonzero at both of its ends."""
        model = self.make(scrambled=True)
        rf = model.receptive_field
        n = 24
        x = torch.randn(1, 1, rf + n - 1, requires_grad=True)
        y = model(x)[0][0, 0]
        jac = torch.stack([torch.autograd.grad(y[i], x, retain_graph=True)[0][0, 0] for i in range(n)])
        idx = torch.arange(rf + n - 1)
        for i in range(n):
            outside = (idx < i) | (idx > i + rf - 1)
            if model.stateful:
                outside = idx > i  # the whole past is in reach
            assert torch.all(jac[i][outside] == 0), i
        assert any(jac[i, i + rf - 1] != 0 for i in range(n)), "newest sample never matters"
        assert any(jac[i, i] != 0 for i in range(n)), "oldest sample of the window never matters"
        if model.stateful:
            assert jac[n - 1, 0] != 0, "recurrent model forgot the first sample at once"

    def test_blocks_equal_whole(self):
        model = self.make()
        rf = model.receptive_field
        gen = torch.Generator().manual_seed(1)
        total = max(3 * rf + 40, 120)
        x = torch.randn(2, 1, total, generator=gen) * 0.5
        with torch.no_grad():
            whole, _ = model.stream_block(x)
            if model.stateful:
                reference, _ = model(x)
            else:
                reference, _ = model(torch.cat([x.new_zeros(2, 1, rf - 1), x], dim=-1))
            state, parts, start = None, [], 0
            for size in random_blocks(total, rf, gen):
                y, state = model.stream_block(x[..., start : start + size], state)
                assert y.shape == (2, 1, size)
                parts.append(y)
                start += size
                empty, state = model.stream_block(x[..., :0], state)
                assert empty.shape == (2, 1, 0)
        blocks = torch.cat(parts, dim=-1)
        assert whole.shape == x.shape
        assert (blocks - whole).abs().max() < 1e-6
        assert (whole - reference).abs().max() < 1e-6

    def test_reset_lanes_restarts_only_masked_lanes(self):
        model = self.make()
        x1, x2 = torch.randn(3, 1, 40), torch.randn(3, 1, 30)
        mask = torch.tensor([True, False, True])
        with torch.no_grad():
            _, state = model.stream_block(x1, model.initial_state(3, "cpu"))
            before = [s.clone() for s in _tensors(state)]
            reset = model.reset_lanes(state, mask)
            assert all(torch.equal(a, b) for a, b in zip(before, _tensors(state))), "reset_lanes changed its input"
            y2, _ = model.stream_block(x2, reset)
            fresh, _ = model.stream_block(x2, None)
            continued, _ = model.stream_block(torch.cat([x1, x2], dim=-1), None)
        for lane in (0, 2):
            assert (y2[lane] - fresh[lane]).abs().max() < 1e-6
        assert (y2[1] - continued[1, :, 40:]).abs().max() < 1e-6
        assert model.reset_lanes(model.initial_state(3, "cpu"), mask) is None or model.stateful
        with pytest.raises(ModelError, match="bool tensor of shape"):
            model.reset_lanes(state, torch.tensor([1, 0, 1]))
        with pytest.raises(ModelError, match="bool tensor of shape"):
            model.reset_lanes(state, torch.tensor([True, False]))

    def test_learns_tanh(self):
        """150 Adam steps (under a second) on y = tanh(2x) over uniform noise cut the MSE by > 5x."""
        model = self.make()
        rf = model.receptive_field
        gen = torch.Generator().manual_seed(2)
        opt = torch.optim.Adam(model.parameters(), lr=self.learn_lr)
        losses = []
        for _ in range(self.learn_steps):
            x = torch.rand(4, 1, rf - 1 + 128, generator=gen) * 2 - 1
            y, _ = model(x)
            loss = F.mse_loss(y, torch.tanh(2 * x[..., rf - 1 :]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        first, last = losses[0], sum(losses[-5:]) / 5
        assert last < first / self.learn_factor, (first, last)

    def test_every_parameter_gets_a_gradient(self):
        """No unused parameters (DistributedDataParallel would fail on them)."""
        model = self.make()
        x = torch.randn(2, 1, model.receptive_field + 10)
        model(x)[0].square().sum().backward()
        unused = [name for name, p in model.named_parameters() if p.grad is None]
        assert not unused

    def test_config_round_trips_through_checkpoint_dict(self):
        model = self.make()
        cfg = model_config_dict(model)
        assert cfg["family"] == model.family
        cfg = json.loads(json.dumps(cfg))
        again = build_model(cfg)
        assert model_config_dict(again) == cfg and type(again) is type(model)
        again.load_state_dict(model.state_dict())
        x = torch.randn(1, 1, model.receptive_field + 7)
        with torch.no_grad():
            assert torch.equal(model(x)[0], again(x)[0])

    def test_macs_match_counted_layers(self):
        """One more output sample costs exactly macs_per_sample() MACs in conv/linear layers."""
        model = self.make()
        if model.stateful:
            pytest.skip("recurrent MACs are checked against the weights in the family's test")
        rf = model.receptive_field
        counted = count_macs(model, torch.randn(1, 1, rf + 5)) - count_macs(model, torch.randn(1, 1, rf + 4))
        assert counted == model.macs_per_sample()


def checkpointing_differences(config: dict[str, Any], length: int, batch: int = 3, dtype=torch.float64) -> tuple[float, float]:
    """One training step of ``config`` with and without ``checkpoint_activations`` on the same
    weights (scrambled) and input: (max |output difference|, max |gradient difference| / max |gradient|)."""
    results = []
    x = torch.randn(batch, 1, length, generator=torch.Generator().manual_seed(5), dtype=dtype)
    for flag in (False, True):
        torch.manual_seed(0)
        model = build_model({**config, "checkpoint_activations": flag}).to(dtype)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.2)
        y, _ = model(x)
        (y.square().sum() + y.sum()).backward()
        results.append((y.detach(), [p.grad for p in model.parameters()]))
    (y0, g0), (y1, g1) = results
    grad = max(float((a - b).abs().max() / a.abs().max().clamp_min(1e-30)) for a, b in zip(g0, g1))
    return float((y0 - y1).abs().max()), grad


def saved_bytes(model: EffectModel, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for backward over one forward (unique storages)."""
    sizes: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(sizes.values())
