"""Hyperparameter sweeps: a Ray Tune experiment whose trials are fxdist training runs.

``sweep(cfg)`` samples TrainConfig values (dotted keys such as ``optim.lr`` or ``model``)
and runs one ``fxdist.train.train`` per trial; ``resume`` continues a killed or errored
sweep, ``status`` lists its trials, ``best`` copies the best trials' ``best.pt`` out.

Ray pattern (checked against Ray 2.58, where Ray Train V2 is the default)
-------------------------------------------------------------------------
Ray 2.58 deprecates ``Tuner(trainer)``; its documented Train+Tune pattern is a Tune
*function trainable* that builds a ``ray.train.torch.TorchTrainer`` and calls ``fit()``,
with ``ray.tune.integration.ray_train.TuneReportCallback`` passing results to Tune. That
costs the Tune trial actor plus a Train controller, a result-queue actor, a placement
group cleaner, a preemption watcher and the workers. Measured on 2 CPUs, that is about
25 s of start-up for each trial, where the training itself takes 1–3 s. So fxdist uses
two paths, chosen by ``resources.workers``:

* ``workers == 1`` (the default): the Tune function trainable runs ``train()`` itself in
  the trial actor (one process per trial) and reports
  ``ray.tune.report(metrics, checkpoint=...)`` after every validation. Tune owns the
  checkpoints, which gives ASHA, PBT (it clones checkpoints), ``keep_checkpoints``,
  per-trial ``max_failures`` retries from the last checkpoint, and ``Tuner.restore``.
* ``workers > 1``: the documented V2 pattern. The trial is a driver that takes no CPU (it
  asks for 1 byte of the ``memory`` resource, because Tune refuses an empty request), so
  a 2-worker x 1-CPU trial fits a 2-CPU cluster. It runs a TorchTrainer (gloo on CPU,
  NCCL on GPU) whose workers each call ``train()`` with ``torch.distributed`` set up.
  Rank 0 reports the checkpoint and every rank reports its metrics. Ray Train keeps the
  checkpoints under ``<trial dir>/train``. If a worker dies, Ray Train restarts the
  group from the latest checkpoint (``FailureConfig(max_failures)``). If the driver dies,
  Tune restarts it and the new TorchTrainer, given the same storage path and name,
  resumes from Ray Train's own snapshot. PBT needs Tune-level checkpoints, so it is
  refused for ``workers > 1``.

Either way a checkpoint directory holds ``last.pt``, ``best.pt``, ``config.json``,
``metrics.json`` (the reported metrics plus the swept values), ``metrics.jsonl`` and
``starts.jsonl`` (one line each time the trial's ``train()`` started: attempt, the step it
started from, the host). On start the trainable copies these into its run folder
and calls ``train(resume=True)``, which continues at the same step and data position.
The run folder is ``<trial working dir>/run``, kept in storage as Tune artifacts
(``<experiment>/<trial_id>/run``) on the 1-worker path. Trials read shards by path, and
nothing large goes through the object store. Reported metrics are train()'s (step,
loss, val_esr, baseline_val_esr, best_val_esr, samples_per_second) plus
worker_hostname, worker_node_ip, world_size, attempt, restored_from_step,
restore_seconds and report_seconds (how long the previous report took).

Ray 2.58 behaviours worked around here:

* Tune keeps the best K checkpoints plus the latest. The experiment state can still
  point at a "latest" that was deleted after the state was last saved, and then
  ``Tuner.restore`` fails that trial. ``resume`` recreates such a folder from the
  trial's newest surviving checkpoint (see ``_repair_missing_checkpoints``).
* PBT clones another trial's latest checkpoint at any moment, so under PBT Tune
  deletes nothing while the sweep runs. ``keep_checkpoints`` is applied once the sweep
  has finished.
* Under PBT, a cloned trial's optimizer and LR schedule would keep the donor's learning
  rate, so the perturbation would change nothing. On restore, the trial's own
  ``optim.lr``/``weight_decay`` is written into the restored state.
* Reusing actors (``reuse_actors``) mixed up function trials under PBT, so every
  (re)start gets a new process. That costs about 2 s per PBT perturbation on a small
  machine.
* ``result.json`` can lose rows when Tune restarts a trial inside a running experiment:
  it re-downloads the file from storage, which may not be synced yet. ``status`` falls
  back to Tune's record of the last result, and the files inside each checkpoint are
  the durable record.

Test-only hook: if ``FXDIST_SWEEP_CRASH_AT_STEP=N`` is set in the environment of the
process that calls ``sweep``/``resume``, every trial that started *without* a
checkpoint SIGKILLs its own process the first time it validates at a step >= N, before
it reports that step. The fault-tolerance tests use it. Leave it unset in real runs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fxdist.config import apply_overrides, from_dict, load_yaml, to_dict
from fxdist.errors import ClusterError, ConfigError
from fxdist.fsutil import atomic_path, write_bytes_atomic, write_text_atomic

SPEC_FILE = "fxdist-sweep.json"
CRASH_ENV = "FXDIST_SWEEP_CRASH_AT_STEP"
SPACE_KINDS = ("choice", "grid", "uniform", "loguniform", "randint")
# Files a trial checkpoint carries (besides metrics.json, written fresh each report).
RUN_FILES = ("last.pt", "best.pt", "config.json", "metrics.jsonl", "starts.jsonl")
_NAME = re.compile(r"[A-Za-z0-9._-]+")


# -- configuration -------------------------------------------------------------------------


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
                if key == "model" or key.startswith(("model.", "data.")) or key == "steps":
                    raise ValueError(f"scheduler.mutations: {key!r} cannot change in a running trial (the checkpoint would not fit)")
                if "grid" in self.space[key]:
                    raise ValueError(f"scheduler.mutations: {key!r} is a grid key; PBT can only perturb choice/uniform/loguniform/randint")


def _check_space_entry(key: str, spec: dict[str, Any]) -> None:
    where = f"space.{key}"
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


# -- planning: base train config, search space, validation ---------------------------------


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
            values = {**firsts, key: _absolute_model(value) if key == "model" else value}
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


def _absolute_paths(data: dict[str, Any]) -> dict[str, Any]:
    """Trials run in another working directory (and maybe host): pin relative paths now."""
    data = copy.deepcopy(data)
    shards = (data.get("data") or {}).get("shards")
    if isinstance(shards, str) and "://" not in shards:
        data["data"]["shards"] = os.path.abspath(shards)
    if isinstance(data.get("init_from"), str) and "://" not in data["init_from"]:
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
        if "grid" not in spec and key != "model" and key != "steps" and not key.startswith(("model.", "data."))
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
        if key == "model":
            kind, arg = next(iter(spec.items()))
            spec = {kind: [_absolute_model(v) for v in arg]}
        space[key] = _domain(spec)
    return space


def _scheduler(cfg: SweepConfig, plan: _Plan):
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        PopulationBasedTraining,
    )

    s = cfg.scheduler
    by_steps = s.time_unit == "steps"
    time_attr = "step" if by_steps else "training_iteration"
    if s.kind == "fifo":
        return FIFOScheduler()
    if s.kind == "asha":
        max_t = s.max_t or (plan.max_steps if by_steps else math.ceil(plan.max_steps / plan.val_every))
        grace = s.grace_period or (plan.val_every if by_steps else 1)
        return ASHAScheduler(time_attr=time_attr, max_t=max_t, grace_period=min(grace, max_t), reduction_factor=s.reduction_factor)
    interval = s.perturbation_interval or (2 * plan.val_every if by_steps else 2)
    mutations = {key: _domain(cfg.space[key]) for key in _pbt_mutation_keys(cfg)}
    return PopulationBasedTraining(
        time_attr=time_attr,
        perturbation_interval=interval,
        hyperparam_mutations=mutations,
        quantile_fraction=s.quantile_fraction,
        resample_probability=s.resample_probability,
        synch=s.synch,
    )


# -- storage ---------------------------------------------------------------------------------


def _fs(path: str):
    """(pyarrow filesystem, path in it) for a local path or a URI."""
    import pyarrow.fs as pafs

    if "://" in path:
        try:
            fs, fs_path = pafs.FileSystem.from_uri(path)
        except (ValueError, OSError, NotImplementedError) as exc:  # pyarrow: ArrowInvalid, ArrowNotImplementedError, ...
            raise ClusterError(f"storage {path}: cannot open its filesystem ({exc})") from exc
        return fs, fs_path.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def check_storage(storage: str) -> str:
    """Make sure ``storage`` is writable by writing and removing a probe file.

    Returns the normalised storage (absolute path, or the URI); ClusterError names it.
    """
    import pyarrow.fs as pafs

    fs, fs_path = _fs(storage)
    probe = _join(fs_path, f".fxdist-probe-{socket.gethostname()}-{os.getpid()}")
    try:
        fs.create_dir(fs_path, recursive=True)
        with fs.open_output_stream(probe) as out:
            out.write(b"ok")
        fs.delete_file(probe)
    except (OSError, ValueError, NotImplementedError) as exc:
        raise ClusterError(f"storage {storage} is not writable: {exc}") from exc
    if isinstance(fs, pafs.LocalFileSystem):
        return fs_path
    return storage.rstrip("/")


def experiment_path(cfg: SweepConfig, storage: str | None = None) -> str:
    """Where ``sweep(cfg, storage=storage)`` puts its experiment: ``<storage>/<name>``."""
    storage = storage or cfg.storage
    base = storage.rstrip("/") if "://" in storage else os.path.abspath(os.path.expanduser(storage))
    return _join(base, cfg.name)


def _normalise_experiment(path: str | Path) -> str:
    text = os.fspath(path)
    return text.rstrip("/") if "://" in text else os.path.abspath(os.path.expanduser(text))


def has_experiment(exp: str) -> bool:
    import pyarrow.fs as pafs

    fs, fs_path = _fs(exp)
    try:
        return fs.get_file_info(_join(fs_path, "tuner.pkl")).type == pafs.FileType.File
    except (OSError, ValueError):
        return False


def _require_experiment(exp: str) -> None:
    if not has_experiment(exp):
        raise ClusterError(
            f"{exp}: no Ray Tune experiment here (no tuner.pkl); give the folder that `fxdist sweep` "
            f"printed, i.e. <storage>/<sweep name>"
        )


def _write_bytes(path: str, data: bytes) -> None:
    fs, fs_path = _fs(path)
    if "://" not in path:
        write_bytes_atomic(fs_path, data)
        return
    with fs.open_output_stream(fs_path) as out:
        out.write(data)


def _write_text(path: str, text: str) -> None:
    _write_bytes(path, text.encode())


def _read_bytes(path: str) -> bytes | None:
    fs, fs_path = _fs(path)
    try:
        with fs.open_input_stream(fs_path) as src:
            return src.read()
    except (OSError, ValueError):  # missing (FileNotFoundError/OSError, per filesystem)
        return None


def _read_text(path: str) -> str | None:
    data = _read_bytes(path)
    try:
        return None if data is None else data.decode()
    except UnicodeDecodeError:
        return None


# -- Ray session -----------------------------------------------------------------------------


@contextlib.contextmanager
def _ray_session(address: str | None, num_cpus: int | None) -> Iterator[None]:
    """Use the Ray already initialised in this process, else start or join one (and stop it after)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Tune warns when a trial checkpoints keep_checkpoints times within 5 s; fxdist
    # checkpoints at every validation, which tiny runs do several times a second.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray

    if ray.is_initialized():
        yield
        return
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            # "local": a new embedded instance, never some other process's cluster.
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
        raise ClusterError(f"cannot start or reach Ray at {address or 'local'}: {exc}") from exc
    try:
        yield
    finally:
        ray.shutdown()


def _trial_request(res: ResourcesConfig) -> dict[str, float]:
    """What Tune reserves for the trial actor itself."""
    if res.workers == 1:
        return {"cpu": res.cpus_per_worker, "gpu": res.gpus_per_worker}
    return {"cpu": 0, "memory": 1}  # V2 driver: waits on its TorchTrainer, needs no CPU


def check_resources(res: ResourcesConfig, cluster: dict[str, float] | None = None, nodes: list[dict] | None = None) -> None:
    """ClusterError if one trial needs more CPUs/GPUs than the Ray cluster has (in total, or per node per worker).

    The trial driver adds nothing: with one worker the trial actor is the worker, with
    more it is a driver that holds no CPU.
    """
    import ray

    cluster = cluster if cluster is not None else ray.cluster_resources()
    if nodes is None:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for kind, per in (("CPU", res.cpus_per_worker), ("GPU", res.gpus_per_worker)):
        need = res.workers * per
        have = float(cluster.get(kind, 0.0))
        if need > have + 1e-9:
            raise ClusterError(
                f"trial needs {need:g} {kind}s ({res.workers} worker(s) x {per:g}, trial driver +0) "
                f"but the cluster has {have:g} in total; lower resources.workers or "
                f"resources.{kind.lower()}s_per_worker, or add nodes"
            )
        biggest = max((float(n.get(kind, 0.0)) for n in nodes), default=have)
        if per > biggest + 1e-9:
            raise ClusterError(
                f"one worker needs {per:g} {kind}s but the largest node has {biggest:g}; "
                f"lower resources.{kind.lower()}s_per_worker"
            )


def _auto_concurrency(cfg: SweepConfig) -> int | None:
    """Trials that take no CPU themselves (workers > 1) must be capped, or Tune starts them all."""
    import ray

    if cfg.max_concurrent_trials is not None:
        return cfg.max_concurrent_trials
    if cfg.resources.workers == 1:
        return None
    total = ray.cluster_resources()
    res = cfg.resources
    fits = int(float(total.get("CPU", 0)) // (res.workers * res.cpus_per_worker) + 1e-9)
    if res.gpus_per_worker:
        fits = min(fits, int(float(total.get("GPU", 0)) // (res.workers * res.gpus_per_worker) + 1e-9))
    return max(1, fits)


# -- results ---------------------------------------------------------------------------------


@dataclass
class TrialRow:
    """One trial as recorded in storage."""

    trial_id: str
    state: str
    config: dict[str, Any]
    step: int | None
    val_esr: float | None
    best_val_esr: float | None
    hostname: str | None  # the node it ran on; "node1,node2" for a trial with several workers (rank order)
    node_ip: str | None
    path: str


@dataclass
class BestTrial:
    rank: int
    trial_id: str
    best_val_esr: float
    step: int
    config: dict[str, Any]
    # best.pt: the copy under ``to`` when one was given, else the file in storage.
    checkpoint: str
    folder: str | None


@dataclass
class SweepResult:
    experiment_path: str
    trials: list[TrialRow]
    best: TrialRow | None
    errors: int
    wall_seconds: float


# -- the trainable ---------------------------------------------------------------------------


def _trial_dirname(trial) -> str:
    return trial.trial_id


def _trial_entry(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """Tune function trainable of every fxdist trial."""
    if setup["workers"] > 1:
        _driver_main(config, setup)
        return
    import ray.tune

    ctx = ray.tune.get_context()
    try:
        working = Path(ctx.get_storage().trial_working_directory)
    except (AttributeError, RuntimeError):  # DeveloperAPI; Tune chdirs into it by default
        working = Path.cwd()
    checkpoint = ray.tune.get_checkpoint()

    def reporter(metrics: dict, ckpt_dir: Path | None) -> None:
        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(str(ckpt_dir)) if ckpt_dir else None)

    _run_trial(config, setup, working / "run", checkpoint, reporter, rank=0, trial_id=ctx.get_trial_id())


def _driver_main(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """workers > 1: run one Ray Train (V2) TorchTrainer and pass its results on to Tune."""
    import ray.train
    import ray.train.torch
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    ctx = ray.tune.get_context()
    trial_id = ctx.get_trial_id()
    try:
        storage = ctx.get_storage()
        storage_path, filesystem = storage.trial_fs_path, storage.storage_filesystem
    except (AttributeError, RuntimeError):  # DeveloperAPI; fall back to <experiment>/<trial_id>
        fs, exp_fs_path = _fs(setup["experiment_path"])
        storage_path, filesystem = _join(exp_fs_path, trial_id), fs
    res = setup["resources"]
    per_worker = {"CPU": res["cpus_per_worker"]}
    if res["gpus_per_worker"]:
        per_worker["GPU"] = res["gpus_per_worker"]
    keep = setup["keep_checkpoints"]
    trainer = ray.train.torch.TorchTrainer(
        _worker_main,
        train_loop_config={"config": config, "setup": setup, "trial_id": trial_id},
        scaling_config=ray.train.ScalingConfig(
            num_workers=res["workers"], use_gpu=bool(res["gpus_per_worker"]), resources_per_worker=per_worker
        ),
        run_config=ray.train.RunConfig(
            # Same (storage_path, name) on every attempt: a restarted driver resumes the run.
            name="train",
            storage_path=storage_path,
            storage_filesystem=filesystem,
            failure_config=ray.train.FailureConfig(max_failures=setup["max_failures"]),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=keep,
                checkpoint_score_attribute=setup["metric"] if keep else None,
                checkpoint_score_order=setup["mode"],
            ),
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()


def _worker_main(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker of a workers > 1 trial; torch.distributed is already set up."""
    import ray.train

    config, setup, trial_id = loop_config["config"], loop_config["setup"], loop_config["trial_id"]
    rank = ray.train.get_context().get_world_rank()
    exp_name = setup["experiment_path"].rstrip("/").rsplit("/", 1)[-1]
    run_dir = Path(tempfile.gettempdir()) / "fxdist-sweeps" / exp_name / trial_id / ("run" if rank == 0 else f"run-rank{rank}")
    device = None
    if setup["resources"]["gpus_per_worker"]:
        import ray.train.torch

        device = str(ray.train.torch.get_device())

    def reporter(metrics: dict, ckpt_dir: Path | None) -> None:
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(ckpt_dir)) if ckpt_dir else None)

    _run_trial(config, setup, run_dir, ray.train.get_checkpoint(), reporter, rank=rank, trial_id=trial_id, device=device)
    # Everything worth keeping went into the reported checkpoints; don't litter the node's /tmp.
    shutil.rmtree(run_dir, ignore_errors=True)
    for folder in (run_dir.parent, run_dir.parent.parent):
        with contextlib.suppress(OSError):  # left alone while another rank still uses it
            folder.rmdir()


def _run_trial(config, setup, run_dir: Path, checkpoint, reporter: Callable[[dict, Path | None], None], *, rank: int, trial_id: str, device: str | None = None) -> None:
    """Restore the run folder from ``checkpoint`` (or start clean), then ``train(resume=True)``."""
    import ray
    import torch

    from fxdist.train import train

    torch.set_num_threads(max(1, round(setup["resources"]["cpus_per_worker"])))
    if device is None and not setup["resources"]["gpus_per_worker"]:
        device = "cpu"
    cfg = trial_train_config(setup["base"], config, run_dir, device=device, source=f"trial {trial_id}")
    tic = time.perf_counter()
    restored_step = _prepare_run_dir(run_dir, checkpoint)
    if restored_step:
        _retarget_optimizer(run_dir / "last.pt", cfg)
    restore_seconds = time.perf_counter() - tic
    host, ip = socket.gethostname(), ray.util.get_node_ip_address()
    world = torch.distributed.get_world_size() if torch.distributed.is_available() and torch.distributed.is_initialized() else 1
    hosts = [host]
    if world > 1:  # every rank's node, for status (rank 0 reports)
        hosts = [None] * world
        torch.distributed.all_gather_object(hosts, host)
    attempt = _record_start(run_dir, restored_step, host) if rank == 0 else 0
    crash_at = setup.get("crash_at_step") if checkpoint is None and rank == 0 else None
    swept = dict(config)
    last_report = [0.0, 0]  # seconds the previous report took (checkpoint copy + persist + Ray hand-off), reports made

    def report(metrics: dict, ckpt_dir: Path | None) -> None:
        if crash_at is not None and metrics["step"] >= crash_at:
            os.kill(os.getpid(), signal.SIGKILL)  # test-only hook (see module docstring)
        tic = time.perf_counter()
        metrics = {
            **metrics, "worker_hostname": host, "worker_hostnames": ",".join(hosts), "worker_node_ip": ip,
            "attempt": attempt, "world_size": world,
            "restored_from_step": restored_step, "restore_seconds": restore_seconds, "report_seconds": last_report[0],
        }
        if ckpt_dir is None:
            reporter(metrics, None)
        else:
            tmp = Path(tempfile.mkdtemp(prefix="fxdist-ckpt-"))
            try:
                _fill_checkpoint(tmp, Path(ckpt_dir), {**metrics, "trial_id": trial_id, "swept": swept})
                reporter(metrics, tmp)  # Ray copies the folder to storage before returning
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        last_report[0] = time.perf_counter() - tic
        last_report[1] += 1

    reports_before = last_report[1]
    train(cfg, report)
    if world == 1 and last_report[1] == reports_before and restored_step >= cfg.steps:
        # Restored at its last step: the run was complete, but a driver killed right after the
        # final report (a requeue) may not have kept that row. Report it again from the run's log.
        # (Not with several Ray Train workers: their reports must stay in step across ranks.)
        final = _last_metrics(run_dir)
        if final is not None:
            report(final, None)
    share = run_dir / "data-share.json"
    if share.exists():  # which shard row groups this rank streamed, kept beside the trial
        _write_text(_join(setup["experiment_path"], trial_id, "data-share", f"rank{rank}.json"), share.read_text())


def _last_metrics(run_dir: Path) -> dict | None:
    """The last row of the run's metrics.jsonl (what train() last reported), or None."""
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


def _prepare_run_dir(run_dir: Path, checkpoint) -> int:
    """Copy a checkpoint's run files into ``run_dir`` (or clear it); returns the restored step."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if checkpoint is None:
        for name in (*RUN_FILES, "metrics.json"):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tb", ignore_errors=True)
        return 0
    with checkpoint.as_directory() as src:
        src = Path(src)
        for name in RUN_FILES:
            if (src / name).is_file():
                with atomic_path(run_dir / name) as tmp:
                    shutil.copyfile(src / name, tmp)
            else:
                (run_dir / name).unlink(missing_ok=True)
        meta = src / "metrics.json"
        if meta.is_file():
            return int(json.loads(meta.read_text()).get("step", 0))
    if (run_dir / "last.pt").is_file():
        from fxdist.checkpoint import load_checkpoint

        return load_checkpoint(run_dir / "last.pt").step
    return 0


def _record_start(run_dir: Path, from_step: int, host: str) -> int:
    path = run_dir / "starts.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    attempt = len(lines) + 1
    lines.append(json.dumps({"attempt": attempt, "from_step": from_step, "hostname": host, "time": time.time()}))
    write_text_atomic(path, "\n".join(lines) + "\n")
    return attempt


def _fill_checkpoint(dest: Path, run_dir: Path, metrics: dict) -> None:
    """Hard-link (else copy) the run files into ``dest``; checkpoints are replaced atomically
    by train(), so a link is a stable snapshot."""
    for name in RUN_FILES:
        src = run_dir / name
        if not src.is_file():
            continue
        try:
            os.link(src, dest / name)
        except OSError:
            shutil.copyfile(src, dest / name)
    (dest / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))


def _retarget_optimizer(path: Path, cfg) -> None:
    """Make a restored optimizer use this trial's lr / weight decay.

    A PBT exploit hands a trial another trial's checkpoint with a perturbed config. The
    optimizer and LR-schedule state in that checkpoint still carry the old learning
    rate, so without this the perturbation would do nothing.
    """
    from fxdist.checkpoint import load_checkpoint, save_checkpoint
    from fxdist.train import lr_lambda

    ckpt = load_checkpoint(path)
    old = ckpt.train_config.get("optim", {})
    if old.get("lr") == cfg.optim.lr and old.get("weight_decay") == cfg.optim.weight_decay:
        return
    if ckpt.optimizer_state is None:
        return
    factor = lr_lambda(cfg.optim, cfg.steps)(ckpt.step)
    groups = ckpt.optimizer_state.get("param_groups", [])
    for group in groups:
        group["initial_lr"] = cfg.optim.lr
        group["lr"] = cfg.optim.lr * factor
        group["weight_decay"] = cfg.optim.weight_decay
    if ckpt.scheduler_state is not None:
        ckpt.scheduler_state["base_lrs"] = [cfg.optim.lr] * len(groups)
        ckpt.scheduler_state["_last_lr"] = [cfg.optim.lr * factor] * len(groups)
    ckpt.train_config = to_dict(cfg)
    save_checkpoint(path, ckpt)


# -- public API ------------------------------------------------------------------------------


def _setup(cfg: SweepConfig, plan: _Plan, exp: str) -> dict[str, Any]:
    crash = os.environ.get(CRASH_ENV)
    return {
        "base": plan.base,
        "workers": cfg.resources.workers,
        "resources": to_dict(cfg.resources),
        "max_failures": cfg.max_failures,
        "keep_checkpoints": cfg.keep_checkpoints,
        "metric": cfg.metric,
        "mode": cfg.mode,
        "experiment_path": exp,
        "crash_at_step": int(crash) if crash else None,
    }


def _trainable(cfg: SweepConfig, plan: _Plan, exp: str):
    from ray import tune

    fn = tune.with_parameters(_trial_entry, setup=_setup(cfg, plan, exp))
    return tune.with_resources(fn, _trial_request(cfg.resources))


def _check_v2(cfg: SweepConfig) -> None:
    if cfg.resources.workers > 1 and os.environ.get("RAY_TRAIN_V2_ENABLED", "1").lower() in ("0", "false"):
        raise ClusterError("resources.workers > 1 needs Ray Train V2; unset RAY_TRAIN_V2_ENABLED=0")


def sweep(cfg: SweepConfig, address: str | None = None, storage: str | None = None, *, num_cpus: int | None = None) -> SweepResult:
    """Run the sweep to the end and summarise it.

    Ray: the one already initialised in this process, else ``address`` (``"auto"``,
    ``"ray://host:10001"``, ``"host:6379"``), else a new local instance with
    ``num_cpus`` (default: all cores), shut down afterwards. The experiment goes to
    ``<storage or cfg.storage>/<cfg.name>``; a folder that already holds one raises
    ClusterError (continue it with ``resume``).
    """
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    started = time.perf_counter()
    plan = plan_trials(cfg, source=f"sweep {cfg.name}")
    _check_v2(cfg)
    storage = check_storage(storage or cfg.storage)
    exp = _join(storage, cfg.name)
    if has_experiment(exp):
        raise ClusterError(f"{exp} already holds an experiment; continue it with `fxdist resume {exp}` or set another name")
    with _ray_session(address, num_cpus):
        check_resources(cfg.resources)
        _write_text(_join(exp, SPEC_FILE), json.dumps({"sweep": to_dict(cfg), "base": plan.base}, indent=2))
        # PBT hands a trial another trial's latest checkpoint at any time, so Tune must not
        # delete any while it runs; keep_checkpoints is applied when the sweep ends.
        keep = None if cfg.scheduler.kind == "pbt" else cfg.keep_checkpoints
        tuner = tune.Tuner(
            _trainable(cfg, plan, exp),
            param_space=_param_space(cfg),
            tune_config=tune.TuneConfig(
                metric=cfg.metric,
                mode=cfg.mode,
                num_samples=cfg.num_samples,
                scheduler=_scheduler(cfg, plan),
                search_alg=BasicVariantGenerator(max_concurrent=_auto_concurrency(cfg) or 0, random_state=cfg.seed),
                time_budget_s=cfg.time_budget_s,
                trial_dirname_creator=_trial_dirname,
                reuse_actors=False,  # reused function-trainable actors mixed up trials under PBT (Ray 2.58)
            ),
            run_config=tune.RunConfig(
                name=cfg.name,
                storage_path=storage,
                failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=keep,
                    checkpoint_score_attribute=cfg.metric if keep else None,
                    checkpoint_score_order=cfg.mode,
                ),
                sync_config=tune.SyncConfig(sync_artifacts=True),
                verbose=cfg.verbose,
                callbacks=[_state_backup_callback(exp)],
            ),
        )
        _fit(tuner)
    _prune_after_pbt(exp, cfg)
    return _summary(exp, started)


def _prune_after_pbt(exp: str, cfg: SweepConfig) -> None:
    """After a PBT sweep, keep each finished trial's best ``keep_checkpoints`` checkpoints plus its latest."""
    import pyarrow.fs as pafs

    if cfg.scheduler.kind != "pbt" or cfg.keep_checkpoints is None:
        return
    for row in status(exp):
        if row.state != "TERMINATED":
            continue  # a later resume may still need any of them
        fs, trial_path = _fs(row.path)
        infos = fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
        names = sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_"))
        scored = []
        for name in names[:-1]:
            meta = json.loads(_read_text(_join(row.path, name, "metrics.json")) or "{}")
            value = meta.get(cfg.metric)
            scored.append((math.inf if value is None else float(value), name))
        for _, name in sorted(scored)[cfg.keep_checkpoints:]:
            fs.delete_dir(_join(trial_path, name))


STATE_BACKUP_DIR = ".fxdist-state"  # in the experiment folder: the last complete driver state
STATE_BACKUP_EVERY_S = 5.0
# Ray's driver state in the experiment folder, as (file pattern, format, what it is); Ray
# restores each from the newest file of its pattern. A driver killed while it writes or
# syncs one leaves it empty or cut off: Tune then cannot restore the run (a cut search
# state makes it restart the whole sweep from scratch).
STATE_FILES = (
    ("experiment_state-*.json", "json", "experiment state"),
    ("basic-variant-state-*.json", "pickle", "search state"),
    ("search_gen_state-*.json", "pickle", "search state"),
    ("searcher-state-*.pkl", "pickle", "searcher state"),
    ("callback-states-*.pkl", "pickle", "callback state"),
)


def _newest_state_file(exp: str, pattern: str = "experiment_state-*.json") -> str | None:
    """Name of the newest file matching ``pattern`` in ``exp`` (by name, as Ray picks it)."""
    import fnmatch

    import pyarrow.fs as pafs

    fs, fs_path = _fs(exp)
    try:
        infos = fs.get_file_info(pafs.FileSelector(fs_path, allow_not_found=True))
    except (OSError, ValueError):
        return None
    names = fnmatch.filter([i.base_name for i in infos if i.type == pafs.FileType.File], pattern)
    return max(names) if names else None


def _complete(data: bytes | None, fmt: str) -> bool:
    """Whether ``data`` is a whole JSON document or a whole pickle (scanned to its STOP
    opcode without building any object)."""
    if not data:
        return False
    if fmt == "json":
        try:
            json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
        return True
    import pickletools

    try:
        last = None
        for last, _arg, _pos in pickletools.genops(data):
            pass
    except Exception:  # noqa: BLE001  (genops raises ValueError, EOFError, ... on a cut stream)
        return False
    return last is not None and last.name == "STOP"


def _state_backup_callback(exp: str):
    """A Tune callback that copies each of Ray's driver state files (``STATE_FILES``) to
    ``<exp>/.fxdist-state/`` each time it has changed and reads as complete (checked every
    ``STATE_BACKUP_EVERY_S`` at most).

    Ray writes some in place and syncs all of them to the storage without temp file +
    rename, so a driver killed at the wrong moment leaves an empty or cut file that
    ``Tuner.restore`` cannot read; ``resume`` then puts these copies back
    (``_restore_state_backup``).
    """
    from ray.tune import Callback

    class _StateBackup(Callback):
        def __init__(self):
            self.last_check = -math.inf
            self.last_data: dict[str, bytes] = {}

        def on_step_end(self, iteration: int, trials: list, **info) -> None:
            now = time.monotonic()
            if now - self.last_check < STATE_BACKUP_EVERY_S:
                return
            self.last_check = now
            for pattern, fmt, _what in STATE_FILES:
                name = _newest_state_file(exp, pattern)
                data = _read_bytes(_join(exp, name)) if name else None
                if data is not None and data != self.last_data.get(pattern) and _complete(data, fmt):
                    _write_bytes(_join(exp, STATE_BACKUP_DIR, name), data)
                    self.last_data[pattern] = data

    return _StateBackup()


def _restore_state_backup(exp: str) -> bool:
    """For each of Ray's driver state files whose newest copy is empty or cut off (a driver
    killed while Ray wrote it), put back the last complete copy the sweep saved. Returns
    whether it restored any; ClusterError names a cut file that has no complete copy."""
    restored = False
    for pattern, fmt, what in STATE_FILES:
        name = _newest_state_file(exp, pattern)
        if name is None or _complete(_read_bytes(_join(exp, name)), fmt):
            continue
        backup = _read_bytes(_join(exp, STATE_BACKUP_DIR, name))
        if not _complete(backup, fmt):
            raise ClusterError(
                f"{_join(exp, name)}: the {what} is empty or cut off (the driver was killed while writing "
                f"it) and there is no complete copy in {_join(exp, STATE_BACKUP_DIR)}"
            )
        _write_bytes(_join(exp, name), backup)
        logging.getLogger(__name__).warning("%s was cut off; restored the last complete copy from %s", name, STATE_BACKUP_DIR)
        restored = True
    return restored


def _fit(tuner) -> None:
    from ray.tune import TuneError

    try:
        tuner.fit()
    except TuneError as exc:
        raise ClusterError(f"the sweep stopped: {exc}") from exc


def _load_spec(exp: str) -> tuple[SweepConfig, dict[str, Any]]:
    text = _read_text(_join(exp, SPEC_FILE))
    if text is None:
        raise ClusterError(f"{exp}: a Ray Tune experiment but not an fxdist sweep (no {SPEC_FILE})")
    data = json.loads(text)
    return from_dict(SweepConfig, data["sweep"], source=_join(exp, SPEC_FILE)), data["base"]


def resume(experiment_path: str | Path, address: str | None = None, *, num_cpus: int | None = None) -> SweepResult:
    """Continue a killed or errored sweep: unfinished and errored trials go on from their
    latest checkpoint; finished trials are not rerun."""
    from ray import tune

    started = time.perf_counter()
    exp = _normalise_experiment(experiment_path)
    _require_experiment(exp)
    cfg, base = _load_spec(exp)
    _check_v2(cfg)
    plan = _Plan(base=base, max_steps=0, val_every=0)
    _restore_state_backup(exp)
    _repair_missing_checkpoints(exp)
    with _ray_session(address, num_cpus):
        check_resources(cfg.resources)
        tuner = tune.Tuner.restore(
            exp,
            trainable=_trainable(cfg, plan, exp),
            resume_unfinished=True,
            resume_errored=True,
            restart_errored=False,
        )
        _fit(tuner)
    _prune_after_pbt(exp, cfg)
    return _summary(exp, started)


def _repair_missing_checkpoints(exp: str) -> list[str]:
    """Work around stale references to deleted checkpoints (seen with Ray 2.58).

    Tune keeps the best K checkpoints by score plus the latest one. When a new
    checkpoint arrives, it deletes the previous latest unless that one is among the best
    K. But the experiment state on disk is written only every ~10 s, or after K
    checkpoints. So a driver killed in between leaves a state that points at a deleted
    folder, and ``Tuner.restore`` then fails that trial ("does not exist on storage
    anymore"). Each unfinished trial whose referenced latest checkpoint is gone gets the
    folder back, filled with the trial's newest surviving checkpoint (newer, never
    older). ``train`` resumes from the step stored inside it. Returns the recreated
    folders.
    """
    import pyarrow.fs as pafs

    repaired = []
    for trial in _trials(exp):
        if trial.status == "TERMINATED":
            continue
        try:
            latest = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
            ckpt = latest.checkpoint if latest is not None else None
        except AttributeError:  # another Ray's internals: nothing to repair with
            continue
        if ckpt is None or ckpt.filesystem.get_file_info(ckpt.path).type != pafs.FileType.NotFound:
            continue
        newest = _latest_checkpoint(_join(exp, Path(trial.path).name))
        if newest is None:
            continue
        src_fs, src_path = _fs(newest)
        ckpt.filesystem.create_dir(ckpt.path, recursive=True)
        pafs.copy_files(src_path, ckpt.path, source_filesystem=src_fs, destination_filesystem=ckpt.filesystem)
        repaired.append(ckpt.path)
    return repaired


def _summary(exp: str, started: float) -> SweepResult:
    rows = status(exp)
    scored = [r for r in rows if r.best_val_esr is not None]
    best_row = min(scored, key=lambda r: r.best_val_esr) if scored else None
    errors = sum(r.state == "ERROR" for r in rows)
    return SweepResult(exp, rows, best_row, errors, time.perf_counter() - started)


def _results(trial_dir: str) -> list[dict[str, Any]]:
    text = _read_text(_join(trial_dir, "result.json")) or ""
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def _trials(exp: str):
    from ray.tune import ExperimentAnalysis

    _require_experiment(exp)
    # It warns for every trial that has not reported yet; status shows those as step None.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    try:
        return ExperimentAnalysis(exp).trials
    except Exception as exc:  # Ray raises several types for a missing or unreadable state
        raise ClusterError(f"{exp}: cannot read the experiment state: {exc}") from exc


def status(experiment_path: str | Path) -> list[TrialRow]:
    """The sweep's trials from storage (no Ray needed): swept values, state, step, metrics, host."""
    exp = _normalise_experiment(experiment_path)
    trials = _trials(exp)
    try:
        keys = list(_load_spec(exp)[0].space)
    except ClusterError:
        keys = None
    rows = []
    for trial in trials:
        trial_dir = _join(exp, Path(trial.path).name)
        results = _results(trial_dir)
        last = results[-1] if results else dict(trial.last_result or {})
        esrs = [r["val_esr"] for r in results if isinstance(r.get("val_esr"), (int, float))]
        best = last.get("best_val_esr")
        if esrs:
            best = min(esrs) if best is None else min(best, min(esrs))
        config = {k: trial.config.get(k) for k in (keys if keys is not None else trial.config)}
        rows.append(TrialRow(
            trial_id=trial.trial_id,
            state=trial.status,
            config=config,
            step=last.get("step"),
            val_esr=last.get("val_esr"),
            best_val_esr=best,
            hostname=last.get("worker_hostnames") or last.get("worker_hostname") or last.get("hostname"),
            node_ip=last.get("worker_node_ip") or last.get("node_ip"),
            path=trial_dir,
        ))
    return rows


def _latest_checkpoint(trial_dir: str) -> str | None:
    """The trial's newest checkpoint folder: Tune's checkpoint_NNNNNN, else Ray Train's train/checkpoint_<time>."""
    import pyarrow.fs as pafs

    fs, fs_path = _fs(trial_dir)
    for sub in (fs_path, _join(fs_path, "train")):
        try:
            infos = fs.get_file_info(pafs.FileSelector(sub, allow_not_found=True))
        except (OSError, ValueError):  # not a folder there
            continue
        names = sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_"))
        if names:
            # re-attach the scheme of a URI
            return _join(trial_dir if sub == fs_path else _join(trial_dir, "train"), names[-1])
    return None


def best(experiment_path: str | Path, top: int = 1, to: str | Path | None = None) -> list[BestTrial]:
    """The ``top`` trials with the lowest best val_esr, from each trial's latest checkpoint.

    With ``to``, copies each one's best.pt, config.json and metrics.json to
    ``to/<rank>-<trial_id>/``, ready for ``fxdist process``.
    """
    if top < 1:
        raise ConfigError(f"top must be >= 1, got {top}")
    exp = _normalise_experiment(experiment_path)
    rows = status(exp)
    found = []
    for row in rows:
        ckpt = _latest_checkpoint(row.path)
        if ckpt is None:
            continue
        meta = json.loads(_read_text(_join(ckpt, "metrics.json")) or "{}")
        value = meta.get("best_val_esr")
        if value is None or not _exists(_join(ckpt, "best.pt")):
            continue
        found.append((float(value), row, ckpt, meta))
    found.sort(key=lambda item: item[0])
    out = []
    for rank, (value, row, ckpt, meta) in enumerate(found[:top], start=1):
        folder = None
        checkpoint = _join(ckpt, "best.pt")
        if to is not None:
            dest = Path(to) / f"{rank}-{row.trial_id}"
            dest.mkdir(parents=True, exist_ok=True)
            for name in ("best.pt", "config.json", "metrics.json"):
                _copy_out(_join(ckpt, name), dest / name)
            folder, checkpoint = str(dest), str(dest / "best.pt")
        out.append(BestTrial(rank, row.trial_id, value, int(meta.get("step", row.step or 0)), row.config, checkpoint, folder))
    return out


def _exists(path: str) -> bool:
    import pyarrow.fs as pafs

    fs, fs_path = _fs(path)
    return fs.get_file_info(fs_path).type == pafs.FileType.File


def _copy_out(src: str, dest: Path) -> None:
    fs, fs_path = _fs(src)
    try:
        with fs.open_input_stream(fs_path) as stream, atomic_path(dest) as tmp, open(tmp, "wb") as out:
            while chunk := stream.read(1 << 20):
                out.write(chunk)
    except FileNotFoundError:
        if dest.name != "best.pt":
            return  # config.json/metrics.json are optional extras
        raise ClusterError(f"{src}: missing") from None
