"""Hyperparameter sweeps: a Ray Tune experiment whose trials are fxdist training runs.

``sweep(cfg)`` samples TrainConfig values (dotted keys such as ``optim.lr`` or ``model``)
and runs one ``fxdist.train.train`` per trial; ``resume`` continues a killed or errored
sweep, ``status`` lists its trials, ``best`` copies the best trials' ``best.pt`` out.

Modules: ``config`` (the sweep YAML and search space), ``trial`` (one trial: the trainable,
Ray Train driver/worker, restore), ``state`` (keeping Tune's driver state restorable),
``results`` (status, best), ``trust`` (refusing folders others could write before Ray
unpickles them), ``run`` (sweep, resume, the loopback-only local Ray), ``loopback`` (a
multi-worker trial's torch rendezvous store on loopback).
"""

from fxdist.storage import check_storage
from fxdist.tune.config import (
    SPACE_KINDS,
    ResourcesConfig,
    SchedulerConfig,
    SweepConfig,
    load_sweep_config,
    plan_trials,
    trial_train_config,
)
from fxdist.tune.results import SPEC_FILE, BestTrial, SweepResult, TrialRow, best, experiment_path, has_experiment, status
from fxdist.tune.state import STATE_BACKUP_DIR
from fxdist.tune.run import check_resources, init_local_ray, resume, sweep
from fxdist.tune.trial import RUN_FILES, ReportHook
from fxdist.tune.trust import UntrustedExperiment, check_trusted

__all__ = [
    "RUN_FILES",
    "SPACE_KINDS",
    "SPEC_FILE",
    "STATE_BACKUP_DIR",
    "BestTrial",
    "ReportHook",
    "ResourcesConfig",
    "SchedulerConfig",
    "SweepConfig",
    "SweepResult",
    "TrialRow",
    "UntrustedExperiment",
    "best",
    "check_resources",
    "check_trusted",
    "check_storage",
    "experiment_path",
    "has_experiment",
    "init_local_ray",
    "load_sweep_config",
    "plan_trials",
    "resume",
    "status",
    "sweep",
    "trial_train_config",
]
