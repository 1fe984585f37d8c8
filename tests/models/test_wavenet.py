"""Family wavenet: NAM-style stacks, exact 24-bit float32 I/O, and the MoL output head."""

import pytest
import torch

from fxdist.models import build_model, mol_nll

from .common import ModelContract, preset


class TestWaveNet(ModelContract):
    config = preset("wavenet-tiny")


class TestWaveNetTwoStacksTanhSkip(ModelContract):
    """NAM-like: stacks of different widths (re-channelled), plain tanh, no head hidden layer."""

    config = preset(
        "wavenet-tiny",
        stacks=[
            {"channels": 4, "kernel_size": 3, "dilations": [1, 2]},
            {"channels": 3, "kernel_size": 2, "dilations": [4, 1]},
        ],
        gated=False,
        activation="tanh",
        head_channels=0,
        input_skip=True,
    )


class TestWaveNetMoL(ModelContract):
    config = preset("wavenet-tiny", output="mol", mol_components=3)


def _identity_wavenet(input_skip: bool):
    """A regression WaveNet whose weights make output == aligned input through the whole path."""
    model = build_model(
        {
            "family": "wavenet",
            "stacks": [
                {"channels": 2, "kernel_size": 3, "dilations": [1, 2]},
                {"channels": 3, "kernel_size": 2, "dilations": [4]},
            ],
            "skip_channels": 2,
            "head_channels": 2,
            "gated": False,
            "activation": "relu",
            "input_skip": input_skip,
        }
    )
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        if input_skip:
            return model  # head outputs 0; y = 0 + x
        # relu(x) - relu(-x) == x exactly: carry +x and -x, rectify in layer 0, recombine in the head.
        model.input.weight[:, 0, 0] = torch.tensor([1.0, -1.0])
        first = model.layers[0]
        for c in range(2):
            first.conv.weight[c, c, -1] = 1.0  # newest tap only
            first.skip.weight[c, c, 0] = 1.0
            model.head[1].weight[c, c, 0] = 1.0
        model.head[3].weight[0, :, 0] = torch.tensor([1.0, -1.0])
    return model


@pytest.mark.parametrize("input_skip", [False, True], ids=["through-layers-and-head", "input-skip"])
def test_float32_model_io_preserves_24bit_integers(input_skip):
    """24-bit PCM ints / 2^23 -> float32 -> identity WaveNet -> * 2^23 gives the ints back exactly."""
    gen = torch.Generator().manual_seed(0)
    ints = torch.randint(-(2**23), 2**23, (2, 1, 3000), generator=gen)
    ints[0, 0, -2:] = torch.tensor([-(2**23), 2**23 - 1])  # both extremes
    x = ints.to(torch.float32) / 2**23
    assert torch.equal((x * 2**23).to(torch.int64), ints)
    model = _identity_wavenet(input_skip)
    rf = model.receptive_field
    with torch.no_grad():
        y, _ = model(x)
        state, parts = None, []
        for i in range(0, x.shape[-1], 701):
            out, state = model.process(x[..., i : i + 701], state)
            parts.append(out)
    assert torch.equal(y * 2**23, ints[..., rf - 1 :].to(torch.float32))
    assert torch.equal((y * 2**23).to(torch.int64), ints[..., rf - 1 :])
    streamed = torch.cat(parts, dim=-1)
    assert torch.equal((streamed[..., rf - 1 :] * 2**23).to(torch.int64), ints[..., rf - 1 :])


def test_receptive_field_sums_over_stacks():
    model = build_model(
        {
            "family": "wavenet",
            "stacks": [
                {"channels": 2, "kernel_size": 3, "dilations": [1, 2, 4]},
                {"channels": 2, "kernel_size": 5, "dilations": [8]},
            ],
        }
    )
    assert model.receptive_field == 1 + 2 * 7 + 4 * 8


def test_mol_model_outputs_parameters_and_its_nll_falls():
    """forward_params gives (B, 3K, T'); a few dozen steps of mol_nll on 24-bit targets lower it."""
    torch.manual_seed(0)
    model = build_model(preset("wavenet-tiny", output="mol", mol_components=3, mol_bits=24))
    assert model.output_kind == "mol"
    rf = model.receptive_field
    gen = torch.Generator().manual_seed(3)
    opt = torch.optim.Adam(model.parameters(), lr=5e-2)
    losses = []
    for _ in range(60):
        x = torch.rand(4, 1, rf - 1 + 128, generator=gen) * 2 - 1
        target = torch.round(torch.tanh(2 * x[..., rf - 1 :]) * 2**23) / 2**23
        params = model.forward_params(x)
        assert params.shape == (4, 9, 128)
        loss = mol_nll(params, target, bits=24)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < losses[0] - 0.5  # nats per sample (about 0.9 here)
    mean, _ = model(x)
    assert mean.shape == (4, 1, 128)


def test_mol_input_skip_offsets_the_means():
    """With K = 1 and a silent head, the mixture mean is the input itself."""
    model = build_model(preset("wavenet-tiny", output="mol", mol_components=1, input_skip=True))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        x = torch.rand(2, 1, 200) * 1.8 - 0.9
        mean, _ = model(x)
    assert torch.equal(mean, x[..., model.receptive_field - 1 :])
