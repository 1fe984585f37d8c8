"""`fxdist pipeline`: the main job (generate, render, shard, train) from one YAML."""

from __future__ import annotations

import argparse

from fxdist.cli import parse_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="run generate -> render -> shard -> train (or sweep) from one config",
                       description="Run the whole local pipeline; rerunning resumes it.")
    p.add_argument("config", nargs="?", default="configs/pipeline/default.yaml", help="pipeline YAML")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override a key, e.g. train.steps=500")
    p.set_defaults(func=_pipeline)


def _pipeline(args) -> int:
    from fxdist.pipeline import load_pipeline, run_pipeline

    result = run_pipeline(load_pipeline(args.config, parse_overrides(args.overrides)))
    if result.best_checkpoint is None:
        print("no trial finished a validation; nothing to report")
        return 1
    esr, base = result.best_val_esr, result.baseline_val_esr
    line = f"\nbest validation ESR {esr:.4g}"
    if base is not None:
        line += f" (do-nothing baseline: {base:.4g}, i.e. {base / max(esr, 1e-12):.1f}x lower; the bar for modeling an effect is 10x)"
    print(line)
    print(f"best checkpoint: {result.best_checkpoint}")
    print(f"try it: fxdist process {result.best_checkpoint} IN.wav OUT.wav")
    print(f"judge it: fxdist evaluate {result.best_checkpoint} --data {result.shards}")
    return 0
