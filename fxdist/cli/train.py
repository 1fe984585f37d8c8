"""`fxdist train` and `fxdist process`."""

from __future__ import annotations

import argparse
import json

from fxdist.cli import parse_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one model from a shard set", description="Train one model from Parquet shards.")
    p.add_argument("config", help="training YAML (see configs/train/)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override a config key, e.g. optim.lr=1e-3 (repeatable)")
    p.add_argument("--shards", help="shard set path or URI (overrides data.shards)")
    p.add_argument("--out", help="run folder (overrides out_dir)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt with the same step and data position")
    p.add_argument("--overwrite", action="store_true", help="train a new run in an OUT that holds one (its best.pt is replaced)")
    p.set_defaults(func=_train)

    p = sub.add_parser("process", help="apply a trained model to an audio file", description="Apply a trained model to an audio file, block by block.")
    p.add_argument("model", help="checkpoint (.pt) written by fxdist train")
    p.add_argument("input", help="input audio file")
    p.add_argument("output", help="output audio file (.wav/.flac/...)")
    p.add_argument("--block", type=int, default=4096, help="block size in samples (the output does not depend on it; pvpitch: within ~1e-6, its phase sums round differently)")
    p.add_argument("--subtype", default="FLOAT", help="output sample format: FLOAT, PCM_24, PCM_16 (default FLOAT)")
    p.add_argument("--resample", action="store_true", help="resample input whose rate differs from the model's (default: refuse)")
    p.set_defaults(func=_process)


def _train(args) -> int:
    from fxdist.train import check_run_folder, load_config, train

    overrides = parse_overrides(args.overrides)
    if args.shards:
        overrides["data.shards"] = args.shards
    if args.out:
        overrides["out_dir"] = args.out
    if args.resume:
        overrides["resume"] = True
    cfg = load_config(args.config, overrides)
    check_run_folder(cfg, overwrite=args.overwrite)
    result = train(cfg)
    print(json.dumps({k: v for k, v in vars(result).items() if k != "history"}, indent=2))
    return 0


def _process(args) -> int:
    from fxdist.process import process_file

    report = process_file(args.model, args.input, args.output, args.block, args.subtype, args.resample)
    print(f"{report.output}: {report.seconds:.2f} s of audio ({report.channels} ch, {report.sample_rate} Hz) "
          f"in {report.wall_seconds:.2f} s ({report.realtime_factor:.1f}x real time)")
    return 0
