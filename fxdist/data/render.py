"""Render processed targets: apply an effect chain to every clean track.

``render(root/"clean", "distortion", root/"processed/distortion")`` writes
``<track_id>.wav`` (float32 WAV, atomic) for each ``clean/<track_id>.wav``, plus
``effect.yaml``, the effect config those outputs came from. Tracks render in parallel
processes, each rebuilding the chain from its config dict (plugins are not pickled).

Resumable: an existing output is complete (writes are atomic), so it is skipped unless
``overwrite``. An out_dir whose ``effect.yaml`` differs from the effect being rendered
(any field but ``description``) is refused, so one folder never mixes two effects.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fxdist.audio import check_finite, check_not_silent, read_audio, write_audio
from fxdist.config import load_yaml
from fxdist.effects import Chain, EffectConfig, load_effect
from fxdist.errors import ConfigError, DataError, EffectError
from fxdist.fsutil import write_text_atomic

EFFECT_FILE = "effect.yaml"
SILENCE_FLOOR_DB = -90.0


@dataclass
class RenderReport:
    """What a render did. ``audio_seconds`` counts rendered (not skipped) audio."""

    effect: str
    out_dir: Path
    rendered: int
    skipped: int
    audio_seconds: float
    wall_seconds: float

    @property
    def throughput(self) -> float:
        """Seconds of audio rendered per wall-clock second (0 when nothing was rendered)."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.effect}: rendered {self.rendered} track(s), skipped {self.skipped} existing; "
            f"{self.audio_seconds:.1f} s of audio in {self.wall_seconds:.1f} s "
            f"({self.throughput:.1f}x realtime) -> {self.out_dir}"
        )


def render(
    clean_dir: str | Path,
    effect: Chain | EffectConfig | str | Path,
    out_dir: str | Path,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> RenderReport:
    """Apply ``effect`` (Chain, config, preset name or YAML path) to every ``clean_dir/*.wav``.

    ``workers``: processes (default min(4, CPUs)); 1 renders in this process. Raises
    DataError for an unreadable, non-finite or silent result (naming the track),
    EffectError when the chain fails or ``out_dir`` holds another effect's outputs.
    """
    start = time.perf_counter()
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ConfigError(f"render: workers must be >= 1, got {workers}")
    chain = load_effect(effect)
    config = chain.to_dict()
    clean_dir, out_dir = Path(clean_dir), Path(out_dir)
    tracks = clean_tracks(clean_dir)
    claim_out_dir(out_dir, config)

    jobs = [(p, out_dir / p.name) for p in tracks if overwrite or not (out_dir / p.name).exists()]
    skipped = len(tracks) - len(jobs)

    bar = _progress_bar(len(tracks), skipped, chain.name, progress)
    try:
        if workers == 1 or len(jobs) <= 1:
            seconds = [_render_with(chain, src, dst, bar) for src, dst in jobs]
        else:
            seconds = _render_parallel(config, jobs, min(workers, len(jobs)), bar)
    finally:
        bar.close()
    return RenderReport(chain.name, out_dir, len(jobs), skipped, float(sum(seconds)), time.perf_counter() - start)


def clean_tracks(clean_dir: Path) -> list[Path]:
    """The ``*.wav`` files of ``clean_dir``, sorted; hidden (temp) files are left out."""
    if not clean_dir.is_dir():
        raise DataError(f"{clean_dir}: clean audio folder not found")
    tracks = sorted(p for p in clean_dir.glob("*.wav") if not p.name.startswith(".") and p.is_file())
    if not tracks:
        raise DataError(f"{clean_dir}: no .wav files to render")
    return tracks


def claim_out_dir(out_dir: Path, config: dict[str, Any]) -> None:
    """Write ``out_dir/effect.yaml``, or check that the one there matches ``config``."""
    path = out_dir / EFFECT_FILE
    if path.exists():
        existing = load_yaml(path)
        if not isinstance(existing, dict):
            raise EffectError(
                f"{path}: not an effect config (got {type(existing).__name__}); delete it or use another out_dir"
            )
        there, now = _comparable(existing), _comparable(config)
        if there != now:
            raise EffectError(
                f"{out_dir}: holds outputs of effect {existing.get('name')!r} ({path}) whose config differs from "
                f"effect {config.get('name')!r} being rendered ({_first_difference(there, now)}); "
                f"render into another folder or delete {out_dir}"
            )
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, yaml.safe_dump(config, sort_keys=False))


def _comparable(config: dict[str, Any]) -> Any:
    """The config as YAML would store it, minus the free-text description."""
    data = {k: v for k, v in config.items() if k != "description"}
    return yaml.safe_load(yaml.safe_dump(data))


def _first_difference(a: Any, b: Any, path: str = "config") -> str:
    """Where two plain-data configs first differ: ``chain[1].params.drive_db: 30 there vs 20 now``."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = list(a) + [k for k in b if k not in a]
        for key in sorted(keys, key=lambda k: isinstance(a.get(k, b.get(k)), (dict, list))):  # scalars first
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path}: {_short(a)} there vs {_short(b)} now"


def _short(value: Any, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_track(chain: Chain, src: Path, dst: Path) -> float:
    """Render one track to ``dst`` (FLOAT WAV, atomic); return its length in seconds.

    DataError (naming the track) for an unreadable input or a non-finite or silent
    output; EffectError when the chain fails or changes the length.
    """
    audio, sr = read_audio(src)
    try:
        check_not_silent(audio, src, floor_db=SILENCE_FLOOR_DB)
    except DataError as exc:
        raise DataError(f"{exc}: a silent clean track gives the effect nothing to show; remove it from "
                        f"{src.parent}") from None
    out = chain(audio, sr, label=str(src))
    track = src.stem
    if out.shape[-1] != audio.shape[-1]:
        raise EffectError(f"{src}: effect {chain.name} returned {out.shape[-1]} samples for {audio.shape[-1]}")
    check_finite(out, f"{dst} (effect {chain.name} on track {track})")
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak <= 10 ** (SILENCE_FLOOR_DB / 20):
        level = "-inf" if peak == 0 else f"{20 * np.log10(peak):.1f}"
        raise DataError(
            f"{src}: effect {chain.name} turned this track into silence (peak {level} dBFS, floor {SILENCE_FLOOR_DB} "
            "dBFS); check the effect's settings (a gate, a level, a plugin that failed quietly)"
        )
    write_audio(dst, out, sr, subtype="FLOAT")
    return audio.shape[-1] / sr


def _render_with(chain: Chain, src: Path, dst: Path, bar: Any) -> float:
    seconds = render_track(chain, src, dst)
    bar.update(1)
    return seconds


_WORKER_CHAIN: Chain | None = None  # one chain per worker process, built by _init_worker


def _init_worker(config: dict[str, Any]) -> None:
    global _WORKER_CHAIN
    _WORKER_CHAIN = Chain.from_config(config, source="render worker")


def _worker_render(src: Path, dst: Path) -> float:
    assert _WORKER_CHAIN is not None
    return render_track(_WORKER_CHAIN, src, dst)


def _render_parallel(config: dict[str, Any], jobs: list[tuple[Path, Path]], workers: int, bar: Any) -> list[float]:
    """Render ``jobs`` in ``workers`` processes; the first failure cancels the rest.

    The platform's default start method is used (fork on Linux): spawn and forkserver
    cannot start workers from a script read on stdin or some notebooks.
    """
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(config,)) as pool:
        futures = [pool.submit(_worker_render, src, dst) for src, dst in jobs]
        for future in futures:
            future.add_done_callback(lambda f: bar.update(1) if not f.cancelled() and f.exception() is None else None)
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()
        return [f.result() for f in futures]


def _progress_bar(total: int, done: int, name: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=f"render {name}", unit="track", disable=not enabled)


__all__ = ["RenderReport", "render", "render_track", "clean_tracks", "claim_out_dir", "EFFECT_FILE"]
