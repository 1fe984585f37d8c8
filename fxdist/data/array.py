"""Render and shard a large dataset in chunks of tracks, one chunk per task (a SLURM array task).

A ``RenderArrayConfig`` names a dataset root (``clean/`` tracks, and/or a ``generate`` spec
the tasks draw tracks from), an effect and a shard config. ``prepare`` fixes the plan:
the sorted track list cut into contiguous chunks (``plan_chunks``), written once to
``<out>/render-array/plan.json``. Task ``i`` runs ``render_chunk(cfg, i)``: it
generates and renders its tracks into ``clean/`` and ``processed/<effect>/`` (the usual
layout, each WAV atomic and kept), writes its own shards ``<split>/part-<i:05d>-<k:05d>.parquet``
(temp + move) and then its done marker ``render-array/chunk-<i:05d>.json`` (host, job, shard
checksums). A chunk with a marker is skipped; a chunk without one (a killed task) is redone
from the start, its leftover part and temp files deleted first. ``finalize`` checks every
chunk's shards against its marker (sha256), then writes ``manifest.json``: the result is a
shard set that ``fxdist data verify`` and the training readers take as any other.
Submitting the chunks as a SLURM array is ``fxdist.slurm.array.submit_render``.

Splits are the single-machine ones: ``assign_splits`` over the whole plan's track list (not
per chunk), and chunks are contiguous runs of the sorted list, so each split holds the same
tracks, in the same order, with the same rows as ``write_shards`` on the same root makes.
Only the cut into files differs: no shard spans two chunks (so there can be up to
chunks x splits more shards, some smaller, and their names carry the chunk).

Paths in the config are relative to the working directory (a job's is the folder it was
submitted from); ``root`` and ``out`` must be on storage every node shares.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import posixpath
import socket
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import fxdist
from fxdist.config import load, to_dict
from fxdist.data.generate import GenerateConfig, generate_track, track_id
from fxdist.data.manifest import MANIFEST, SCHEMA_VERSION, SPLITS, Manifest, ShardInfo, SplitInfo, check_shard, open_root
from fxdist.data.shards import ShardConfig
from fxdist.errors import ConfigError, DataError, ShardError
from fxdist.fsutil import write_text_atomic

STATE_DIR = "render-array"  # under the shard set: plan, done markers, SLURM logs
PLAN_FILE = "plan.json"
# Fields that say how the work is run, not what it makes: changing them keeps the plan.
RUN_FIELDS = ("cpus_per_task", "max_parallel")


@dataclass
class RenderArrayConfig:
    """What to render and shard, and how to cut it into array tasks.

    Exactly one of ``tasks`` (that many chunks, sizes differing by at most one track) and
    ``tracks_per_task`` (chunks of that many tracks, the last one smaller) is set.
    ``generate``: synthetic tracks the tasks make in ``root/clean`` (with any tracks
    already there: all of them are rendered, as ``fxdist data render`` would).
    ``cpus_per_task``: CPUs each array task asks for and render processes it runs
    (None: the site's ``cpus_per_node``). ``max_parallel``: array tasks at once (None: all).
    """

    root: str
    effect: str = "distortion"
    out: str | None = None  # the shard set; None: <root>/shards/<effect id>
    generate: GenerateConfig | None = None
    tasks: int | None = None
    tracks_per_task: int | None = None
    shard: ShardConfig = field(default_factory=ShardConfig)
    cpus_per_task: int | None = None
    max_parallel: int | None = None

    def __post_init__(self) -> None:
        if (self.tasks is None) == (self.tracks_per_task is None):
            raise ValueError(f"set exactly one of tasks and tracks_per_task, got tasks={self.tasks}, "
                             f"tracks_per_task={self.tracks_per_task}")
        for name in ("tasks", "tracks_per_task", "cpus_per_task", "max_parallel"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or null, got {value}")


def load_render_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RenderArrayConfig:
    """Load a render-array YAML strictly (unknown keys raise ConfigError naming the allowed ones)."""
    return load(RenderArrayConfig, path, overrides)


# -- the plan ------------------------------------------------------------------------------------


def plan_chunks(n_tracks: int, tasks: int | None = None, tracks_per_task: int | None = None) -> list[tuple[int, int]]:
    """Cut tracks 0..n_tracks-1 into contiguous chunks ``[lo, hi)``, in order.

    ``tasks``: that many chunks whose sizes differ by at most one (larger ones first);
    ``tracks_per_task``: chunks of that size, the last one holding the rest.
    """
    if (tasks is None) == (tracks_per_task is None):
        raise ConfigError(f"set exactly one of tasks and tracks_per_task, got {tasks}, {tracks_per_task}")
    if n_tracks < 1:
        raise ConfigError("no tracks to cut into chunks")
    if tracks_per_task is not None:
        if tracks_per_task < 1:
            raise ConfigError(f"tracks_per_task must be >= 1, got {tracks_per_task}")
        return [(lo, min(lo + tracks_per_task, n_tracks)) for lo in range(0, n_tracks, tracks_per_task)]
    if tasks < 1 or tasks > n_tracks:
        raise ConfigError(f"tasks must be in [1, {n_tracks}] (one track at least per task), got {tasks}")
    base, extra = divmod(n_tracks, tasks)
    bounds = [0]
    for i in range(tasks):
        bounds.append(bounds[-1] + base + (i < extra))
    return list(zip(bounds[:-1], bounds[1:]))


@dataclass
class Plan:
    """The fixed cut of a render: every track, the chunks over them, where things go."""

    root: Path
    out: Path
    effect_id: str
    effect_config: dict[str, Any]
    sample_rate: int
    tracks: list[str]  # sorted track ids
    generated: dict[str, int]  # track id -> index in the generate spec, for tracks the tasks make
    chunks: list[tuple[int, int]]  # [lo, hi) into tracks
    config: dict[str, Any]  # the config fields that decide the outputs
    digest: str  # sha256 of config + tracks: markers of another plan are not this plan's

    @property
    def state(self) -> Path:
        return self.out / STATE_DIR

    def marker(self, index: int) -> Path:
        return self.state / f"chunk-{index:05d}.json"

    def chunk_tracks(self, index: int) -> list[str]:
        lo, hi = self.chunks[index]
        return self.tracks[lo:hi]

    def done(self) -> list[int]:
        """Indices of chunks with a done marker."""
        return [i for i in range(len(self.chunks)) if self.marker(i).is_file()]

    def todo(self) -> list[int]:
        done = set(self.done())
        return [i for i in range(len(self.chunks)) if i not in done]


def _paths(cfg: RenderArrayConfig, effect_id: str) -> tuple[Path, Path]:
    root = Path(cfg.root).absolute()
    if cfg.out is not None and "://" in cfg.out:
        raise ConfigError(f"out {cfg.out!r}: a render array writes to a shared filesystem path, not a URI")
    return root, Path(cfg.out).absolute() if cfg.out else root / "shards" / effect_id


def _listing(clean_dir: Path) -> list[str]:
    if not clean_dir.is_dir():
        return []
    return sorted(p.stem for p in clean_dir.glob("*.wav") if not p.name.startswith(".") and p.is_file())


def prepare(cfg: RenderArrayConfig, write: bool = True) -> Plan:
    """The plan of ``cfg``: read from ``<out>/render-array/plan.json``, or made (and, with
    ``write``, saved and the processed folder claimed for the effect).

    Refuses (ConfigError) a config that differs from the saved plan's, and a ``clean/``
    that gained tracks the plan lacks; DataError when it lost tracks the plan needs.
    """
    from fxdist.data.render import claim_out_dir
    from fxdist.effects import load_effect

    chain = load_effect(cfg.effect)
    root, out = _paths(cfg, chain.name)
    config = {k: v for k, v in to_dict(cfg).items() if k not in RUN_FIELDS}
    config.update(root=str(root), out=str(out), effect=chain.to_dict())
    config = json.loads(json.dumps(config))  # as the saved plan holds it (lists, not tuples)
    listing = _listing(root / "clean")
    plan_path = out / STATE_DIR / PLAN_FILE
    if plan_path.is_file():
        plan = _read_plan(plan_path)
        if plan.config != config:
            keys = sorted(k for k in set(plan.config) | set(config) if plan.config.get(k) != config.get(k))
            raise ConfigError(
                f"{plan_path}: planned with another config (differs in {', '.join(keys)}); use another out, "
                f"or delete {plan.state} to start over"
            )
    else:
        plan = _new_plan(cfg, root, out, chain, config, listing)
    if extra := sorted(set(listing) - set(plan.tracks)):
        raise ConfigError(
            f"{root / 'clean'}: {len(extra)} track(s) not in the plan {plan_path} ({', '.join(extra[:5])}); "
            f"delete {plan.state} to plan again with them"
        )
    if missing := sorted(set(plan.tracks) - set(listing) - set(plan.generated)):
        raise DataError(f"{root / 'clean'}: {len(missing)} planned track(s) missing: {', '.join(missing[:5])}")
    if write and not plan_path.is_file():
        claim_out_dir(root / "processed" / plan.effect_id, plan.effect_config)
        plan.state.mkdir(parents=True, exist_ok=True)
        write_text_atomic(plan_path, json.dumps(_plan_json(plan), indent=1))
    return plan


def _new_plan(cfg: RenderArrayConfig, root: Path, out: Path, chain, config: dict[str, Any], listing: list[str]) -> Plan:
    """Tracks: the generate spec's and those in ``clean/``, sorted; cut by ``plan_chunks``."""
    import soundfile as sf

    gen = cfg.generate
    generated = {track_id(gen.seed, i): i for i in range(gen.tracks)} if gen else {}
    tracks = sorted(set(generated) | set(listing))
    if not tracks:
        raise DataError(f"{root / 'clean'}: no .wav tracks, and no generate spec to make some")
    if gen:
        rate = gen.sample_rate
    else:  # every chunk checks its tracks against this rate
        try:
            rate = int(sf.info(str(root / "clean" / f"{tracks[0]}.wav")).samplerate)
        except Exception as exc:
            raise DataError(f"{root / 'clean' / tracks[0]}.wav: cannot read audio header ({exc})") from exc
    chunks = plan_chunks(len(tracks), cfg.tasks, cfg.tracks_per_task)
    digest = hashlib.sha256(json.dumps([config, tracks, chunks], sort_keys=True).encode()).hexdigest()
    return Plan(root, out, chain.name, chain.to_dict(), rate, tracks, generated, chunks, config, digest)


def _plan_json(plan: Plan) -> dict[str, Any]:
    data = dataclasses.asdict(plan)
    data.update(root=str(plan.root), out=str(plan.out), chunks=[list(c) for c in plan.chunks])
    return data


def _read_plan(path: Path) -> Plan:
    try:
        data = json.loads(path.read_text())
        data.update(root=Path(data["root"]), out=Path(data["out"]), chunks=[tuple(c) for c in data["chunks"]])
        return Plan(**data)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{path}: unreadable render plan ({exc}); delete {path.parent} to start over") from exc


# -- one chunk -----------------------------------------------------------------------------------


@dataclass
class ChunkReport:
    """What ``render_chunk`` did for one chunk (``skipped``: it was done already)."""

    index: int
    tracks: int
    skipped: bool
    host: str
    generated: int = 0
    rendered: int = 0
    shards: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.skipped:
            return f"chunk {self.index}: done already (on {self.host}), skipped"
        return (f"chunk {self.index}: {self.tracks} track(s) ({self.generated} generated, {self.rendered} rendered), "
                f"{self.shards} shard(s) on {self.host} in {self.seconds:.1f} s")


def render_chunk(cfg: RenderArrayConfig, index: int, workers: int | None = None) -> ChunkReport:
    """Generate, render and shard the tracks of chunk ``index``; then write its done marker.

    ``workers``: render processes (default: ``SLURM_CPUS_PER_TASK``, else ``cpus_per_task``,
    else 1). A chunk with a marker is skipped. Otherwise the set's manifest (now stale) and
    this chunk's earlier part and temp files are deleted and the chunk is made from the
    start; tracks already rendered (complete: WAV writes are atomic) are kept.
    """
    from fxdist.data import shards as sh

    start = time.perf_counter()
    plan = prepare(cfg)
    if not 0 <= index < len(plan.chunks):
        raise ConfigError(f"chunk index {index} out of range: the plan has {len(plan.chunks)} chunk(s), "
                          f"0..{len(plan.chunks) - 1}")
    marker = plan.marker(index)
    if marker.is_file():
        return ChunkReport(index, len(plan.chunk_tracks(index)), True, _read_json(marker).get("host", "?"))
    (plan.out / MANIFEST).unlink(missing_ok=True)
    _delete_chunk_files(plan, index)

    ids = plan.chunk_tracks(index)
    proc_dir = plan.root / "processed" / plan.effect_id
    clean = {t: plan.root / "clean" / f"{t}.wav" for t in ids}
    jobs = [(cfg.generate if t in plan.generated else None, plan.generated.get(t), clean[t], proc_dir / f"{t}.wav")
            for t in ids]
    workers = workers or int(os.environ.get("SLURM_CPUS_PER_TASK", 0)) or cfg.cpus_per_task or 1
    made = _make_pairs(plan.effect_config, jobs, workers)

    pairs = sh.as_pairs([(t, clean[t], proc_dir / f"{t}.wav") for t in ids], plan.effect_id)
    _, lengths = sh.check_headers(pairs, plan.sample_rate)  # rates and lengths, before any shard is written
    splits = {}
    for split, members in sh.assign_splits(plan.tracks, cfg.shard).items():  # the whole plan's split
        members = set(members)
        mine = [p for p in pairs if p.track_id in members]  # sorted by id, as pairs are
        splits[split] = {"tracks": [p.track_id for p in mine], "track_samples": [lengths[p.track_id] for p in mine],
                         "shards": _write_chunk_split(plan, cfg.shard, index, split, mine, lengths)}
    report = ChunkReport(index, len(ids), False, socket.gethostname(), sum(g for g, _ in made), sum(r for _, r in made),
                         sum(len(s["shards"]) for s in splits.values()), time.perf_counter() - start)
    record = {
        "index": index, "digest": plan.digest, "host": report.host,
        "job_id": os.environ.get("SLURM_JOB_ID"), "array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
        "array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seconds": round(report.seconds, 3),
        "generated": report.generated, "rendered": report.rendered, "splits": splits,
    }
    write_text_atomic(marker, json.dumps(record, indent=1))
    return report


def _delete_chunk_files(plan: Plan, index: int) -> None:
    """This chunk's part files and temp files of a killed earlier try (other chunks' stay)."""
    for split in SPLITS:
        folder = plan.out / split
        for pattern in (f"part-{index:05d}-*.parquet", f".part-{index:05d}-*.tmp-*"):
            for path in folder.glob(pattern):
                path.unlink(missing_ok=True)


_CHAIN = None  # the effect chain of this process (built once per render process)


def _init_chain(effect_config: dict[str, Any]) -> None:
    from fxdist.effects import Chain

    global _CHAIN
    _CHAIN = Chain.from_config(effect_config, source="render-array task")


def _make_pair(job: tuple[GenerateConfig | None, int | None, Path, Path]) -> tuple[int, int]:
    """Generate the clean track if the spec makes it and it is missing; render it if its output
    is missing. Returns (generated, rendered) as 0/1."""
    from fxdist.audio import write_audio
    from fxdist.data.render import render_track

    gen, gen_index, clean, processed = job
    made = 0
    if gen is not None and not clean.exists():
        write_audio(clean, generate_track(gen, gen_index), gen.sample_rate)
        made = 1
    if processed.exists():
        return made, 0
    render_track(_CHAIN, clean, processed)
    return made, 1


def _make_pairs(effect_config: dict[str, Any], jobs: list, workers: int) -> list[tuple[int, int]]:
    if workers <= 1 or len(jobs) <= 1:
        _init_chain(effect_config)
        return [_make_pair(job) for job in jobs]
    with ProcessPoolExecutor(min(workers, len(jobs)), initializer=_init_chain, initargs=(effect_config,)) as pool:
        return list(pool.map(_make_pair, jobs))


def _write_chunk_split(plan: Plan, cfg: ShardConfig, index: int, split: str, pairs: list, lengths: dict[str, int]) -> list[dict]:
    """Shard one split's tracks of a chunk (as ``write_shards`` packs a split); their infos."""
    from fxdist.data import shards as sh

    fs, root = open_root(str(plan.out))
    R, sr = cfg.row_samples, plan.sample_rate
    track_rows = [math.ceil(lengths[p.track_id] / R) for p in pairs]
    infos = []
    for k, pieces in enumerate(sh.pack_shards(track_rows, cfg.rows_per_shard)):

        def tables(pieces=pieces) -> Iterator:
            cached = None
            for t, lo, hi in pieces:
                pair = pairs[t]
                if cached is None or cached[0] != pair.track_id:
                    cached = None  # free the previous track before decoding the next
                    cached = (pair.track_id, *sh.load_pair(pair, sr, lengths[pair.track_id], cfg))
                yield sh.track_table(pair.track_id, cached[1], cached[2], lo, hi, sr, plan.effect_id, R)

        info = sh.write_shard(fs, root, f"{split}/part-{index:05d}-{k:05d}.parquet", tables(), R, cfg, 0)
        infos.append({k: v for k, v in dataclasses.asdict(info).items() if k != "first_row"})
    return infos


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ShardError(f"{path}: unreadable ({exc}); delete it to redo that chunk") from exc


# -- the whole set -------------------------------------------------------------------------------


def index_ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2,5`` (sbatch's --array syntax)."""
    parts, i = [], 0
    while i < len(indices):
        j = i
        while j + 1 < len(indices) and indices[j + 1] == indices[j] + 1:
            j += 1
        parts.append(str(indices[i]) if i == j else f"{indices[i]}-{indices[j]}")
        i = j + 1
    return ",".join(parts)


def finalize(cfg: RenderArrayConfig, verify: bool = True) -> Manifest:
    """Merge the chunks into ``<out>/manifest.json`` and return it.

    ShardError naming the chunks without a done marker when some are missing (and any old
    manifest is deleted: the set is incomplete). Every chunk
    shard is checked against its marker (size, schema, row groups; with ``verify`` also its
    sha256); a chunk with a bad shard loses its marker (so a resubmission redoes it) and
    the error names it. Stale part and temp files are deleted; the manifest is written last.
    """
    from fxdist.data import shards as sh
    from fxdist.data.render import EFFECT_FILE

    plan = prepare(cfg)
    if todo := plan.todo():
        (plan.out / MANIFEST).unlink(missing_ok=True)  # a manifest here would describe another state
        raise ShardError(
            f"{plan.out}: {len(todo)} of {len(plan.chunks)} chunk(s) not done: {index_ranges(todo)} (no marker in {plan.state}); "
            f"resubmit the same config, or run `fxdist data render-chunk CONFIG --index I` for each"
        )
    records = [_read_json(plan.marker(i)) for i in range(len(plan.chunks))]
    if stale := [r["index"] for r in records if r.get("digest") != plan.digest]:
        raise ShardError(f"{plan.state}: marker(s) of chunk(s) {index_ranges(stale)} come from another plan; delete them and resubmit")
    fs, root = open_root(str(plan.out))
    R, G = cfg.shard.row_samples, cfg.shard.rows_per_group
    expected = sh.assign_splits(plan.tracks, cfg.shard)
    splits, bad = {}, {}
    for split in SPLITS:
        tracks, samples, shards, first_row = [], [], [], 0
        for rec in records:
            part = rec["splits"][split]
            tracks += part["tracks"]
            samples += part["track_samples"]
            for s in part["shards"]:
                info = ShardInfo(**s, first_row=first_row)
                try:
                    check_shard(fs, posixpath.join(root, info.path), info, R, G, sha256=verify)
                except ShardError as exc:
                    bad.setdefault(rec["index"], []).append(str(exc))
                shards.append(info)
                first_row += info.rows
        if tracks != expected[split]:
            raise ShardError(f"{plan.state}: split {split}: chunks hold tracks {tracks[:5]}..., the plan expects "
                             f"{expected[split][:5]}... (markers and plan disagree)")
        splits[split] = SplitInfo(tracks, samples, first_row, round(sum(samples) / plan.sample_rate, 6), shards)
    if bad:
        (plan.out / MANIFEST).unlink(missing_ok=True)
        for index in bad:
            plan.marker(index).unlink(missing_ok=True)
        details = "\n".join(f"chunk {i}: {msg}" for i, msgs in sorted(bad.items()) for msg in msgs)
        raise ShardError(f"{plan.out}: bad shard(s) in chunk(s) {index_ranges(sorted(bad))}; their done markers were "
                         f"removed, resubmit to redo them:\n{details}")
    for split, info in splits.items():
        sh.delete_stale(fs, posixpath.join(root, split), keep={posixpath.basename(s.path) for s in info.shards})
    effect_file = plan.root / "processed" / plan.effect_id / EFFECT_FILE
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        fxdist_version=fxdist.__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        sample_rate=plan.sample_rate,
        row_samples=R,
        effect_id=plan.effect_id,
        effect_config=sh.rendered_effect_config(effect_file) or plan.effect_config,
        shard_config=dataclasses.asdict(cfg.shard),
        splits=splits,
        uri=str(plan.out),
    )
    write_text_atomic(plan.out / MANIFEST, manifest.to_json())
    return manifest


def chunk_hosts(cfg: RenderArrayConfig) -> dict[int, str]:
    """Which host rendered each done chunk (from the markers)."""
    plan = prepare(cfg, write=False)
    return {i: _read_json(plan.marker(i)).get("host", "?") for i in plan.done()}


__all__ = [
    "ChunkReport", "Plan", "RenderArrayConfig", "chunk_hosts", "finalize", "index_ranges", "load_render_config",
    "plan_chunks", "prepare", "render_chunk",
]
