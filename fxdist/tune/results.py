"""What a sweep left in storage: where its experiment is, its trials (``status``), the best of
them (``best``). Read from the experiment folder alone; no Ray cluster is needed."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fxdist import storage
from fxdist.config import from_dict
from fxdist.errors import ClusterError, ConfigError
from fxdist.tune.config import SweepConfig
from fxdist.tune.trust import check_trusted

# In the experiment folder: the sweep config and resolved base training config it ran with.
SPEC_FILE = "fxdist-sweep.json"


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


# -- the experiment folder -------------------------------------------------------------------


def experiment_path(cfg: SweepConfig, storage: str | None = None) -> str:
    """Where ``sweep(cfg, storage=storage)`` puts its experiment: ``<storage>/<name>``."""
    from fxdist.storage import join, normalise

    return join(normalise(storage or cfg.storage), cfg.name)


def has_experiment(exp: str) -> bool:
    """Whether ``exp`` holds a Ray Tune experiment (its ``tuner.pkl``)."""
    return storage.exists(storage.join(exp, "tuner.pkl"))


def _require_experiment(exp: str) -> None:
    if not has_experiment(exp):
        raise ClusterError(
            f"{exp}: no Ray Tune experiment here (no tuner.pkl); give the folder that `fxdist sweep` "
            f"printed, i.e. <storage>/<sweep name>"
        )


def _load_spec(exp: str) -> tuple[SweepConfig, dict[str, Any]]:
    text = storage.read_text(storage.join(exp, SPEC_FILE))
    if text is None:
        raise ClusterError(f"{exp}: a Ray Tune experiment but not an fxdist sweep (no {SPEC_FILE})")
    data = json.loads(text)
    return from_dict(SweepConfig, data["sweep"], source=storage.join(exp, SPEC_FILE)), data["base"]


# -- trials ----------------------------------------------------------------------------------


def _summary(exp: str, started: float) -> SweepResult:
    """The result of a sweep this process just ran or resumed (the folder was written or checked here)."""
    rows = status(exp, trust=True)
    scored = [r for r in rows if r.best_val_esr is not None]
    best_row = min(scored, key=lambda r: r.best_val_esr) if scored else None
    errors = sum(r.state == "ERROR" for r in rows)
    return SweepResult(exp, rows, best_row, errors, time.perf_counter() - started)


def _results(trial_dir: str) -> list[dict[str, Any]]:
    text = storage.read_text(storage.join(trial_dir, "result.json")) or ""
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def _trials(exp: str, trust: bool = False):
    """Tune's trials, unpickled from the experiment state (``check_trusted`` first)."""
    from ray.tune import ExperimentAnalysis

    _require_experiment(exp)
    check_trusted(exp, trust)
    # It warns for every trial that has not reported yet; status shows those as step None.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    try:
        return ExperimentAnalysis(exp).trials
    except Exception as exc:  # Ray raises several types for a missing or unreadable state
        raise ClusterError(f"{exp}: cannot read the experiment state: {exc}") from exc


def status(experiment_path: str | Path, *, trust: bool = False) -> list[TrialRow]:
    """The sweep's trials from storage (no Ray needed): swept values, state, step, metrics, host.

    Reading them unpickles Tune's state: a folder someone else could have written is
    refused unless ``trust`` (``fxdist.tune.trust``).

    ``result.json`` can lose rows when Tune restarts a trial inside a running experiment (it
    re-downloads the file from storage, which may not be synced yet, Ray 2.58), so the last
    result falls back to Tune's own record of it.
    """
    exp = storage.normalise(experiment_path)
    trials = _trials(exp, trust)
    try:
        keys = list(_load_spec(exp)[0].space)
    except ClusterError:
        keys = None
    rows = []
    for trial in trials:
        trial_dir = storage.join(exp, Path(trial.path).name)
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
    for sub in (trial_dir, storage.join(trial_dir, "train")):
        names = [n for n in storage.list_names(sub, folders=True) if n.startswith("checkpoint_")]
        if names:
            return storage.join(sub, names[-1])
    return None


def best(experiment_path: str | Path, top: int = 1, to: str | Path | None = None, *, trust: bool = False) -> list[BestTrial]:
    """The ``top`` trials with the lowest best val_esr, from each trial's latest checkpoint.

    With ``to``, copies each one's best.pt, config.json and metrics.json to
    ``to/<rank>-<trial_id>/``, ready for ``fxdist process``. ``trust`` as for ``status``.
    """
    if top < 1:
        raise ConfigError(f"top must be >= 1, got {top}")
    exp = storage.normalise(experiment_path)
    rows = status(exp, trust=trust)
    found = []
    for row in rows:
        ckpt = _latest_checkpoint(row.path)
        if ckpt is None:
            continue
        meta = json.loads(storage.read_text(storage.join(ckpt, "metrics.json")) or "{}")
        value = meta.get("best_val_esr")
        if value is None or not storage.exists(storage.join(ckpt, "best.pt")):
            continue
        found.append((float(value), row, ckpt, meta))
    found.sort(key=lambda item: item[0])
    out = []
    for rank, (value, row, ckpt, meta) in enumerate(found[:top], start=1):
        folder = None
        checkpoint = storage.join(ckpt, "best.pt")
        if to is not None:
            dest = Path(to) / f"{rank}-{row.trial_id}"
            dest.mkdir(parents=True, exist_ok=True)
            for name in ("best.pt", "config.json", "metrics.json"):
                _copy_out(storage.join(ckpt, name), dest / name)
            folder, checkpoint = str(dest), str(dest / "best.pt")
        out.append(BestTrial(rank, row.trial_id, value, int(meta.get("step", row.step or 0)), row.config, checkpoint, folder))
    return out


def _copy_out(src: str, dest: Path) -> None:
    try:
        storage.copy_out(src, dest)
    except FileNotFoundError:
        if dest.name != "best.pt":
            return  # config.json/metrics.json are optional extras
        raise ClusterError(f"{src}: missing") from None
