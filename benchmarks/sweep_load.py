"""Many tiny trials through one sweep on a local Ray: do they all finish, does Ray clean up,
does the driver's memory stay flat as trials accumulate?

    python benchmarks/sweep_load.py [--trials 50] [--early 10] [--cpus 2] [--steps 10] [--keep DIR]
    python benchmarks/sweep_load.py --quick      # 12 trials, measured after 4 and 12

``fxdist.tune.sweep`` runs ``--trials`` lstm-tiny trials (``num_samples``, a log-uniform
learning rate), ``--cpus`` at a time, on the local Ray it starts itself, over a tiny real
shard set. A thread in this process (the Tune driver) samples its resident memory and
counts finished trials (a trial whose last result row is at the final step). Printed:

* trials finished of those asked for, and the sweep's wall time;
* the driver's RSS when ``--early`` trials had finished and when all had, and their ratio
  (flat memory: a ratio near 1);
* Ray's temp folders left behind: this run points Ray's temp root (``RAY_TMPDIR``) at a
  folder of its own, so anything still in it after the sweep is this sweep's.

Exit status 1 if a trial did not finish, a temp folder is left, or the ratio exceeds
``--max-growth`` (default 1.5, lenient: the figure is the point, not the bound).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")

MIB = 1024 * 1024


def make_shards(root: Path) -> Path:
    from fxdist.data.generate import GenerateConfig, generate
    from fxdist.data.render import render
    from fxdist.data.shards import ShardConfig, write_shards

    generate(GenerateConfig(seed=0, sample_rate=16000, tracks=6, segments_per_track=2, segment_seconds=2.0), root / "clean")
    render(root / "clean", "distortion", root / "processed" / "distortion", workers=1, progress=False)
    dest = root / "shards" / "distortion"
    write_shards(root, dest, "distortion", ShardConfig(row_samples=4000, rows_per_group=4, rows_per_shard=16, val_fraction=0.2, test_fraction=0.2))
    return dest


def finished_trials(exp: Path, steps: int) -> int:
    """Trials whose last result row (``result.json``, written by the driver) is at ``steps``."""
    done = 0
    for result in exp.glob("*/result.json"):
        try:
            lines = result.read_text().splitlines()
            done += bool(lines) and json.loads(lines[-1]).get("step") == steps
        except (OSError, json.JSONDecodeError):
            pass  # mid-write: counted on the next look
    return done


class DriverWatch(threading.Thread):
    """Samples this process's RSS and the finished-trial count; keeps the RSS at the first
    moment ``early`` and ``total`` trials had finished."""

    def __init__(self, exp: Path, steps: int, early: int, total: int, every: float = 0.25):
        super().__init__(daemon=True)
        import psutil

        self.proc, self.exp, self.steps, self.every = psutil.Process(), exp, steps, every
        self.marks = {early: None, total: None}
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.every)

    def sample(self) -> None:
        rss = self.proc.memory_info().rss
        self.peak = max(self.peak, rss)
        done = finished_trials(self.exp, self.steps)
        for count, seen in self.marks.items():
            if seen is None and done >= count:
                self.marks[count] = rss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--early", type=int, default=10, help="first RSS mark: after this many trials finished")
    parser.add_argument("--cpus", type=int, default=2, help="local Ray CPUs = trials at a time (1 CPU each)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per trial")
    parser.add_argument("--max-growth", type=float, default=1.5, help="largest RSS ratio (all / early) that passes")
    parser.add_argument("--quick", action="store_true", help="12 trials, first mark after 4 (for the test suite)")
    parser.add_argument("--keep", type=Path, help="keep data and experiment here (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.early = 12, 4
    if not 0 < args.early < args.trials:
        parser.error(f"--early must be between 1 and --trials - 1, got {args.early}")

    root = args.keep or Path(tempfile.mkdtemp(prefix="fxdist-sweep-load-"))
    ray_tmp = root / "raytmp"
    ray_tmp.mkdir(parents=True, exist_ok=True)
    os.environ["RAY_TMPDIR"] = str(ray_tmp)  # Ray's temp root for this run alone
    try:
        from fxdist.tune import load_sweep_config, sweep

        shards = make_shards(root / "data")
        cfg = load_sweep_config(REPO / "configs/sweep/tiny.yaml", {
            "name": "load", "overrides.data.shards": str(shards), "overrides.steps": args.steps,
            "overrides.val_every": args.steps, "overrides.checkpoint_every": args.steps,
            "space": {"optim.lr": {"loguniform": [1e-4, 1e-2]}}, "num_samples": args.trials,
            "max_concurrent_trials": args.cpus, "keep_checkpoints": 1, "verbose": 0,
        })
        exp = root / "sweeps" / "load"
        watch = DriverWatch(exp, args.steps, args.early, args.trials)
        watch.start()
        tic = time.perf_counter()
        result = sweep(cfg, storage=str(root / "sweeps"), num_cpus=args.cpus)
        wall = time.perf_counter() - tic
        watch.stop.set()
        watch.join()
        watch.sample()  # marks not yet seen (a last trial finishing just before the end)
        left = sorted(p.name for p in ray_tmp.rglob("*") if p.parent == ray_tmp or p.name.startswith("session_"))

        terminated = sum(r.state == "TERMINATED" for r in result.trials)
        early, full = watch.marks[args.early], watch.marks[args.trials]
        ratio = full / early if early and full else float("nan")
        print("SWEEP LOAD (local Ray)")
        print(f"trials finished        {terminated} / {args.trials} ({args.cpus} at a time, {args.steps} steps each)")
        print(f"sweep wall time        {wall:.1f} s ({wall / args.trials:.2f} s per trial)")
        print(f"driver RSS after {args.early:<3d}   {early / MIB:.1f} MiB" if early else f"driver RSS after {args.early}: not seen")
        print(f"driver RSS after {args.trials:<3d}   {full / MIB:.1f} MiB" if full else f"driver RSS after {args.trials}: not seen")
        print(f"RSS ratio {args.trials}/{args.early:<10}  {ratio:.3f} (bound {args.max_growth:g})")
        print(f"driver RSS peak        {watch.peak / MIB:.1f} MiB")
        print(f"Ray temp left          {len(left)}{': ' + ', '.join(left[:5]) if left else ''} (in {ray_tmp})")
        ok = terminated == args.trials and not left and ratio <= args.max_growth
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
