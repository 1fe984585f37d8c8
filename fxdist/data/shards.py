"""Sharded Parquet store of clean/processed pairs: write and read.

The on-disk format (layout, row schema, manifest, verify) is described and checked in
``fxdist.data.manifest``. A shard holds whole tracks unless a track alone has more than
``rows_per_shard`` rows, then it fills shards in order.

Splits are by track: tracks are ordered by sha256(split_seed:track_id); the first
``round(test_fraction * n)`` go to test, the next ``round(val_fraction * n)`` to
validation, the rest to train (each split gets at least one track when there are
at least 3 tracks and its fraction is > 0). Adding a track moves few others.

Atomicity: a new set is written in a folder beside ``dest`` (every shard to a temp name,
then moved; the manifest last) and swapped in only when complete, so an existing set
stays readable until then and a failure leaves it as it was. A dest without a manifest
is incomplete and every reader refuses it.

Integrity: shards are written with Parquet page CRC32 checksums and every reader here
verifies them (cheap, on exactly the pages it reads), so a flipped byte surfaces as a
ShardError naming the shard.

Building blocks ``write_shards`` is made of, public for writers that split the work across
jobs (``fxdist.data.array``): ``as_pairs``, ``check_headers``, ``load_pair``,
``track_table``, ``write_shard``, ``delete_stale``, ``rendered_effect_config``.

Compression: float32 audio compresses poorly (zstd alone: 8-10 % smaller on noisy
signals). Audio columns use Parquet's BYTE_STREAM_SPLIT encoding before compression:
20 % smaller on noise-like audio, 25 % on 24-bit material, 39 % on fxdist's synthetic
signals (they hold rests), while reading about as fast as uncompressed pages (measured,
see benchmarks/data_throughput.py). So ``compression="zstd"`` is the default; ``"none"``
writes plain pages (about 1.4x faster to write, larger files).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import soundfile as sf

import fxdist
from fxdist import storage
from fxdist.audio import check_not_silent, read_audio, to_mono
from fxdist.config import load_yaml
from fxdist.data.manifest import (
    AUDIO_COLUMNS,
    MANIFEST,
    SCHEMA_VERSION,
    SPLITS,
    Manifest,
    ShardInfo,
    SplitInfo,
    SplitLayout,
    check_shard,
    open_root,
    read_manifest,
    shard_schema,
)
from fxdist.errors import DataError, ShardError

COMPRESSIONS = ("zstd", "lz4", "snappy", "gzip", "none")
_TRACK_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass
class ShardConfig:
    """How pairs are cut into rows, row groups, shards and splits.

    ``downmix``: a stereo file (an effect with stereo output) is averaged to mono;
    False refuses it. ``compression``: one of zstd, lz4, snappy, gzip, none (see the
    module docstring for the measurement behind the default). ``silence_floor_db``:
    a processed file whose peak is below it is refused as a silent target.
    """

    row_samples: int = 48000
    rows_per_group: int = 16
    rows_per_shard: int = 512
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    downmix: bool = True
    compression: str = "zstd"
    silence_floor_db: float = -90.0

    def __post_init__(self) -> None:
        if self.row_samples < 1:
            raise ValueError(f"row_samples must be >= 1, got {self.row_samples}")
        if self.rows_per_group < 1:
            raise ValueError(f"rows_per_group must be >= 1, got {self.rows_per_group}")
        if self.rows_per_shard < self.rows_per_group:
            raise ValueError(
                f"rows_per_shard ({self.rows_per_shard}) must be >= rows_per_group ({self.rows_per_group})"
            )
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must be < 1, got {self.val_fraction} + {self.test_fraction}"
            )
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}")


def _writer_options(cfg: ShardConfig) -> dict[str, Any]:
    compressed = cfg.compression != "none"
    audio_paths = [f"{c}.list.element" for c in AUDIO_COLUMNS]
    return {
        "compression": cfg.compression if compressed else "NONE",
        "use_dictionary": ["track_id", "effect_id"],
        "use_byte_stream_split": audio_paths if compressed else False,
        "write_statistics": ["track_id", "offset", "length", "sample_rate", "effect_id"],
        "write_page_checksum": True,
    }


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class TrackPair:
    """A clean file and the effect's output for it."""

    track_id: str
    clean: Path
    processed: Path


def find_pairs(root: str | Path, effect_id: str) -> list[TrackPair]:
    """Pairs ``clean/<id>.wav`` + ``processed/<effect_id>/<id>.wav`` under a dataset root.

    A clean track without its processed file, or a processed file without its clean
    track, raises DataError naming it (no silent skips: a missing render is a bug). Two
    exceptions, clean tracks that were never this effect's input: for an imported effect (every
    processed file a ``pair-<stem>`` recording) the other clean tracks; for a rendered one, the
    clean sides of pairs imported for another effect.
    """
    root = Path(root)
    clean_dir, proc_dir = root / "clean", root / "processed" / effect_id
    for folder in (clean_dir, proc_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder missing (dataset root {root}, effect {effect_id!r})")
    clean = {p.stem: p for p in clean_dir.glob("*.wav") if not p.name.startswith(".")}  # skip temp files
    proc = {p.stem: p for p in proc_dir.glob("*.wav") if not p.name.startswith(".")}
    recorded = bool(proc) and all(t.startswith("pair-") for t in proc)  # an imported effect: recorded pairs only
    for track in sorted(set(clean) - set(proc)):
        if recorded or _recorded_for_another_effect(root, track, effect_id):
            del clean[track]  # not this effect's input: other material, or another device's recording
    if missing := sorted(set(clean) - set(proc)):
        raise DataError(
            f"{clean[missing[0]]}: no processed file {proc_dir / (missing[0] + '.wav')} "
            f"({len(missing)} clean track(s) unmatched: {', '.join(missing[:5])})"
        )
    if orphans := sorted(set(proc) - set(clean)):
        raise DataError(
            f"{proc[orphans[0]]}: no clean file {clean_dir / (orphans[0] + '.wav')} "
            f"({len(orphans)} processed file(s) unmatched: {', '.join(orphans[:5])})"
        )
    if not clean:
        raise DataError(f"{clean_dir}: no .wav tracks")
    return [TrackPair(t, clean[t], proc[t]) for t in sorted(clean)]


def _recorded_for_another_effect(root: Path, track: str, effect_id: str) -> bool:
    """``track`` is an imported recording (``pair-*``) whose processed side belongs to another effect."""
    if not track.startswith("pair-"):
        return False
    processed = root / "processed"
    return any((d / f"{track}.wav").is_file() for d in processed.iterdir() if d.is_dir() and d.name != effect_id)


def as_pairs(source: Any, effect_id: str) -> list[TrackPair]:
    """TrackPairs from a data root (``find_pairs``) or from (track_id, clean, processed) items."""
    if isinstance(source, (str, os.PathLike)):
        return find_pairs(source, effect_id)
    pairs = [p if isinstance(p, TrackPair) else TrackPair(str(p[0]), Path(p[1]), Path(p[2])) for p in source]
    if not pairs:
        raise DataError("no track pairs given")
    seen: set[str] = set()
    for p in pairs:
        if not p.track_id or set(p.track_id) - _TRACK_ID_CHARS:
            raise DataError(f"{p.clean}: track id {p.track_id!r} is not of the form [A-Za-z0-9._-]+")
        if p.track_id in seen:
            raise DataError(f"{p.clean}: track id {p.track_id!r} given twice")
        seen.add(p.track_id)
    return sorted(pairs, key=lambda p: p.track_id)


def check_headers(pairs: list[TrackPair], sample_rate: int | None) -> tuple[int, dict[str, int]]:
    """Check rates and lengths from the file headers (before anything is written)."""
    lengths: dict[str, int] = {}
    ref: tuple[int, Path] | None = (sample_rate, Path("<sample_rate argument>")) if sample_rate else None
    for p in pairs:
        infos = {}
        for path in (p.clean, p.processed):
            try:
                infos[path] = sf.info(str(path))
            except Exception as exc:
                raise DataError(f"{path}: cannot read audio header ({exc})") from exc
        ci, pi = infos[p.clean], infos[p.processed]
        if ci.samplerate != pi.samplerate:
            raise DataError(f"{p.clean}: sample rate {ci.samplerate} Hz but {p.processed} has {pi.samplerate} Hz")
        if ref is None:
            ref = (ci.samplerate, p.clean)
        elif ci.samplerate != ref[0]:
            raise DataError(f"{p.clean}: sample rate {ci.samplerate} Hz, expected {ref[0]} Hz (as {ref[1]})")
        if ci.frames != pi.frames:
            raise DataError(f"{p.clean}: length {ci.frames} samples but {p.processed} has {pi.frames}")
        if ci.frames == 0:
            raise DataError(f"{p.clean}: empty track (0 samples)")
        lengths[p.track_id] = int(ci.frames)
    assert ref is not None
    return int(ref[0]), lengths


def load_pair(p: TrackPair, sr: int, n: int, cfg: ShardConfig) -> tuple[np.ndarray, np.ndarray]:
    """Decode and check one pair; returns mono float32 (N,) clean and processed."""
    out = []
    for path in (p.clean, p.processed):
        audio, rate = read_audio(path)  # DataError on NaN/Inf
        audio = to_mono(audio, path, cfg.downmix)[0]
        if rate != sr or audio.shape[0] != n:
            raise DataError(f"{path}: decoded {audio.shape[0]} samples at {rate} Hz, header said {n} at {sr} Hz")
        out.append(np.ascontiguousarray(audio, dtype=np.float32))
    for audio, path, role in ((out[0], p.clean, "clean track"), (out[1], p.processed, "processed track")):
        try:
            check_not_silent(audio, path, cfg.silence_floor_db)
        except DataError as exc:
            raise DataError(f"{exc}: a silent {role} teaches nothing; remove the pair {p.track_id} "
                            f"({p.clean.name} and its processed file)") from None
    return out[0], out[1]


# ----------------------------------------------------------------------------- splitting


def assign_splits(track_ids: Sequence[str], cfg: ShardConfig) -> dict[str, list[str]]:
    """Split track ids into train/validation/test by hash order (see module docstring)."""
    n = len(track_ids)

    def count(fraction: float) -> int:
        k = round(fraction * n)
        return max(1, k) if (n >= 3 and fraction > 0) else k

    n_test, n_val = count(cfg.test_fraction), count(cfg.val_fraction)
    if n < 3:
        n_test, n_val = 0, int(n == 2 and cfg.val_fraction > 0)
    while n - n_test - n_val < 1:  # train keeps at least one track
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    order = sorted(track_ids, key=lambda t: hashlib.sha256(f"{cfg.split_seed}:{t}".encode()).hexdigest())
    return {
        "train": sorted(order[n_test + n_val :]),
        "validation": sorted(order[n_test : n_test + n_val]),
        "test": sorted(order[:n_test]),
    }


def pack_shards(track_rows: Sequence[int], rows_per_shard: int) -> list[list[tuple[int, int, int]]]:
    """Group tracks' rows into shards: per shard a list of (track index, row_lo, row_hi).

    Whole tracks when they fit; a track longer than a shard fills shards in order.
    """
    shards: list[list[tuple[int, int, int]]] = []
    cur: list[tuple[int, int, int]] = []
    used = 0
    for t, rows in enumerate(track_rows):
        if used and used + rows > rows_per_shard:
            shards.append(cur)
            cur, used = [], 0
        lo = 0
        while rows - lo > rows_per_shard - used:
            take = rows_per_shard - used
            cur.append((t, lo, lo + take))
            shards.append(cur)
            cur, used, lo = [], 0, lo + take
        if rows > lo:
            cur.append((t, lo, rows))
            used += rows - lo
    if cur:
        shards.append(cur)
    return shards


# ----------------------------------------------------------------------------- writing


def track_table(
    track_id: str, clean: np.ndarray, processed: np.ndarray, row_lo: int, row_hi: int, sr: int, effect_id: str, R: int
) -> pa.Table:
    """Rows row_lo..row_hi of a track as a table (last row zero-padded)."""
    n = clean.shape[0]
    k = row_hi - row_lo
    offsets = (np.arange(row_lo, row_hi, dtype=np.int64)) * R
    lengths = np.minimum(R, n - offsets).astype(np.int32)
    cols = []
    for audio in (clean, processed):
        buf = np.zeros(k * R, dtype=np.float32)
        part = audio[row_lo * R : row_hi * R]
        buf[: part.shape[0]] = part
        cols.append(pa.FixedSizeListArray.from_arrays(pa.array(buf), type=shard_schema(R).field("clean").type))
    return pa.Table.from_arrays(
        [
            pa.array([track_id] * k, pa.string()),
            pa.array(offsets),
            pa.array(lengths),
            pa.array(np.full(k, sr, np.int32)),
            pa.array([effect_id] * k, pa.string()),
            *cols,
        ],
        schema=shard_schema(R),
    )


def write_shards(
    source: str | os.PathLike | Sequence[TrackPair | tuple[str, str | Path, str | Path]],
    dest: str | os.PathLike,
    effect_id: str,
    cfg: ShardConfig | None = None,
    effect_config: dict | None = None,
    sample_rate: int | None = None,
    strict: bool = False,
    log=None,
) -> Manifest:
    """Shard the pairs of ``effect_id`` into ``dest`` and return the manifest written.

    ``source``: a dataset root (``clean/``, ``processed/<effect_id>/``) or a sequence
    of (track_id, clean_path, processed_path). ``sample_rate``: required rate, else the
    files' common rate. Bad pairs raise DataError naming the files; rates, lengths and
    matching are checked from headers before anything is written. Audio is (N,) mono.
    ``effect_config`` is stored in the manifest; when None and ``source`` is a dataset
    root, ``processed/<effect_id>/effect.yaml`` (written by render) is stored if present.
    Splits chosen at import (``<root>/splits.json``) are kept; the other tracks are split by
    hash order. Each pair's alignment is checked on a short span: a pair that lines up only
    at another lag, or not at all, is reported through ``log`` (a callable taking one line),
    or refused with ``strict``. The new set is written beside ``dest`` and swapped in once
    complete, so a failure or an interrupt leaves the old set as it was.
    """
    from fxdist.data.align import alignment_problems
    from fxdist.data.ingest import read_splits

    cfg = cfg or ShardConfig()
    pairs = as_pairs(source, effect_id)
    chosen: dict[str, str] = {}
    if isinstance(source, (str, os.PathLike)):
        if effect_config is None:
            effect_config = rendered_effect_config(Path(source) / "processed" / effect_id / "effect.yaml")
        chosen = {t: s for t, s in read_splits(source).items() if t in {p.track_id for p in pairs}}
    sr, lengths = check_headers(pairs, sample_rate)
    problems = alignment_problems(pairs, sr)
    if problems and strict:
        raise DataError(f"{len(problems)} pair(s) do not line up sample-aligned (--strict): " + "; ".join(problems))
    for line in problems:
        if log is not None:
            log(line)
    by_id = {p.track_id: p for p in pairs}
    R = cfg.row_samples
    fs, root = open_root(dest)
    parent, name = posixpath.split(root.rstrip("/"))
    _recover_interrupted(fs, parent, name, root, log)
    stage = posixpath.join(parent, f".{name}.writing-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        fs.create_dir(stage, recursive=True)
    except OSError as exc:
        blocked = "errno 20]" in str(exc) or getattr(exc, "errno", None) == 20
        why = "a part of the path is a file, not a folder: choose another --dest" if blocked else str(exc)
        raise ShardError(f"{os.fspath(dest)}: cannot create the shard set there ({why})") from exc
    try:
        splits = _write_splits(fs, stage, by_id, lengths, sr, effect_id, cfg, chosen)
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            fxdist_version=fxdist.__version__,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            sample_rate=sr,
            row_samples=R,
            effect_id=effect_id,
            effect_config=effect_config,
            shard_config=dataclasses.asdict(cfg),
            splits=splits,
            uri=os.fspath(dest),
        )
        storage.write_atomic(fs, posixpath.join(stage, MANIFEST), manifest.to_json().encode())
        storage.swap_in(fs, stage, root, keep_from_old=lambda name: name not in (*SPLITS, MANIFEST), error=ShardError)
    except BaseException:
        if fs.get_file_info(stage).type == pafs.FileType.Directory:
            fs.delete_dir(stage)
        raise
    return manifest


def _recover_interrupted(fs, parent: str, name: str, root: str, log) -> None:
    """Tidy what an interrupted ``write_shards`` of ``root`` left beside it: a staging folder is
    deleted; an old set moved aside just before the swap (``...old``) is put back when nothing
    took its place."""
    try:
        entries = fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    except (OSError, ValueError):
        return
    prefix = f".{name}.writing-"
    for entry in sorted(entries, key=lambda e: e.base_name):
        if entry.type != pafs.FileType.Directory or not entry.base_name.startswith(prefix):
            continue
        if entry.base_name.endswith(".old") and fs.get_file_info(root).type == pafs.FileType.NotFound:
            fs.move(entry.path, root)
            if log is not None:
                log(f"{root}: put back the shard set an interrupted rewrite had moved aside")
        else:
            fs.delete_dir(entry.path)


def _write_splits(fs, root: str, by_id: dict[str, TrackPair], lengths: dict[str, int], sr: int, effect_id: str,
                  cfg: ShardConfig, chosen: dict[str, str]) -> dict[str, SplitInfo]:
    R = cfg.row_samples
    members = assign_splits([t for t in by_id if t not in chosen], cfg)
    for track, split in chosen.items():
        members[split] = sorted(members[split] + [track])
    splits: dict[str, SplitInfo] = {}
    for split, ids in members.items():
        track_rows = [math.ceil(lengths[t] / R) for t in ids]
        shards = []
        first_row = 0
        cached: tuple[str, np.ndarray, np.ndarray] | None = None
        for k, pieces in enumerate(pack_shards(track_rows, cfg.rows_per_shard)):

            def tables(pieces=pieces, ids=ids) -> Iterator[pa.Table]:
                nonlocal cached
                for t, lo, hi in pieces:
                    tid = ids[t]
                    if cached is None or cached[0] != tid:
                        cached = None  # free the previous track before decoding the next
                        cached = (tid, *load_pair(by_id[tid], sr, lengths[tid], cfg))
                    yield track_table(tid, cached[1], cached[2], lo, hi, sr, effect_id, R)

            info = write_shard(fs, root, f"{split}/part-{k:05d}.parquet", tables(), R, cfg, first_row)
            shards.append(info)
            first_row += info.rows
        samples = [lengths[t] for t in ids]
        splits[split] = SplitInfo(list(ids), samples, first_row, round(sum(samples) / sr, 6), shards)
    return splits


def rendered_effect_config(path: Path) -> dict | None:
    """The effect config a render wrote beside its outputs (``effect.yaml``), or None."""
    if not path.is_file():
        return None
    data = load_yaml(path)
    return data if isinstance(data, dict) else None


def write_shard(
    fs: pafs.FileSystem, root: str, rel: str, tables: Iterator[pa.Table], R: int, cfg: ShardConfig, first_row: int
) -> ShardInfo:
    """Write one shard (temp + move) in row groups of exactly ``rows_per_group`` rows.

    Memory: the rows of one row group plus the table being cut (one track's piece).
    """
    path = posixpath.join(root, rel)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    tmp = storage.temp_name(path)
    G = cfg.rows_per_group
    rows = 0
    try:
        with (
            fs.open_output_stream(tmp) as out,
            pq.ParquetWriter(out, shard_schema(R), **_writer_options(cfg)) as writer,
        ):
            pending = shard_schema(R).empty_table()
            for table in tables:
                pending = pa.concat_tables([pending, table])
                while pending.num_rows >= G:
                    writer.write_table(pending.slice(0, G), row_group_size=G)
                    pending, rows = pending.slice(G), rows + G
            if pending.num_rows:
                writer.write_table(pending, row_group_size=G)
                rows += pending.num_rows
        size = fs.get_file_info(tmp).size
        digest = storage.sha256(fs, tmp)
        fs.move(tmp, path)
    finally:
        if storage.is_file(fs, tmp):
            fs.delete_file(tmp)
    return ShardInfo(rel, rows, math.ceil(rows / G), int(size), digest, first_row)


def delete_stale(fs: pafs.FileSystem, folder: str, keep: set[str]) -> None:
    """Delete part files not in ``keep`` and leftover temp files of earlier runs."""
    for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
        name = info.base_name
        stale_part = name.startswith("part-") and name.endswith(".parquet") and name not in keep
        if info.type == pafs.FileType.File and (stale_part or ".tmp-" in name):
            fs.delete_file(info.path)


# ----------------------------------------------------------------------------- reading


class ShardSet:
    """Open Parquet files of a shard set, with checks that name the shard.

    Every read verifies page CRCs; the first open of a shard in this process checks its
    size, schema and row groups against the manifest (and, with ``sha256=True``, its
    full checksum); ``check=False`` and ``crc=False`` turn these off. Keeps at most
    ``max_open`` files open.
    """

    _checked: ClassVar[dict[tuple[str, str, str], bool]] = {}  # (root, path, sha256) -> sha256 checked

    def __init__(
        self, manifest: Manifest, sha256: bool = False, crc: bool = True, check: bool = True, max_open: int = 4
    ):
        self.manifest = manifest
        self.fs, self.root = open_root(manifest.uri)
        self.sha256, self.crc, self.check, self.max_open = sha256, crc, check, max_open
        self._open: dict[str, pq.ParquetFile] = {}

    def path(self, shard: ShardInfo) -> str:
        return posixpath.join(self.root, shard.path)

    def file(self, shard: ShardInfo) -> pq.ParquetFile:
        if shard.path in self._open:
            return self._open[shard.path]
        path = self.path(shard)
        key = (self.root, shard.path, shard.sha256)
        if self.check and (key not in self._checked or (self.sha256 and not self._checked[key])):
            check_shard(self.fs, path, shard, self.manifest.row_samples, self.manifest.rows_per_group, self.sha256)
            self._checked[key] = self.sha256 or self._checked.get(key, False)
        try:
            pf = pq.ParquetFile(self.fs.open_input_file(path), page_checksum_verification=self.crc)
        except (pa.ArrowException, OSError) as exc:
            raise ShardError(f"{path}: cannot open shard ({exc}); run verify on {self.manifest.uri}") from exc
        if len(self._open) >= self.max_open:
            self._open.pop(next(iter(self._open)))
        self._open[shard.path] = pf
        return pf

    def read_group(self, shard: ShardInfo, group: int, columns: Sequence[str]) -> pa.Table:
        """Row group ``group`` of ``shard`` (only ``columns``); ShardError on corruption."""
        try:
            return self.file(shard).read_row_group(group, columns=list(columns))
        except (pa.ArrowException, OSError) as exc:
            raise ShardError(
                f"{self.path(shard)}: row group {group} unreadable ({exc}); the shard is corrupt or "
                f"changed since the manifest was written (run verify on {self.manifest.uri})"
            ) from exc

    def close(self) -> None:
        self._open.clear()

    def __getstate__(self) -> dict:  # open files do not cross process boundaries
        return {**self.__dict__, "_open": {}}



def group_audio(table: pa.Table, column: str) -> np.ndarray:
    """(rows, row_samples) float32 view of an audio column of a row-group table."""
    col = table.column(column).combine_chunks()
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(col), -1)


class Row(NamedTuple):
    """One stored row; ``clean``/``processed`` are its valid samples, float32 (length,)."""

    track_id: str
    offset: int
    length: int
    clean: np.ndarray
    processed: np.ndarray


def iter_rows(dest: str | os.PathLike | Manifest, split: str) -> Iterator[Row]:
    """Every row of ``split`` in storage order; memory: one row group."""
    manifest = dest if isinstance(dest, Manifest) else read_manifest(dest)
    shards = ShardSet(manifest)
    for shard in manifest.split(split).shards:
        for g in range(shard.row_groups):
            table = shards.read_group(shard, g, ["track_id", "offset", "length", "clean", "processed"])
            clean, proc = group_audio(table, "clean"), group_audio(table, "processed")
            ids, offs, lens = (table.column(c).to_pylist() for c in ("track_id", "offset", "length"))
            for i in range(table.num_rows):
                yield Row(ids[i], offs[i], lens[i], clean[i, : lens[i]], proc[i, : lens[i]])


def read_track(dest: str | os.PathLike | Manifest, split: str, track_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Whole track as float32 (N,) clean and processed arrays (copies)."""
    manifest = dest if isinstance(dest, Manifest) else read_manifest(dest)
    layout = SplitLayout(manifest, split)
    if track_id not in layout.track_index:
        raise ShardError(f"{manifest.uri}: track {track_id!r} not in split {split}")
    return read_track_rows(ShardSet(manifest), layout, layout.track_index[track_id])


def read_track_rows(shards: ShardSet, layout: SplitLayout, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Track number ``t`` of ``layout`` read from ``shards``: (N,) clean, (N,) processed."""
    n = int(layout.samples[t])
    out = np.empty((2, int(layout.track_rows[t]) * layout.R), dtype=np.float32)
    lo, hi = int(layout.track_first[t]), int(layout.track_first[t + 1])
    row = lo
    while row < hi:
        s, g, i = layout.locate(row)
        shard = layout.info.shards[s]
        take = min(hi - row, min(layout.G, shard.rows - g * layout.G) - i)
        table = shards.read_group(shard, g, ["track_id", "offset", "clean", "processed"])
        check_rows(table, i, take, layout, row, shards.path(shard), g)
        for c, column in enumerate(AUDIO_COLUMNS):
            dst = slice((row - lo) * layout.R, (row - lo + take) * layout.R)
            out[c, dst] = group_audio(table, column)[i : i + take].ravel()
        row += take
    return out[0, :n].copy(), out[1, :n].copy()


def check_rows(table: pa.Table, i: int, take: int, layout: SplitLayout, row: int, path: str, group: int) -> None:
    """Check that rows i..i+take of a group table are the global rows the manifest plans."""
    t, offset, _ = layout.rows_meta(row, row + take)
    ids = table.column("track_id").slice(i, take).to_pylist()
    offs = table.column("offset").slice(i, take).to_numpy()
    want = [layout.info.tracks[k] for k in t]
    if ids != want or not np.array_equal(offs, offset):
        raise ShardError(
            f"{path}: row group {group} holds rows {list(zip(ids, offs.tolist()))[:3]}..., manifest plans "
            f"{list(zip(want, offset.tolist()))[:3]}... (shard and manifest disagree; run verify)"
        )
