"""`fxdist submit`, `fxdist jobs`, `fxdist cancel`: sweeps as SLURM jobs (submitit + Ray in the allocation)."""

from __future__ import annotations

import argparse

from fxdist.cli import parse_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit a sweep as a SLURM job", description="Submit a sweep as one SLURM job (submitit); the job starts Ray on its node and runs the sweep, or resumes it when requeued. With --render: render and shard a dataset as a job array (one task per chunk of tracks, chunks already done are skipped) and a finalize job after it.")
    p.add_argument("config", help="sweep YAML (see configs/sweep/), or with --render a render-array YAML (configs/render/)")
    p.add_argument("--render", action="store_true", help="CONFIG is a render-array config: render and shard a dataset as a job array, one task per chunk of tracks")
    p.add_argument("--cluster", required=True, help="site YAML (see configs/cluster/)")
    p.add_argument("--dry-run", action="store_true", help="print the sbatch script and submit nothing")
    p.add_argument("--storage", help="experiment storage on a filesystem the nodes share (default: the config's storage)")
    p.add_argument("--shards", help="shard set path or URI (sets overrides.data.shards)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override a sweep config key, e.g. num_samples=4 (repeatable)")
    p.set_defaults(func=_submit)

    p = sub.add_parser("jobs", help="list your fxdist SLURM jobs", description="List your queued and running fxdist jobs (squeue, names fxdist-*).")
    p.set_defaults(func=_jobs)

    p = sub.add_parser("cancel", help="cancel a SLURM job", description="Cancel a SLURM job (scancel).")
    p.add_argument("job_id", help="job id printed by `fxdist submit`")
    p.set_defaults(func=_cancel)


def _submit(args) -> int:
    if args.render:
        return _submit_render(args)
    from fxdist.slurm.submit import submit

    overrides = parse_overrides(args.overrides)
    if args.shards:
        import os

        overrides["overrides.data.shards"] = args.shards if "://" in args.shards else os.path.abspath(args.shards)
    result = submit(args.config, args.cluster, overrides, dry_run=args.dry_run, storage=args.storage)
    if args.dry_run:
        print(result.script)
        print(f"# experiment: {result.experiment}")
        print(f"# logs: {result.logs_dir}")
        return 0
    print(f"job: {result.job_id}")
    print(f"experiment: {result.experiment}")
    print(f"logs: {result.logs_dir}")
    print(f"`fxdist jobs` lists it, `fxdist status {result.experiment}` shows its trials, `fxdist cancel {result.job_id}` stops it")
    return 0


def _submit_render(args) -> int:
    from fxdist.errors import ConfigError
    from fxdist.data.array import index_ranges
    from fxdist.slurm.array import submit_render

    if args.shards or args.storage:
        raise ConfigError("--shards and --storage are for sweeps; a render-array config names its root and out")
    result = submit_render(args.config, args.cluster, dry_run=args.dry_run, overrides=parse_overrides(args.overrides))
    chunks = index_ranges(result.chunks) or "none"
    if args.dry_run:
        print(result.scripts["array"])
        print(result.scripts["finalize"])
        print(f"# chunks to render: {chunks} of {result.total_chunks}")
        print(f"# shards: {result.out}")
        print(f"# logs: {result.logs_dir}")
        return 0
    print(f"array job: {result.array_job_id or 'none (every chunk is done)'}")
    print(f"finalize job: {result.finalize_job_id}")
    print(f"chunks: {chunks} of {result.total_chunks}")
    print(f"shards: {result.out}")
    print(f"logs: {result.logs_dir}")
    return 0


def _jobs(args) -> int:
    from fxdist.slurm.submit import jobs

    rows = jobs()
    header = ["job", "name", "state", "elapsed", "limit", "nodes/reason"]
    body = [[j.job_id, j.name, j.state, j.elapsed, j.time_limit, j.where] for j in rows]
    widths = [max(len(c) for c in col) for col in zip(header, *body)]
    for line in (header, *body):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
    return 0


def _cancel(args) -> int:
    from fxdist.slurm.submit import cancel

    cancel(args.job_id)
    print(f"cancelled {args.job_id}")
    return 0
