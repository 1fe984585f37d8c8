"""fxdist.realtime: streaming modules equal offline forward for any block sizes, at block cost."""

import numpy as np
import pytest
import torch
from torch import nn

from fxdist.errors import ModelError
from fxdist.models import build_model
from fxdist.process import process_array
from fxdist.models.streaming import MatMul
from fxdist.realtime import Streamer, stream_array, stream_module

CONFIGS = {
    "wavenet": {"family": "wavenet", "stacks": [{"channels": 4, "kernel_size": 3, "dilations": [1, 2, 4]}],
                "skip_channels": 4, "head_channels": 4},
    "wavenet-2stacks-tanh-skip": {"family": "wavenet", "stacks": [
        {"channels": 4, "kernel_size": 3, "dilations": [1, 2]}, {"channels": 3, "kernel_size": 2, "dilations": [4, 1]}],
        "gated": False, "activation": "tanh", "head_channels": 0, "skip_channels": 3, "input_skip": True},
    "wavenet-mol": {"family": "wavenet", "stacks": [{"channels": 4, "kernel_size": 3, "dilations": [1, 2]}],
                    "skip_channels": 4, "head_channels": 4, "output": "mol", "mol_components": 3, "input_skip": True},
    "wavenet-nam": {"family": "wavenet", "layout": "nam", "stacks": [
        {"channels": 4, "kernel_size": 3, "dilations": [1, 2, 4]}, {"channels": 3, "kernel_size": 3, "dilations": [8]}],
        "gated": False, "activation": "tanh", "head_scale": 1.0},
    "wavenet-nam-gated": {"family": "wavenet", "layout": "nam", "gated": True,
                          "stacks": [{"channels": 3, "kernel_size": 2, "dilations": [1, 4]}]},
    "tcn": {"family": "tcn", "channels": 4, "kernel_size": 3, "num_layers": 3, "dilation_growth": 4},
    "fcn": {"family": "fcn", "channels": 4, "kernel_size": 3, "dilations": [1, 2, 4, 8], "activation": "tanh"},
    "lstm": {"family": "lstm", "hidden_size": 6, "num_layers": 2},
    "gru": {"family": "lstm", "hidden_size": 6, "cell": "gru", "input_skip": False},
    "cnn": {"family": "cnn", "window": 32, "channels": [4], "kernel_size": 5, "pool": 4, "hidden": 8, "direct_taps": 4},
    "fir": {"family": "fir", "length": 300, "init": "identity"},  # FFT forward, direct streaming
    "chorus": {"family": "chorus", "sample_rate": 8000, "max_delay_ms": 4.0, "feedback_terms": 2, "rate_hz": 40.0,
               "centre_ms": 2.0, "depth_ms": 1.0, "feedback": 0.3},
    "grainpitch": {"family": "grainpitch", "grain": 48, "post_taps": 6},
    "wh": {"family": "wh", "pre_length": 40, "post_length": 200, "sample_rate": 8000},  # direct pre, FFT post
    "compressor": {"family": "compressor", "sample_rate": 8000, "threshold_db": -20.0, "ratio": 4.0, "attack_ms": 1.0,
                   "release_ms": 20.0, "makeup_db": 6.0},
}


def make(name: str, seed: int = 0):
    """The model of CONFIGS[name] with every weight jittered (zero-initialised heads hide nothing)."""
    torch.manual_seed(seed)
    model = build_model(dict(CONFIGS[name])).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def offline(model, x):
    """forward over the whole signal after RF - 1 zeros (conv) / from zero state (recurrent)."""
    with torch.no_grad():
        if model.stateful:
            return model(x)[0]
        return model(torch.cat([x.new_zeros(x.shape[0], 1, model.receptive_field - 1), x], dim=-1))[0]


def block_sizes(total: int, gen: torch.Generator) -> list[int]:
    """1-sample and empty blocks first, then random sizes (0 included) up to 70."""
    out, left = [1, 0, 1, 1, 2], total - 5
    while left > 0:
        n = min(int(torch.randint(0, 71, (1,), generator=gen)), left)
        out.append(n)
        left -= n
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_random_blocks_equal_offline_forward(name):
    model = make(name)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 1, 3 * model.receptive_field + 200, generator=gen) * 0.5
    want = offline(model, x)
    streamer = Streamer(model, batch=2)
    parts, start = [], 0
    for n in block_sizes(x.shape[-1], gen):
        y = streamer(x[..., start : start + n])
        assert y.shape == (2, 1, n)
        parts.append(y)
        start += n
    got = torch.cat(parts, dim=-1)
    assert got.shape == want.shape
    # relative to the output's scale: fir's offline forward is an FFT (float32 rounding ~1e-7 of the peak)
    assert (got - want).abs().max().item() <= 1e-6 * max(1.0, want.abs().max().item())


@pytest.mark.parametrize("name", ["wavenet-mol", "wavenet-nam", "tcn", "fcn", "lstm", "gru", "fir", "chorus", "grainpitch", "wh"])
def test_scripted_streamer_equals_eager(name):
    model = make(name)
    x = torch.randn(1, 1, 2 * model.receptive_field + 100) * 0.5
    eager, scripted = Streamer(model), Streamer(model, scripted=True)
    for start in range(0, x.shape[-1], 37):
        block = x[..., start : start + 37]
        assert (eager(block) - scripted(block)).abs().max().item() <= 1e-6


@pytest.mark.parametrize("name", ["wavenet", "wavenet-2stacks-tanh-skip", "wavenet-nam", "tcn", "fcn"])
def test_block_cost_is_block_times_macs_per_sample(name):
    """Multiply-adds of one streamed block of T samples are exactly T * macs_per_sample (no
    layer recomputes its history, whatever the receptive field), and each dilated conv keeps
    exactly (k - 1) * d frames."""
    model = make(name)
    module = stream_module(model)
    state = module.initial_state(1)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d) and m.kernel_size[0] > 1]
    spans = [(m.kernel_size[0] - 1) * m.dilation[0] for m in convs]
    assert [s.shape[-1] for s in state] == spans
    total = 0

    def hook(mod, _inputs, out):
        nonlocal total
        total += out.numel() * mod.weight.shape[1]  # (C_out, k * C_in) matmul per output frame

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, MatMul)]
    assert handles
    try:
        for t in (1, 17, 64):
            total = 0
            with torch.no_grad():
                module(torch.randn(1, 1, t), state)
            assert total == t * model.macs_per_sample()
    finally:
        for h in handles:
            h.remove()


def test_histories_are_per_layer_spans():
    """Each dilated conv keeps (k - 1) * d frames of its own input; the first starts from silence."""
    model = make("tcn")
    state = stream_module(model).initial_state(3)
    spans = [(b.conv.kernel_size[0] - 1) * b.conv.dilation[0] for b in model.blocks]
    assert [tuple(s.shape) for s in state] == [(3, b.conv.in_channels, n) for b, n in zip(model.blocks, spans)]
    assert torch.all(state[0] == 0) and not torch.all(state[1] == 0)  # later layers see bias-driven silence


def test_reset_restarts_from_silence_and_lanes_are_independent():
    model = make("wavenet-nam")
    x = torch.randn(2, 1, 300)
    streamer = Streamer(model, batch=2)
    first = streamer(x)
    streamer.reset()
    assert torch.equal(streamer(x), first)
    single = Streamer(model, batch=1)
    assert (single(x[1:]) - first[1:]).abs().max().item() <= 1e-6


def test_stream_array_matches_process_array():
    model = make("fcn")
    audio = (np.random.default_rng(0).standard_normal((2, 999)) * 0.3).astype(np.float32)
    got = stream_array(model, audio, block_size=64)
    assert got.shape == audio.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, process_array(model, audio, block_size=100), atol=1e-6, rtol=0)


def test_bad_blocks_and_unscriptable_streams_are_refused():
    streamer = Streamer(make("lstm"), batch=2)
    with pytest.raises(ModelError, match=r"shape \(2, 1, T\)"):
        streamer(torch.zeros(1, 1, 8))
    for name in ("cnn", "compressor"):
        with pytest.raises(ModelError, match=f"{name}: .*cannot be scripted"):
            Streamer(make(name), scripted=True)


@pytest.mark.parametrize("name", ["wavenet-mol", "wavenet-nam-gated", "tcn"])
def test_conv_and_matmul_forms_agree(name):
    """The F.conv1d form (used for ONNX) and the matmul form (PyTorch) compute the same thing."""
    model = make(name)
    x = torch.randn(1, 1, 150)
    a, b = stream_module(model, "matmul"), stream_module(model, "conv")
    with torch.no_grad():
        ya, _ = a(x, a.initial_state(1))
        yb, _ = b(x, b.initial_state(1))
    assert (ya - yb).abs().max().item() <= 1e-6


def test_realtime_benchmark_runs(capsys):
    """benchmarks/realtime.py on tiny presets: a table row per preset and block, both paths."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "realtime.py"
    spec = importlib.util.spec_from_file_location("bench_realtime", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--presets", "lstm-tiny", "fcn-tiny", "--blocks", "64", "--seconds", "0.05"])
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith(("lstm-tiny", "fcn-tiny"))]
    assert len(rows) == 2 and all(float(r[4]) > 0 and float(r[6]) > 0 for r in rows)
