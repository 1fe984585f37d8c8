"""What a sweep is: its YAML (SweepConfig), the search space over TrainConfig keys, and the
per-trial training config that a sampled point of that space gives."""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fxdist.config import apply_overrides, from_dict, load_yaml
from fxdist.errors import ConfigError
from fxdist.storage import is_uri

SPACE_KINDS = ("choice", "grid", "uniform", "loguniform", "randint")
_NAME = re.compile(r"[A-Za-z0-9._-]+")


@dataclass
class ResourcesConfig:
    """What one trial gets: ``workers`` Ray Train workers with these resources each."""

    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError(f"resources.workers must be >= 1, got {self.workers}")
        if self.cpus_per_worker <= 0:
            raise ValueError(f"resources.cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        if self.gpus_per_worker < 0:
            raise ValueError(f"resources.gpus_per_worker must be >= 0, got {self.gpus_per_worker}")


@dataclass
class SchedulerConfig:
    """Trial scheduler. Times count training steps or validation rounds (``time_unit``)."""

    kind: Literal["asha", "pbt", "fifo"] = "asha"
    time_unit: Literal["steps", "validations"] = "steps"
    # ASHA: longest a trial runs (default: the largest train ``steps`` in the sweep), the
    # least it runs before it can be stopped (default: one validation), and the fraction
    # kept per rung is 1/reduction_factor.
    max_t: int | None = None
    grace_period: int | None = None
    reduction_factor: float = 3.0
    # PBT: exploit/explore every ``perturbation_interval`` (default: two validations),
    # perturbing the ``mutations`` keys of ``space`` (default: all but grid, model.* and data.*).
    perturbation_interval: int | None = None
    mutations: list[str] | None = None
    quantile_fraction: float = 0.25
    resample_probability: float = 0.25
    # PBT: wait for every trial to reach each perturbation point (deterministic exploits).
    synch: bool = False

    def __post_init__(self):
        for name in ("max_t", "grace_period", "perturbation_interval"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"scheduler.{name} must be >= 1, got {value}")
        if self.reduction_factor <= 1:
            raise ValueError(f"scheduler.reduction_factor must be > 1, got {self.reduction_factor}")
        if not 0 < self.quantile_fraction <= 0.5:
            raise ValueError(f"scheduler.quantile_fraction must be in (0, 0.5], got {self.quantile_fraction}")
        if not 0 <= self.resample_probability <= 1:
            raise ValueError(f"scheduler.resample_probability must be in [0, 1], got {self.resample_probability}")
        if self.max_t is not None and self.grace_period is not None and self.grace_period > self.max_t:
            raise ValueError(f"scheduler.grace_period {self.grace_period} exceeds max_t {self.max_t}")


@dataclass
class SweepConfig:
    """A sweep: a base training config, a search space over its dotted keys, and how to run it.

    ``space`` maps dotted TrainConfig keys (``model``, ``optim.lr``, ``data.output_len``,
    ``model.hidden_size`` for a preset's field ...) to exactly one of ``{choice: [...]}``,
    ``{grid: [...]}`` (every value, times num_samples), ``{uniform: [lo, hi]}``,
    ``{loguniform: [lo, hi]}`` (0 < lo < hi) or ``{randint: [lo, hi]}`` (both ends included).
    The key ``variant`` takes a choice or grid of mappings of dotted keys applied together
    (``{grid: [{model: wh, fit: true}, {model: wavenet-small, optim.lr: 0.004}]}``): trials
    that differ in several keys at once, as a capture's candidate families do.
    """

    name: str = "sweep"
    # A training YAML (relative to the working directory, else to the sweep file) or an
    # inline TrainConfig mapping.
    train: str | dict[str, Any] = "configs/train/default.yaml"
    # Fixed dotted TrainConfig overrides applied to every trial (e.g. data.shards, steps).
    overrides: dict[str, Any] = field(default_factory=dict)
    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_samples: int = 1
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    metric: Literal["val_esr", "best_val_esr", "loss"] = "val_esr"
    mode: Literal["min"] = "min"
    # None: as many as resources allow (for workers > 1: cluster resources // one trial's).
    max_concurrent_trials: int | None = None
    time_budget_s: float | None = None
    # Retries per trial after a crash, each from the trial's latest checkpoint.
    max_failures: int = 2
    # Checkpoints kept per trial: the best K by metric plus the latest (None: all).
    keep_checkpoints: int | None = 2
    # Local folder or URI (s3://, gs://, file://); the experiment goes to <storage>/<name>.
    storage: str = "runs/sweeps"
    # Seed of the search (which values are sampled); each trial's own seed is train ``seed``.
    seed: int | None = 0
    # Tune console output: 0 silent, 1 experiment status, 2 + trial results.
    verbose: int = 1

    def __post_init__(self):
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"name {self.name!r} must match [A-Za-z0-9._-]+ (it becomes a folder name)")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.max_failures < 0:
            raise ValueError(f"max_failures must be >= 0, got {self.max_failures}")
        for name in ("keep_checkpoints", "max_concurrent_trials"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or null, got {value}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError(f"time_budget_s must be > 0, got {self.time_budget_s}")
        if not self.storage:
            raise ValueError("storage must be a folder or URI, got an empty string")
        for key, spec in self.space.items():
            _check_space_entry(key, spec)
        if self.scheduler.kind == "pbt":
            if self.resources.workers > 1:
                raise ValueError(
                    f"scheduler.kind 'pbt' needs Tune-level checkpoints, which trials with resources.workers "
                    f"{self.resources.workers} (> 1) do not have; use asha or fifo, or workers: 1"
                )
            for key in self.scheduler.mutations or []:
                if key not in self.space:
                    raise ValueError(f"scheduler.mutations: {key!r} is not a key of space ({', '.join(self.space) or 'empty'})")
                if key in ("model", "steps", VARIANT_KEY) or key.startswith(("model.", "data.")):
                    raise ValueError(f"scheduler.mutations: {key!r} cannot change in a running trial (the checkpoint would not fit)")
                if "grid" in self.space[key]:
                    raise ValueError(f"scheduler.mutations: {key!r} is a grid key; PBT can only perturb choice/uniform/loguniform/randint")


VARIANT_KEY = "variant"


def _check_space_entry(key: str, spec: dict[str, Any]) -> None:
    where = f"space.{key}"
    if key == VARIANT_KEY:
        kind, arg = next(iter(spec.items())) if len(spec) == 1 else (None, None)
        if kind not in ("choice", "grid") or not isinstance(arg, list) or not arg:
            raise ValueError(f"{where}: expected {{grid: [...]}} or {{choice: [...]}} of mappings of dotted keys, got {spec!r}")
        for value in arg:
            if not isinstance(value, dict) or not value or VARIANT_KEY in value:
                raise ValueError(f"{where}: each value must be a non-empty mapping of dotted TrainConfig keys, got {value!r}")
        return
    if not key or any(not part for part in key.split(".")):
        raise ValueError(f"{where}: not a dotted TrainConfig key")
    if len(spec) != 1:
        raise ValueError(f"{where}: expected exactly one of {', '.join(SPACE_KINDS)}, got {sorted(spec)}")
    kind, arg = next(iter(spec.items()))
    if kind not in SPACE_KINDS:
        raise ValueError(f"{where}: unknown kind {kind!r}; use one of {', '.join(SPACE_KINDS)}")
    if kind in ("choice", "grid"):
        if not isinstance(arg, list) or not arg:
            raise ValueError(f"{where}: {kind} needs a non-empty list of values, got {arg!r}")
        return
    if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in arg)):
        raise ValueError(f"{where}: {kind} needs [lo, hi] numbers, got {arg!r}")
    lo, hi = arg
    if kind == "randint":
        if not all(isinstance(v, int) for v in arg) or lo > hi:
            raise ValueError(f"{where}: randint needs integers lo <= hi, got {arg!r}")
        return
    if lo >= hi:
        raise ValueError(f"{where}: {kind} needs lo < hi, got [{lo}, {hi}]")
    if kind == "loguniform" and lo <= 0:
        raise ValueError(f"{where}: loguniform needs 0 < lo < hi, got [{lo}, {hi}]")


def load_sweep_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepConfig:
    """Load a sweep YAML strictly, apply dotted ``overrides``, and validate it against TrainConfig.

    A relative ``train`` path is looked up from the working directory, then from the
    sweep file's folder, then from the fxdist checkout (for the shipped configs/); the
    returned config holds it as an absolute path.
    """
    path = Path(path)
    data = load_yaml(path) or {}
    if overrides:
        data = apply_overrides(data, overrides)
    cfg = from_dict(SweepConfig, data, source=str(path))
    if isinstance(cfg.train, str):
        cfg.train = str(_find_train_file(cfg.train, path.parent, str(path)))
    plan_trials(cfg, source=str(path))
    return cfg


def _find_train_file(name: str, base: Path, source: str) -> Path:
    from fxdist.train import REPO_ROOT

    candidates = [Path(name)] if Path(name).is_absolute() else [Path.cwd() / name, base / name, REPO_ROOT / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise ConfigError(f"{source}: train: no training config at {' or '.join(map(str, candidates))}")



@dataclass
class _Plan:
    base: dict[str, Any]  # TrainConfig data with absolute paths; out_dir is set per trial
    max_steps: int
    val_every: int


def plan_trials(cfg: SweepConfig, source: str = "<sweep>") -> _Plan:
    """Resolve the base training config and check every space value builds a valid TrainConfig.

    Each value of each key (choice/grid values, range ends) is applied on its own over
    the base plus the other keys' first values; ConfigError names the key and the value.
    """
    from fxdist.train import TrainConfig

    if isinstance(cfg.train, dict):
        base = copy.deepcopy(cfg.train)
        train_source = f"{source}: train"
    else:
        train_file = Path(cfg.train) if Path(cfg.train).is_absolute() else _find_train_file(cfg.train, Path.cwd(), source)
        base = load_yaml(train_file) or {}
        train_source = str(train_file)
        if not isinstance(base, dict):
            raise ConfigError(f"{train_file}: a training config must be a mapping")
    try:
        base = _apply_values(base, _flatten(cfg.overrides))
        from_dict(TrainConfig, base, source=f"{train_source} (+ overrides)")
    except ConfigError as exc:
        raise ConfigError(f"{source}: train/overrides: {exc}") from exc
    base = _absolute_paths(base)

    firsts = {key: _candidates(spec)[0] for key, spec in cfg.space.items()}
    steps_seen, vals_seen, models_seen = [], [], set()
    for key, spec in cfg.space.items():
        for value in _candidates(spec):
            values = {**firsts, key: _absolute_model(value) if key == "model" else _absolute_variant(value) if key == VARIANT_KEY else value}
            try:
                tc = trial_train_config(base, values, "<validation>", source="trial config")
                _check_model(tc.model, "model", models_seen)
            except ConfigError as exc:
                raise ConfigError(f"{source}: space.{key}: value {value!r} does not give a valid training config: {exc}") from exc
            steps_seen.append(tc.steps)
            vals_seen.append(tc.val_every)
    tc = trial_train_config(base, firsts, "<validation>", source=source)
    _check_model(tc.model, source, models_seen)
    from fxdist.data import stream

    stream.open_manifest(tc.data.shards)  # ShardError naming the path, before any trial starts
    if cfg.scheduler.kind == "pbt" and not _pbt_mutation_keys(cfg):
        raise ConfigError(f"{source}: scheduler pbt has nothing to perturb: space has no choice/range keys outside model.*/data.*")
    return _Plan(base=base, max_steps=max(steps_seen or [tc.steps]), val_every=min(vals_seen or [tc.val_every]))


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"data": {"shards": x}, "optim.lr": y} -> {"data.shards": x, "optim.lr": y}."""
    out = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        # a whole model mapping (with its family) is one value; anything else nests keys
        if isinstance(value, dict) and value and not (dotted == "model" and "family" in value):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _candidates(spec: dict[str, Any]) -> list[Any]:
    """Values to validate: every choice/grid value; a range's two ends, typed as sampled."""
    kind, arg = next(iter(spec.items()))
    if kind in ("uniform", "loguniform"):
        return [float(v) for v in arg]
    return list(arg)


def _absolute_model(value: Any) -> Any:
    """A model given as a YAML path (not a preset name) must survive the trial's chdir."""
    if isinstance(value, str) and Path(value).suffix and not Path(value).is_absolute() and Path(value).exists():
        return str(Path(value).resolve())
    return value


def _absolute_variant(value: Any) -> Any:
    if isinstance(value, dict) and "model" in value:
        return {**value, "model": _absolute_model(value["model"])}
    return value


def _absolute_paths(data: dict[str, Any]) -> dict[str, Any]:
    """Trials run in another working directory (and maybe host): pin relative paths now."""
    data = copy.deepcopy(data)
    shards = (data.get("data") or {}).get("shards")
    if isinstance(shards, str) and not is_uri(shards):
        data["data"]["shards"] = os.path.abspath(shards)
    if isinstance(data.get("init_from"), str) and not is_uri(data["init_from"]):
        data["init_from"] = os.path.abspath(data["init_from"])
    if "model" in data:
        data["model"] = _absolute_model(data["model"])
    return data


def _check_model(model: Any, source: str, seen: set[str]) -> None:
    """Build the model once per distinct config, so bad model fields fail before any trial."""
    from fxdist.models.registry import build_model
    from fxdist.train import resolve_model_config

    model_cfg, model_source = resolve_model_config(model)
    key = json.dumps(model_cfg, sort_keys=True, default=str)
    if key not in seen:
        seen.add(key)
        build_model(model_cfg, source=f"{source} ({model_source})")


def trial_train_config(base: dict[str, Any], values: dict[str, Any], out_dir: str | Path, *, device: str | None = None, source: str = "<trial>"):
    """The TrainConfig of one trial: ``base`` with the sampled dotted ``values`` applied.

    ``model.<field>`` keys over a preset name first expand the preset to its mapping.
    """
    from fxdist.train import TrainConfig

    data = _apply_values(base, values)
    data["out_dir"] = str(out_dir)
    data["resume"] = True
    data["progress"] = False
    if device is not None and data.get("device", "auto") == "auto":
        data["device"] = device
    return from_dict(TrainConfig, data, source=source)


def _apply_values(data: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """apply_overrides, except that ``model.<field>`` keys over a preset name first expand
    the preset to its mapping (so ``model.hidden_size`` tunes a preset's field)."""
    from fxdist.train import TrainConfig, resolve_model_config

    if VARIANT_KEY in values:
        values = {**{k: v for k, v in values.items() if k != VARIANT_KEY}, **values[VARIANT_KEY]}
    plain = {k: v for k, v in values.items() if not k.startswith("model.")}
    model_keys = {k: v for k, v in values.items() if k.startswith("model.")}
    data = apply_overrides(data, plain)
    if model_keys:
        model = data.get("model", TrainConfig.model)
        if not isinstance(model, dict):
            data["model"] = resolve_model_config(model)[0]
        data = apply_overrides(data, model_keys)
    return data


def _pbt_mutation_keys(cfg: SweepConfig) -> list[str]:
    if cfg.scheduler.mutations is not None:
        return list(cfg.scheduler.mutations)
    return [
        key for key, spec in cfg.space.items()
        if "grid" not in spec and key not in ("model", "steps", VARIANT_KEY) and not key.startswith(("model.", "data."))
    ]


def _domain(spec: dict[str, Any]):
    from ray import tune

    kind, arg = next(iter(spec.items()))
    if kind == "choice":
        return tune.choice(arg)
    if kind == "grid":
        return tune.grid_search(arg)
    if kind == "uniform":
        return tune.uniform(*arg)
    if kind == "loguniform":
        return tune.loguniform(*arg)
    return tune.randint(arg[0], arg[1] + 1)  # Ray's upper bound is exclusive


def _param_space(cfg: SweepConfig) -> dict[str, Any]:
    space = {}
    for key, spec in cfg.space.items():
        if key in ("model", VARIANT_KEY):
            kind, arg = next(iter(spec.items()))
            spec = {kind: [_absolute_model(v) if key == "model" else _absolute_variant(v) for v in arg]}
        space[key] = _domain(spec)
    return space
