"""`fxdist data ...`: generate, ingest, render, import, shard, verify, effects; render-plan,
render-chunk and finalize (one SLURM array task each, see fxdist.data.array).

All commands work on a dataset root laid out as ``clean/``, ``processed/<effect>/`` and
``shards/<effect>/`` (see fxdist.data).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fxdist.cli import parse_overrides


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="make, render, import and shard audio pairs", description="Data commands.")
    cmds = data.add_subparsers(dest="data_command", required=True, metavar="STEP")

    p = cmds.add_parser("generate", help="seeded synthetic guitar-range signals into ROOT/clean")
    p.add_argument("root", help="dataset root")
    p.add_argument("--config", help="GenerateConfig YAML; configs/data/generate.yaml lists every key with its default")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--tracks", type=int, help="number of tracks (default 4)")
    p.add_argument("--segments", type=int, help="10 s segments per track (default 6)")
    p.add_argument("--seed", type=int, help="random seed; a track depends on (seed, index) alone (default 0)")
    p.add_argument("--sample-rate", type=int, help="sample rate in Hz (default 48000)")
    p.add_argument("--workers", type=int, default=1, help="processes (output is identical for any number; default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace tracks that already exist in ROOT/clean (default: refuse)")
    p.set_defaults(func=_generate)

    p = cmds.add_parser("ingest", help="decode a folder of music into ROOT/clean (any format, rate, channels)")
    p.add_argument("src", help="folder of audio files (wav, flac, ogg, mp3, aiff)")
    p.add_argument("root", help="dataset root")
    p.add_argument("--sample-rate", type=int, default=48000, help="resample every file to this rate in Hz (default 48000)")
    p.add_argument("--no-downmix", action="store_true", help="refuse multichannel files instead of averaging channels")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable/silent/NaN files (listed) instead of stopping")
    p.add_argument("--overwrite", action="store_true", help="replace tracks that already exist in ROOT/clean (default: refuse)")
    p.set_defaults(func=_ingest)

    p = cmds.add_parser("render", help="apply an effect chain to every clean track")
    p.add_argument("root", help="dataset root")
    p.add_argument("--effect", required=True, help="preset name (see `fxdist data effects`) or effect YAML path")
    p.add_argument("--workers", type=int, help="processes (default min(4, CPUs))")
    p.add_argument("--overwrite", action="store_true", help="re-render existing outputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.set_defaults(func=_render)

    p = cmds.add_parser("reamp", help="write the re-amp signal to play through your gear and record back",
                        description="Write the re-amp signal (calibration blips and sweeps at both ends, guitar-range "
                        "content, a validation section) and its sidecar JSON. Play OUT.wav through the device, record "
                        "the output at the same rate, and `fxdist data import` the pair.")
    p.add_argument("out", help="the signal's WAV path (its section map is written beside it as .json)")
    p.add_argument("--seconds", type=float, default=180.0, help="seconds of content, calibrations not counted (default 180)")
    p.add_argument("--sample-rate", type=int, default=48000, help="sample rate in Hz; record at the same rate (default 48000)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the generated content (default 0)")
    p.add_argument("--music", help="folder of DI or other music to append to the content (default: none)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT (default: refuse)")
    p.set_defaults(func=_reamp)

    p = cmds.add_parser("import", help="import recorded clean/processed pairs, finding and removing latency")
    p.add_argument("pairs", help="folder with clean/ + processed/ subfolders, or NAME_clean.* / NAME_processed.* files")
    p.add_argument("root", help="dataset root")
    p.add_argument("--effect-id", default="imported", help="name of the effect: pairs go to ROOT/processed/EFFECT_ID (default: imported)")
    p.add_argument("--sample-rate", type=int, help="resample aligned pairs to this rate in Hz (default: keep the files' rate)")
    p.add_argument("--max-latency-ms", type=float, default=100.0, help="largest latency searched, in ms (default 100)")
    p.add_argument("--min-correlation", type=float, default=0.3, help="refuse a pair whose alignment peak correlates less (default 0.3)")
    p.add_argument("--latency", type=int, metavar="SAMPLES", help="the device's latency, when you know it (default: measured)")
    p.add_argument("--no-drift-check", action="store_true", help="accept the latency measured at the start without checking the end")
    p.add_argument("--max-drift-ppm", type=float, default=200.0, help="largest clock drift corrected by resampling (default 200 ppm)")
    p.add_argument("--split", choices=("train", "validation", "test"), help="put these pairs in this split (default: a re-amp recording's own sections, else hash order at `data shard`)")
    p.set_defaults(func=_import)

    p = cmds.add_parser("shard", help="write aligned pairs as sharded Parquet with a manifest")
    p.add_argument("root", help="dataset root")
    p.add_argument("--effect", required=True, help="effect id (folder under ROOT/processed)")
    p.add_argument("--dest", help="path or URI (file://, s3://...); default ROOT/shards/EFFECT")
    p.add_argument("--config", help="ShardConfig YAML (default: the ShardConfig defaults)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override a ShardConfig key (repeatable)")
    p.add_argument("--strict", action="store_true", help="refuse pairs that do not line up sample-aligned (default: warn)")
    p.set_defaults(func=_shard)

    p = cmds.add_parser("verify", help="check every shard against the manifest's checksums")
    p.add_argument("dest", help="shard set path or URI")
    p.set_defaults(func=_verify)

    p = cmds.add_parser("effects", help="list the shipped effect presets")
    p.set_defaults(func=_effects)

    p = cmds.add_parser("render-plan", help="show the chunks of a render-array config (and save the plan)")
    p.add_argument("config", help="render-array YAML (see configs/render/)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override a render-array config key (repeatable)")
    p.set_defaults(func=_render_plan)

    p = cmds.add_parser("render-chunk", help="render and shard one chunk of a render-array config (one array task)")
    p.add_argument("config", help="render-array YAML (see configs/render/)")
    p.add_argument("--index", type=int, required=True, help="chunk index, e.g. $SLURM_ARRAY_TASK_ID")
    p.add_argument("--workers", type=int, help="render processes (default: SLURM_CPUS_PER_TASK, else cpus_per_task)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override a render-array config key (repeatable)")
    p.set_defaults(func=_render_chunk)

    p = cmds.add_parser("finalize", help="merge the rendered chunks of a render-array config into a verified shard set")
    p.add_argument("config", help="render-array YAML (see configs/render/)")
    p.add_argument("--no-verify", action="store_true", help="check sizes and schemas only, not every shard's sha256")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override a render-array config key (repeatable)")
    p.set_defaults(func=_finalize)


def _generate(args) -> int:
    from fxdist.config import from_dict, load
    from fxdist.data.generate import GenerateConfig, generate

    overrides = parse_overrides(args.overrides)
    for key, value in (("tracks", args.tracks), ("segments_per_track", args.segments), ("seed", args.seed), ("sample_rate", args.sample_rate)):
        if value is not None:
            overrides[key] = value
    cfg = load(GenerateConfig, args.config, overrides) if args.config else from_dict(GenerateConfig, overrides, "<command line>")
    paths = generate(cfg, Path(args.root) / "clean", overwrite=args.overwrite, workers=args.workers)
    seconds = len(paths) * cfg.track_samples / cfg.sample_rate
    print(f"{len(paths)} track(s), {seconds:.0f} s at {cfg.sample_rate} Hz in {Path(args.root) / 'clean'}")
    return 0


def _ingest(args) -> int:
    from fxdist.data.ingest import ingest_folder

    result = ingest_folder(args.src, args.root, args.sample_rate, downmix=not args.no_downmix, skip_bad=args.skip_bad, overwrite=args.overwrite)
    print(f"{len(result.outputs)} file(s) -> {Path(args.root) / 'clean'}")
    for skipped in result.skipped:
        print(f"skipped {skipped.path}: {skipped.reason}")
    return 0


def _render(args) -> int:
    from fxdist.data.render import render
    from fxdist.effects import load_effect

    chain = load_effect(args.effect)
    root = Path(args.root)
    report = render(root / "clean", chain, root / "processed" / chain.name, workers=args.workers, overwrite=args.overwrite, progress=not args.no_progress)
    print(report)
    return 0


def _reamp(args) -> int:
    from fxdist.data.reamp import ReampConfig, sidecar_path, write_reamp

    cfg = ReampConfig(seconds=args.seconds, sample_rate=args.sample_rate, seed=args.seed, music=args.music)
    signal = write_reamp(args.out, cfg, overwrite=args.overwrite)
    print(f"{args.out}: {signal.audio.size / signal.sample_rate:.1f} s at {signal.sample_rate} Hz, 24-bit; sections in "
          f"{sidecar_path(args.out)}")
    for sec in signal.sections:
        print(f"  {sec.name:<18} {sec.start / signal.sample_rate:8.2f} s .. {sec.end / signal.sample_rate:8.2f} s")
    print("Play it through the device at unity level, record the output at the same rate, then "
          f"`fxdist data import` {args.out} with the recording.")
    return 0


def _import(args) -> int:
    from fxdist.data.ingest import import_pairs

    reports = import_pairs(
        args.pairs, args.root, sample_rate=args.sample_rate, max_latency_ms=args.max_latency_ms,
        min_correlation=args.min_correlation, effect_id=args.effect_id, latency=args.latency,
        drift_check=not args.no_drift_check, max_drift_ppm=args.max_drift_ppm, split=args.split,
    )
    for r in reports:
        how = {"calibration": "from the calibration blips", "given": "as given"}.get(r.method, f"by {r.method}")
        extras = [f"polarity {'inverted' if r.polarity < 0 else 'normal'}"]
        if r.method in ("correlation", "envelope"):
            extras.append(f"correlation {r.correlation:.3f}")
        if r.drift_corrected:
            extras.append(f"clock drift {r.drift_ppm:+.1f} ppm corrected")
        elif r.method == "calibration":
            extras.append("no clock drift")
        print(f"{r.track_id}: latency {r.latency_samples} samples ({r.latency_ms:.2f} ms) {how}, {', '.join(extras)}; "
              f"{r.length} samples aligned" + (f", split {r.split}" if r.split else ""))
    return 0


def _shard(args) -> int:
    from fxdist.config import from_dict, load
    from fxdist.data.shards import ShardConfig, write_shards

    overrides = parse_overrides(args.overrides)
    cfg = load(ShardConfig, args.config, overrides) if args.config else from_dict(ShardConfig, overrides, "<command line>")
    dest = args.dest or str(Path(args.root) / "shards" / args.effect)
    manifest = write_shards(args.root, dest, args.effect, cfg, strict=args.strict,
                            log=lambda line: print(f"fxdist: warning: {line}", file=sys.stderr))
    print(manifest.summary())
    return 0


def _verify(args) -> int:
    from fxdist.data.manifest import verify

    print(verify(args.dest))
    return 0


def _effects(args) -> int:
    from fxdist.effects import load_effect_config
    from fxdist.presets import list_effect_presets

    for name in list_effect_presets():
        cfg = load_effect_config(name)
        print(f"{name:18s} {cfg.family:12s} {' '.join(cfg.description.split())[:90]}")
    return 0


def _render_plan(args) -> int:
    from fxdist.data.array import index_ranges, load_render_config, prepare

    plan = prepare(load_render_config(args.config, parse_overrides(args.overrides)))
    todo = plan.todo()
    print(f"{len(plan.tracks)} track(s) in {len(plan.chunks)} chunk(s) -> {plan.out}")
    print(f"not done: {len(todo)} chunk(s) {index_ranges(todo)}".rstrip())
    print(f"sbatch --array=0-{len(plan.chunks) - 1} jobs/render-array.sbatch {args.config}")
    return 0


def _render_chunk(args) -> int:
    from fxdist.data.array import load_render_config, render_chunk

    cfg = load_render_config(args.config, parse_overrides(args.overrides))
    print(render_chunk(cfg, args.index, workers=args.workers))
    return 0


def _finalize(args) -> int:
    from fxdist.data.array import finalize, load_render_config

    manifest = finalize(load_render_config(args.config, parse_overrides(args.overrides)), verify=not args.no_verify)
    print(manifest.summary())
    return 0
