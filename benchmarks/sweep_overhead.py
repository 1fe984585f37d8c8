"""What a Ray Tune sweep costs on top of the training it runs.

    python benchmarks/sweep_overhead.py [--cpus 2] [--steps 100] [--val-every 20] [--trials 3]
        [--no-ray-train] [--keep DIR]

Measured, on a tiny real shard set (6 synthetic 4 s tracks at 16 kHz through the
``distortion`` preset) and configs/train/tiny.yaml (lstm-tiny):

* Ray start: ``ray.init(num_cpus=--cpus)`` of a local instance, then ``ray.shutdown()``.
* Training: ``fxdist.train.train`` run in this process, after one untimed warm-up run.
  This is the yardstick the overheads below are divided by.
* Per-trial start overhead, 1-worker path: a sweep of ``--trials`` trials run one after
  another (``max_concurrent_trials: 1``). It is the sweep's wall time divided by the
  number of trials, minus the time each trial spent inside its function (Tune's
  ``time_total_s``). That covers starting the actor process, importing torch and Tune's
  bookkeeping.
* Checkpoint save: the ``report_seconds`` metric the trainable reports. It is the time
  one report took: linking the run files into a checkpoint folder, Ray copying it to
  storage, and the hand-off to the Tune driver. It is compared with the time between
  two validations.
* Checkpoint restore: one trial kills itself after its second validation (an ``on_report``
  hook of this script's, ``kill_first_attempt_at``) and Tune restarts it. ``restore_seconds`` is the
  time to copy the checkpoint into the run folder; "time to recover" runs from the last
  result before the crash to the first one after it.
* Ray Train path (workers=2, gloo): one trial's wall time against its training time.

Timings on a shared machine are noisy; nothing here asserts on them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from fxdist.tune import init_local_ray, load_sweep_config, sweep


def kill_first_attempt_at(step: int):
    """``on_report`` hook: a trial that started without a checkpoint SIGKILLs its own process
    the first time it reports a step >= ``step``, before it reports it."""

    def hook(metrics: dict, rank: int) -> None:
        if rank == 0 and metrics["restored_from_step"] == 0 and metrics["step"] >= step:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def make_shards(root: Path) -> Path:
    from fxdist.data.generate import GenerateConfig, generate
    from fxdist.data.render import render
    from fxdist.data.shards import ShardConfig, write_shards

    generate(GenerateConfig(seed=0, sample_rate=16000, tracks=6, segments_per_track=2, segment_seconds=2.0), root / "clean")
    render(root / "clean", "distortion", root / "processed" / "distortion", workers=1, progress=False)
    dest = root / "shards" / "distortion"
    write_shards(root, dest, "distortion", ShardConfig(row_samples=4000, rows_per_group=4, rows_per_shard=16, val_fraction=0.2, test_fraction=0.2))
    return dest


def results(trial_dir: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(trial_dir, "result.json").read_text().splitlines() if line.strip()]


def sweep_config(shards: Path, name: str, args, **changes):
    overrides = {
        "name": name,
        "overrides.data.shards": str(shards),
        "overrides.steps": args.steps,
        "overrides.val_every": args.val_every,
        "overrides.checkpoint_every": args.val_every,
        "max_concurrent_trials": 1,
        "verbose": 0,
    }
    overrides.update(changes)
    return load_sweep_config(REPO / "configs/sweep/tiny.yaml", overrides)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--val-every", type=int, default=20)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--no-ray-train", action="store_true", help="skip the workers=2 Ray Train trial (~30 s on 2 CPUs)")
    parser.add_argument("--keep", type=Path, help="keep data and experiments here (default: a temp dir, removed)")
    args = parser.parse_args(argv)

    import ray
    import torch

    from fxdist.train import load_config, train

    root = args.keep or Path(tempfile.mkdtemp(prefix="fxdist-sweep-bench-"))
    rows: list[tuple[str, float, str]] = []
    try:
        shards = make_shards(root / "data")

        torch.set_num_threads(1)  # as a 1-CPU trial
        cfg = load_config(REPO / "configs/train/tiny.yaml", {
            "data.shards": str(shards), "steps": args.steps, "val_every": args.val_every,
            "checkpoint_every": args.val_every, "out_dir": str(root / "plain"), "device": "cpu",
        })
        train(cfg)  # warm-up: imports, allocator
        shutil.rmtree(root / "plain")
        tic = time.perf_counter()
        plain = train(cfg)
        train_s = time.perf_counter() - tic
        per_val_s = train_s / (args.steps / args.val_every)
        rows.append(("training (in-process train())", train_s, f"{args.steps} steps, {plain.samples_per_second:.3g} samples/s"))

        tic = time.perf_counter()
        init_local_ray(args.cpus, log_to_driver=False)
        ray_start_s = time.perf_counter() - tic
        rows.append(("Ray start", ray_start_s, f"local, {args.cpus} CPUs"))

        lrs = [0.0003 * 10 ** (i / 2) for i in range(args.trials)]
        scfg = sweep_config(shards, "serial", args, space={"optim.lr": {"grid": lrs}})
        tic = time.perf_counter()
        result = sweep(scfg, storage=str(root / "sweeps"))
        sweep_s = time.perf_counter() - tic
        inside = [results(r.path)[-1]["time_total_s"] for r in result.trials]
        per_trial_s = sweep_s / len(result.trials)
        overhead_s = per_trial_s - statistics.mean(inside)
        rows.append(("trial wall time (1 worker)", per_trial_s, f"{len(result.trials)} trials one after another"))
        rows.append(("  start overhead per trial", overhead_s, "wall - time inside the trial function"))
        saves = [r["report_seconds"] for t in result.trials for r in results(t.path)[1:]]
        rows.append(("checkpoint save (per report)", statistics.median(saves), f"median of {len(saves)}; vs {per_val_s:.2f} s between validations"))

        ccfg = sweep_config(shards, "crash", args, space={"optim.lr": {"grid": [0.003]}}, max_failures=1)
        crash = kill_first_attempt_at(2 * args.val_every + 1)
        crashed = sweep(ccfg, storage=str(root / "sweeps"), on_report=crash).trials[0]
        history = results(crashed.path)
        second = [r for r in history if r["attempt"] == 2]
        first = [r for r in history if r["attempt"] == 1]
        rows.append(("checkpoint restore (copy in)", second[0]["restore_seconds"], f"from step {second[0]['restored_from_step']}"))
        recover_s = second[0]["timestamp"] - first[-1]["timestamp"]
        rows.append(("time to recover a killed trial", float(recover_s), "last result before crash -> first after (1 s timestamps)"))

        if not args.no_ray_train:
            dcfg = sweep_config(shards, "ddp", args, space={"optim.lr": {"grid": [0.003]}}, **{"resources.workers": 2})
            tic = time.perf_counter()
            ddp = sweep(dcfg, storage=str(root / "sweeps")).trials[0]
            ddp_s = time.perf_counter() - tic
            ddp_train_s = results(ddp.path)[-1]["time_total_s"]
            rows.append(("trial wall time (Ray Train, 2 workers)", ddp_s, f"driver reported {ddp_train_s:.1f} s from start to last result"))
        ray.shutdown()
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    print(f"SWEEP OVERHEAD (lstm-tiny, {args.steps} steps, validation every {args.val_every}, {args.cpus} CPUs)")
    print(f"{'what':40s} {'seconds':>9s} {'x training':>11s}  note")
    for name, seconds, note in rows:
        print(f"{name:40s} {seconds:9.2f} {seconds / train_s:11.2f}  {note}")
    print(f"checkpoint save / time between validations: {statistics.median(saves) / per_val_s:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
