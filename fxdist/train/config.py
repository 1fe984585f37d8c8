"""What one training run is asked to do: typed configs, model presets, the run folder's rules.

``load_config(path, overrides) -> TrainConfig`` reads a train YAML strictly; ``check_run_folder``
refuses to train over a finished run or to resume one that is not there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from fxdist.config import from_dict, load, load_yaml, to_dict
from fxdist.errors import ConfigError
from fxdist.losses import LossConfig
from fxdist.presets import list_model_presets, model_preset

# The checkout's root, where sweeps look for train files named relative to it (configs/train/...);
# model presets ship inside the package (fxdist.presets).
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class DataConfig:
    """Where windows come from and how they are cut."""

    shards: str = "runs/data/shards/distortion"
    # auto: sequential runs for stateful (recurrent) models, random windows otherwise.
    mode: Literal["auto", "random", "sequential"] = "auto"
    # Feed-forward models: output samples per window; input = receptive_field - 1 + output_len.
    output_len: int = 4096
    # Optional total input window; must be >= the model's receptive field (then output_len
    # = window - receptive_field + 1).
    window: Optional[int] = None
    batch_size: int = 16
    workers: int = 0
    shuffle_windows: int = 256
    # Sequential mode: TBPTT chunk length, run length before jumping track, warm-up samples
    # after each jump that are excluded from the loss.
    chunk_len: int = 2048
    run_seconds: float = 2.0
    warmup_samples: int = 1024
    # Validation: at most this many seconds per validation track (None: whole tracks).
    val_max_seconds: Optional[float] = 10.0
    val_block: int = 65536

    def __post_init__(self):
        for name in ("output_len", "batch_size", "chunk_len", "val_block"):
            if getattr(self, name) <= 0:
                raise ValueError(f"data.{name} must be > 0, got {getattr(self, name)}")
        if self.workers < 0 or self.warmup_samples < 0:
            raise ValueError(f"data.workers and data.warmup_samples must be >= 0, got {self.workers}, {self.warmup_samples}")
        if self.run_seconds <= 0:
            raise ValueError(f"data.run_seconds must be > 0, got {self.run_seconds}")


@dataclass
class OptimConfig:
    """Adam with linear warm-up then a cosine or constant schedule, and gradient clipping."""

    lr: float = 5e-3
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.05
    grad_clip: Optional[float] = 1.0

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass
class TrainConfig:
    """One training run. ``model`` is a preset name (fxdist/presets/model/NAME.yaml), a YAML path,
    or an inline mapping with ``family`` and that family's fields."""

    model: Union[str, dict[str, Any]] = "lstm-tiny"
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 1000
    val_every: int = 200
    checkpoint_every: int = 200
    log_every: int = 20
    seed: int = 0
    out_dir: str = "runs/train/default"
    device: str = "auto"
    # Mixed precision (bfloat16 autocast) when training on a GPU; ignored on CPU.
    amp: bool = True
    progress: bool = True
    # Continue from out_dir/last.pt when it exists (same step count and data position).
    resume: bool = False
    # Start from another run's weights (fine-tuning); sample rates must agree.
    init_from: Optional[str] = None
    # The run's budget in seconds of training, counted across resumes (a direct fit
    # included): it stops there, with its checkpoints kept (raise it to resume further).
    # With it, the schedule's decay follows whichever of step/steps and elapsed/max_seconds
    # is further along, so a run always anneals inside its budget. Checked after each step,
    # so a run can overshoot by one step and one validation.
    max_seconds: Optional[float] = None
    # A wall-clock deadline (Unix time, as time.time()): the run stops there whatever its
    # max_seconds, and its schedule anneals by it too. For runs that share one budget and
    # may start late (a capture's candidates queued on fewer cores).
    deadline: Optional[float] = None
    # Before the first step, set the weights by the family's direct fit on the whole training
    # tracks (fir: least squares; chorus: LFO search + Adam), then fine-tune by gradient
    # steps; best.pt keeps the fit if the steps do not beat it. Needs the training split in
    # memory. Families without a fit are refused. With fit, steps may be 0: the fit alone.
    fit: bool = False
    # torch intra-op threads (None: torch's default). On a shared or busy machine 1 is often
    # fastest (benchmarks/train_throughput.py); a Ray trial should use the CPUs it was given.
    threads: Optional[int] = None

    def __post_init__(self):
        for name in ("val_every", "checkpoint_every", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.steps < 0 or (self.steps == 0 and not self.fit):
            raise ValueError(f"steps must be > 0 (or 0 with fit: true, the fit alone), got {self.steps}")
        if self.threads is not None and self.threads <= 0:
            raise ValueError(f"threads must be > 0, got {self.threads}")


@dataclass
class TrainResult:
    out_dir: str
    step: int
    best_val_esr: float | None
    last_val_esr: float | None
    baseline_val_esr: float | None
    best_checkpoint: str | None
    last_checkpoint: str | None
    train_seconds: float
    samples_per_second: float
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load a TrainConfig YAML (strict), with dotted overrides."""
    return load(TrainConfig, path, overrides)


def resolve_model_config(model: str | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Turn a preset name, YAML path or mapping into (model config dict, source name)."""
    if isinstance(model, dict):
        return dict(model), "<train config: model>"
    path = Path(model)
    if not path.suffix:
        path = model_preset(model)
    elif not path.is_file():
        raise ConfigError(f"model {model!r}: no preset or file {path}; presets: {', '.join(list_model_presets())}")
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a model config must be a mapping with 'family'")
    return data, str(path)


TRAINING_ONLY_MODEL_KEYS = ("checkpoint_activations",)


def weights_config(cfg: dict[str, Any], source: str) -> dict[str, Any]:
    """A model config with its family's defaults filled in and training-only options dropped:
    two configs that build the same weights compare equal."""
    from fxdist.models.registry import get

    rest = {k: v for k, v in cfg.items() if k != "family"}
    full = {"family": cfg["family"], **to_dict(from_dict(get(cfg["family"]).config_cls, rest, source))}
    for key in TRAINING_ONLY_MODEL_KEYS:
        full.pop(key, None)
    return full


RUN_FILES = ("best.pt", "last.pt", "metrics.jsonl")


def check_run_folder(cfg: TrainConfig, overwrite: bool = False) -> None:
    """Refuse to train over an existing run unless asked, and to resume a run that is not there.

    ``resume`` with no ``last.pt`` in ``out_dir`` (a mistyped folder) would start from
    scratch; a new run in a folder holding one would replace its ``best.pt``.
    """
    out = Path(cfg.out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: the run folder is a file; choose another --out")
    if cfg.resume:
        if not (out / "last.pt").is_file():
            held = ", ".join(sorted(p.name for p in out.iterdir())[:5]) if out.is_dir() else "the folder does not exist"
            raise ConfigError(
                f"{out}: nothing to resume, there is no last.pt ({held or 'the folder is empty'}); check --out, "
                "or leave out --resume to start a new run"
            )
        return
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not overwrite:
        raise ConfigError(
            f"{out}: holds a run ({', '.join(found)}); pass --resume to continue it, --overwrite to train a new "
            "run in its place, or choose another --out"
        )


def config_from_dict(data: dict[str, Any], source: str = "<config>") -> TrainConfig:
    return from_dict(TrainConfig, data, source)
