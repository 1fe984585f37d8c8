"""Run a trained model over audio (arrays and files), block by block with carried state.

Rendering in blocks equals rendering the whole signal at once (each block goes through
``EffectModel.stream_block``, which carries the convolution history or recurrent state to the
next), so files of any length run in bounded memory. Evaluation, export and training
validation render through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fxdist.audio import read_audio, resample, write_audio
from fxdist.checkpoint import load_model
from fxdist.errors import ConfigError, DataError


@dataclass
class ProcessReport:
    input: str
    output: str
    sample_rate: int
    channels: int
    seconds: float
    wall_seconds: float

    @property
    def realtime_factor(self) -> float:
        return self.seconds / max(self.wall_seconds, 1e-9)


def pick_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when there is one, else CPU; any other name as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device {name!r} is not a torch device: {exc}") from exc


@torch.no_grad()
def process_array(model, audio: np.ndarray, block_size: int = 4096, device: torch.device | str = "cpu") -> np.ndarray:
    """Run the model over (C, N) float32 audio; channels run as independent batch lanes -> (C, N).

    Blocks go to ``device`` (where the model is) one at a time. The output is moved
    ``model.latency`` samples earlier, as a host compensates a plugin's latency offline (the
    input runs on into that many zeros)."""
    if block_size <= 0:
        raise ValueError(f"block_size must be > 0, got {block_size}")
    if audio.shape[-1] == 0:
        return np.zeros_like(audio, dtype=np.float32)
    latency = model.latency
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[:, None, :]
    if latency:
        x = torch.cat([x, x.new_zeros(*x.shape[:-1], latency)], dim=-1)
    state = None
    out = []
    for start in range(0, x.shape[-1], block_size):
        y, state = model.stream_block(x[..., start : start + block_size].to(device), state)
        out.append(y.float().cpu())
    return torch.cat(out, dim=-1)[:, 0, latency:].numpy()


@torch.no_grad()
def predict(model, clean: np.ndarray, block: int = 65536, device: torch.device | str = "cpu") -> np.ndarray:
    """Run ``model`` over a whole mono signal (N,) in blocks with carried state -> (N,).

    Equals running the model over the signal in one piece with zero history before it, then moving the
    output ``model.latency`` samples earlier (``process_array`` on one channel).
    """
    return process_array(model, np.asarray(clean)[None, :], block, device)[0]


def check_output(out_path: str | Path, subtype: str, block_size: int) -> None:
    """Refuse a block size, output format or sample format that cannot be written, before any work."""
    import soundfile as sf

    from fxdist.audio import _format_for

    if block_size <= 0:
        raise ConfigError(f"block size must be a positive number of samples, got {block_size}")
    fmt = _format_for(Path(out_path))
    subtypes = sf.available_subtypes(fmt)
    if subtype not in subtypes:
        raise ConfigError(
            f"{out_path}: sample format {subtype!r} is not one {fmt} files hold; choose one of "
            f"{', '.join(t for t in ('FLOAT', 'PCM_24', 'PCM_16', 'DOUBLE', 'PCM_32') if t in subtypes) or ', '.join(subtypes)}"
        )


def process_file(
    model_path: str | Path,
    in_path: str | Path,
    out_path: str | Path,
    block_size: int = 4096,
    subtype: str = "FLOAT",
    allow_resample: bool = False,
) -> ProcessReport:
    """Read ``in_path``, run the model, write ``out_path`` atomically at the input's rate."""
    import time

    check_output(out_path, subtype, block_size)
    model, ckpt = load_model(model_path)
    audio, sr = read_audio(in_path)
    if sr != ckpt.sample_rate:
        if not allow_resample:
            raise DataError(
                f"{in_path}: sample rate {sr} Hz differs from the model's {ckpt.sample_rate} Hz "
                f"({model_path}); pass --resample to resample it to the model's rate and back, or resample the "
                "file yourself"
            )
        audio = resample(audio, sr, ckpt.sample_rate)
    started = time.perf_counter()
    out = process_array(model, audio, block_size)
    wall = time.perf_counter() - started
    if sr != ckpt.sample_rate:
        out = resample(out, ckpt.sample_rate, sr)
    write_audio(out_path, out, sr, subtype=subtype)
    return ProcessReport(str(in_path), str(out_path), sr, audio.shape[0], audio.shape[1] / ckpt.sample_rate, wall)
