"""`fxdist pipeline`: the main job (generate, render, shard, train) from one YAML."""

from __future__ import annotations

import argparse

from fxdist.cli import parse_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="run generate -> render -> shard -> train from one config",
                       description="Run the whole local pipeline; rerunning resumes it.")
    p.add_argument("config", nargs="?", default="configs/pipeline/default.yaml", help="pipeline YAML")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override a key, e.g. train.steps=500")
    p.set_defaults(func=_pipeline)


def _pipeline(args) -> int:
    from fxdist.pipeline import load_pipeline, run_pipeline

    result = run_pipeline(load_pipeline(args.config, parse_overrides(args.overrides)))
    t = result.train
    print(f"\nbest validation ESR {t.best_val_esr:.4g} after {t.step} steps "
          f"(do-nothing baseline: {t.baseline_val_esr:.4g}, i.e. {t.baseline_val_esr / max(t.best_val_esr, 1e-12):.1f}x lower)")
    print(f"best checkpoint: {t.best_checkpoint}")
    print(f"try it: fxdist process {t.best_checkpoint} IN.wav OUT.wav")
    return 0
