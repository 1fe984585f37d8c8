"""`fxdist sweep`, `fxdist resume`, `fxdist status`, `fxdist best`: Ray Tune sweeps of training runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from fxdist.cli import parse_overrides


TRUST_HELP = ("unpickle the experiment's Ray Tune state even if the folder or a state file is not yours or is "
              "writable by group/others (only if you trust everyone who can write there)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a hyperparameter sweep (Ray Tune)", description="Run a Ray Tune sweep whose trials are fxdist training runs.")
    p.add_argument("config", help="sweep YAML (see configs/sweep/)")
    p.add_argument("--storage", help="folder or URI for the experiment (default: the config's storage, runs/sweeps)")
    p.add_argument("--address", help="Ray cluster to join: auto, HOST:PORT or ray://HOST:10001 (default: start a local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray started when no --address is given (default: all cores)")
    p.add_argument("--shards", help="shard set path or URI (sets overrides.data.shards)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override a sweep config key, e.g. num_samples=4 or overrides.steps=500 (repeatable)")
    p.add_argument("--resume-if-exists", action="store_true", help="resume the experiment when it already exists (for batch scripts that get requeued)")
    p.add_argument("--trust", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=_sweep)

    p = sub.add_parser("resume", help="continue a killed or errored sweep", description="Continue a sweep: unfinished trials resume from their latest checkpoint; finished ones are not rerun.")
    p.add_argument("experiment", help="experiment folder or URI printed by `fxdist sweep` (<storage>/<name>)")
    p.add_argument("--address", help="Ray cluster to join (default: start a local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray started when no --address is given")
    p.add_argument("--trust", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=_resume)

    p = sub.add_parser("status", help="list a sweep's trials", description="List a sweep's trials: swept values, state, step, validation ESR, host.")
    p.add_argument("experiment", help="experiment folder or URI")
    p.add_argument("--trust", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=_status)

    p = sub.add_parser("best", help="copy the best trials' checkpoints out of a sweep", description="Copy the best trials' best.pt (+ config.json, metrics.json) to DIR/<rank>-<trial_id>/.")
    p.add_argument("experiment", help="experiment folder or URI")
    p.add_argument("--top", type=int, default=1, help="how many trials (default 1)")
    p.add_argument("--to", help="destination folder (default runs/best/<experiment name>)")
    p.add_argument("--trust", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=_best)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(rows) -> str:
    """Trial rows as an aligned text table, best val_esr first."""
    keys = list(rows[0].config) if rows else []
    header = ["trial", "state", *keys, "step", "val_esr", "best_val_esr", "host"]
    ordered = sorted(rows, key=lambda r: (r.best_val_esr is None, r.best_val_esr or 0.0))
    body = [
        [r.trial_id, r.state, *(_fmt(r.config.get(k)) for k in keys), _fmt(r.step), _fmt(r.val_esr), _fmt(r.best_val_esr), _fmt(r.hostname)]
        for r in ordered
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in (header, *body)]
    return "\n".join(lines)


def _print_result(result) -> None:
    print(format_table(result.trials))
    if result.best is not None:
        print(f"best: {result.best.trial_id} best_val_esr {result.best.best_val_esr:.4g} {result.best.config}")
    unfinished = sum(r.state not in ("TERMINATED", "ERROR") for r in result.trials)
    if result.errors or unfinished:
        print(f"{result.errors} trial(s) errored, {unfinished} unfinished; "
              f"`fxdist resume {result.experiment_path}` continues them from their checkpoints")
    print(f"experiment: {result.experiment_path} ({result.wall_seconds:.0f} s); `fxdist best {result.experiment_path}` copies the best checkpoint")


def _sweep(args) -> int:
    from fxdist.tune import experiment_path, has_experiment, load_sweep_config, resume, sweep

    overrides = parse_overrides(args.overrides)
    if args.shards:
        overrides["overrides.data.shards"] = args.shards
    cfg = load_sweep_config(args.config, overrides)
    exp = experiment_path(cfg, args.storage)
    if args.resume_if_exists and has_experiment(exp):
        print(f"experiment: {exp} (exists: resuming)", flush=True)
        result = resume(exp, address=args.address, num_cpus=args.num_cpus, trust=args.trust)
    else:
        print(f"experiment: {exp}", flush=True)
        result = sweep(cfg, address=args.address, storage=args.storage, num_cpus=args.num_cpus)
    _print_result(result)
    return 1 if result.errors else 0


def _resume(args) -> int:
    from fxdist.tune import resume

    result = resume(args.experiment, address=args.address, num_cpus=args.num_cpus, trust=args.trust)
    _print_result(result)
    return 1 if result.errors else 0


def _status(args) -> int:
    from fxdist.tune import status

    print(format_table(status(args.experiment, trust=args.trust)))
    return 0


def _best(args) -> int:
    from fxdist.tune import best

    to = args.to or str(Path("runs/best") / args.experiment.rstrip("/").rsplit("/", 1)[-1])
    picked = best(args.experiment, top=args.top, to=to, trust=args.trust)
    if not picked:
        print("no trial has a checkpoint yet")
        return 1
    for b in picked:
        print(f"{b.rank}. {b.checkpoint}  best_val_esr {b.best_val_esr:.4g}  step {b.step}  {b.config}")
    return 0
