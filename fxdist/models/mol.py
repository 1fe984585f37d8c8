"""Discretized mixture of logistics (PixelCNN++ / WaveNet-MoL) over 2^bits audio levels.

Classes are the PCM levels c_k = k / 2^(bits-1), k in [-2^(bits-1), 2^(bits-1)): for 24 bits
exactly the values a 24-bit file decodes to, all exact in float32. Each bin has width
2 / 2^bits, centred on its level; the lowest and highest bins take the tails. No one-hot or
softmax over 2^bits classes is ever formed: probabilities are differences of logistic CDFs.

params: (B, 3K, T) = K mixture logits, K means, K log-scales (in that order).
target: (B, 1, T) levels in [-1, 1); other values are treated as centres of their own bin.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from fxdist.errors import ModelError

LOG_SCALE_MAX = 7.0


def log_scale_min(bits: int) -> float:
    """Floor for log-scales: a little below log of a bin half-width (sharper is pointless)."""
    return -bits * math.log(2.0) - 3.0


def split_params(params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B, 3K, T) -> logits, means, raw log-scales, each (B, K, T)."""
    if not isinstance(params, Tensor) or params.dim() != 3 or params.shape[1] % 3 != 0 or params.shape[1] == 0:
        got = tuple(params.shape) if isinstance(params, Tensor) else type(params).__name__
        raise ModelError(f"mol: params must have shape (B, 3K, T) with K >= 1, got {got}")
    return params.chunk(3, dim=1)


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or not 1 <= bits <= 32:
        raise ModelError(f"mol: bits must be an int in 1..32, got {bits!r}")


def mol_nll(params: Tensor, target: Tensor, bits: int = 24, reduction: Literal["mean", "none"] = "mean") -> Tensor:
    """Negative log-likelihood (nats per sample) of ``target`` under the discretized mixture.

    Stable for tiny bins: log(sigmoid(a) - sigmoid(b)) is evaluated as
    log sigmoid(a) + log sigmoid(-b) + log(1 - exp(-(a - b))), with a - b = binwidth / scale
    computed directly (no cancellation), so 24-bit bins cost no precision in float32.
    reduction 'none' gives (B, T).
    """
    _check_bits(bits)
    logits, means, log_scales = split_params(params)
    if (
        not isinstance(target, Tensor)
        or target.dim() != 3
        or target.shape[1] != 1
        or target.shape[0] != params.shape[0]
        or target.shape[2] != params.shape[2]
    ):
        got = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
        want = (params.shape[0], 1, params.shape[2])
        raise ModelError(f"mol: target must have shape {want} to match params {tuple(params.shape)}, got {got}")
    half = 2.0**-bits  # half a bin width
    log_scales = log_scales.clamp(log_scale_min(bits), LOG_SCALE_MAX)
    inv_scale = torch.exp(-log_scales)
    centered = target - means
    upper = (centered + half) * inv_scale
    lower = (centered - half) * inv_scale
    log_cdf_upper = -F.softplus(-upper)  # log sigmoid(upper)
    log_sf_lower = -F.softplus(lower)  # log (1 - sigmoid(lower))
    log_width = torch.log(-torch.expm1(-(2.0 * half) * inv_scale))
    interior = log_cdf_upper + log_sf_lower + log_width
    top_level = 1.0 - 2.0 * half
    log_prob = torch.where(
        target < -1.0 + half, log_cdf_upper, torch.where(target > top_level - half, log_sf_lower, interior)
    )
    log_mix = torch.logsumexp(F.log_softmax(logits, dim=1) + log_prob, dim=1)
    nll = -log_mix
    if reduction == "none":
        return nll
    if reduction == "mean":
        return nll.mean()
    raise ModelError(f"mol: reduction must be 'mean' or 'none', got {reduction!r}")


def mol_mean(params: Tensor, bits: int = 24) -> Tensor:
    """Mixture mean sum_k pi_k mu_k, clipped to the level range: (B, 3K, T) -> (B, 1, T)."""
    _check_bits(bits)
    logits, means, _ = split_params(params)
    mean = (torch.softmax(logits, dim=1) * means).sum(dim=1, keepdim=True)
    return mean.clamp(-1.0, 1.0 - 2.0 ** (1 - bits))


def mol_sample(params: Tensor, generator: torch.Generator | None = None, bits: int = 24) -> Tensor:
    """Draw levels from the mixture: (B, 3K, T) -> (B, 1, T), values k / 2^(bits-1) exactly."""
    _check_bits(bits)
    logits, means, log_scales = split_params(params)
    logits, means, log_scales = logits.detach(), means.detach(), log_scales.detach()
    tiny = torch.finfo(logits.dtype).tiny
    eps = torch.finfo(logits.dtype).eps

    def uniform(shape: torch.Size) -> Tensor:
        # Drawn where the generator lives (a CPU generator may drive a CUDA model).
        where = generator.device if generator is not None else logits.device
        u = torch.rand(shape, generator=generator, device=where, dtype=logits.dtype).to(logits.device)
        return u.clamp(tiny, 1.0 - eps)

    gumbel = -torch.log(-torch.log(uniform(logits.shape)))
    pick = (logits + gumbel).argmax(dim=1, keepdim=True)
    mu = means.gather(1, pick)
    scale = torch.exp(log_scales.clamp(log_scale_min(bits), LOG_SCALE_MAX).gather(1, pick))
    u = uniform(mu.shape)
    x = mu + scale * (torch.log(u) - torch.log1p(-u))
    levels = 2.0 ** (bits - 1)
    return (x * levels).round().clamp(-levels, levels - 1) / levels
