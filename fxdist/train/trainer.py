"""Single-process (or one DDP rank's) training: ``train(cfg) -> TrainResult``.

Everything a Ray trial runs goes through here: the CLI, Ray Tune trainables, SLURM
jobs and notebooks all call ``train``. It streams windows from Parquet shards, trains
one model with a weighted ESR/DC/MR-STFT loss, validates on whole validation tracks,
keeps ``last.pt`` (for resuming) and ``best.pt`` (lowest validation ESR), and hands each
validation to an optional ``report`` callback (Ray uses it to report metrics and
checkpoints).
"""

from __future__ import annotations

import json
import math
import socket
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from fxdist import __version__
from fxdist.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fxdist.config import to_dict
from fxdist.dsp import do_nothing_esr_from_sums
from fxdist.errors import CheckpointError, ConfigError, TrainingError
from fxdist.fsutil import write_text_atomic
from fxdist.losses import CombinedLoss
from fxdist.models.base import detach_state
from fxdist.process import pick_device, predict

from fxdist.train.config import OptimConfig, TrainConfig, TrainResult, resolve_model_config, weights_config

def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


# Model options that change how training runs, not the weights: a checkpoint saved with other
# values (or before the option existed) still fits.
def lr_lambda(cfg: OptimConfig, steps: int, time_progress: Callable[[], float] | None = None) -> Callable[[int], float]:
    """Multiplier of the base lr at a step: linear warm-up, then cosine or constant.

    The cosine runs over ``steps``; with ``time_progress`` (the fraction of a time budget
    spent, from 0 to 1) it follows whichever of the two is further along, so a run that
    its budget stops before ``steps`` has still annealed.
    """

    def fn(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        span = max(1, steps - cfg.warmup_steps)
        progress = (step - cfg.warmup_steps) / span
        if time_progress is not None:
            progress = max(progress, time_progress())
        progress = min(1.0, progress)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return fn


def latency_aligned(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None, latency: int):
    """Pair each output sample with the target sample it trails by ``latency`` (0 <= latency < T).

    pred, y: (B, C, T); mask: (B, 1, T) or None. Returns pred[..., latency:] and y[..., :T - latency]
    (and mask[..., latency:], the mask of the outputs kept), each of length T - latency: the
    windowed counterpart of offline rendering's compensation (``predict``).
    """
    if not latency:
        return pred, y, mask
    length = pred.shape[-1]
    return pred[..., latency:], y[..., : length - latency], None if mask is None else mask[..., latency:]


def _float32_state(state):
    """Carried state as autocast left it, with bfloat16/float16 tensors back in float32, so a
    checkpoint's carried state fits a run with or without mixed precision."""
    def cast(t):
        return t.float() if isinstance(t, torch.Tensor) and t.dtype in (torch.bfloat16, torch.float16) else t

    return type(state)(cast(t) for t in state) if isinstance(state, (tuple, list)) else cast(state)


class Trainer:
    """The state of one run; ``run()`` trains to cfg.steps (or the time budget)."""

    def __init__(self, cfg: TrainConfig, report: Callable[[dict, Path | None], None] | None = None):
        from fxdist.data import stream
        from fxdist.models.registry import build_model, model_config_dict

        self.cfg = cfg
        self.report = report
        self.rank, self.world = _dist_info()
        self.device = pick_device(cfg.device)
        self.out_dir = Path(cfg.out_dir)
        self.manifest = stream.open_manifest(cfg.data.shards)
        self.sample_rate = int(self.manifest.sample_rate)

        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        model_cfg, source = resolve_model_config(cfg.model)
        self.model = build_model(model_cfg, source=source).to(self.device)
        self.model_config = model_config_dict(self.model)
        model_rate = self.model_config.get("sample_rate")  # families whose times are in ms/Hz (chorus)
        if model_rate is not None and int(model_rate) != self.sample_rate:
            raise ConfigError(
                f"model {self.model_config['family']!r} is configured for {model_rate} Hz but shard set "
                f"{cfg.data.shards} is at {self.sample_rate} Hz; set model.sample_rate: {self.sample_rate}"
            )
        self.rf = self.model.receptive_field
        self.mode = cfg.data.mode if cfg.data.mode != "auto" else ("sequential" if self.model.stateful else "random")
        if self.mode == "random" and self.model.stateful:
            raise ConfigError(f"data.mode 'random' cannot train stateful model {self.model_config['family']!r}; use 'sequential'")
        self.output_len = self._output_len()
        if cfg.fit and not self.model.can_fit():
            from fxdist.models import registry

            fits = [f for f in registry.families() if registry.get(f).can_fit()]
            raise ConfigError(
                f"fit: true, but model family {self.model_config['family']!r} has no direct fit; families with one: {', '.join(fits)}"
            )

        self.loss_fn = CombinedLoss(cfg.loss, self.sample_rate).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        # Seconds of training this run has had, across resumes (the fit included): what
        # max_seconds bounds, and what the schedule follows when it is set.
        self.trained_seconds = 0.0
        self._run_started: float | None = None
        self._deadline_perf = 0.0
        budget = self._time_progress if cfg.max_seconds or cfg.deadline else None
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg.optim, cfg.steps, budget))
        self.train_module: nn.Module = self.model.train_module()
        if self.world > 1:
            self.train_module = nn.parallel.DistributedDataParallel(self.train_module)

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_val: float | None = None
        self.last_val: float | None = None
        self.baseline_val: float | None = None
        self.carried = None
        self.since_reset = None
        self.history: list[dict[str, Any]] = []
        self.closed = False
        if cfg.init_from:
            self._init_from(Path(cfg.init_from))
        if cfg.resume and self.last_path.is_file():
            self._restore(load_checkpoint(self.last_path, map_location=self.device))

    # -- set-up -------------------------------------------------------------------------

    def _time_progress(self) -> float:
        """How far along the time budget is, 0 to 1: max_seconds' or the deadline's, whichever is further along."""
        progress = self.elapsed() / self.cfg.max_seconds if self.cfg.max_seconds else 0.0
        if self.cfg.deadline is not None and self._run_started is not None:
            now = time.perf_counter()
            span = self._deadline_perf - self._run_started
            progress = max(progress, 1.0 if span <= 0 else (now - self._run_started) / span)
        return progress

    def _over_budget(self) -> bool:
        cfg = self.cfg
        return (cfg.max_seconds is not None and self.elapsed() >= cfg.max_seconds) or (
            cfg.deadline is not None and time.time() >= cfg.deadline)

    def elapsed(self) -> float:
        """Seconds of training so far, earlier starts of this run included."""
        running = 0.0 if self._run_started is None else time.perf_counter() - self._run_started
        return self.trained_seconds + running

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    def _output_len(self) -> int:
        window = self.cfg.data.window
        name = self.model_config["family"]
        if self.mode == "sequential":
            return self.cfg.data.chunk_len
        if window is None:
            return self.cfg.data.output_len
        if window < self.rf:
            raise ConfigError(
                f"data.window {window} is shorter than the receptive field {self.rf} of model {name!r}; "
                f"use a window of at least {self.rf} samples"
            )
        return window - self.rf + 1

    def _check_rate(self, ckpt: Checkpoint, path: Path) -> None:
        if ckpt.sample_rate != self.sample_rate:
            raise TrainingError(
                f"{path}: checkpoint was trained at {ckpt.sample_rate} Hz but shard set "
                f"{self.cfg.data.shards} is at {self.sample_rate} Hz"
            )

    def _check_model(self, ckpt: Checkpoint, path: Path) -> None:
        if weights_config(ckpt.model_config, str(path)) != weights_config(self.model_config, "this run"):
            raise CheckpointError(
                f"{path}: checkpoint holds model {ckpt.model_config} but this run builds {self.model_config}"
            )

    def _init_from(self, path: Path) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        self._check_model(ckpt, path)
        self._check_rate(ckpt, path)
        self.model.load_state_dict(ckpt.model_state)

    def _restore(self, ckpt: Checkpoint) -> None:
        path = self.last_path
        self._check_model(ckpt, path)
        self._check_rate(ckpt, path)
        if ckpt.fxdist_version.split(".")[0] != __version__.split(".")[0]:
            raise CheckpointError(f"{path}: written by fxdist {ckpt.fxdist_version}, this is {__version__}")
        self.model.load_state_dict(ckpt.model_state)
        if ckpt.optimizer_state is not None:
            self.optimizer.load_state_dict(ckpt.optimizer_state)
        if ckpt.scheduler_state is not None:
            self.scheduler.load_state_dict(ckpt.scheduler_state)
        self.step, self.epoch, self.batch_in_epoch = ckpt.step, ckpt.epoch, ckpt.batch_in_epoch
        self.best_val, self.last_val = ckpt.best_val_esr, ckpt.val_esr
        self.baseline_val = ckpt.metadata.get("baseline_val_esr")
        self.trained_seconds = float(ckpt.metadata.get("trained_seconds", 0.0))
        self.history = list(ckpt.metadata.get("history", []))
        if ckpt.rng_state is not None:
            torch.set_rng_state(ckpt.rng_state.cpu())
        if ckpt.carried_state is not None:
            *state, since = [t.to(self.device) for t in ckpt.carried_state]
            self.carried = tuple(state)
            self.since_reset = since

    # -- data ---------------------------------------------------------------------------

    def _loader(self, epoch: int, start_batch: int):
        from fxdist.data import stream

        d = self.cfg.data
        return stream.make_loader(
            self.manifest,
            split="train",
            mode=self.mode,
            receptive_field=self.rf,
            output_len=self.output_len,
            batch_size=d.batch_size,
            workers=d.workers,
            shuffle_windows=d.shuffle_windows,
            run_seconds=d.run_seconds,
            seed=self.cfg.seed,
            epoch=epoch,
            start_batch=start_batch,
            rank=self.rank,
            world_size=self.world,
            with_ids=self.model.time_varying,
            pin_memory=self.device.type == "cuda",
        )

    def data_share(self) -> dict[str, Any]:
        """Which training shard row groups this rank streams in the current epoch (its share only)."""
        loader = self._loader(self.epoch, 0)
        return {"rank": self.rank, "world_size": self.world, "hostname": socket.gethostname(), "epoch": self.epoch,
                "units": [[path, group] for path, group in loader.dataset.share(max(1, self.cfg.data.workers))]}

    def _write_data_share(self) -> None:
        write_text_atomic(self.out_dir / "data-share.json", json.dumps(self.data_share()))

    def _batches(self):
        """Endless batches from the saved data position on; advances epoch/batch counters.

        A resumed run starts its first loader at ``batch_in_epoch``: the stream replays
        the epoch's order without reading the batches already consumed.
        """
        while True:
            produced = 0
            for batch in self._loader(self.epoch, self.batch_in_epoch):
                produced += 1
                self.batch_in_epoch += 1
                yield batch
            if produced == 0 and self.batch_in_epoch == 0:
                raise TrainingError(
                    f"{self.cfg.data.shards}: the training split yields no batch for rank {self.rank}/{self.world} "
                    f"(windows of {self.rf - 1 + self.output_len} samples, batch {self.cfg.data.batch_size})"
                )
            self.epoch += 1
            self.batch_in_epoch = 0

    # -- training -----------------------------------------------------------------------

    def _autocast(self):
        enabled = self.cfg.amp and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _train_step(self, batch) -> tuple[float, dict[str, float], int]:
        x, y = batch["x"].to(self.device), batch["y"].to(self.device)
        mask = None
        with self._autocast():
            if self.mode == "sequential":
                pred, mask = self._sequential_forward(x, batch["reset"].to(self.device))
                # Lanes padded at the end of an epoch (so DDP ranks get equal batch counts)
                mask = mask * batch["valid"].to(self.device, mask.dtype)[:, None, None]
            elif (own := self.model.training_loss(self.train_module, x, y)) is not None:
                return self._apply(*own, y)
            elif self.model.time_varying:  # each window at its track position (an LFO's phase)
                pred, _ = self.train_module(x, start=batch["offset"].to(self.device))
            else:
                pred, _ = self.train_module(x)
        # The loss (pre-emphasis, STFTs, sums over the window) runs in float32, outside autocast.
        pred, y, mask = self._latency_aligned(pred, y, mask)
        total, parts = self.loss_fn(pred.float(), y, None if mask is None else mask.float())
        return self._apply(total, parts, y)

    def _latency_aligned(self, pred, y, mask):
        """``latency_aligned`` for the model's current latency (a fit may have just set it)."""
        latency = self.model.latency
        if latency and latency >= pred.shape[-1]:
            raise TrainingError(
                f"model {self.model_config['family']!r} has a latency of {latency} samples, not less than the "
                f"{pred.shape[-1]} output samples per training window: no output is paired with a target; "
                f"raise data.output_len (or data.window, data.chunk_len) above {latency}"
            )
        return latency_aligned(pred, y, mask, latency)

    def _apply(self, total: torch.Tensor, parts: dict[str, float], y: torch.Tensor) -> tuple[float, dict[str, float], int]:
        if not torch.isfinite(total):
            raise TrainingError(
                f"loss became {float(total.detach())} at step {self.step} (parts {parts}); training stopped. "
                f"The last good checkpoint is kept at {self.last_path if self.last_path.exists() else 'none yet'}; "
                f"try a lower optim.lr (now {self.cfg.optim.lr}) or gradient clipping"
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return float(total.detach()), parts, int(y.numel())

    def _sequential_forward(self, x: torch.Tensor, reset: torch.Tensor):
        """TBPTT: carry state across chunks, zero it on lanes that jump track, mask warm-up."""
        batch, _, length = x.shape
        if self.carried is None or self.since_reset is None or self.since_reset.shape[0] != batch:
            self.carried = self.model.initial_state(batch, self.device)
            self.since_reset = torch.zeros(batch, dtype=torch.long, device=self.device)
        self.carried = self.model.reset_lanes(self.carried, reset)
        self.since_reset = torch.where(reset, torch.zeros_like(self.since_reset), self.since_reset)
        pred, state = self.train_module(x, self.carried)
        self.carried = _float32_state(detach_state(state))
        positions = self.since_reset[:, None] + torch.arange(length, device=self.device)[None, :]
        mask = (positions >= self.cfg.data.warmup_samples).to(pred.dtype)[:, None, :]
        self.since_reset = self.since_reset + length
        return pred, mask

    # -- validation ---------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> tuple[float, float]:
        """(ESR, do-nothing baseline ESR) over the validation split's tracks, whole and in order."""
        from fxdist.data import stream

        self.model.eval()
        err = sig = 0.0
        cc = tt = ct = 0.0
        max_len = None if self.cfg.data.val_max_seconds is None else int(self.cfg.data.val_max_seconds * self.sample_rate)
        for _track, clean, target in stream.iter_tracks(self.manifest, "validation"):
            if max_len is not None:
                clean, target = clean[:max_len], target[:max_len]
            pred = predict(self.model, clean, self.cfg.data.val_block, self.device)
            c, t, p = (a.astype(np.float64) for a in (clean, target, pred))
            err += float(((t - p) ** 2).sum())
            sig += float((t * t).sum())
            cc, tt, ct = cc + float(c @ c), tt + float(t @ t), ct + float(c @ t)
        self.model.train()
        if sig == 0:
            raise TrainingError(f"{self.cfg.data.shards}: the validation split holds no audio")
        return err / sig, do_nothing_esr_from_sums(cc, tt, ct)

    # -- checkpoints --------------------------------------------------------------------

    def _checkpoint(self, val: float | None) -> Checkpoint:
        carried = None
        if self.carried is not None:
            state = self.carried if isinstance(self.carried, tuple) else (self.carried,)
            carried = [t.detach().cpu() for t in state] + [self.since_reset.cpu()]
        return Checkpoint(
            model_config=self.model_config,
            model_state={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            sample_rate=self.sample_rate,
            receptive_field=self.rf,
            step=self.step,
            epoch=self.epoch,
            batch_in_epoch=self.batch_in_epoch,
            best_val_esr=self.best_val,
            val_esr=val,
            train_config=to_dict(self.cfg),
            optimizer_state=self.optimizer.state_dict(),
            scheduler_state=self.scheduler.state_dict(),
            rng_state=torch.get_rng_state(),
            carried_state=carried,
            metadata={
                "effect_id": self.manifest.effect_id,
                "shards": self.cfg.data.shards,
                "baseline_val_esr": self.baseline_val,
                "trained_seconds": self.elapsed(),
                "history": self.history,
            },
        )

    def _save(self, val: float | None, improved: bool) -> None:
        if self.rank != 0:
            return
        ckpt = self._checkpoint(val)
        save_checkpoint(self.last_path, ckpt)
        if improved:
            save_checkpoint(self.best_path, ckpt)

    # -- the loop -----------------------------------------------------------------------

    def close(self) -> None:
        """Let go of the DistributedDataParallel wrapper now, while the process group lives.

        DDP's Reducer holds the group. Freed after ``destroy_process_group``, the group's
        destructor runs from the Reducer's, holding the GIL, and joins gloo threads that may
        wait for the GIL: a deadlock (benchmarks/memory_per_worker.py). And a Trainer can
        outlive its run until a garbage collection: the first ``torch.optim.Adam`` built in a
        process leaves its caller's frame, and so the Trainer, in a reference cycle.
        The model and its checkpoints stay usable; the Trainer cannot ``run`` again.
        """
        if isinstance(self.train_module, nn.parallel.DistributedDataParallel):
            self.train_module = self.train_module.module
        self.closed = True

    def run(self) -> TrainResult:
        cfg = self.cfg
        if self.closed:
            raise TrainingError(f"{self.out_dir}: this Trainer was closed; make a new one (resume: true continues the run)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            (self.out_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
            if not cfg.resume and self.step == 0:  # a new run: no validation lines of an earlier one
                write_text_atomic(self.out_dir / "metrics.jsonl", "")
        self._write_data_share()
        writer = self._writer()
        bar = self._progress_bar()
        batches = self._batches()
        started = self._run_started = time.perf_counter()
        if cfg.deadline is not None:  # the deadline on the monotonic clock the schedule reads
            self._deadline_perf = started + (cfg.deadline - time.time())
        samples = 0
        over_budget = self._over_budget()
        stopped_early = over_budget and self.step < cfg.steps
        if cfg.fit and self.step == 0 and not over_budget:
            self._fit()
        self.model.train()
        try:
            while self.step < cfg.steps and not over_budget:
                loss, parts, n = self._train_step(next(batches))
                self.step += 1
                samples += n
                elapsed = time.perf_counter() - started
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4g}", sps=f"{samples / max(elapsed, 1e-9):.3g}")
                if writer is not None and self.step % cfg.log_every == 0:
                    writer.add_scalar("train/loss", loss, self.step)
                    for key, value in parts.items():
                        writer.add_scalar(f"train/{key}", value, self.step)
                    writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.step)
                over_budget = self._over_budget()
                last = self.step == cfg.steps or over_budget
                if self.step % cfg.val_every == 0 or last:
                    self._validate_and_report(loss, samples / max(elapsed, 1e-9), writer)
                elif self.step % cfg.checkpoint_every == 0:
                    self._save(self.last_val, improved=False)
                if over_budget and self.step < cfg.steps:
                    stopped_early = True
                    break
        finally:
            self.trained_seconds = self.elapsed()
            self._run_started = None
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        elapsed = time.perf_counter() - started
        return TrainResult(
            out_dir=str(self.out_dir),
            step=self.step,
            best_val_esr=self.best_val,
            last_val_esr=self.last_val,
            baseline_val_esr=self.baseline_val,
            best_checkpoint=str(self.best_path) if self.best_path.exists() else None,
            last_checkpoint=str(self.last_path) if self.last_path.exists() else None,
            train_seconds=elapsed,
            samples_per_second=samples / max(elapsed, 1e-9),
            stopped_early=stopped_early,
            history=self.history,
        )

    def _fit(self) -> None:
        """The family's direct fit on the whole training tracks; validated and saved as step 0
        (history entry with ``fit``), not reported to a sweep (it is no training iteration)."""
        from fxdist.data import stream

        t0 = time.perf_counter()
        pairs = [(clean, target) for _, clean, target in stream.iter_tracks(self.manifest, "train")]
        if not pairs:
            raise TrainingError(f"{self.cfg.data.shards}: fit: true, but the training split holds no track")
        log = partial(print, file=sys.stderr) if self.rank == 0 and self.cfg.progress else (lambda *a, **k: None)
        values = self.model.fit(pairs, log=log)
        val, baseline = self.validate()
        self.last_val, self.baseline_val, self.best_val = val, baseline, val
        entry = {"step": 0, "fit": True, "fit_seconds": time.perf_counter() - t0, "val_esr": val,
                 "baseline_val_esr": baseline, "values": values}
        self.history.append(entry)
        self._save(val, improved=True)
        self._append_metrics(entry)
        if self.rank == 0 and self.cfg.progress:
            print(f"fit ({self.model_config['family']}) in {entry['fit_seconds']:.1f} s: validation ESR {val:.6g} "
                  f"(do-nothing {baseline:.4g})", file=sys.stderr, flush=True)

    def _append_metrics(self, entry: dict[str, Any]) -> None:
        """Append a validation entry to metrics.jsonl (rank 0), after its checkpoint is saved."""
        if self.rank == 0:
            with open(self.out_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(entry) + "\n")

    def _validate_and_report(self, loss: float, sps: float, writer) -> None:
        val, baseline = self.validate()
        self.last_val, self.baseline_val = val, baseline
        improved = self.best_val is None or val < self.best_val
        if improved:
            self.best_val = val
        entry = {"step": self.step, "loss": loss, "val_esr": val, "baseline_val_esr": baseline, "samples_per_second": sps,
                 "trained_seconds": round(self.elapsed(), 3)}
        self.history.append(entry)
        self._save(val, improved)
        if writer is not None:
            writer.add_scalar("val/esr", val, self.step)
            writer.add_scalar("val/baseline_esr", baseline, self.step)
        self._append_metrics(entry)
        if self.report is not None:
            self.report({**entry, "best_val_esr": self.best_val}, self.out_dir if self.rank == 0 else None)

    def _writer(self):
        if self.rank != 0:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a dependency; stay usable without it
            return None
        return SummaryWriter(log_dir=str(self.out_dir / "tb"), purge_step=self.step + 1 if self.step else None)

    def _progress_bar(self):
        if not self.cfg.progress or self.rank != 0:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.cfg.steps, initial=self.step, desc=f"train {self.model_config['family']}", unit="step", mininterval=1.0)


def train(cfg: TrainConfig, report: Callable[[dict, Path | None], None] | None = None) -> TrainResult:
    """Train one model as configured; returns where its checkpoints are and how it did."""
    trainer = Trainer(cfg, report)
    try:
        return trainer.run()
    finally:
        trainer.close()


