"""Running models on the GPU equals running them on the CPU: streaming blocks and offline processing.

TF32 is off (``exact_float32``), so both sides compute in fp32; the outputs agree within
``TOL`` of the input's peak (summation order differs between cuDNN and the CPU kernels).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fxdist.models import build_model
from fxdist.process import process_array
from fxdist.realtime import Streamer

from tests.gpu.conftest import FAMILY_PRESETS, model_for

pytestmark = pytest.mark.gpu

TOL = 1e-4
SR = 16000


def noise(seconds: float = 0.5, channels: int = 1) -> np.ndarray:
    return (0.3 * np.random.default_rng(0).standard_normal((channels, int(seconds * SR)))).astype(np.float32)


def model_of(family: str):
    torch.manual_seed(0)
    return build_model(model_for(FAMILY_PRESETS[family], SR)).eval()


def stream(model, audio: np.ndarray, block: int, device, scripted: bool) -> np.ndarray:
    streamer = Streamer(model, batch=audio.shape[0], scripted=scripted, device=device)
    x = torch.from_numpy(audio)[:, None, :]
    parts = [streamer(x[..., i : i + block].to(device)) for i in range(0, x.shape[-1], block)]
    return torch.cat(parts, dim=-1)[:, 0, :].cpu().numpy()


@pytest.mark.parametrize("family", sorted(FAMILY_PRESETS))
@pytest.mark.parametrize("scripted", [False, True], ids=["eager", "scripted"])
def test_streaming_on_gpu_equals_cpu(family, scripted, cuda, exact_float32):
    model = model_of(family)
    if scripted and model.stream_module().unscriptable:
        pytest.skip(model.stream_module().unscriptable)
    audio = noise(channels=2)
    cpu = stream(model, audio, 256, "cpu", scripted)
    gpu = stream(model, audio, 256, cuda, scripted)
    assert next(iter(model.parameters()), torch.zeros(())).device.type == "cpu"  # the caller's model stays
    np.testing.assert_allclose(gpu, cpu, atol=TOL * float(np.abs(audio).max()), err_msg=family)


@pytest.mark.parametrize("family", sorted(FAMILY_PRESETS))
def test_process_array_on_gpu_equals_cpu(family, cuda, exact_float32):
    model = model_of(family)
    audio = noise(channels=2)
    cpu = process_array(model, audio, 4096, "cpu")
    gpu = process_array(model.to(cuda), audio, 4096, cuda)
    np.testing.assert_allclose(gpu, cpu, atol=TOL * float(np.abs(audio).max()), err_msg=family)


def test_bf16_autocast_streaming_stays_close(cuda):
    """Inference under bf16 autocast: within 2 % of the peak of fp32 (a coarse guard, bf16 has 8 bits)."""
    model = model_of("wavenet")
    audio = noise()
    ref = stream(model, audio, 256, cuda, scripted=False)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low = stream(model, audio, 256, cuda, scripted=False)
    assert np.abs(low - ref).max() <= 0.02 * max(float(np.abs(ref).max()), 1e-3)
