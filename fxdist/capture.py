"""From recorded pairs to the best model in one call: import -> shard -> a sweep over candidate
model families within a time budget -> pick by validation -> best.pt, report.html, exports.

``capture(source, out, cfg)`` does it all on a local loopback Ray (or as a SLURM job with
``cfg.cluster``). Every candidate trains on one core for its share of the budget; the
sweep runs as many at once as there are cores. A candidate is picked only if its
validation ESR and its validation MR-STFT are both below the do-nothing baseline's (the
clean input at its best single gain); among those, the lowest validation ESR wins.

``out`` holds the results (``best.pt``, ``report.html`` with the evaluation beside it,
``exports/``, ``candidates/compare.html``, ``capture.json``) and ``work/<run>/`` the imported data, the
sweep and each candidate's checkpoint. Rerunning an unfinished capture resumes it (the
import and shards are kept, the sweep resumes, each trial keeps the training time it had); a
finished one is left alone unless ``overwrite``, which starts a new run and replaces the
results only once it is complete.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from fxdist.config import from_dict, to_dict
from fxdist.errors import ConfigError, DataError
from fxdist.fsutil import atomic_path, write_text_atomic

RESULT_FILE = "capture.json"
STAGES_FILE = "stages.json"
EXPERIMENT = "capture"
# Estimated seconds of set-up around the training itself, used to fit the plan in the budget:
# starting the local Ray, and each trial's process start, data opening and final validation.
RAY_START_S = 5.0
TRIAL_OVERHEAD_S = 5.0


@dataclass
class Candidate:
    """One model a capture tries: a model preset (or mapping), trained for ``weight`` shares
    of the budget; ``fit``: the family's direct fit first, then gradient steps."""

    model: str | dict[str, Any]
    fit: bool = False
    weight: float = 1.0
    # Dotted TrainConfig keys for this candidate only (optim.lr, data.output_len, ...).
    train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.weight > 0:
            raise ValueError(f"weight must be > 0, got {self.weight}")


# Gray-box fits are cheap and get a quarter share; black-box models train for a full one.
CANDIDATES: dict[str, Candidate] = {
    # 1.5 s at 48 kHz: cabinets and filters, and delays and reverbs up to that long.
    "fir": Candidate("fir-large", fit=True, weight=0.25),
    "wh": Candidate("wh", fit=True, weight=0.25),
    "compressor": Candidate("compressor", fit=True, weight=0.25),
    # 8 windows of 8192 outputs: 1.6x the samples/s of 16 x 4096 on one core (benchmarks/train_throughput.py)
    "wavenet": Candidate("wavenet-small", train={"optim.lr": 0.004, "data.batch_size": 8, "data.output_len": 8192}),
    "lstm": Candidate("lstm-small", train={"optim.lr": 0.008}),
    # Wiener-Hammerstein fitted first, then a small WaveNet trained beside it (fxdist.models.hybrid).
    "hybrid": Candidate("hybrid", fit=True, train={"optim.lr": 0.004}),
    # Level-dependent impulse responses (dynamic convolution, fxdist.models.nebula).
    "nebula": Candidate("nebula", fit=True, weight=0.25),
}
DEFAULT_CANDIDATES = ("wavenet", "lstm", "wh", "fir", "compressor")


@dataclass
class CaptureConfig:
    """What a capture does: ``budget`` seconds of wall time in all (import to exports),
    ``threads`` cores (None: every core of this machine), the candidates by name."""

    budget: float = 240.0
    threads: Optional[int] = None
    candidates: list[str] = field(default_factory=lambda: list(DEFAULT_CANDIDATES))
    effect_id: str = "capture"
    # The import's rate (None: the files' own); pairs at other rates are resampled.
    sample_rate: Optional[int] = None
    # A site YAML (configs/cluster/): run the sweep as a SLURM job instead of on local Ray.
    cluster: Optional[str] = None
    # Dotted TrainConfig keys applied to every candidate (loss.*, data.batch_size, ...).
    train: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False

    def __post_init__(self):
        if not self.budget > 0:
            raise ValueError(f"budget must be > 0 seconds, got {self.budget}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if not self.candidates:
            raise ValueError("candidates must name at least one model")
        unknown = [c for c in self.candidates if c not in CANDIDATES]
        if unknown:
            raise ValueError(f"unknown candidate(s) {', '.join(unknown)}; known: {', '.join(CANDIDATES)}")
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError(f"candidates named twice: {self.candidates}")


@dataclass
class CandidateResult:
    """One candidate on the validation split (``esr``/``mrstft`` None: it never validated)."""

    name: str
    family: str
    params: int | None
    steps: int | None
    seconds: float | None
    esr: float | None
    baseline_esr: float | None
    mrstft: float | None
    baseline_mrstft: float | None
    eligible: bool
    why_not: str | None = None
    chosen: bool = False


@dataclass
class CaptureResult:
    out: str
    chosen: str | None
    best: str | None
    report: str | None
    exports: list[str]
    candidates: list[CandidateResult]
    budget: float
    wall_seconds: float
    split: str | None
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        return candidate_table(self.candidates)


# -- the plan ------------------------------------------------------------------------------------


def plan_seconds(weights: Sequence[float], cores: int, seconds: float, overhead: float = TRIAL_OVERHEAD_S) -> list[float]:
    """Training seconds per candidate, proportional to ``weights``, such that running them in
    order, each on the first free core with ``overhead`` s of start-up, ends within ``seconds``.

    weights: (C,) > 0. Returns (C,). ConfigError when not even the start-ups fit.
    """
    if cores < 1:
        raise ConfigError(f"a capture needs at least one core, got {cores}")

    def makespan(scale: float) -> float:
        free = [0.0] * cores
        for w in weights:
            i = min(range(cores), key=free.__getitem__)
            free[i] += overhead + w * scale
        return max(free)

    if makespan(1.0) > seconds:
        need = makespan(1.0)
        raise ConfigError(
            f"a budget of {seconds:.0f} s for training leaves no time for {len(weights)} candidate(s) on {cores} core(s) "
            f"(at least {need:.0f} s); raise --budget or give fewer --candidates"
        )
    lo, hi = 1.0, seconds / min(weights)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if makespan(mid) <= seconds else (lo, mid)
    return [w * lo for w in weights]


def _order(names: Sequence[str]) -> list[str]:
    """The direct fits first: their time is the least predictable (a fit cannot stop halfway),
    and the gradient runs after them stop at the common deadline whatever the fits took."""
    return sorted(names, key=lambda n: (not CANDIDATES[n].fit, CANDIDATES[n].weight))


def _variant(name: str, seconds: float, sample_rate: int) -> dict[str, Any]:
    from fxdist.models.registry import get
    from fxdist.train import resolve_model_config

    cand = CANDIDATES[name]
    values: dict[str, Any] = {"model": cand.model, "fit": cand.fit, "max_seconds": round(seconds, 3)}
    model_cfg, _ = resolve_model_config(cand.model)
    if "sample_rate" in {f.name for f in dataclasses.fields(get(model_cfg["family"]).config_cls)}:
        values["model.sample_rate"] = sample_rate  # families whose times are in ms/Hz
    return {**values, **cand.train}


def _train_base(shards: Path, cfg: CaptureConfig) -> dict[str, Any]:
    """What every candidate trains with: one thread, steps bounded by its time only."""
    base = {
        "data": {"shards": str(shards)},
        "steps": 10_000_000,
        "val_every": 500,
        "checkpoint_every": 500,
        "log_every": 100,
        "threads": 1,
        "progress": False,
        "device": "cpu",
    }
    from fxdist.config import apply_overrides

    return apply_overrides(base, cfg.train)


# -- the stages ----------------------------------------------------------------------------------


def capture(source: str | Path, out: str | Path, cfg: CaptureConfig | None = None, *,
            signal: str | Path | None = None, log: Callable[[str], None] = print) -> CaptureResult:
    """Capture the effect recorded in ``source`` into ``out`` (see the module docstring).

    ``source``: a folder of pairs as ``fxdist data import`` takes, or with ``signal`` (the
    re-amp file that was played, its ``.json`` sidecar beside it) the one recording of it.
    """
    started, wall_start = time.monotonic(), time.time()
    cfg = cfg or CaptureConfig()
    out = Path(out)
    done = out / RESULT_FILE
    if done.is_file() and not cfg.overwrite:
        result = _read_result(done)
        log(f"{out}: this capture is complete (chosen: {result.chosen or 'none'}); pass --overwrite to capture again")
        return result
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: the capture folder is a file; choose another --out")
    _pairs(Path(source), signal)  # refuse a missing or wrong source before anything is written
    work = _work_dir(out, cfg.overwrite and done.is_file())
    cores = _cores(cfg)
    stages = _read_stages(work)

    shards = _import_and_shard(Path(source), signal, work, cfg, stages, log)
    from fxdist.data.stream import open_manifest

    manifest = open_manifest(str(shards))
    sr = int(manifest.sample_rate)
    validation = manifest.split("validation")
    if not validation.tracks:
        raise DataError(
            f"{source}: the import gave no validation track, so nothing can choose between candidates; record the "
            "re-amp signal (`fxdist data reamp`, it holds a validation section) or give at least 2 pairs"
        )
    split = "test" if manifest.split("test").tracks else "validation"

    after = max(8.0, 0.05 * cfg.budget)  # the pick, the report and the exports
    left = cfg.budget - (time.monotonic() - started) - after - (0 if cfg.cluster else RAY_START_S)
    names = _order(cfg.candidates)
    exp = work / "sweeps" / EXPERIMENT
    seconds = stages.get("seconds") or dict(zip(names, plan_seconds([CANDIDATES[n].weight for n in names], cores, left)))
    stages["seconds"] = seconds
    _write_stages(work, stages)
    log(f"[3/5] sweep ({time.monotonic() - started:.0f} s in): {len(names)} candidate(s) on {cores} core(s): "
        + ", ".join(f"{n} {seconds[n]:.0f} s" for n in names) + f" -> {exp}")
    # Every candidate stops by then, however late it started (a fit can outrun its share).
    # On a cluster the job may wait in the queue: there the budget is the sweep's, each
    # candidate bounded by its own share.
    deadline = None if cfg.cluster else wall_start + cfg.budget - after
    _run_sweep(exp, names, seconds, shards, sr, cores, cfg, deadline)

    log(f"[4/5] pick ({time.monotonic() - started:.0f} s in): every candidate on the validation split")
    results, paths = _score_candidates(exp, names, seconds, shards, sr, work / "candidates", out)
    chosen = pick(results)
    notes: list[str] = []
    best = report = None
    exports: list[str] = []
    if chosen is None:
        notes.append("no candidate beat doing nothing on both validation ESR and MR-STFT; no model was written")
    else:
        chosen.chosen = True
        best = out / "best.pt"
        _copy_atomic(paths[chosen.name], best)
        log(f"[5/5] report and exports of {chosen.name} ({time.monotonic() - started:.0f} s in)")
        report = _report(best, shards, out, split)
        exports, export_notes = _exports(best, out / "exports", cfg.effect_id)
        notes += export_notes
    result = CaptureResult(
        out=str(out), chosen=chosen.name if chosen else None, best=str(best) if best else None,
        report=str(report) if report else None, exports=exports, candidates=results, budget=cfg.budget,
        wall_seconds=round(time.monotonic() - started, 2), split=split, notes=notes,
    )
    write_text_atomic(done, json.dumps({"config": to_dict(cfg), "work": str(work), **dataclasses.asdict(result)}, indent=2))
    _drop_older_runs(out, work)
    return result


def _cores(cfg: CaptureConfig) -> int:
    """Candidates that run at once: --threads, else every CPU of the cluster's allocation or of this machine."""
    if cfg.threads:
        return cfg.threads
    if cfg.cluster:
        from fxdist.slurm.submit import load_cluster_config

        site = load_cluster_config(cfg.cluster)
        return site.nodes * site.cpus_per_node
    return os.cpu_count() or 1


def _work_dir(out: Path, new_run: bool) -> Path:
    """``out/work/<n>``: the newest run, or a new one when a finished capture is overwritten."""
    root = out / "work"
    runs = [int(p.name) for p in root.iterdir() if p.name.isdigit()] if root.is_dir() else []
    n = 1 if not runs else max(runs) + (1 if new_run else 0)
    work = root / str(n)
    work.mkdir(parents=True, exist_ok=True)
    return work


def _drop_older_runs(out: Path, work: Path) -> None:
    for old in (out / "work").iterdir():
        if old != work and old.name.isdigit():
            shutil.rmtree(old, ignore_errors=True)


def _read_stages(work: Path) -> dict[str, Any]:
    path = work / STAGES_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: unreadable ({exc}); delete it to redo the import and shards of this capture") from exc


def _write_stages(work: Path, stages: dict[str, Any]) -> None:
    write_text_atomic(work / STAGES_FILE, json.dumps(stages, indent=2))


def _import_and_shard(source: Path, signal: str | Path | None, work: Path, cfg: CaptureConfig,
                      stages: dict[str, Any], log: Callable[[str], None]) -> Path:
    from fxdist.data.ingest import import_pairs
    from fxdist.data.shards import ShardConfig, write_shards

    root = work / "data"
    shards = root / "shards" / cfg.effect_id
    if stages.get("sharded"):
        log(f"[1/5] import, [2/5] shard: kept from the earlier start ({shards})")
        return shards
    reports = import_pairs(_pairs(source, signal), root, sample_rate=cfg.sample_rate, effect_id=cfg.effect_id)
    for r in reports:
        log(f"[1/5] import: {r.track_id}: latency {r.latency_samples} samples by {r.method}, "
            f"{r.length} samples" + (f", split {r.split}" if r.split else ""))
    manifest = write_shards(root, shards, cfg.effect_id, ShardConfig(), log=lambda line: log(f"warning: {line}"))
    log(f"[2/5] shard: {manifest.summary()}")
    stages["sharded"] = True
    _write_stages(work, stages)
    return shards


def _pairs(source: Path, signal: str | Path | None) -> Any:
    """What ``import_pairs`` takes: the pairs folder, or [(signal, recording)]."""
    if signal is not None:
        if not Path(signal).is_file():
            raise DataError(f"{signal}: no such re-amp signal file (--signal names the file that was played into the device)")
        if not source.is_file():
            raise DataError(f"{source}: with --signal, give the one recording of it (a file), not a folder")
        return [(Path(signal), source)]
    if source.is_file():
        raise DataError(f"{source}: a single recording needs --signal, the re-amp file that was played into the device")
    if not source.is_dir():
        raise DataError(f"{source}: no such folder of recorded pairs (clean/ + processed/, or NAME_clean/NAME_processed files)")
    return source


def _run_sweep(exp: Path, names: Sequence[str], seconds: dict[str, float], shards: Path, sr: int, cores: int,
               cfg: CaptureConfig, deadline: float | None) -> None:
    from fxdist.tune import SweepConfig, has_experiment, resume, sweep

    if has_experiment(str(exp)):
        if cfg.cluster:
            _run_on_cluster(exp, None, cfg)
        else:
            resume(str(exp), num_cpus=cores, train_overrides={"deadline": deadline})
        return
    variants = [_variant(n, seconds[n], sr) for n in names]
    sweep_cfg = from_dict(SweepConfig, {
        "name": EXPERIMENT, "train": {**_train_base(shards, cfg), "deadline": deadline},
        "space": {"variant": {"grid": variants}},
        "scheduler": {"kind": "fifo"}, "max_concurrent_trials": cores, "max_failures": 1,
        # Tune's own stop, should a trial hang past its deadline
        "time_budget_s": max(30.0, (deadline or time.time() + cfg.budget) - time.time() + 30.0),
        "keep_checkpoints": 1, "storage": str(exp.parent), "verbose": 0,
    }, "<capture sweep>")
    if cfg.cluster:
        _run_on_cluster(exp, sweep_cfg, cfg)
    else:
        sweep(sweep_cfg, num_cpus=cores)


def _run_on_cluster(exp: Path, sweep_cfg, cfg: CaptureConfig) -> None:
    """Submit the sweep (or its resume) as one SLURM job and wait for it to leave the queue."""
    import yaml

    from fxdist.slurm.submit import jobs, submit

    spec = exp.parent / f"{EXPERIMENT}.yaml"
    if sweep_cfg is not None:
        write_text_atomic(spec, yaml.safe_dump(to_dict(sweep_cfg), sort_keys=False))
    if not spec.is_file():
        raise ConfigError(f"{spec}: the capture's sweep config is missing; rerun with --overwrite")
    from fxdist.errors import ClusterError
    from fxdist.tune import has_experiment

    submitted = submit(spec, cfg.cluster, storage=str(exp.parent))
    while any(j.job_id == submitted.job_id for j in jobs()):
        time.sleep(5.0)
    if not has_experiment(str(exp)):
        raise ClusterError(f"SLURM job {submitted.job_id} ended without running the capture's sweep; its logs: {submitted.logs_dir}")


def _score_candidates(exp: Path, names: Sequence[str], seconds: dict[str, float], shards: Path, sr: int,
                      folder: Path, out: Path) -> tuple[list[CandidateResult], dict[str, Path]]:
    """Copy each candidate's best.pt to ``folder/<name>/`` and score them all on the validation split."""
    from fxdist.evaluate import compare
    from fxdist.tune import best

    by_variant = {json.dumps(_variant(n, seconds[n], sr), sort_keys=True, default=str): n for n in names}
    trials = best(str(exp), top=10_000, to=folder / ".trials")
    paths: dict[str, Path] = {}
    reported: dict[str, dict[str, Any]] = {}
    for t in trials:
        variant = t.config.get("variant") or {}
        name = by_variant.get(json.dumps({k: v for k, v in variant.items()}, sort_keys=True, default=str))
        if name is None:
            continue
        dest = folder / name / "best.pt"
        dest.parent.mkdir(parents=True, exist_ok=True)
        _copy_atomic(Path(t.checkpoint), dest)
        paths[name] = dest
        reported[name] = json.loads((Path(t.folder) / "metrics.json").read_text()) if t.folder else {}
    shutil.rmtree(folder / ".trials", ignore_errors=True)
    rows = {}
    if paths:
        table = compare([paths[n] for n in names if n in paths], shards, out / "candidates", split="validation",
                        max_seconds=30.0, plots=True)
        rows = {Path(r["checkpoint"]).parent.name: r for r in table.rows}
    results = []
    for name in names:
        row, rep = rows.get(name), reported.get(name, {})
        if row is None:
            results.append(CandidateResult(name, _family(name), None, None, None, None, None, None, None, False,
                                           "no validation reached (it ran out of time or failed)"))
            continue
        why = _why_not(row)
        results.append(CandidateResult(
            name=name, family=row.get("family") or _family(name), params=row.get("params"), steps=rep.get("step"),
            seconds=rep.get("trained_seconds"), esr=row["esr"], baseline_esr=row["baseline_esr"], mrstft=row["mrstft"],
            baseline_mrstft=row["baseline_mrstft"], eligible=why is None, why_not=why,
        ))
    return results, paths


def pick(results: Sequence[CandidateResult]) -> CandidateResult | None:
    """The eligible candidate (below do-nothing on validation ESR and MR-STFT) of lowest ESR."""
    eligible = [r for r in results if r.eligible and r.esr is not None]
    return min(eligible, key=lambda r: r.esr) if eligible else None


def _why_not(row: dict[str, Any]) -> str | None:
    """Why a candidate may not be picked: worse than doing nothing on ESR or on MR-STFT."""
    if not math.isfinite(row["esr"]) or row["esr"] >= row["baseline_esr"]:
        return f"validation ESR {row['esr']:.4g} is not below do-nothing's {row['baseline_esr']:.4g}"
    if not math.isfinite(row["mrstft"]) or row["mrstft"] >= row["baseline_mrstft"]:
        return f"validation MR-STFT {row['mrstft']:.4g} is not below do-nothing's {row['baseline_mrstft']:.4g}"
    return None


def _family(name: str) -> str:
    from fxdist.train import resolve_model_config

    return resolve_model_config(CANDIDATES[name].model)[0]["family"]


def _report(best: Path, shards: Path, out: Path, split: str) -> Path:
    from fxdist.evaluate import evaluate

    return Path(evaluate(best, shards, out, split=split).report_html)


def _exports(best: Path, folder: Path, name: str) -> tuple[list[str], list[str]]:
    """Every format the chosen family can be written in, each read back and checked."""
    from fxdist.checkpoint import load_model
    from fxdist.errors import ExportError
    from fxdist.export import SUFFIXES, export_checkpoint

    model, _ = load_model(best)
    written, notes = [], []
    folder.mkdir(parents=True, exist_ok=True)
    for fmt, reason in model.export_formats().items():
        if reason is not None:
            continue
        path = folder / f"{name}{SUFFIXES[fmt]}"
        if fmt == "torchscript":
            path = folder / f"{name}.torchscript.pt"
        try:
            export_checkpoint(best, fmt, path)
        except (ExportError, ImportError) as exc:
            notes.append(f"{fmt} export not written: {exc}")
            continue
        written.append(str(path))
    return written, notes


def _copy_atomic(src: Path, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def _read_result(path: Path) -> CaptureResult:
    try:
        data = json.loads(path.read_text())
        data.pop("config", None)
        data.pop("work", None)
        data["candidates"] = [CandidateResult(**c) for c in data["candidates"]]
        return CaptureResult(**data)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a capture result ({exc}); pass --overwrite to capture again") from exc


# -- the table -----------------------------------------------------------------------------------


def candidate_table(rows: Sequence[CandidateResult]) -> str:
    """The candidates as a text table: validation ESR and MR-STFT beside do-nothing's."""
    head = ["candidate", "family", "params", "steps", "seconds", "val ESR", "do-nothing", "ratio", "MR-STFT",
            "do-nothing", "picked"]

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    body = []
    for r in rows:
        ratio = None if r.esr is None or not r.baseline_esr else r.baseline_esr / max(r.esr, 1e-12)
        body.append([r.name, r.family, num(r.params, "d"), num(r.steps, "d"), num(r.seconds, ".0f"), num(r.esr, ".4g"),
                     num(r.baseline_esr, ".4g"), "-" if ratio is None else f"{ratio:.1f}x", num(r.mrstft, ".3f"),
                     num(r.baseline_mrstft, ".3f"), "yes" if r.chosen else ("no: " + r.why_not if r.why_not else "no")])
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in (head, *body))


def load_capture_config(data: dict[str, Any], source: str = "<capture>") -> CaptureConfig:
    return from_dict(CaptureConfig, data, source)


__all__ = [
    "CANDIDATES", "DEFAULT_CANDIDATES", "Candidate", "CandidateResult", "CaptureConfig", "CaptureResult",
    "candidate_table", "capture", "load_capture_config", "pick", "plan_seconds",
]
