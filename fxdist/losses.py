"""Training losses and the metrics they share: ESR, DC, multi-resolution STFT.

Pure functions over tensors of shape (B, 1, T) (any leading dims work for ESR/DC);
``CombinedLoss`` weights them per config. Follows Wright & Välimäki (2019/2020):
ESR on a pre-emphasised signal plus a DC term.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

EPS = 1e-10


@dataclass
class LossConfig:
    """Weights of each term; a weight of 0 turns the term off."""

    esr: float = 1.0
    dc: float = 0.0
    mrstft: float = 0.0
    # First-order pre-emphasis H(z) = 1 - a z^-1 applied before ESR (0 disables it).
    pre_emphasis: float = 0.85
    mrstft_fft_sizes: list[int] = field(default_factory=lambda: [256, 1024, 2048])
    mrstft_hop_sizes: list[int] = field(default_factory=lambda: [64, 256, 512])
    mrstft_win_lengths: list[int] = field(default_factory=lambda: [256, 1024, 2048])

    def __post_init__(self):
        for name in ("esr", "dc", "mrstft"):
            if getattr(self, name) < 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {getattr(self, name)}")
        if self.esr + self.dc + self.mrstft <= 0:
            raise ValueError("at least one loss weight (esr, dc, mrstft) must be > 0")
        if not 0 <= self.pre_emphasis < 1:
            raise ValueError(f"pre_emphasis must be in [0, 1), got {self.pre_emphasis}")
        sizes = (len(self.mrstft_fft_sizes), len(self.mrstft_hop_sizes), len(self.mrstft_win_lengths))
        if len(set(sizes)) != 1:
            raise ValueError(f"mrstft_fft_sizes, mrstft_hop_sizes, mrstft_win_lengths differ in length: {sizes}")


def pre_emphasis(x: Tensor, coeff: float) -> Tensor:
    """y[n] = x[n] - coeff * x[n-1] along the last axis; x: (..., T) -> (..., T-1)."""
    if coeff == 0:
        return x
    return x[..., 1:] - coeff * x[..., :-1]


def esr(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Error-to-signal ratio sum((t - p)^2) / sum(t^2) over all elements; 0 is perfect.

    pred, target: (..., T); mask: broadcastable to them, 1 where samples count.
    """
    err = (target - pred) ** 2
    sig = target**2
    if mask is not None:
        err, sig = err * mask, sig * mask
    return err.sum() / (sig.sum() + EPS)


def dc_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Squared difference of means over time, relative to target energy. (B, 1, T) -> scalar."""
    diff = (target.mean(dim=-1) - pred.mean(dim=-1)) ** 2
    return diff.mean() / ((target**2).mean() + EPS)


class CombinedLoss(nn.Module):
    """Weighted ESR (pre-emphasised) + DC + multi-resolution STFT, as configured.

    forward(pred, target, mask=None) -> (total, parts) with parts a dict of floats.
    The mask (B, 1, T) excludes warm-up samples from ESR and DC; the STFT term sees the
    masked-out span zeroed in both signals.
    """

    def __init__(self, cfg: LossConfig, sample_rate: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.mrstft = None
        if cfg.mrstft > 0:
            import auraloss

            self.mrstft = auraloss.freq.MultiResolutionSTFTLoss(
                fft_sizes=list(cfg.mrstft_fft_sizes),
                hop_sizes=list(cfg.mrstft_hop_sizes),
                win_lengths=list(cfg.mrstft_win_lengths),
                sample_rate=sample_rate,
            )

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        cfg = self.cfg
        total = pred.new_zeros(())
        parts: dict[str, float] = {}
        if cfg.esr > 0:
            m = None if mask is None else mask[..., 1:] if cfg.pre_emphasis else mask
            value = esr(pre_emphasis(pred, cfg.pre_emphasis), pre_emphasis(target, cfg.pre_emphasis), m)
            total = total + cfg.esr * value
            parts["esr"] = float(value.detach())
        if cfg.dc > 0:
            p, t = (pred, target) if mask is None else (pred * mask, target * mask)
            value = dc_loss(p, t)
            total = total + cfg.dc * value
            parts["dc"] = float(value.detach())
        if self.mrstft is not None:
            p, t = (pred, target) if mask is None else (pred * mask, target * mask)
            value = self.mrstft(p.float(), t.float())
            total = total + cfg.mrstft * value
            parts["mrstft"] = float(value.detach())
        return total, parts
