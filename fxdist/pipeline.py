"""The main job end to end on one machine: generate -> (ingest) -> render -> shard ->
train one model, or sweep several on a local Ray and pull the best.

Every step is resumable (existing tracks and renders are skipped, training continues
from its last checkpoint, an existing sweep is resumed), so rerunning the same config
after an interruption finishes the work instead of redoing it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from fxdist.config import load
from fxdist.data.generate import GenerateConfig
from fxdist.data.shards import ShardConfig
from fxdist.train import TrainConfig, TrainResult


@dataclass
class PipelineConfig:
    """Where data and runs go, which effect to learn, and each step's own config.

    ``train.data.shards`` and ``train.out_dir`` are set by the pipeline (ROOT/shards/EFFECT,
    ROOT/train) unless given.
    """

    root: str = "runs/demo"
    effect: str = "distortion"
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    # Optional folder of real music added to the clean set (any format/rate; downmixed).
    music_dir: Optional[str] = None
    render_workers: Optional[int] = None
    shard: ShardConfig = field(default_factory=ShardConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # A sweep YAML (configs/sweep/...): run it on local Ray instead of training one model;
    # its trials read ROOT/shards/EFFECT and it is stored under ROOT/sweeps.
    sweep: Optional[str] = None
    sweep_cpus: Optional[int] = None


@dataclass
class PipelineResult:
    shards: str
    best_checkpoint: str | None
    best_val_esr: float | None
    baseline_val_esr: float | None
    train: TrainResult | None = None
    experiment: str | None = None


def run_pipeline(cfg: PipelineConfig, log: Callable[[str], None] = print) -> PipelineResult:
    from fxdist.data.generate import generate
    from fxdist.data.ingest import ingest_folder
    from fxdist.data.render import render
    from fxdist.data.shards import write_shards
    from fxdist.effects import load_effect
    from fxdist.train import train

    root = Path(cfg.root)
    gen = dataclasses.replace(cfg.generate)
    paths = generate(gen, root / "clean", workers=2)
    log(f"[1/4] generate: {len(paths)} synthetic track(s) at {gen.sample_rate} Hz in {root / 'clean'}")
    if cfg.music_dir:
        result = ingest_folder(cfg.music_dir, root, gen.sample_rate)
        log(f"      ingest: {len(result.outputs)} music file(s) from {cfg.music_dir}")
    chain = load_effect(cfg.effect)
    report = render(root / "clean", chain, root / "processed" / chain.name, workers=cfg.render_workers, progress=cfg.train.progress)
    log(f"[2/4] render: {report}")
    dest = root / "shards" / chain.name
    manifest = write_shards(root, dest, chain.name, cfg.shard)
    log(f"[3/4] shard: {manifest.summary()}")
    if cfg.sweep:
        return _sweep(cfg, dest, root, log)
    tcfg = cfg.train
    data = tcfg.data
    if data.shards == TrainConfig().data.shards:
        data = dataclasses.replace(data, shards=str(dest))
    out_dir = tcfg.out_dir if tcfg.out_dir != TrainConfig().out_dir else str(root / "train")
    tcfg = dataclasses.replace(tcfg, data=data, out_dir=out_dir, resume=True)
    log(f"[4/4] train: model {tcfg.model}, {tcfg.steps} steps -> {out_dir}")
    result = train(tcfg)
    return PipelineResult(str(dest), result.best_checkpoint, result.best_val_esr, result.baseline_val_esr, train=result)


def _sweep(cfg: PipelineConfig, dest: Path, root: Path, log: Callable[[str], None]) -> PipelineResult:
    """Sweep on local Ray (or resume the sweep a previous run left), then pull the best trial."""
    from fxdist.checkpoint import load_checkpoint
    from fxdist.tune import has_experiment, best, experiment_path, load_sweep_config, resume, sweep

    scfg = load_sweep_config(cfg.sweep, {"overrides.data.shards": str(dest), "storage": str(root / "sweeps")})
    exp = experiment_path(scfg)
    if has_experiment(exp):
        log(f"[4/4] sweep: resuming {exp}")
        resume(exp, num_cpus=cfg.sweep_cpus)
    else:
        log(f"[4/4] sweep: {cfg.sweep} on local Ray -> {exp}")
        sweep(scfg, num_cpus=cfg.sweep_cpus)
    top = best(exp, top=1, to=root / "best")
    if not top:
        return PipelineResult(str(dest), None, None, None, experiment=exp)
    ckpt = load_checkpoint(top[0].checkpoint)
    log(f"      best trial {top[0].trial_id}: {top[0].config} -> {top[0].checkpoint}")
    return PipelineResult(str(dest), top[0].checkpoint, top[0].best_val_esr, ckpt.metadata.get("baseline_val_esr"), experiment=exp)


def load_pipeline(path: str | Path, overrides: dict | None = None) -> PipelineConfig:
    return load(PipelineConfig, path, overrides)
