"""One training run: ``train(cfg) -> TrainResult`` (``trainer``) and what it is asked to do (``config``)."""

from fxdist.train.config import (
    REPO_ROOT,
    RUN_FILES,
    TRAINING_ONLY_MODEL_KEYS,
    DataConfig,
    OptimConfig,
    TrainConfig,
    TrainResult,
    check_run_folder,
    config_from_dict,
    load_config,
    resolve_model_config,
    weights_config,
)
from fxdist.train.trainer import Trainer, latency_aligned, lr_lambda, train

__all__ = [
    "DataConfig", "OptimConfig", "REPO_ROOT", "RUN_FILES", "TRAINING_ONLY_MODEL_KEYS", "TrainConfig", "TrainResult",
    "Trainer", "check_run_folder", "config_from_dict", "latency_aligned", "load_config", "lr_lambda",
    "resolve_model_config", "train", "weights_config",
]
