"""`fxdist capture`: recorded pairs -> the best model, its report and exports, in one command."""

from __future__ import annotations

import argparse

from fxdist.cli import parse_overrides

# Copies of fxdist.capture's defaults (importing it here would load torch for every command).
DEFAULT_BUDGET = 240.0
CANDIDATE_NAMES = ("wavenet", "lstm", "wh", "fir", "compressor")
OTHER_CANDIDATES = ("hybrid", "nebula")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "capture", help="capture an effect from recorded pairs: import, shard, sweep candidate models, pick, report, export",
        description="Capture the effect recorded in PAIRS: import and shard the pairs, train every candidate model "
        "family within the time budget on local Ray (one core each, as many at once as --threads), pick the "
        "candidate with the lowest validation ESR among those below doing nothing on both ESR and MR-STFT, and "
        "write OUT/best.pt, OUT/report.html, OUT/exports/ and OUT/capture.json. Rerunning resumes an unfinished "
        "capture.",
    )
    p.add_argument("pairs", help="a folder of pairs as `fxdist data import` takes (clean/ + processed/, or "
                   "NAME_clean/NAME_processed files), or with --signal the one recording of the re-amp signal")
    p.add_argument("--out", required=True, help="capture folder (results and work)")
    p.add_argument("--signal", help="the re-amp file that was played into the device (its .json sidecar beside it)")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                   help=f"wall-clock seconds for the whole capture, import to exports (default: {DEFAULT_BUDGET:.0f})")
    p.add_argument("--threads", type=int, help="cores to use, one candidate per core (default: every core)")
    p.add_argument("--candidates", help=f"comma-separated candidate names (default: {','.join(CANDIDATE_NAMES)}; "
                   f"also: {','.join(OTHER_CANDIDATES)})")
    p.add_argument("--effect-id", default="capture", help="name of the effect in the data and exports (default: capture)")
    p.add_argument("--sample-rate", type=int, help="import rate (default: the files' own)")
    p.add_argument("--cluster", help="site YAML (configs/cluster/): run the sweep as a SLURM job instead of on local Ray")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="a training key for every candidate, e.g. data.batch_size=32 (repeatable)")
    p.add_argument("--overwrite", action="store_true",
                   help="capture again into a folder that holds a finished capture (its results are replaced at the end)")
    p.set_defaults(func=_capture)


def _capture(args) -> int:
    from fxdist.capture import capture, load_capture_config

    data = {"budget": args.budget, "threads": args.threads, "effect_id": args.effect_id, "sample_rate": args.sample_rate,
            "cluster": args.cluster, "train": parse_overrides(args.overrides), "overwrite": args.overwrite}
    if args.candidates:
        data["candidates"] = [c.strip() for c in args.candidates.split(",") if c.strip()]
    result = capture(args.pairs, args.out, load_capture_config(data, "<command line>"), signal=args.signal)
    print()
    print(result.table())
    for note in result.notes:
        print(f"note: {note}")
    if result.best is None:
        return 1
    print(f"\nchosen: {result.chosen} -> {result.best}  (capture took {result.wall_seconds:.0f} s of a {result.budget:.0f} s budget)")
    print(f"report: {result.report}")
    for path in result.exports:
        print(f"export: {path}")
    return 0
