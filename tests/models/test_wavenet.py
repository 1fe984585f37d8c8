"""Family wavenet: NAM-style stacks, exact 24-bit float32 I/O, and the MoL output head."""

import pytest
import torch

from fxdist.models import build_model, build_model_from_yaml, mol_nll

from .common import PRESETS, ModelContract, checkpointing_differences, preset, saved_bytes


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
            out, state = model.stream_block(x[..., i : i + 701], state)
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


class TestWaveNetCheckpointed(ModelContract):
    """checkpoint_activations: the whole contract (gradient checks included) on the recomputed path."""

    config = preset("wavenet-tiny", checkpoint_activations=True)


class TestWaveNetMoLCheckpointed(ModelContract):
    config = preset("wavenet-tiny", output="mol", mol_components=3, checkpoint_activations=True)


NAM_TINY = {
    "family": "wavenet",
    "layout": "nam",
    "stacks": [{"channels": 3, "kernel_size": 3, "dilations": [1, 2]}, {"channels": 2, "kernel_size": 3, "dilations": [1, 4]}],
    "gated": False,
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "config",
    [
        preset("wavenet-tiny"),
        preset("wavenet-tiny", output="mol", mol_components=3, input_skip=True),
        preset("wavenet-tiny", gated=False, activation="tanh", input_skip=True),
        NAM_TINY,
    ],
    ids=["gated", "mol", "tanh-skip", "nam"],
)
def test_checkpointed_wavenet_has_the_same_outputs_and_gradients(config, dtype):
    """Recomputing a layer runs the same kernels on the same input: equal to the last bit."""
    d_out, d_grad = checkpointing_differences(config, 40 + 50, dtype=dtype)
    assert d_out == 0 and d_grad == 0, (d_out, d_grad)


@pytest.mark.parametrize("gated, bound", [(True, 0.5), (False, 0.7)], ids=["gated", "tanh"])
def test_checkpointed_wavenet_keeps_less_for_backward_and_only_when_training(gated, bound):
    """Per layer backward keeps the input stream only, not the gate/activation outputs."""
    cfg = preset("wavenet-tiny", gated=gated, stacks=[{"channels": 8, "kernel_size": 3, "dilations": [1, 2, 4, 8]}])
    x = torch.randn(2, 1, 31 + 500)
    plain = build_model(cfg)
    ckpt = build_model({**cfg, "checkpoint_activations": True})
    ckpt.load_state_dict(plain.state_dict())
    assert saved_bytes(ckpt, x) < bound * saved_bytes(plain, x), (saved_bytes(ckpt, x), saved_bytes(plain, x))
    plain.eval(), ckpt.eval()
    assert saved_bytes(ckpt, x) == saved_bytes(plain, x)


def test_24bit_mol_preset_is_the_large_stacks_with_a_24bit_head():
    large, mol = build_model_from_yaml(PRESETS / "wavenet-large.yaml"), build_model_from_yaml(PRESETS / "wavenet-mol24.yaml")
    assert mol.output_kind == "mol" and mol.cfg.mol_bits == 24 and mol.cfg.stacks == large.cfg.stacks
    assert mol.receptive_field == large.receptive_field == 4093


def test_mol_params_module_is_forward_params_with_the_same_parameters():
    """What DistributedDataParallel wraps for the MoL head (benchmarks/memory_per_worker.py)."""
    from fxdist.models.wavenet import MolParams

    model = build_model(preset("wavenet-tiny", output="mol", mol_components=3))
    wrapped = MolParams(model)
    x = torch.randn(2, 1, 60)
    assert torch.equal(wrapped(x), model.forward_params(x))
    assert [id(p) for p in wrapped.parameters()] == [id(p) for p in model.parameters()]
