"""A checkpoint written by a GPU run loads on a CPU-only host with torch's safe loader."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fxdist.checkpoint import load_checkpoint, load_model
from fxdist.process import predict
from fxdist.train import Trainer, train

from tests.gpu.conftest import family_config

pytestmark = pytest.mark.gpu


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


@pytest.mark.parametrize("family", ["lstm", "wavenet"])
def test_gpu_checkpoint_loads_on_cpu_weights_only(tiny_shards, tmp_path, family, cuda, exact_float32):
    cfg = family_config(family, tiny_shards, tmp_path / "run", device="cuda", amp=True, steps=20)
    result = train(cfg)
    raw = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in _tensors(raw))
    ckpt = load_checkpoint(result.last_checkpoint)  # default map_location: cpu
    assert all(t.device.type == "cpu" for t in _tensors(ckpt.optimizer_state))
    assert all(t.dtype != torch.bfloat16 for t in _tensors(ckpt.carried_state or []))  # autocast's carried state, in fp32

    model, _ = load_model(result.best_checkpoint)
    clean = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.3
    on_cpu = predict(model, clean, 4096, "cpu")
    on_gpu = predict(model.to(cuda), clean, 4096, cuda)
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4 * float(np.abs(clean).max()))


def test_gpu_run_resumes_on_cpu(tiny_shards, tmp_path, cuda):
    """last.pt of a GPU run (optimizer, scheduler, RNG, carried LSTM state) continues on the CPU."""
    cfg = family_config("lstm", tiny_shards, tmp_path / "run", device="cuda", amp=True, steps=20)
    train(cfg)
    more = dataclasses.replace(cfg, device="cpu", resume=True, steps=30)
    trainer = Trainer(more)
    assert trainer.step == 20 and trainer.device.type == "cpu"
    try:
        result = trainer.run()
    finally:
        trainer.close()
    assert result.step == 30 and np.isfinite(result.best_val_esr)
