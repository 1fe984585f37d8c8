"""The quality bar: a small model learns the distortion preset to validation ESR < 0.01 on CPU in 15 min.

    python benchmarks/distortion_quality.py [--quick] [--model lstm-small|wavenet-small]
        [--budget 900] [--steps N] [--lr X] [--batch B] [--threads T] [--keep DIR]

The bar: on the distortion preset, with 3 minutes of training audio, a small LSTM or WaveNet
reaches validation ESR < 0.01 on CPU within 15 minutes.

Data (48 kHz, fxdist.data.generate -> render ``fxdist/presets/effects/distortion.yaml`` -> shards):
training = 6 tracks x 30 s = 180 s from generator seed 1; validation = 2 x 15 s from seed 2;
test = 2 x 15 s from seed 3. The shard split seed is chosen so that the splits are exactly
those seeds' tracks (checked against the written manifest), so no evaluation track shares a
generator seed with training.

Training (``fxdist.train.train``, wall budget ``max_seconds`` = ``--budget``, validation
time included): hyperparameters fixed in advance from the literature, not tuned on test:
lstm-small (hidden 32) as Wright et al. 2019/2020: truncated BPTT every 2048 samples, runs
of 0.5 s (a new segment and zero state every 0.5 s), 1024 warm-up samples excluded from
the loss, 40 lanes, Adam lr 5e-3; loss ESR on the pre-emphasised signal (1 - 0.85 z^-1)
plus DC. wavenet-small (NAM "lite"-like) as NAM: random windows of 4096 output samples,
batch 16, lr 4e-3. Both: 50 warm-up steps, cosine decay to 5 % of lr over the step count,
gradient clipping at 1. The step count is sized to the budget from a short probe of this
machine's median step time and validation time (``--steps`` fixes it), with about
``--validations`` validations taking at most ~15 % of the budget; if the machine slows
down later the budget stops training first (before the cosine has decayed). On a shared
machine prefer ``--threads 1``: oversubscribed torch threads can slow steps many-fold.

Printed: validation ESR at every validation (with wall time and load average), the best
validation ESR, the do-nothing baseline ESR (clean input after its best gain), their ratio,
the test-split ESR of ``best.pt`` (``fxdist.process.predict`` over whole test tracks, plain
ESR pooled over tracks, and per track), wall times, and PASS/FAIL against ESR < 0.01.

``--quick``: seconds of audio, a few steps, < 1 min: a smoke run of the same code path
(its figures mean nothing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from fxdist.data.generate import GenerateConfig, generate  # noqa: E402
from fxdist.data.render import render  # noqa: E402
from fxdist.data.shards import ShardConfig, assign_splits, write_shards  # noqa: E402
from fxdist.dsp import do_nothing_esr_from_sums  # noqa: E402
from fxdist.losses import LossConfig  # noqa: E402
from fxdist.process import predict  # noqa: E402
from fxdist.train import DataConfig, OptimConfig, TrainConfig, Trainer, train  # noqa: E402

EFFECT = "distortion"
TARGET_ESR = 0.01
HEADER = "VALIDATION ESR OVER TIME"
SEEDS = {"train": 1, "validation": 2, "test": 3}

# (tracks, segments per track, segment seconds) per split: 180 s / 30 s / 30 s.
FULL_DATA = {"train": (6, 3, 10.0), "validation": (2, 3, 5.0), "test": (2, 3, 5.0)}
QUICK_DATA = {"train": (2, 2, 3.0), "validation": (1, 2, 1.5), "test": (1, 2, 1.5)}

# Per family: batch, output/chunk length, lr (see module docstring for the sources).
RECIPES = {
    "lstm": dict(batch=40, output_len=2048, lr=5e-3),
    "wavenet": dict(batch=16, output_len=4096, lr=4e-3),
}


def load_avg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def make_data(root: Path, sr: int, layout: dict) -> tuple[Path, dict[str, float]]:
    """Generate each split from its own seed, render, shard with the split seed that keeps
    every seed's tracks in its own split. Returns (shard dir, seconds per split)."""
    for split, (tracks, segments, seconds) in layout.items():
        cfg = GenerateConfig(seed=SEEDS[split], sample_rate=sr, tracks=tracks, segments_per_track=segments, segment_seconds=seconds)
        generate(cfg, root / "clean", workers=2)
    render(root / "clean", EFFECT, root / "processed" / EFFECT, workers=2, progress=False)
    ids = sorted(p.stem for p in (root / "clean").glob("*.wav"))
    n = len(ids)
    cfg = ShardConfig(val_fraction=layout["validation"][0] / n, test_fraction=layout["test"][0] / n)
    cfg.split_seed = find_split_seed(ids, cfg)
    dest = root / "shards" / EFFECT
    manifest = write_shards(root, dest, EFFECT, cfg)
    seconds = {}
    for split, seed in SEEDS.items():
        got = manifest.split(split).tracks
        if not got or any(not t.startswith(f"synth-s{seed}-") for t in got):
            raise SystemExit(f"{dest}: split {split} holds {got}, expected only generator seed {seed}'s tracks")
        seconds[split] = manifest.split(split).seconds
    print(manifest.summary())
    return dest, seconds


def find_split_seed(ids: list[str], cfg: ShardConfig, tries: int = 1_000_000) -> int:
    """The first split_seed whose hash order puts each generator seed's tracks in its split."""
    for seed in range(tries):
        cfg.split_seed = seed
        splits = assign_splits(ids, cfg)
        if all(t.startswith(f"synth-s{SEEDS[s]}-") for s, tracks in splits.items() for t in tracks):
            return seed
    raise SystemExit(f"no split_seed below {tries} separates the generator seeds of {ids}")


def train_config(args, shards: Path, out_dir: Path, steps: int, val_every: int, budget: float) -> TrainConfig:
    family = args.model.split("-")[0]
    recipe = {**RECIPES.get(family, RECIPES["wavenet"])}
    for key in ("batch", "output_len", "lr"):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    data = DataConfig(
        shards=str(shards),
        batch_size=recipe["batch"],
        output_len=recipe["output_len"],
        chunk_len=recipe["output_len"],
        run_seconds=args.run_seconds,
        warmup_samples=args.warmup_samples,
        workers=args.workers,
        val_max_seconds=None,
    )
    return TrainConfig(
        model=args.model,
        data=data,
        loss=LossConfig(esr=1.0, dc=1.0, pre_emphasis=0.85),
        optim=OptimConfig(lr=recipe["lr"], schedule="cosine", warmup_steps=min(50, steps // 10), min_lr_ratio=0.05, grad_clip=1.0),
        steps=steps,
        val_every=val_every,
        checkpoint_every=val_every,
        seed=args.seed,
        out_dir=str(out_dir),
        device="cpu",
        progress=False,
        max_seconds=budget,
    )


def probe(cfg: TrainConfig, steps: int = 10, warmup: int = 3) -> tuple[float, float]:
    """(median seconds per training step with loading, seconds per validation) on this machine now."""
    trainer = Trainer(cfg)
    batches = trainer._batches()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        trainer._train_step(next(batches))
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    step = float(np.median(times))
    t0 = time.perf_counter()
    trainer.validate()
    return step, time.perf_counter() - t0


def test_esr(best: Path, shards: Path) -> tuple[float, float, list[tuple[str, float, float]]]:
    """Pooled plain ESR of the checkpoint on the test split, its baseline, and per track."""
    from fxdist.checkpoint import load_model
    from fxdist.data.stream import iter_tracks

    model, _ = load_model(best)
    err = sig = cc = tt = ct = 0.0
    rows = []
    for track, clean, target in iter_tracks(shards, "test"):
        pred = predict(model, clean)
        c, t, p = (a.astype(np.float64) for a in (clean, target, pred))
        e, s = float(((t - p) ** 2).sum()), float(t @ t)
        b = do_nothing_esr_from_sums(float(c @ c), s, float(c @ t))
        rows.append((track, e / s, b))
        err, sig = err + e, sig + s
        cc, tt, ct = cc + float(c @ c), tt + s, ct + float(c @ t)
    return err / sig, do_nothing_esr_from_sums(cc, tt, ct), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds of audio, a few steps (<1 min smoke run)")
    parser.add_argument("--model", default="lstm-small", help="model preset (lstm-small, wavenet-small, ...)")
    parser.add_argument("--budget", type=float, default=900.0, help="training wall budget in seconds (max_seconds)")
    parser.add_argument("--steps", type=int, default=None, help="fix the step count (default: sized to the budget)")
    parser.add_argument("--validations", type=int, default=20, help="about this many validations in the run")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--output-len", type=int, default=None, help="chunk (TBPTT) or window output length")
    parser.add_argument("--run-seconds", type=float, default=0.5, help="sequential mode: seconds per run before a state reset")
    parser.add_argument("--warmup-samples", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-rate", type=int, default=48000)
    parser.add_argument("--keep", type=Path, default=None, help="data and run folder to keep (default: a temp dir)")
    args = parser.parse_args(argv)
    layout = FULL_DATA
    if args.quick:
        layout, args.budget = QUICK_DATA, min(args.budget, 8.0)
        args.batch = args.batch or 4
        args.validations = 3
    if args.threads:
        torch.set_num_threads(args.threads)

    started = time.perf_counter()
    root = args.keep or Path(tempfile.mkdtemp(prefix="fxdist-quality-"))
    try:
        print(f"DISTORTION QUALITY: {args.model} on {EFFECT!r} at {args.sample_rate} Hz; "
              f"{os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} thread(s); load {load_avg()}")
        shards, seconds = make_data(root / "data", args.sample_rate, layout)
        prep = time.perf_counter() - started
        print(f"data: train {seconds['train']:.0f} s (seed {SEEDS['train']}), validation {seconds['validation']:.0f} s "
              f"(seed {SEEDS['validation']}), test {seconds['test']:.0f} s (seed {SEEDS['test']}); prepared in {prep:.1f} s")

        out_dir = root / "run"
        if args.steps:
            steps = args.steps
            step_s, val_s = float("nan"), float("nan")
        else:
            step_s, val_s = probe(train_config(args, shards, root / "probe", 1000, 1000, args.budget))
            # Validations take at most ~15 % of the budget; 90 % of the rest goes to steps.
            args.validations = max(1, min(args.validations, int(0.15 * args.budget / val_s)))
            steps = max(args.validations, int(0.9 * (args.budget - args.validations * val_s) / step_s))
        val_every = max(1, steps // args.validations)
        cfg = train_config(args, shards, out_dir, steps, val_every, args.budget)
        d, o = cfg.data, cfg.optim
        seq = args.model.startswith("lstm")
        window = f"TBPTT chunk {d.output_len}, run {d.run_seconds} s, warm-up {d.warmup_samples} samples" if seq else f"output {d.output_len} per window"
        print(f"hyperparameters: batch {d.batch_size}, {window}, lr {o.lr} cosine to {o.min_lr_ratio:g}x "
              f"after {o.warmup_steps} warm-up steps, clip {o.grad_clip}, loss ESR(pre-emph {cfg.loss.pre_emphasis}) + "
              f"{cfg.loss.dc} DC, workers {d.workers}")
        print(f"plan: {steps} steps, validation every {val_every} (probe: {step_s:.3f} s/step incl. loading, "
              f"{val_s:.2f} s/validation), budget {args.budget:.0f} s\n")

        print(HEADER)
        print(f"{'step':>6s} {'wall s':>7s} {'train loss':>10s} {'val ESR':>9s} {'best':>9s} {'load':>15s}")
        t_train = time.perf_counter()
        seen: list[tuple[int, float, float]] = []  # (step, wall s since training start, val ESR)

        def report(entry: dict, _path) -> None:
            seen.append((entry["step"], time.perf_counter() - t_train, entry["val_esr"]))
            print(f"{entry['step']:6d} {time.perf_counter() - t_train:7.1f} {entry['loss']:10.5f} "
                  f"{entry['val_esr']:9.5f} {entry['best_val_esr']:9.5f} {load_avg():>15s}", flush=True)

        result = train(cfg, report=report)
        train_wall = time.perf_counter() - t_train

        best, base = result.best_val_esr, result.baseline_val_esr
        best_step = min(result.history, key=lambda h: h["val_esr"])["step"]
        t_esr, t_base, per_track = test_esr(Path(result.best_checkpoint), shards)
        print("\nRESULT")
        print(f"best validation ESR       : {best:.5f} (step {best_step} of {result.step})")
        print(f"do-nothing baseline ESR   : {base:.5f} (validation; clean input after its best gain)")
        print(f"baseline / model          : {base / best:.1f}x")
        print(f"test ESR of best.pt       : {t_esr:.5f} (test baseline {t_base:.5f}, {t_base / t_esr:.1f}x)")
        for track, e, b in per_track:
            print(f"    {track}: ESR {e:.5f}, baseline {b:.5f}")
        print(f"training wall             : {result.train_seconds:.1f} s of a {args.budget:.0f} s budget "
              f"({result.step} steps, {result.samples_per_second:.3g} samples/s, stopped by budget: {result.stopped_early}); "
              f"{train_wall:.1f} s with set-up")
        print(f"total wall                : {time.perf_counter() - started:.1f} s (data prep {prep:.1f} s); load {load_avg()}")
        hit = next(((s, w) for s, w, v in seen if v < TARGET_ESR), None)
        if hit:
            print(f"first validation ESR < {TARGET_ESR}: step {hit[0]}, {hit[1]:.1f} s after training started")
        ok = hit is not None and hit[1] <= args.budget
        print(f"{'PASS' if ok else 'FAIL'}: best validation ESR {best:.5f} {'<' if best < TARGET_ESR else '>='} {TARGET_ESR} "
              f"within {result.train_seconds:.0f} s of CPU training (budget {args.budget:.0f} s)"
              + ("" if best < TARGET_ESR else f"; {best / TARGET_ESR:.2f}x the target"))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
