"""Captures per GPU-hour with 1, 2, 4, 8 Ray Tune trials sharing one GPU, and the batch/window sizes that saturate it.

    python benchmarks/gpu_packing.py [--sweep configs/sweep/gpu-packing.yaml] [--packing 1 2 4 8]
        [--rounds 1] [--target-esr ESR] [--batches 16 64 256 1024] [--windows 1024 4096 16384]
        [--seconds 60] [--runner ray|processes] [--dry-run]

Packing: for k trials per GPU the sweep runs with ``resources.gpus_per_worker`` = 1/k and
k x ``--rounds`` trials (seeds 0, 1, ...) on a local Ray holding the one GPU; Ray sets each
trial's CUDA_VISIBLE_DEVICES. A trial *captures* the effect at its first validation with
ESR <= the target; its time to capture is Ray's ``time_total_s`` at that report
(result.json). ``--runner processes`` runs the same trials without Ray, k spawned processes
at a time each training one (``fxdist.train.train``, times from its validation reports): the
GPU is shared the same way, for a machine where Ray cannot start. Captures per GPU-hour = k x 3600 / mean time to capture (each of the k slots
starts a new trial when one captures), and, counting everything, captured trials x 3600 /
the sweep's wall time. The target is ``--target-esr``, else 1.25 x the median best ESR of the
k = 1 trials, then kept for every k. GPU utilisation is sampled by nvidia-smi while a sweep runs.

Saturation: one Trainer on the GPU (bf16 autocast) for the sweep's model; training output
samples/s for each batch x window (output samples); the saturating size is the smallest one
reaching 90 % of the best rate.

Data: ``--seconds`` of synthetic audio at 48 kHz through the distortion preset
(benchmarks/train_throughput.py ``make_shards``). Needs CUDA: without it, it says so and exits 2;
``--dry-run`` prints the plan without CUDA, data or Ray.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "benchmarks"):
    if str(path) not in sys.path:  # run as a script from anywhere
        sys.path.insert(0, str(path))

SWEEP = REPO / "configs" / "sweep" / "gpu-packing.yaml"
SATURATION = 0.9


def plan(args) -> list[str]:
    """What the run will do, one line each."""
    lines = [f"sweep {args.sweep}: model and training from it, data {args.seconds:g} s at 48 kHz (distortion); "
             f"trials as {'Ray Tune trials' if args.runner == 'ray' else 'plain processes'}"]
    for k in args.packing:
        lines.append(f"packing {k}/GPU: gpus_per_worker {1 / k:g}, {k * args.rounds} trials, {k} at a time")
    target = f"{args.target_esr:g}" if args.target_esr is not None else "1.25 x median best ESR of the 1/GPU trials"
    lines.append(f"capture: first validation with ESR <= {target}")
    lines.append(f"saturation: batch {args.batches} x window {args.windows} output samples, bf16 autocast, "
                 f"{args.warmup} warm-up + median of {args.steps} steps")
    return lines


class Utilisation:
    """Mean GPU utilisation (%) and peak memory (MiB) from nvidia-smi, sampled once a second."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(1.0):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10).stdout.split(",")
                self.samples.append((float(out[0]), float(out[1])))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=15)

    def summary(self) -> tuple[float | None, float | None]:
        if not self.samples:
            return None, None
        return statistics.mean(s[0] for s in self.samples), max(s[1] for s in self.samples)


def trial_reports(trial_dir: str) -> list[dict]:
    path = Path(trial_dir) / "result.json"
    rows = []
    for line in (path.read_text().splitlines() if path.is_file() else []):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def run_packing(args, shards: Path, storage: Path, k: int) -> dict:
    """One sweep at 1/k GPU per trial; per trial its reports (time_total_s, val_esr)."""
    from fxdist.tune import run as tune_run
    from fxdist.tune.config import load_sweep_config

    overrides = {
        "name": f"packing-{k}", "overrides.data.shards": str(shards), "resources.gpus_per_worker": 1.0 / k,
        "space": {"seed": {"grid": list(range(k * args.rounds))}}, "max_concurrent_trials": k, "verbose": 0,
    }
    cfg = load_sweep_config(args.sweep, overrides)
    started = time.perf_counter()
    with Utilisation() as util:
        result = tune_run.sweep(cfg, storage=str(storage))
    wall = time.perf_counter() - started
    trials = [[(r["time_total_s"], r["val_esr"]) for r in trial_reports(t.path) if "val_esr" in r] for t in result.trials]
    return {"k": k, "wall": wall, "trials": trials, "errors": result.errors, "util": util.summary()}


def _timed_trial(args: tuple) -> list[tuple[float, float]]:
    """One trial in a spawned process: (seconds since its start, val_esr) per validation."""
    base, seed, out_dir = args
    from fxdist.train import train
    from fxdist.tune.config import trial_train_config

    cfg = trial_train_config(base, {"seed": seed}, out_dir, device="cuda", source=f"packing seed {seed}")
    started, reports = time.perf_counter(), []
    train(cfg, report=lambda metrics, _dir: reports.append((time.perf_counter() - started, metrics["val_esr"])))
    return reports


def run_packing_processes(args, shards: Path, storage: Path, k: int) -> dict:
    """``run_packing`` without Ray: k processes at a time on the one GPU."""
    import multiprocessing

    from fxdist.tune.config import load_sweep_config, plan_trials

    cfg = load_sweep_config(args.sweep, {"overrides.data.shards": str(shards)})
    base = plan_trials(cfg).base
    jobs = [(base, seed, str(storage / f"packing-{k}" / f"seed-{seed}")) for seed in range(k * args.rounds)]
    started = time.perf_counter()
    with Utilisation() as util, multiprocessing.get_context("spawn").Pool(k) as pool:
        trials = pool.map(_timed_trial, jobs, chunksize=1)
    return {"k": k, "wall": time.perf_counter() - started, "trials": trials, "errors": 0, "util": util.summary()}


def capture_times(trials: list[list[tuple[float, float]]], target: float) -> list[float | None]:
    """Per trial: seconds to its first report with ESR <= target (None: never)."""
    return [next((t for t, esr in reports if esr <= target), None) for reports in trials]


def print_packing(rows: list[dict], target: float, label: str) -> None:
    print(f"\nCAPTURES PER GPU-HOUR (target validation ESR <= {target:.4g}); {label}")
    print(f"{'trials/GPU':>10} {'trials':>6} {'captured':>8} {'mean s to capture':>17} {'captures/GPU-h':>14} "
          f"{'incl. overhead':>14} {'GPU util %':>10} {'GPU MiB':>8}")
    for row in rows:
        times = capture_times(row["trials"], target)
        done = [t for t in times if t is not None]
        mean = statistics.mean(done) if done else None
        steady = row["k"] * 3600 / mean if mean else 0.0
        overall = len(done) * 3600 / row["wall"]
        util, mem = row["util"]
        print(f"{row['k']:>10} {len(times):>6} {len(done):>8} {mean if mean is not None else float('nan'):>17.1f} "
              f"{steady:>14.0f} {overall:>14.0f} {util if util is not None else float('nan'):>10.0f} "
              f"{mem if mem is not None else float('nan'):>8.0f}")


def saturation(args, shards: Path, root: Path, device: str = "cuda") -> list[tuple[int, int, float]]:
    """(batch, window, output samples/s) of the sweep's model on ``device``."""
    import dataclasses

    import torch

    from fxdist.tune.config import load_sweep_config, plan_trials
    from fxdist.train import TrainConfig, Trainer, config_from_dict
    from train_throughput import consumption, family_window

    cfg = load_sweep_config(args.sweep, {"overrides.data.shards": str(shards)})
    base: TrainConfig = config_from_dict(plan_trials(cfg).base, "gpu-packing base")
    rows = []
    for batch in args.batches:
        for window in args.windows:
            data = dataclasses.replace(base.data, batch_size=batch, output_len=window, chunk_len=window)
            run = dataclasses.replace(base, data=data, device=device, amp=True, out_dir=str(root / f"sat-{batch}-{window}"))
            trainer = Trainer(run)
            try:
                w = family_window(trainer.model_config["family"], trainer.model.stateful, batch, window)
                sync = torch.cuda.synchronize if device == "cuda" else None
                rate = consumption(trainer, w, torch.get_num_threads(), args.warmup, args.steps, sync=sync)
            except (torch.cuda.OutOfMemoryError, SystemExit) as exc:  # too big for the GPU, or for the data
                print(f"  batch {batch} x window {window}: not measured ({type(exc).__name__}: {exc})", flush=True)
                rate = float("nan")
            finally:
                trainer.close()
                if device == "cuda":
                    torch.cuda.empty_cache()
            rows.append((batch, window, rate))
            if rate == rate:
                print(f"  batch {batch} x window {window}: {rate:.3g} output samples/s", flush=True)
    return rows


def print_saturation(rows: list[tuple[int, int, float]], label: str) -> None:
    best = max((r for _, _, r in rows if r == r), default=0.0)
    print(f"\nGPU SATURATION (training output samples/s, bf16 autocast); {label}")
    print(f"{'batch':>6} {'window':>7} {'samples/s':>10} {'of best':>7}")
    for batch, window, rate in rows:
        print(f"{batch:>6} {window:>7} {rate:>10.3g} {rate / best if best else float('nan'):>7.0%}")
    fits = sorted((b * w, b, w) for b, w, r in rows if r == r and r >= SATURATION * best)
    if fits:
        _, b, w = fits[0]
        print(f"saturating size: batch {b} x window {w} (smallest reaching {SATURATION:.0%} of the best rate)")


@contextlib.contextmanager
def ray_session(runner: str):
    """A local Ray holding the one GPU (all CPUs) for the ray runner; nothing for processes."""
    if runner != "ray":
        yield
        return
    import os

    import ray

    from fxdist.tune.run import init_local_ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    init_local_ray(os.cpu_count(), num_gpus=1, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=SWEEP)
    parser.add_argument("--packing", nargs="+", type=int, default=[1, 2, 4, 8], help="trials per GPU")
    parser.add_argument("--rounds", type=int, default=1, help="trials per slot: k x rounds trials per packing")
    parser.add_argument("--target-esr", type=float, default=None)
    parser.add_argument("--batches", nargs="+", type=int, default=[16, 64, 256, 1024])
    parser.add_argument("--windows", nargs="+", type=int, default=[1024, 4096, 16384])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per saturation point (median)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of training audio")
    parser.add_argument("--runner", choices=["ray", "processes"], default="ray",
                        help="trials as Ray Tune trials with fractional GPUs, or as plain processes")
    parser.add_argument("--skip-saturation", action="store_true")
    parser.add_argument("--skip-packing", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit (no CUDA needed)")
    args = parser.parse_args(argv)
    if any(k < 1 for k in args.packing) or args.rounds < 1:
        parser.error("--packing values and --rounds must be >= 1")
    print("\n".join(plan(args)))
    if args.dry_run:
        return 0
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_packing: needs a CUDA device; torch {torch.__version__} (CUDA {torch.version.cuda}) finds none. "
              "Run it on a GPU machine (jobs/gpu-check.sh), or pass --dry-run for the plan.", file=sys.stderr)
        return 2
    from train_throughput import make_shards

    from gpu_info import device_label

    label = device_label("cuda")
    print(label)
    root = Path(tempfile.mkdtemp(prefix="fxdist-gpu-packing-"))
    try:
        shards = make_shards(root / "data", args.seconds, 48000)
        if not args.skip_saturation:
            print_saturation(saturation(args, shards, root), label)
        if not args.skip_packing:
            rows = []
            with ray_session(args.runner):
                for k in sorted(args.packing):
                    runner = run_packing if args.runner == "ray" else run_packing_processes
                    row = runner(args, shards, root / "sweeps", k)
                    rows.append(row)
                    print(f"  packing {k}/GPU ({args.runner}): {len(row['trials'])} trials in {row['wall']:.0f} s, "
                          f"{row['errors']} errors", flush=True)
            target = args.target_esr
            if target is None:
                first = [min(e for _, e in r) for r in rows[0]["trials"] if r]
                target = 1.25 * statistics.median(first) if first else float("nan")
            print_packing(rows, target, f"{args.runner}; {label}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
