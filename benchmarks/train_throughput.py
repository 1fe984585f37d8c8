"""Training throughput of every model preset, and whether the data loader keeps up with it.

    python benchmarks/train_throughput.py [--quick] [--presets lstm-small wavenet tiny]
        [--steps 7] [--warmup 2] [--threads 1 all] [--workers 0 2] [--seconds 150] [--keep DIR] [--device cuda]

Consumption: for each preset (fxdist/presets/model/<family>-<size>.yaml; ``--presets`` filters by
full name, family or size) a ``fxdist.train.Trainer`` on real shards runs its own training
step (forward, the default loss: pre-emphasised ESR, backward, gradient clipping, Adam
step; TBPTT with carried state for the LSTM) on batches fetched beforehand, so no data
loading is timed. After ``--warmup`` untimed steps the median of ``--steps`` timed steps gives output samples/s
(batch x output samples per step / median step time), once per torch thread setting
(1 thread, and "all" = every core of this machine).

Delivery: ``fxdist.data.stream.make_loader`` with the same mode, receptive field, output
length and batch as the trainer would use, iterated without a model over whole epochs
(a new loader per epoch, as the trainer does, so worker start-up is included) for at least
``--loader-seconds``, after one untimed warm-up epoch; rate = valid output samples/s
(sequential padding lanes not counted), with ``workers`` = 0 and 2.

Ratio = delivery / consumption, consumption at the faster thread setting. The loader must
never be the bottleneck: target >= 5 (PASS/FAIL printed for the fastest preset, and for
the fastest preset that is not a test-only "tiny" one).

Data: ``--seconds`` of synthetic audio (fxdist.data.generate) at ``--sample-rate`` rendered
through the ``distortion`` preset and sharded with the default ShardConfig (1 s rows, 16-row
groups, zstd). Per-family windows (the trainer's defaults unless said): lstm sequential,
TBPTT chunks of 2048 x 16 lanes; fcn/tcn/wavenet random windows with 4096 output samples
x 16; cnn random windows of 128 output samples x 8 (cnn unfolds one window of W samples per
output sample, so a conv-model-sized output_len would cost W times as much).

The two measurements run one after the other, not together: with workers=0 a real run
pays delivery and consumption in series (step time ~ 1/consumption + 1/delivery), with
workers>0 the workers share the machine's cores with training. Timings on a shared machine
are noisy; nothing here asserts on them.

``--quick``: the tiny presets only, 30 s of audio, a few steps; under a minute.

``--device cuda``: the trainer's step runs on the GPU (bf16 autocast, the trainer's default),
timed up to a CUDA synchronise; the GPU, driver, torch and CUDA versions are printed beside
the table. The loader still runs on the CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from fxdist.presets import list_model_presets  # noqa: E402
from fxdist.train import DataConfig, TrainConfig, Trainer  # noqa: E402

EFFECT = "distortion"
TARGET_RATIO = 5.0
FAMILY_ORDER = ("cnn", "fcn", "lstm", "wavenet", "tcn")
SIZE_ORDER = ("tiny", "small", "large")
HEADER = "TRAIN THROUGHPUT (output samples/s)"


@dataclass(frozen=True)
class Window:
    """How a preset is fed: stream mode, batch size and output samples per window/chunk."""

    mode: str
    batch: int
    output_len: int


def family_window(family: str, stateful: bool, batch: int | None, output_len: int | None) -> Window:
    """The per-family default window (see module docstring); explicit values override."""
    d = DataConfig()
    if stateful:
        return Window("sequential", batch or d.batch_size, output_len or d.chunk_len)
    if family == "cnn":
        return Window("random", batch or 8, output_len or 128)
    return Window("random", batch or d.batch_size, output_len or d.output_len)


def preset_names(filters: list[str] | None) -> list[str]:
    """Model presets, ordered by family then size; kept when any filter matches
    the full name, the family or the size."""
    names = list_model_presets()

    def key(name: str) -> tuple:
        family, _, size = name.partition("-")
        return (
            FAMILY_ORDER.index(family) if family in FAMILY_ORDER else 99,
            SIZE_ORDER.index(size) if size in SIZE_ORDER else 99,
            name,
        )

    names.sort(key=key)
    if not filters:
        return names
    keep = [n for n in names if any(f in (n, *n.split("-", 1)) for f in filters)]
    if not keep:
        raise SystemExit(f"--presets {filters} matches none of: {', '.join(names)}")
    return keep


def make_shards(root: Path, seconds: float, sr: int) -> Path:
    """Generate ~``seconds`` of audio (5 s segments, 15 s tracks), render, shard."""
    from fxdist.data.generate import GenerateConfig, generate
    from fxdist.data.render import render
    from fxdist.data.shards import ShardConfig, write_shards

    tracks = max(3, round(seconds / 15))
    generate(GenerateConfig(seed=0, sample_rate=sr, tracks=tracks, segments_per_track=3, segment_seconds=5.0), root / "clean", workers=2)
    render(root / "clean", EFFECT, root / "processed" / EFFECT, workers=2, progress=False)
    dest = root / "shards" / EFFECT
    manifest = write_shards(root, dest, EFFECT, ShardConfig(val_fraction=0.1, test_fraction=0.1))
    print(manifest.summary())
    return dest


def trainer_for(preset: str, shards: Path, out_dir: Path, batch=None, output_len=None, device: str = "cpu") -> tuple[Trainer, Window]:
    """A Trainer on ``device`` for ``preset`` fed with its family's window."""
    from fxdist.models.registry import get
    from fxdist.train import resolve_model_config

    import dataclasses

    from fxdist.data.stream import open_manifest

    model = resolve_model_config(preset)[0]
    family = model["family"]
    if "sample_rate" in {f.name for f in dataclasses.fields(get(family).config_cls)}:
        model = {**model, "sample_rate": int(open_manifest(str(shards)).sample_rate)}  # chorus: ms/Hz at the data's rate
    window = family_window(family, get(family).stateful, batch, output_len)
    data = DataConfig(shards=str(shards), batch_size=window.batch, output_len=window.output_len, chunk_len=window.output_len)
    cfg = TrainConfig(model=model, data=data, progress=False, out_dir=str(out_dir), device=device)
    return Trainer(cfg), window


def consumption(trainer: Trainer, window: Window, threads: int, warmup: int, steps: int, sync=None) -> float:
    """Median output samples/s of the trainer's own step over ``steps`` timed steps;
    ``sync()`` (torch.cuda.synchronize on a GPU) ends each timed step."""
    torch.set_num_threads(threads)
    need = warmup + steps
    batches = []
    for batch in trainer._loader(0, 0):  # fetched first: no loading inside the timing
        batches.append(batch)
        if len(batches) == need:
            break
    if not batches:
        raise SystemExit(f"{trainer.cfg.data.shards}: the train split yields no batch for {trainer.cfg.model}")
    times = []
    for i in range(need):
        t0 = time.perf_counter()
        trainer._train_step(batches[i % len(batches)])
        if sync is not None:
            sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return window.batch * window.output_len / statistics.median(times)


@dataclass
class Delivery:
    """Loader rate over whole epochs (start-up included) and mean seconds to an epoch's first batch."""

    rate: float
    startup: float


def delivery(shards: Path, window: Window, rf: int, workers: int, min_seconds: float) -> Delivery:
    """Valid output samples/s of make_loader over whole epochs (new loader each epoch)."""
    from fxdist.data.stream import make_loader

    def epoch(e: int) -> tuple[int, float]:
        n = 0
        t0 = time.perf_counter()
        t_first = None
        loader = make_loader(
            shards, "train", mode=window.mode, receptive_field=rf, output_len=window.output_len,
            batch_size=window.batch, workers=workers, shuffle_windows=DataConfig().shuffle_windows, epoch=e,
        )
        for batch in loader:
            valid = batch["valid"].sum().item() if "valid" in batch else batch["y"].shape[0]
            n += int(valid) * batch["y"].shape[-1]
            if t_first is None:
                t_first = time.perf_counter()
        return n, (t_first or time.perf_counter()) - t0

    epoch(0)  # warm-up: first opens of shards (CRC/size checks), imports, page cache
    samples, startup, e = 0, 0.0, 1
    t0 = time.perf_counter()
    while True:
        n, t_first = epoch(e)
        samples, startup, e = samples + n, startup + t_first, e + 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return Delivery(samples / elapsed, startup / (e - 1))


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if x < 1e3 else f"{x / 1e3:.3g}k" if x < 1e6 else f"{x / 1e6:.3g}M"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny presets, 30 s of audio, few steps (<1 min)")
    parser.add_argument("--presets", nargs="*", help="preset names, families or sizes (default: all)")
    parser.add_argument("--steps", type=int, default=7, help="timed training steps per measurement (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    parser.add_argument("--threads", nargs="+", default=["1", "all"], help="torch thread settings: numbers or 'all'")
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2], help="DataLoader workers to measure")
    parser.add_argument("--seconds", type=float, default=150.0, help="seconds of training audio to generate")
    parser.add_argument("--sample-rate", type=int, default=48000)
    parser.add_argument("--loader-seconds", type=float, default=3.0, help="minimum timed seconds per loader measurement")
    parser.add_argument("--batch", type=int, default=None, help="override every family's batch size")
    parser.add_argument("--output-len", type=int, default=None, help="override every family's output samples per window")
    parser.add_argument("--keep", type=Path, default=None, help="build data here and keep it (default: a temp dir)")
    parser.add_argument("--device", default="cpu", help="where the training step runs: cpu or cuda")
    args = parser.parse_args(argv)
    if args.quick:
        args.presets = args.presets or ["tiny"]
        args.steps, args.warmup, args.seconds, args.loader_seconds = 3, 1, 30.0, 0.3
    cores = os.cpu_count() or 1
    threads = sorted({cores if t == "all" else int(t) for t in args.threads})
    presets = preset_names(args.presets)
    sync, label = None, None
    if args.device != "cpu":
        if not torch.cuda.is_available():
            print(f"--device {args.device}: torch {torch.__version__} finds no CUDA device", file=sys.stderr)
            return 2
        from gpu_info import device_label

        sync, label = torch.cuda.synchronize, device_label(args.device)

    root = args.keep or Path(tempfile.mkdtemp(prefix="fxdist-train-tp-"))
    started = time.perf_counter()
    try:
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        print(f"machine: {cores} cores, torch {torch.__version__}, load average {load}")
        if label:
            print(f"device: {label}")
        t0 = time.perf_counter()
        shards = make_shards(root, args.seconds, args.sample_rate)
        print(f"data: {args.seconds:.0f} s at {args.sample_rate} Hz through {EFFECT!r} in {time.perf_counter() - t0:.1f} s")
        print(f"timing: {args.warmup} warm-up + median of {args.steps} steps; loader >= {args.loader_seconds} s of whole epochs\n")

        rows = []
        delivered: dict[tuple, Delivery] = {}
        for name in presets:
            trainer, window = trainer_for(name, shards, root / "runs" / name, batch=args.batch, output_len=args.output_len,
                                          device=args.device)
            model = trainer.model
            sps = {}
            for t in threads:
                sps[t] = consumption(trainer, window, t, args.warmup, args.steps, sync=sync)
            torch.set_num_threads(cores)
            rates = {}
            for w in args.workers:
                key = (window, model.receptive_field, w)
                if key not in delivered:
                    delivered[key] = delivery(shards, window, model.receptive_field, w, args.loader_seconds)
                rates[w] = delivered[key]
            rows.append((name, model.num_parameters(), model.receptive_field, model.macs_per_sample(), window, sps, rates))
            print(f"  measured {name}: " + ", ".join(f"{t} thr {fmt(v)}" for t, v in sps.items())
                  + "; loader " + ", ".join(f"w{w} {fmt(v.rate)}" for w, v in rates.items()), flush=True)
        print_table(rows, threads, args.workers, label)
        print_loaders(delivered, args.workers)
        verdict(rows, args.workers)
        print(f"\nload average at end {os.getloadavg() if hasattr(os, 'getloadavg') else None}; "
              f"total wall {time.perf_counter() - started:.0f} s")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def print_table(rows: list, threads: list[int], workers: list[int], device: str | None = None) -> None:
    print(f"\n{HEADER}; loader ratio = loader samples/s / best train samples/s")
    if device:
        print(f"training step on {device}; loader on the CPU")
    cols = [f"{'preset':14s}", f"{'params':>8s}", f"{'RF':>6s}", f"{'MACs/smp':>9s}", f"{'mode':>4s}", f"{'B x out':>9s}"]
    cols += [f"{f'train@{t}thr':>11s}" for t in threads]
    cols += [f"{f'loader w{w}':>10s}" for w in workers] + [f"{f'ratio w{w}':>9s}" for w in workers]
    print(" ".join(cols))
    for name, params, rf, macs, window, sps, rates in rows:
        best = max(sps.values())
        line = [f"{name:14s}", f"{params:8d}", f"{rf:6d}", f"{fmt(macs):>9s}", f"{window.mode[:3]:>4s}", f"{f'{window.batch}x{window.output_len}':>9s}"]
        line += [f"{fmt(sps[t]):>11s}" for t in threads]
        line += [f"{fmt(rates[w].rate):>10s}" for w in workers] + [f"{rates[w].rate / best:9.1f}" for w in workers]
        print(" ".join(line))


def print_loaders(delivered: dict[tuple, Delivery], workers: list[int]) -> None:
    """Per loader setting: epoch rate and time to an epoch's first batch."""
    print("\nLOADER DETAIL (output samples/s over whole epochs, new loader each; first = s to an epoch's first batch)")
    print(f"{'mode':10s} {'RF':>6s} {'B x out':>9s} {'workers':>7s} {'samples/s':>9s} {'first s':>8s}")
    for (window, rf, w), d in sorted(delivered.items(), key=lambda kv: (kv[0][0].mode, kv[0][1], kv[0][0].output_len, kv[0][2])):
        print(f"{window.mode:10s} {rf:6d} {f'{window.batch}x{window.output_len}':>9s} {w:7d} {fmt(d.rate):>9s} {d.startup:8.3f}")


def verdict(rows: list, workers: list[int]) -> None:
    """PASS/FAIL against the target ratio for the fastest preset (and fastest non-tiny)."""
    by_speed = sorted(rows, key=lambda r: -max(r[5].values()))
    picks = [("fastest preset", by_speed[0])]
    real = [r for r in by_speed if not r[0].endswith("-tiny")]
    if real and real[0] is not by_speed[0]:
        picks.append(("fastest non-tiny preset", real[0]))
    print()
    for label, (name, *_, sps, rates) in picks:
        best = max(sps.values())
        parts = []
        for w in workers:
            ratio = rates[w].rate / best
            parts.append(f"workers={w}: ratio {ratio:.1f} {'PASS' if ratio >= TARGET_RATIO else 'FAIL'}")
        print(f"{label} {name} ({fmt(best)} samples/s): target ratio >= {TARGET_RATIO:g}; " + "; ".join(parts))
    if 0 in workers:
        ok = {w: [r[0] for r in rows if r[6][w].rate / max(r[5].values()) >= TARGET_RATIO] for w in workers}
        short0 = [r[0] for r in rows if r[0] not in ok[0]]
        if not short0:
            print("workers=0 keeps every measured preset above the target: data.workers=0 is enough by default")
        else:
            print(f"workers=0 is below the target for: {', '.join(short0)}")
            for w in workers:
                if w and set(short0) <= set(ok[w]):
                    print(f"  ... and workers={w} is at or above it for all of them: use data.workers={w} for those")
                elif w:
                    still = [n for n in short0 if n not in ok[w]]
                    print(f"  workers={w} is still below the target for: {', '.join(still)}")


if __name__ == "__main__":
    sys.exit(main())
