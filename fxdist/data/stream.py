"""Training windows streamed from a shard set, with bounded memory and exact epochs.

One module on purpose: tiling, partition, resume and the memory bound below are one
schedule, computed from the same per-row-group indices that ``WindowDataset`` reads by;
split apart, each piece would need the others' internals.

Windows
    ``WindowSpec(receptive_field, output_len)``; h = receptive_field - 1 and
    input_len = h + output_len. A window is (clean input (1, input_len), processed target
    (1, output_len)) with the target aligned to the LAST output_len input samples. History
    before a track's start is zeros (the effect saw silence there); history before a row's
    start comes from the previous row(s) of the same track, read from an earlier row group
    or shard when needed (only its clean column; only the last h samples are kept).

Tiling (mode "random")
    Output spans tile each row's valid samples at offsets 0, L, 2L, ... (L = output_len).
    ``remainder="align_end"`` (default) adds one window ending exactly at the row's last
    valid sample when ``length % L != 0``, overlapping its neighbour, so every target
    sample is used; ``"drop"`` leaves those samples as history only. A row shorter than L
    (a track's short last row) yields no window. A window's id is
    (track_id, offset of its output span in the track), unique within a split.

Partition
    The unit of reading is a (shard, row group) pair. Each epoch the split's units are
    permuted with (seed, epoch). There are S = world_size x num_workers slots (slot =
    rank x num_workers + worker; every rank must use the same DataLoader num_workers).
    Mode "random": the epoch's window sequence (units in permuted order, windows in order)
    is cut into S contiguous ranges, one per slot; a unit on a cut is read by two slots.
    With ``equalize=True`` every slot yields exactly floor(T / S) windows (T windows in
    the split), so every DDP rank gets the same number of batches; at most S - 1 windows
    (the epoch's last, different every epoch) are dropped. With ``equalize=False`` each
    window is produced exactly once and slots differ by at most one window.
    Mode "sequential": units go round-robin to slots; with ``equalize=True`` slots that
    run out early yield padding batches (``valid`` all False) so all slots yield the same
    number of batches and still every chunk is produced exactly once.

Mode "random" yields dicts {"x": (1, input_len), "y": (1, output_len)} float32 tensors
(plus "track_id", "offset" with ``with_ids``); the DataLoader batches them. Windows pass
through a shuffle buffer of ``shuffle_windows`` windows seeded by (seed, epoch, slot).

Mode "sequential" (recurrent models, TBPTT): ``batch_size`` lanes. The chunks of a unit's
track segment (consecutive, L = output_len samples each; a segment's last
``len % L`` samples are never a target) are grouped into runs of ``run_seconds``. Each
lane plays one run chunk by chunk, then takes a random run from a pool (>= ``pool_runs``
runs, refilled by reading the slot's next unit). It yields batches: x (B, 1, input_len),
y (B, 1, L), reset (B,) bool (True on a run's first chunk: zero that lane's hidden
state), valid (B,) bool (False on idle/padding lanes: mask their loss). Use
``DataLoader(batch_size=None)``.

Resume: ``WindowDataset(..., epoch=e, start_batch=k)`` continues after the k batches of
epoch e a rank has already consumed. An in-order DataLoader takes batch i from worker
i % num_workers, so on resume worker w plays the stream of worker (w + k) % num_workers
minus the batches that one had delivered. Needs the same world_size, num_workers,
batch_size and seed, a DataLoader without persistent_workers (set_epoch must reach the
workers) and, in random mode with several workers, ``equalize=True``. Skipping replays the index-level schedule only: row
groups whose windows all fall in the skipped part are not read; row groups that still
feed the shuffle buffer or a running lane are read.

Memory bound (``memory_bound_bytes()``; audio data held by one iterator, independent of
the number of shards; excludes Arrow's transient decode buffers and Python overhead):
    random:     G x R x 2 x 4                 one row group (clean + processed)
              + h x 4                         history tail of the unit's first track
              + (shuffle_windows + 1) x (input_len + L) x 4
    sequential: G x R x 2 x 4 + h x 4
              + (pool + B + runs_per_unit) x (h + 2 x run_chunks x L) x 4
with G = rows_per_group, R = row_samples, runs_per_unit = G + G x R // (run_chunks x L).
The dataset object itself holds only the manifest and a few integers per row group.

Shard integrity: every read checks Parquet page CRCs and the first open of a shard in a
process checks its size, schema and row groups against the manifest (``verify="crc"``);
``verify="sha256"`` also hashes each shard once per process; ``"none"`` checks nothing.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from fxdist.data.manifest import Manifest, SplitLayout, read_manifest
from fxdist.data.shards import ShardSet, check_rows, group_audio, iter_rows
from fxdist.errors import ShardError


@dataclass(frozen=True)
class WindowSpec:
    """A model's view of audio: ``receptive_field`` input samples per output sample."""

    receptive_field: int
    output_len: int

    def __post_init__(self) -> None:
        if self.receptive_field < 1 or self.output_len < 1:
            raise ValueError(
                f"receptive_field and output_len must be >= 1, got {self.receptive_field}, {self.output_len}"
            )

    @property
    def history(self) -> int:
        return self.receptive_field - 1

    @property
    def input_len(self) -> int:
        return self.receptive_field - 1 + self.output_len


@dataclass
class StreamConfig:
    """How windows are drawn (see module docstring)."""

    mode: Literal["random", "sequential"] = "random"
    seed: int = 0
    shuffle_windows: int = 4096
    equalize: bool = True
    remainder: Literal["align_end", "drop"] = "align_end"
    run_seconds: float = 2.0
    pool_runs: int = 0  # 0: twice the batch size
    verify: Literal["crc", "sha256", "none"] = "crc"

    def __post_init__(self) -> None:
        if self.mode not in ("random", "sequential"):
            raise ValueError(f"mode must be 'random' or 'sequential', got {self.mode!r}")
        if self.remainder not in ("align_end", "drop"):
            raise ValueError(f"remainder must be 'align_end' or 'drop', got {self.remainder!r}")
        if self.verify not in ("crc", "sha256", "none"):
            raise ValueError(f"verify must be 'crc', 'sha256' or 'none', got {self.verify!r}")
        if self.shuffle_windows < 0 or self.pool_runs < 0:
            raise ValueError(
                f"shuffle_windows and pool_runs must be >= 0, got {self.shuffle_windows}, {self.pool_runs}"
            )
        if self.run_seconds <= 0:
            raise ValueError(f"run_seconds must be > 0, got {self.run_seconds}")


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _skipped_local(start_batch: int, worker: int, num_workers: int) -> int:
    """How many of a worker's batches lie among a rank's first ``start_batch`` batches."""
    return max(0, -(-(start_batch - worker) // num_workers))


class _Unit:
    """Audio of one loaded row group: (rows, R) views plus the history tail."""

    def __init__(
        self,
        clean: np.ndarray,
        proc: np.ndarray,
        track: np.ndarray,
        offset: np.ndarray,
        length: np.ndarray,
        tail: np.ndarray | None,
    ):
        self.clean, self.proc = clean.reshape(-1), proc.reshape(-1)
        self.track, self.offset, self.length, self.tail = track, offset, length, tail
        # first row of the same-track segment each row belongs to
        starts = np.r_[True, track[1:] != track[:-1]]
        self.seg_row = np.maximum.accumulate(np.where(starts, np.arange(len(track)), 0))

    def input(self, row: int, start: int, h: int, n: int) -> np.ndarray:
        """Clean samples flat[start - h : start + n] of ``row``'s track (copy, zeros/tail before)."""
        seg_row = int(self.seg_row[row])
        seg_lo = seg_row * (self.clean.shape[0] // len(self.track))
        lo = start - h
        if lo >= seg_lo:
            return self.clean[lo : start + n].copy()
        out = np.zeros(h + n, dtype=np.float32)
        k = seg_lo - lo
        if seg_row == 0 and self.tail is not None:
            out[:k] = self.tail[len(self.tail) - k :]
        out[k:] = self.clean[seg_lo : start + n]
        return out


class WindowDataset(IterableDataset):
    """Windows (mode "random") or lane batches (mode "sequential") of one split.

    ``dest``: shard-set URI or a Manifest. ``batch_size``: lanes in sequential mode; in
    random mode only needed for ``start_batch`` (it must equal the DataLoader's).
    ``rank``/``world_size`` default to torch.distributed's when initialised, else 0/1.
    """

    def __init__(
        self,
        dest: str | os.PathLike | Manifest,
        split: str,
        spec: WindowSpec,
        cfg: StreamConfig | None = None,
        *,
        batch_size: int | None = None,
        epoch: int = 0,
        start_batch: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        with_ids: bool = False,
        expected_sample_rate: int | None = None,
    ):
        self.manifest = dest if isinstance(dest, Manifest) else read_manifest(dest)
        if expected_sample_rate is not None and expected_sample_rate != self.manifest.sample_rate:
            raise ShardError(
                f"{self.manifest.uri}/manifest.json: shards are at {self.manifest.sample_rate} Hz "
                f"but {expected_sample_rate} Hz was expected"
            )
        self.split, self.spec, self.cfg = split, spec, cfg or StreamConfig()
        self.layout = SplitLayout(self.manifest, split)
        if self.cfg.mode == "sequential" and not batch_size:
            raise ValueError("sequential mode needs batch_size (the number of lanes)")
        if start_batch and not batch_size:
            raise ValueError("start_batch needs batch_size (the DataLoader's batch size)")
        self.batch_size, self.with_ids = batch_size, with_ids
        self.epoch, self.start_batch = epoch, start_batch
        if rank is None or world_size is None:
            rank, world_size = _dist_rank_world()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, world_size={world_size})")
        self.rank, self.world_size = rank, world_size
        self._units = self.layout.units()
        L = spec.output_len
        self.run_chunks = max(1, round(self.cfg.run_seconds * self.manifest.sample_rate / L))
        self._unit_counts = self._count_windows() if self.cfg.mode == "random" else self._count_runs()

    # ------------------------------------------------------------------ planning

    def _row_windows(self, length: np.ndarray) -> np.ndarray:
        L = self.spec.output_len
        n = length // L
        if self.cfg.remainder == "align_end":
            n = n + ((length % L != 0) & (length >= L))
        return n

    def _count_windows(self) -> np.ndarray:
        """Windows per unit, (U,) int64."""
        _, _, length = self.layout.rows_meta(0, self.layout.info.rows)
        per_row = np.r_[0, np.cumsum(self._row_windows(length))]
        lo, n = self._units[:, 2], self._units[:, 3]
        return per_row[lo + n] - per_row[lo]

    def _segments(self, u: int) -> list[tuple[int, int, int, int]]:
        """Same-track segments of unit ``u``: (first row in unit, track, track offset, valid samples)."""
        _, _, lo, n = self._units[u]
        track, offset, length = self.layout.rows_meta(int(lo), int(lo + n))
        out: list[tuple[int, int, int, int]] = []
        for i in range(len(track)):
            if i and track[i] == track[i - 1]:
                r, t, o, s = out[-1]
                out[-1] = (r, t, o, s + int(length[i]))
            else:
                out.append((i, int(track[i]), int(offset[i]), int(length[i])))
        return out

    def _runs(self, u: int) -> list[tuple[int, int, int, int]]:
        """Runs of unit ``u``: (segment first row, track, track offset of chunk 0, chunks)."""
        L, rc = self.spec.output_len, self.run_chunks
        runs = []
        for row, track, offset, samples in self._segments(u):
            n = samples // L
            runs += [(row, track, offset + a * L, min(rc, n - a)) for a in range(0, n, rc)]
        return runs

    def _count_runs(self) -> list[np.ndarray]:
        """Chunks of each run, per unit."""
        return [np.asarray([r[3] for r in self._runs(u)], dtype=np.int64) for u in range(len(self._units))]

    def _permutation(self) -> np.ndarray:
        return _rng(self.cfg.seed, self.epoch, 0x5EED).permutation(len(self._units))

    def _random_segments(self, slot: int, slots: int) -> list[tuple[int, int, int]]:
        """This slot's (unit, first window, end window) ranges in feed order."""
        perm = self._permutation()
        cum = np.r_[0, np.cumsum(self._unit_counts[perm])]
        total = int(cum[-1])
        if self.cfg.equalize:
            q = total // slots
            lo, hi = slot * q, (slot + 1) * q
        else:
            lo, hi = slot * total // slots, (slot + 1) * total // slots
        first = int(np.searchsorted(cum, lo, side="right")) - 1
        out = []
        for p in range(max(first, 0), len(perm)):
            if cum[p] >= hi:
                break
            a, b = max(lo, int(cum[p])), min(hi, int(cum[p + 1]))
            if b > a:
                out.append((int(perm[p]), a - int(cum[p]), b - int(cum[p])))
        return out

    def _slot_units(self, slot: int, slots: int) -> np.ndarray:
        return self._permutation()[slot::slots]

    def _lane_events(self, slot: int, slots: int) -> Iterator[tuple]:
        return _lane_schedule(
            self._slot_units(slot, slots),
            self._unit_counts,
            self.batch_size,
            self.cfg.pool_runs or 2 * self.batch_size,
            _rng(self.cfg.seed, self.epoch, slot, slots, 0x1A7E),
        )

    def _slot_steps(self, slot: int, slots: int) -> int:
        return max((ev[1] + ev[4] for ev in self._lane_events(slot, slots) if ev[0] == "start"), default=0)

    def _equal_steps(self, slots: int) -> int:
        return max(self._slot_steps(s, slots) for s in range(slots))

    def batches_per_epoch(self, num_workers: int = 0) -> int:
        """Batches this rank yields per epoch with this DataLoader ``num_workers``."""
        n = max(1, num_workers)
        slots = self.world_size * n
        mine = range(self.rank * n, (self.rank + 1) * n)
        if self.cfg.mode == "sequential":
            if self.cfg.equalize:
                return n * self._equal_steps(slots)
            return sum(self._slot_steps(s, slots) for s in mine)
        if not self.batch_size:
            raise ValueError("batches_per_epoch needs batch_size in random mode")
        sizes = [sum(b - a for _, a, b in self._random_segments(s, slots)) for s in mine]
        return sum(-(-k // self.batch_size) for k in sizes)

    def share(self, workers: int = 1) -> list[tuple[str, int]]:
        """The (shard file, row group) units this rank reads in this epoch, over its ``workers``
        DataLoader workers: what the iterator's plan assigns. Ranks share no window; in
        random mode a row group on the boundary between two ranks' ranges has its windows
        split between them, so those (at most world_size - 1) row groups appear in two shares."""
        slots = self.world_size * workers
        units: set[int] = set()
        for slot in range(self.rank * workers, (self.rank + 1) * workers):
            if self.cfg.mode == "random":
                units.update(u for u, _, _ in self._random_segments(slot, slots))
            else:
                units.update(int(u) for u in self._slot_units(slot, slots))
        shards = self.layout.info.shards
        return sorted((shards[int(self._units[u][0])].path, int(self._units[u][1])) for u in units)

    def memory_bound_bytes(self) -> int:
        """Upper bound of audio bytes one iterator holds (formula in the module docstring)."""
        G, R = self.manifest.rows_per_group, self.manifest.row_samples
        h, L = self.spec.history, self.spec.output_len
        base = G * R * 2 * 4 + h * 4
        if self.cfg.mode == "random":
            return base + (self.cfg.shuffle_windows + 1) * (h + 2 * L) * 4
        B, rc = self.batch_size, self.run_chunks
        runs_per_unit = G + (G * R) // (rc * L)
        return base + ((self.cfg.pool_runs or 2 * B) + B + runs_per_unit) * (h + 2 * rc * L) * 4

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Reshuffle for ``epoch`` (call before creating the DataLoader iterator)."""
        if start_batch and not self.batch_size:
            raise ValueError("start_batch needs batch_size")
        self.epoch, self.start_batch = epoch, start_batch

    def state_dict(self, batches_consumed: int) -> dict[str, int]:
        """Position to resume from after ``batches_consumed`` batches of this epoch."""
        return {"epoch": self.epoch, "start_batch": batches_consumed, "seed": self.cfg.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed", self.cfg.seed) != self.cfg.seed:
            raise ValueError(f"resume state has seed {state['seed']}, dataset seed is {self.cfg.seed}")
        self.set_epoch(state["epoch"], state["start_batch"])

    # ------------------------------------------------------------------ reading

    def _shards(self) -> ShardSet:
        v = self.cfg.verify
        return ShardSet(self.manifest, sha256=v == "sha256", crc=v != "none", check=v != "none")

    def _load(self, shards: ShardSet, u: int) -> _Unit:
        s, g, lo, n = (int(v) for v in self._units[u])
        shard = self.layout.info.shards[s]
        h = self.spec.history
        track, offset, length = self.layout.rows_meta(lo, lo + n)
        tail = self._tail(shards, lo, int(offset[0]), h) if (offset[0] > 0 and h > 0) else None
        table = shards.read_group(shard, g, ["track_id", "offset", "clean", "processed"])
        check_rows(table, 0, n, self.layout, lo, shards.path(shard), g)
        return _Unit(group_audio(table, "clean"), group_audio(table, "processed"), track, offset, length, tail)

    def _tail(self, shards: ShardSet, row: int, offset: int, h: int) -> np.ndarray:
        """The h clean samples before global row ``row`` (zeros before its track's start)."""
        R, G = self.layout.R, self.layout.G
        need = min(h, offset)
        tail = np.zeros(h, dtype=np.float32)
        r = row - (-(-need // R))
        pieces = []
        while r < row:
            s, g, i = self.layout.locate(r)
            shard = self.layout.info.shards[s]
            take = min(row - r, min(G, shard.rows - g * G) - i)
            table = shards.read_group(shard, g, ["track_id", "offset", "clean"])
            check_rows(table, i, take, self.layout, r, shards.path(shard), g)
            pieces.append(group_audio(table, "clean")[i : i + take].reshape(-1).copy())
            del table
            r += take
        if need:
            tail[h - need :] = np.concatenate(pieces)[-need:]
        return tail

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        # A fresh DataLoader asks worker 0 first; batch start_batch came from worker
        # start_batch % workers, so worker w takes over the stream of that role.
        role = (worker + self.start_batch) % workers
        slot, slots = self.rank * workers + role, self.world_size * workers
        skip = _skipped_local(self.start_batch, role, workers)
        if self.cfg.mode == "random":
            return self._iter_random(slot, slots, skip * (self.batch_size or 0))
        return self._iter_sequential(slot, slots, skip)

    def _unit_windows(self, unit: _Unit) -> tuple[np.ndarray, np.ndarray]:
        """(row, output offset in row) of each window of a loaded unit, in feed order."""
        L = self.spec.output_len
        rows, offs = [], []
        for i, length in enumerate(unit.length):
            o = np.arange(0, length - L + 1, L)
            if self.cfg.remainder == "align_end" and length % L and length >= L:
                o = np.r_[o, length - L]
            rows.append(np.full(len(o), i))
            offs.append(o)
        return np.concatenate(rows).astype(np.int64), np.concatenate(offs).astype(np.int64)

    def _iter_random(self, slot: int, slots: int, skip: int) -> Iterator[dict[str, Any]]:
        segments = self._random_segments(slot, slots)
        seed = (self.cfg.seed, self.epoch, slot, slots, 0x5B0F)
        needed = None
        if skip:
            last: dict[int, int] = {}
            pos = 0
            for ev in _shuffle_schedule(segments, self.cfg.shuffle_windows, _rng(*seed)):
                if ev[0] == "emit":
                    last[ev[1][0]] = pos
                    pos += 1
            needed = {u for u, p in last.items() if p >= skip}
        shards, h, L, R = self._shards(), self.spec.history, self.spec.output_len, self.layout.R
        store: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, str, int]] = {}
        unit = table = None
        pos = 0
        for ev in _shuffle_schedule(segments, self.cfg.shuffle_windows, _rng(*seed)):
            kind, key = ev
            if kind == "load":
                unit = table = None
                if needed is None or key in needed:
                    unit = self._load(shards, key)
                    table = self._unit_windows(unit)
            elif kind == "feed":
                if unit is not None:
                    row, o = int(table[0][key[1]]), int(table[1][key[1]])
                    start = row * R + o
                    x = unit.input(row, start, h, L)
                    y = unit.proc[start : start + L].copy()
                    store[key] = (x, y, self.layout.info.tracks[unit.track[row]], int(unit.offset[row]) + o)
            else:
                item = store.pop(key, None)
                if pos >= skip:
                    assert item is not None, f"window {key} not materialised"
                    x, y, track, offset = item
                    out = {"x": torch.from_numpy(x)[None], "y": torch.from_numpy(y)[None]}
                    if self.with_ids:
                        out["track_id"], out["offset"] = track, offset
                    yield out
                pos += 1
        shards.close()

    def _iter_sequential(self, slot: int, slots: int, skip: int) -> Iterator[dict[str, Any]]:
        B, L, h = self.batch_size, self.spec.output_len, self.spec.history
        total = self._equal_steps(slots) if self.cfg.equalize else None
        needed = None
        if skip:
            last: dict[int, int] = {}
            for ev in self._lane_events(slot, slots):
                if ev[0] == "start":
                    u = ev[3][0]
                    last[u] = max(last.get(u, 0), ev[1] + ev[4])
            needed = {u for u, end in last.items() if end > skip}
        shards = self._shards()
        pool: dict[tuple[int, int], tuple] = {}
        lanes: list[list | None] = [None] * B  # [x_run, y_run, track, offset0, chunks, next chunk]
        events = self._lane_events(slot, slots)
        ev = next(events, None)
        t = 0
        while True:
            reset = np.zeros(B, dtype=bool)
            while ev is not None and (ev[0] == "load" or ev[1] <= t):
                if ev[0] == "load":
                    if needed is None or ev[1] in needed:
                        pool.update(self._materialise_runs(shards, ev[1]))
                else:
                    _, _, lane, key, n = ev
                    lanes[lane] = [*pool.pop(key, (None,) * 4), n, 0]
                    reset[lane] = True
                ev = next(events, None)
            if ev is None and all(lane is None for lane in lanes):
                break
            if t >= skip:
                yield self._lane_batch(lanes, reset, L, h)
            for b, lane in enumerate(lanes):
                if lane is not None:
                    lane[5] += 1
                    if lane[5] == lane[4]:
                        lanes[b] = None
            t += 1
        shards.close()
        while total is not None and t < total:
            if t >= skip:
                yield self._lane_batch(lanes, np.zeros(B, dtype=bool), L, h)
            t += 1

    def _materialise_runs(self, shards: ShardSet, u: int) -> dict[tuple[int, int], tuple]:
        """Copies of every run of unit ``u``: clean with history (h + n L,), processed (n L,)."""
        unit = self._load(shards, u)
        R, L, h = self.layout.R, self.spec.output_len, self.spec.history
        out = {}
        for k, (row, track, offset, n) in enumerate(self._runs(u)):
            start = row * R + (offset - int(unit.offset[row]))
            x = unit.input(row, start, h, n * L)
            y = unit.proc[start : start + n * L].copy()
            out[(u, k)] = (x, y, self.layout.info.tracks[track], offset)
        return out

    def _lane_batch(self, lanes: list, reset: np.ndarray, L: int, h: int) -> dict[str, Any]:
        B = len(lanes)
        x = np.zeros((B, 1, h + L), dtype=np.float32)
        y = np.zeros((B, 1, L), dtype=np.float32)
        valid = np.zeros(B, dtype=bool)
        ids, offsets = [""] * B, np.full(B, -1, dtype=np.int64)
        for b, lane in enumerate(lanes):
            if lane is None:
                continue
            xr, yr, track, offset0, _, c = lane
            if xr is None:
                raise RuntimeError(f"lane {b}: run data missing (resume bookkeeping bug)")
            x[b, 0] = xr[c * L : c * L + h + L]
            y[b, 0] = yr[c * L : (c + 1) * L]
            valid[b] = True
            ids[b], offsets[b] = track, offset0 + c * L
        out = {
            "x": torch.from_numpy(x),
            "y": torch.from_numpy(y),
            "reset": torch.from_numpy(reset & valid),
            "valid": torch.from_numpy(valid),
        }
        if self.with_ids:
            out["track_id"], out["offset"] = ids, torch.from_numpy(offsets)
        return out


def _shuffle_schedule(segments: list[tuple[int, int, int]], size: int, rng: np.random.Generator) -> Iterator[tuple]:
    """Index-level shuffle buffer: events ("load", unit), ("feed", key), ("emit", key).

    ``key`` = (unit, window index). Depends only on ``segments``, ``size`` and ``rng``,
    so a replay (to skip on resume) emits the same order without touching audio.
    """
    buf: list[tuple[int, int]] = []
    draws = np.empty(0, dtype=np.int64)
    d = 0
    for u, lo, hi in segments:
        yield ("load", u)
        for w in range(lo, hi):
            key = (u, w)
            yield ("feed", key)
            if len(buf) < size:
                buf.append(key)
                continue
            if size == 0:
                yield ("emit", key)
                continue
            if d == len(draws):
                draws, d = rng.integers(0, size, 4096), 0
            j = int(draws[d])
            d += 1
            yield ("emit", buf[j])
            buf[j] = key
    for j in rng.permutation(len(buf)):
        yield ("emit", buf[j])


def _lane_schedule(
    units: np.ndarray, unit_runs: list[np.ndarray], lanes: int, pool_min: int, rng: np.random.Generator
) -> Iterator[tuple]:
    """Index-level lane plan: ("load", unit) and ("start", step, lane, (unit, run), chunks).

    Events come in step order (ties by lane). A lane takes a random run from the pool;
    the pool is refilled with the next unit's runs while it holds fewer than ``pool_min``.
    """
    heap = [(0, b) for b in range(lanes)]
    pool: list[tuple[int, int]] = []
    nxt = 0
    while heap:
        t, b = heapq.heappop(heap)
        while len(pool) < pool_min and nxt < len(units):
            u = int(units[nxt])
            nxt += 1
            yield ("load", u)
            pool.extend((u, k) for k in range(len(unit_runs[u])))
        if not pool:
            continue  # nothing left: this lane idles to the end
        j = int(rng.integers(len(pool)))
        pool[j], pool[-1] = pool[-1], pool[j]
        key = pool.pop()
        n = int(unit_runs[key[0]][key[1]])
        yield ("start", t, b, key, n)
        heapq.heappush(heap, (t + n, b))


def iter_tracks(
    dest: str | os.PathLike | Manifest, split: str, expected_sample_rate: int | None = None
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Whole tracks of a split in storage order: (track_id, clean (N,), processed (N,)) float32.

    Memory: one track plus one row group.
    """
    manifest = dest if isinstance(dest, Manifest) else read_manifest(dest)
    if expected_sample_rate is not None and expected_sample_rate != manifest.sample_rate:
        raise ShardError(
            f"{manifest.uri}/manifest.json: shards are at {manifest.sample_rate} Hz but {expected_sample_rate} Hz was expected"
        )
    current, clean, proc = None, [], []
    for row in iter_rows(manifest, split):
        if row.track_id != current:
            if current is not None:
                yield current, np.concatenate(clean), np.concatenate(proc)
            current, clean, proc = row.track_id, [], []
        clean.append(row.clean.copy())
        proc.append(row.processed.copy())
    if current is not None:
        yield current, np.concatenate(clean), np.concatenate(proc)


def open_manifest(dest: str | os.PathLike | Manifest) -> Manifest:
    """The manifest of a shard set (ShardError if ``dest`` has none)."""
    return dest if isinstance(dest, Manifest) else read_manifest(dest)


def make_loader(
    manifest: str | os.PathLike | Manifest,
    split: str = "train",
    *,
    mode: Literal["random", "sequential"] = "random",
    receptive_field: int,
    output_len: int,
    batch_size: int,
    workers: int = 0,
    shuffle_windows: int = 4096,
    run_seconds: float = 2.0,
    seed: int = 0,
    epoch: int = 0,
    start_batch: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    equalize: bool = True,
    verify: Literal["crc", "sha256", "none"] = "crc",
    expected_sample_rate: int | None = None,
    with_ids: bool = False,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader over a WindowDataset: batches of {"x", "y"} (random mode) or
    {"x", "y", "reset", "valid"} (sequential mode, chunk length = ``output_len``).

    Make a new loader per epoch (workers are not persistent, so the epoch reaches them);
    ``start_batch`` resumes inside an epoch without reading what was consumed.
    """
    cfg = StreamConfig(
        mode=mode, seed=seed, shuffle_windows=shuffle_windows, equalize=equalize, run_seconds=run_seconds, verify=verify
    )
    ds = WindowDataset(
        open_manifest(manifest),
        split,
        WindowSpec(receptive_field, output_len),
        cfg,
        batch_size=batch_size,
        epoch=epoch,
        start_batch=start_batch,
        rank=rank,
        world_size=world_size,
        with_ids=with_ids,
        expected_sample_rate=expected_sample_rate,
    )
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size if mode == "random" else None,
        num_workers=workers,
        pin_memory=pin_memory,
    )
