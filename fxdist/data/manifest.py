"""The on-disk format of a shard set: schema, manifest, and the checks against them.

Layout of a shard set at ``dest`` (a local path, ``file://`` URI or any pyarrow
filesystem URI such as ``s3://bucket/prefix``; all I/O goes through ``pyarrow.fs``)::

    <dest>/manifest.json
    <dest>/<split>/part-00000.parquet ...      split in train, validation, test

Every row holds ``row_samples`` consecutive samples of one track (mono, float32):

    track_id     string (dictionary-encoded in the file)
    offset       int64   sample offset of the row in its track
    length       int32   valid samples in the row (< row_samples only in a track's last row;
                         the rest is zero padding, so no audio is dropped)
    sample_rate  int32
    effect_id    string
    clean        fixed_size_list<float32>[row_samples]
    processed    fixed_size_list<float32>[row_samples]

Rows of a track are contiguous and in order; tracks are sorted by id inside a split.
Row groups hold ``rows_per_group`` rows, counted from the shard start (the last group of
a shard may be smaller). The manifest records, per split, the tracks and their lengths
and, per shard, the first global row of the split it holds, so a reader can plan
(track, offset) of every row without opening a file (``SplitLayout``).

Integrity: ``check_shard`` compares one file with its manifest entry (size, schema, row
groups, optionally the full sha256); ``verify`` does it for every shard of a set.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from fxdist import storage
from fxdist.errors import ShardError

SCHEMA_VERSION = 1
SPLITS = ("train", "validation", "test")
MANIFEST = "manifest.json"
AUDIO_COLUMNS = ("clean", "processed")


def open_root(dest: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """(filesystem, root path) of the shard set at ``dest``; ShardError if its filesystem cannot be opened."""
    return storage.resolve(dest, error=ShardError, what="shard set")


# ----------------------------------------------------------------------------- manifest


@dataclass
class ShardInfo:
    """One Parquet file of a split. ``path`` is relative to the shard-set root."""

    path: str
    rows: int
    row_groups: int
    bytes: int
    sha256: str
    first_row: int  # index of its first row among all rows of the split


@dataclass
class SplitInfo:
    """Tracks of one split in storage order, with their lengths in samples."""

    tracks: list[str]
    track_samples: list[int]
    rows: int
    seconds: float
    shards: list[ShardInfo]


@dataclass
class Manifest:
    """Contents of ``manifest.json``; ``uri`` is where it was read from (not stored)."""

    schema_version: int
    fxdist_version: str
    created: str
    sample_rate: int
    row_samples: int
    effect_id: str
    effect_config: dict | None
    shard_config: dict
    splits: dict[str, SplitInfo]
    uri: str = ""

    @property
    def rows_per_group(self) -> int:
        return int(self.shard_config["rows_per_group"])

    def split(self, name: str) -> SplitInfo:
        """The split ``name``; ShardError naming the known splits if absent."""
        if name not in self.splits:
            raise ShardError(f"{self.uri}: no split {name!r} in manifest; splits: {', '.join(self.splits)}")
        return self.splits[name]

    def summary(self) -> str:
        """One line per split: tracks, rows, seconds, shards."""
        lines = [f"{self.uri}: effect {self.effect_id}, {self.sample_rate} Hz, rows of {self.row_samples} samples"]
        for name, s in self.splits.items():
            lines.append(f"  {name:10s} {len(s.tracks):4d} tracks {s.rows:6d} rows {s.seconds:9.1f} s {len(s.shards):3d} shard(s)")
        return "\n".join(lines)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data.pop("uri")
        return json.dumps(data, indent=1)


def read_manifest(dest: str | os.PathLike) -> Manifest:
    """Read ``<dest>/manifest.json``; ShardError if missing or malformed."""
    fs, root = open_root(dest)
    path = posixpath.join(root, MANIFEST)
    try:
        with fs.open_input_stream(path) as src:
            text = src.read().decode()
    except (FileNotFoundError, pa.ArrowException, OSError) as exc:
        raise ShardError(f"no manifest at {dest} ({path}): incomplete or not a shard set") from exc
    try:
        data = json.loads(text)
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ShardError(
                f"{path}: schema_version {data.get('schema_version')!r}, this fxdist reads {SCHEMA_VERSION}"
            )
        splits = {
            name: SplitInfo(**{**s, "shards": [ShardInfo(**sh) for sh in s["shards"]]})
            for name, s in data.pop("splits").items()
        }
        manifest = Manifest(**data, splits=splits, uri=os.fspath(dest))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ShardError(f"{path}: malformed manifest ({exc})") from exc
    _check_types(manifest, path)
    for name, split in manifest.splits.items():
        for shard in split.shards:
            check_shard_path(shard.path, name, path)
    return manifest


def _check_types(m: Manifest, path: str) -> None:
    """Every number a reader sizes buffers or windows by is a positive int (a hand-edited manifest
    may hold ``"sample_rate": "fast"``)."""
    def bad(where: str, value, want: str) -> ShardError:
        return ShardError(f"{path}: {where} is {value!r}, expected {want}; write the set again with `fxdist data shard`")

    def positive_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    for key in ("sample_rate", "row_samples"):
        if not positive_int(getattr(m, key)):
            raise bad(key, getattr(m, key), "a positive whole number")
    if not isinstance(m.shard_config, dict) or not positive_int(m.shard_config.get("rows_per_group")):
        raise bad("shard_config.rows_per_group", m.shard_config.get("rows_per_group") if isinstance(m.shard_config, dict)
                  else m.shard_config, "a positive whole number")
    if not isinstance(m.effect_id, str):
        raise bad("effect_id", m.effect_id, "a string")
    for name, split in m.splits.items():
        if name not in SPLITS:
            raise bad(f"split name {name!r}", name, f"one of {', '.join(SPLITS)}")
        if not (isinstance(split.tracks, list) and isinstance(split.track_samples, list)
                and len(split.tracks) == len(split.track_samples)
                and all(isinstance(t, str) for t in split.tracks) and all(positive_int(n) for n in split.track_samples)):
            raise bad(f"splits.{name}.tracks/track_samples", (split.tracks, split.track_samples)[1][:5],
                      "a list of track ids and one positive length each")
        if not (isinstance(split.rows, int) and split.rows >= 0):
            raise bad(f"splits.{name}.rows", split.rows, "a whole number >= 0")
        for shard in split.shards:
            for key in ("rows", "row_groups", "bytes", "first_row"):
                value = getattr(shard, key)
                if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                    raise bad(f"splits.{name}.shards[{shard.path!r}].{key}", value, "a whole number >= 0")


def check_shard_path(rel: str, split: str, manifest_path: str) -> None:
    """Refuse a shard path that leaves its split's folder (``../x``, absolute paths, ``~``)."""
    norm = posixpath.normpath(rel) if isinstance(rel, str) else ""
    if (not isinstance(rel, str) or rel.startswith(("/", "~")) or "\\" in rel or ":" in rel
            or norm != rel or not norm.startswith(f"{split}/") or ".." in norm.split("/")):
        raise ShardError(
            f"{manifest_path}: shard path {rel!r} of split {split!r} is not inside the set's {split}/ folder; "
            "a manifest may only name its own shards (write the set again with `fxdist data shard`)"
        )


# ----------------------------------------------------------------------------- schema


def shard_schema(row_samples: int) -> pa.Schema:
    """Arrow schema of every shard row (see module docstring)."""
    audio = pa.list_(pa.field("element", pa.float32(), nullable=False), row_samples)
    return pa.schema(
        [
            pa.field("track_id", pa.string(), nullable=False),
            pa.field("offset", pa.int64(), nullable=False),
            pa.field("length", pa.int32(), nullable=False),
            pa.field("sample_rate", pa.int32(), nullable=False),
            pa.field("effect_id", pa.string(), nullable=False),
            pa.field("clean", audio, nullable=False),
            pa.field("processed", audio, nullable=False),
        ]
    )



class SplitLayout:
    """Where each row of a split lives, planned from the manifest alone.

    Rows of the split are numbered 0..rows-1 in storage order ("global rows").
    Memory: a few integers per track and per shard; nothing per row.
    """

    def __init__(self, manifest: Manifest, split: str):
        info = manifest.split(split)
        self.manifest, self.split, self.info = manifest, split, info
        self.R, self.G = manifest.row_samples, manifest.rows_per_group
        self.samples = np.asarray(info.track_samples, dtype=np.int64)
        self.track_rows = -(-self.samples // self.R)
        self.track_first = np.concatenate([[0], np.cumsum(self.track_rows)]).astype(np.int64)
        self.shard_first = np.asarray([s.first_row for s in info.shards] + [info.rows], dtype=np.int64)
        self.track_index = {t: i for i, t in enumerate(info.tracks)}
        if int(self.track_first[-1]) != info.rows:
            raise ShardError(
                f"{manifest.uri}: split {split}: tracks make {self.track_first[-1]} rows, manifest says {info.rows}"
            )

    def units(self) -> np.ndarray:
        """(U, 4) int64: shard index, row group, first global row, rows — every row group."""
        out = []
        for s in range(len(self.info.shards)):
            lo, hi = int(self.shard_first[s]), int(self.shard_first[s + 1])
            for g, start in enumerate(range(lo, hi, self.G)):
                out.append((s, g, start, min(self.G, hi - start)))
        return np.asarray(out, dtype=np.int64).reshape(-1, 4)

    def rows_meta(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(track index, offset, valid length) of global rows lo..hi-1, as int64 arrays."""
        g = np.arange(lo, hi, dtype=np.int64)
        t = np.searchsorted(self.track_first, g, side="right") - 1
        offset = (g - self.track_first[t]) * self.R
        return t, offset, np.minimum(self.R, self.samples[t] - offset)

    def locate(self, row: int) -> tuple[int, int, int]:
        """(shard index, row group, index inside the group) of a global row."""
        s = int(np.searchsorted(self.shard_first, row, side="right") - 1)
        local = row - int(self.shard_first[s])
        return s, local // self.G, local % self.G



def check_shard(
    fs: pafs.FileSystem, path: str, shard: ShardInfo, row_samples: int, rows_per_group: int, sha256: bool
) -> None:
    """Check one file against its manifest entry: size, schema, row groups, optional sha256."""
    try:
        size = fs.get_file_info(path).size
        if size is None:
            raise ShardError(f"{path}: shard missing (listed in the manifest)")
        if size != shard.bytes:
            raise ShardError(f"{path}: {size} bytes, manifest says {shard.bytes}")
        if sha256:
            actual = storage.sha256(fs, path)
            if actual != shard.sha256:
                raise ShardError(f"{path}: sha256 mismatch: manifest {shard.sha256}, file {actual}")
        with fs.open_input_file(path) as src:
            pf = pq.ParquetFile(src)
            meta, schema = pf.metadata, pf.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise ShardError(f"{path}: cannot read shard metadata ({exc})") from exc
    expected = shard_schema(row_samples)
    if not schema.equals(expected):
        raise ShardError(f"{path}: schema differs from fxdist's shard schema:\n{schema}\nexpected:\n{expected}")
    if meta.num_rows != shard.rows or meta.num_row_groups != shard.row_groups:
        raise ShardError(
            f"{path}: {meta.num_rows} rows in {meta.num_row_groups} row groups, "
            f"manifest says {shard.rows} rows in {shard.row_groups}"
        )
    for g in range(meta.num_row_groups):
        want = min(rows_per_group, shard.rows - g * rows_per_group)
        if meta.row_group(g).num_rows != want:
            raise ShardError(f"{path}: row group {g} has {meta.row_group(g).num_rows} rows, expected {want}")


@dataclass
class VerifyReport:
    """What ``verify`` checked."""

    dest: str
    shards: int
    bytes: int
    rows: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        rows = ", ".join(f"{name} {n}" for name, n in self.rows.items())
        return f"{self.dest}: {self.shards} shard(s), {self.bytes / 1e6:.1f} MB, checksums match the manifest (rows: {rows})"


def verify(dest: str | os.PathLike) -> VerifyReport:
    """Recompute every shard's sha256 and check size, schema and row counts.

    Raises one ShardError listing every bad shard (its path, expected and actual values).
    """
    manifest = read_manifest(dest)
    fs, root = open_root(dest)
    if not any(split.rows for split in manifest.splits.values()):
        listed = ", ".join(f"{k} ({v.rows} rows)" for k, v in manifest.splits.items()) or "none"
        raise ShardError(f"{dest}: the manifest lists no rows in any split (splits: {listed}); write the set again "
                         "with `fxdist data shard`")
    if "train" not in manifest.splits or not manifest.splits["train"].rows:
        raise ShardError(f"{dest}: the manifest has no train rows (splits: {', '.join(manifest.splits) or 'none'}); "
                         "write the set again with `fxdist data shard`")
    problems, n, total = [], 0, 0
    rows = {}
    for name, split in manifest.splits.items():
        rows[name] = sum(s.rows for s in split.shards)
        if rows[name] != split.rows:
            problems.append(f"split {name}: shards hold {rows[name]} rows, manifest says {split.rows}")
        for shard in split.shards:
            try:
                path = posixpath.join(root, shard.path)
                check_shard(fs, path, shard, manifest.row_samples, manifest.rows_per_group, sha256=True)
            except ShardError as exc:
                problems.append(str(exc))
            n, total = n + 1, total + shard.bytes
    if problems:
        raise ShardError(f"{dest}: {len(problems)} problem(s):\n" + "\n".join(problems))
    return VerifyReport(os.fspath(dest), n, total, rows)
