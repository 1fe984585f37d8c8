"""Peak memory per data-parallel worker, for models that outgrow one 16 GB machine.

    nice -n 10 python benchmarks/memory_per_worker.py [--quick] [--models cnn-5k wavenet-mol24 ...]
        [--global-batch G] [--window T] [--steps 3] [--threads 1] [--workers 1 2 4] [--machine-gib 16]

Models (``fxdist/presets/model/<name>.yaml``):

- ``cnn-5k``: the 2018 study's large-window CNN at the window it could not train in 16 GB,
  5000 samples. Every output sample runs its own 5000-sample window through the conv stack.
  Default: global batch 8 sequences of 5063 samples (64 outputs each), i.e. 512 windows per step.
- ``wavenet-mol24``: the 24-bit WaveNet, ``wavenet-large``'s stacks (RF 4093) with the
  discretized mixture-of-logistics head over the 2^24 levels of 24-bit audio
  (``fxdist/models/mol.py``), trained with the MoL NLL. No 2^24-way softmax is formed: the
  NLL keeps 12 (B, K=10, T) tensors for backward, 1.9 MiB per 4096-output sequence beside the
  layers' 14.2 MiB, so 24 bits cost the head no more than 8 would and the layers dominate.
  DDP wraps ``fxdist.models.wavenet.MolParams`` (forward = forward_params), as ``fxdist.train``
  does for this head.
  Default: global batch 16 sequences of 8188 samples (4096 outputs each, the training default).
- ``wavenet-large`` (regression WaveNet, float32 output, exact on 24-bit PCM; 12% fewer saved
  bytes than ``wavenet-mol24``) can be added with ``--models``; same defaults.

``--global-batch`` and ``--window`` (input samples per sequence) override every model's
defaults. For each model, with ``checkpoint_activations`` off and on, and for N in
``--workers`` (1, 2, 4), N real worker processes are started with ``torch.multiprocessing``
(spawn) on this machine. For N > 1 they form a gloo process group and wrap the model in
``DistributedDataParallel`` (N = 1 trains the bare model, as ``fxdist.train`` does). Each
worker holds global/N sequences (its ``data.batch_size``) of random input and a tanh target
(24-bit quantised for the MoL head). It runs ``--steps`` training steps: forward, the
training loss (pre-emphasised ESR, or the MoL NLL), backward with DDP's all-reduce,
gradient clipping and an Adam step. No data loader runs: batches are built in memory, and
the loader's own bound is separate (``WindowDataset.memory_bound_bytes``).

Memory, per worker, from ``/proc/self/status`` (Linux):

- torch: VmRSS once the interpreter, torch and fxdist are imported.
- base: VmRSS once the process group is up and torch's lazily loaded parts have run on a
  throwaway net (creating an Adam alone imports torch._dynamo and sympy, ~70 MiB), before the
  model and batch are built. Every worker pays it once, whatever the model.
- static: VmRSS after model, DDP, optimizer and batch are built, minus base.
- peak: the peak RSS (VmHWM, reset to the current RSS through ``/proc/self/clear_refs``
  when base is read) over building and the steps, minus base. The table shows the largest
  worker of each run.
- allocator: workers run with ``MALLOC_MMAP_THRESHOLD_=131072``, so glibc serves tensors over
  128 KiB with mmap and returns them to the OS when freed, and RSS follows the live tensors.
  glibc's default raises that threshold up to 32 MiB as large blocks are freed; tensors of a
  few MiB then stay in the heap after they are freed, and the peak grows with the allocator's
  fragmentation (1.2x to 2.7x over two runs here; it hides much of what checkpointing saves). A spot
  check at N = 1 measures glibc's default too (``--no-malloc-check`` skips it; ``--malloc
  glibc`` measures everything with it). The same variable lowers a real CPU run's peak.
- saved (theory): the bytes autograd keeps for backward in one forward + loss pass, counted
  with ``torch.autograd.graph.saved_tensors_hooks`` on one sequence (unique storages)
  and multiplied by the per-rank batch. It leaves out backward's transient gradient
  buffers, the optimizer and allocator slack, so measured peak exceeds it.

Extrapolation to a machine of ``--machine-gib`` GiB with one worker each: per model and
setting, peak - base = fixed + slope x per-rank batch is fitted by least squares to the N
runs (per-rank batches G/1, G/2, G/4). A machine then holds at most
(machine - base@1 - fixed) / slope sequences of this window per step, and N such machines
N times as many. This is an upper bound: the data loader, OS and other processes also need memory.
Fitting three points at small batches and extrapolating far beyond them is a linear model, not
a measurement; the activation memory of these models is linear in the batch.

``--quick``: smaller batches and windows, 2 steps, both models, workers forked from a
forkserver that has torch imported (``--start-method``; spawn otherwise), no allocator spot
check; 15-30 s on 2 shared cores.

A run whose workers have not exited after ``--run-timeout`` seconds (60 with ``--quick``) is
reported as STALLED: the workers print their Python stacks to stderr (faulthandler, on
SIGUSR1) and are killed, and the run starts once more. Results are kept when every rank had
written them before it stalled. Workers free their DDP before ``destroy_process_group``
(``worker``): freed after it, the group's destructor runs from DDP's Reducer holding the GIL
and joins a gloo thread that waits for the GIL to free its last work item, a hang that the
gloo group's own 120 s timeout does not end.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import faulthandler
import gc
import json
import math
import os
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from fxdist.config import load_yaml  # noqa: E402
from fxdist.losses import CombinedLoss, LossConfig  # noqa: E402
from fxdist.models import build_model, mol_nll  # noqa: E402
from fxdist.models.wavenet import MolParams  # noqa: E402
from fxdist.presets import model_dir  # noqa: E402

PRESETS = model_dir()
SR = 48000
MIB = 2**20
HEADER = "PEAK MEMORY PER WORKER"
MMAP_THRESHOLD = 128 * 1024  # bytes; glibc serves larger allocations with mmap and returns them on free
GROUP_TIMEOUT_S = 120  # seconds a worker waits for the others at init and at each collective
# seconds the driver waits for one run's workers to exit (--run-timeout): quick runs take 1-5 s here
RUN_TIMEOUT_S = {"quick": 60, "full": 3600}  # quick: below GROUP_TIMEOUT_S, so a stall is caught here first
# model -> (global batch, window) for a full run and for --quick
DEFAULTS = {
    "cnn-5k": ((8, 5000 + 63), (4, 5000 + 15)),
    "wavenet-mol24": ((16, 4092 + 4096), (4, 4092 + 2048)),
    "wavenet-large": ((16, 4092 + 4096), (4, 4092 + 2048)),
}


@dataclass(frozen=True)
class Setup:
    """One measured configuration (all workers of one run share it)."""

    preset: str
    global_batch: int
    window: int
    checkpoint: bool
    steps: int
    threads: int
    malloc: str = "mmap"  # "mmap": MALLOC_MMAP_THRESHOLD_ fixed (see module docstring); "glibc": glibc's default


# --- inside a worker -------------------------------------------------------------------


def proc_status_kib(key: str) -> int:
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def build_model_for(setup: Setup) -> nn.Module:
    cfg = {**load_yaml(PRESETS / f"{setup.preset}.yaml"), "checkpoint_activations": setup.checkpoint}
    torch.manual_seed(0)
    model = build_model(cfg, source=f"{setup.preset}.yaml")
    model.train()
    return model


def make_batch(model: nn.Module, batch: int, window: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (batch, 1, window) in [-0.5, 0.5), target (batch, 1, window - RF + 1); 24-bit levels for MoL."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, 1, window, generator=gen) - 0.5)
    y = torch.tanh(3 * x[..., model.receptive_field - 1 :])
    if model.output_kind == "mol":
        levels = 2.0 ** (model.cfg.mol_bits - 1)
        y = (y * levels).round().clamp(-levels, levels - 1) / levels
    return x, y


def make_step(model: nn.Module, world: int, x: torch.Tensor, y: torch.Tensor):
    """The training step of fxdist.train (loss, backward, clip 1.0, Adam) as a closure."""
    mol = model.output_kind == "mol"
    module = MolParams(model) if mol else model
    if world > 1:
        module = nn.parallel.DistributedDataParallel(module)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = None if mol else CombinedLoss(LossConfig(), SR)

    def step() -> float:
        if mol:
            loss = mol_nll(module(x), y, bits=model.cfg.mol_bits)
        else:
            pred, _ = module(x)
            loss, _ = loss_fn(pred, y, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss.detach())

    return step


def warm_up(world: int) -> None:
    """Load torch's lazily loaded machinery (optimizer, autograd, checkpoint, conv and pooling
    kernels, gloo all-reduce) on a throwaway net, so it counts in base and not in the model."""
    from torch.utils.checkpoint import checkpoint

    net = nn.Sequential(nn.Conv1d(1, 4, 3, dilation=2), nn.Tanh(), nn.Conv1d(4, 1, 1), nn.Flatten(), nn.Linear(8, 1))
    opt = torch.optim.Adam(net.parameters())
    x = torch.randn(2, 1, 12)
    loss = checkpoint(net, x, use_reentrant=False).square().mean() + nn.functional.max_pool1d(x, 2).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    if world > 1:
        dist.all_reduce(torch.ones(4))


def arm_stack_dump() -> None:
    """Print this process's Python stacks to stderr on SIGUSR1 (the driver's request to a stalled run)."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def worker(rank: int, world: int, setup: Setup, port: int, out_dir: str) -> None:
    """One data-parallel worker: measure base, build, train ``setup.steps`` steps, write rank.json."""
    arm_stack_dump()
    torch.set_num_threads(setup.threads)
    rss_imported = proc_status_kib("VmRSS")
    if world > 1:
        # a bounded wait: a rank that never arrives is an error here, not a test that hangs
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=GROUP_TIMEOUT_S))
    warm_up(world)
    base = proc_status_kib("VmRSS")
    peak_reset = reset_peak()
    model = build_model_for(setup)
    x, y = make_batch(model, setup.global_batch // world, setup.window, seed=1000 + rank)
    step = make_step(model, world, x, y)
    built = proc_status_kib("VmRSS")
    times, losses = [], []
    for _ in range(setup.steps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
    peak = proc_status_kib("VmHWM")
    # DDP's Reducer holds the process group. Were it freed after destroy_process_group, the group's
    # destructor would run from the Reducer's, holding the GIL, and join gloo threads that may
    # need the GIL to free their last work: a deadlock seen in CI. So DDP goes first.
    params = sum(p.numel() for p in model.parameters())
    del step, model
    gc.collect()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    result = {
        "rank": rank, "world": world, "per_rank_batch": int(x.shape[0]), "imported_kib": rss_imported,
        "base_kib": base, "built_kib": built, "peak_kib": peak, "peak_reset": peak_reset,
        "step_seconds": times, "losses": losses, "params": params,
        "outputs_per_sequence": int(y.shape[-1]), "mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
    }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))


# --- in the driver -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def malloc_env(kind: str):
    """Workers started inside inherit MALLOC_MMAP_THRESHOLD_ (kind "mmap") or not ("glibc")."""
    old = os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
    if kind == "mmap":
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    try:
        yield
    finally:
        os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
        if old is not None:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = old


def run_once(setup: Setup, world: int, start_method: str, timeout_s: float) -> tuple[list[dict] | None, str]:
    """Start ``world`` workers for ``setup``; wait up to ``timeout_s`` for them to exit.

    Returns (the rank.json results, "") when every rank wrote its results, else (None, why).
    Workers still running at the deadline are asked for their Python stacks (SIGUSR1, printed
    to stderr by faulthandler) and killed. A run whose ranks all wrote their results but did not
    exit (a hang in shutdown) keeps its results, and ``why`` says so.
    """
    with tempfile.TemporaryDirectory(prefix="fxdist-mem-") as out, malloc_env(setup.malloc):
        ctx = mp.start_processes(worker, args=(world, setup, free_port(), out), nprocs=world, join=False,
                                 start_method=start_method)
        deadline = time.monotonic() + timeout_s
        while not ctx.join(timeout=1.0):  # raises ProcessRaisedException / ProcessExitedException on a failed rank
            if time.monotonic() > deadline:
                break
        stalled = [(rank, p) for rank, p in enumerate(ctx.processes) if p.is_alive()]
        for _, p in stalled:
            os.kill(p.pid, signal.SIGUSR1)
        time.sleep(2.0 if stalled else 0.0)  # let faulthandler write the stacks
        for _, p in stalled:
            p.kill()
            p.join()
        wrote = [r for r in range(world) if Path(out, f"rank{r}.json").exists()]
        res = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in wrote]
    if not stalled:
        if len(wrote) != world:
            raise SystemExit(f"{setup.preset} N={world}: ranks {sorted(set(range(world)) - set(wrote))} exited 0 "
                             f"without writing their results")
        return res, ""
    why = (f"ranks {[r for r, _ in stalled]} of {world} still running after {timeout_s:g} s "
           f"(ranks {wrote} had written their results); their Python stacks are on stderr")
    return (res, why) if len(wrote) == world else (None, why)


def run(setup: Setup, world: int, start_method: str, timeout_s: float) -> list[dict]:
    """``run_once``, started again once if it stalls: a stall is reported, and twice is an error."""
    res, why = run_once(setup, world, start_method, timeout_s)
    if why:
        print(f"  STALLED {setup.preset} ckpt {'on' if setup.checkpoint else 'off'} N={world}: {why}; "
              f"{'results kept' if res is not None else 'starting the run again'}", flush=True)
    if res is None:
        res, why = run_once(setup, world, start_method, timeout_s)
        if res is None:
            raise SystemExit(f"{setup.preset} N={world} stalled twice: {why}")
    want = str(MMAP_THRESHOLD) if setup.malloc == "mmap" else None
    if any(r["mmap_threshold"] != want for r in res):
        raise SystemExit(f"workers ran with MALLOC_MMAP_THRESHOLD_={res[0]['mmap_threshold']}, wanted {want} "
                         f"(a forkserver keeps the environment it started with)")
    return res


def saved_bytes_per_sequence(setup: Setup) -> int:
    """Bytes autograd keeps for backward over one sequence's forward + loss (unique storages)."""
    model = build_model_for(setup)
    x, y = make_batch(model, 1, setup.window, seed=0)
    sizes: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        sizes[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if model.output_kind == "mol":
            mol_nll(model.forward_params(x), y, bits=model.cfg.mol_bits)
        else:
            CombinedLoss(LossConfig(), SR)(model(x)[0], y, None)
    return sum(sizes.values())


@dataclass
class Row:
    setup: Setup
    world: int
    per_rank_batch: int
    imported: float  # MiB: RSS with interpreter, torch and fxdist imported, largest worker
    base: float  # MiB, largest worker
    static: float
    peak: float  # peak - base
    peak_rss: float  # peak including base
    total_rss: float  # sum of peak RSS over the workers
    saved: float  # theory, MiB
    step_seconds: float  # median over steps, slowest worker
    outputs: int
    params: int
    peak_reset: bool


def measure(setup: Setup, world: int, saved_per_seq: int, start_method: str, timeout_s: float) -> Row:
    res = run(setup, world, start_method, timeout_s)
    kib = 1024 / MIB
    worst = max(res, key=lambda r: r["peak_kib"] - r["base_kib"])
    steps = [sorted(r["step_seconds"])[len(r["step_seconds"]) // 2] for r in res]
    return Row(
        setup=setup, world=world, per_rank_batch=worst["per_rank_batch"],
        imported=max(r["imported_kib"] for r in res) * kib,
        base=max(r["base_kib"] for r in res) * kib,
        static=max(r["built_kib"] - r["base_kib"] for r in res) * kib,
        peak=(worst["peak_kib"] - worst["base_kib"]) * kib,
        peak_rss=max(r["peak_kib"] for r in res) * kib,
        total_rss=sum(r["peak_kib"] for r in res) * kib,
        saved=saved_per_seq * worst["per_rank_batch"] / MIB,
        step_seconds=max(steps), outputs=worst["outputs_per_sequence"], params=worst["params"],
        peak_reset=all(r["peak_reset"] for r in res),
    )


def fit(rows: list[Row]) -> tuple[float, float]:
    """Least squares peak = fixed + slope * per-rank batch over the runs: (fixed, slope) in MiB."""
    xs = [r.per_rank_batch for r in rows]
    ys = [r.peak for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((a - mx) ** 2 for a in xs)
    if var == 0:
        return my, float("nan")
    slope = sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / var
    return my - slope * mx, slope


def print_table(rows: list[Row]) -> None:
    print(f"\n{HEADER} (MiB per worker process; largest worker of each run)")
    print("  torch = RSS with interpreter, torch and fxdist imported; base = that plus the process group and")
    print("  torch's lazily loaded kernels (warm-up on a throwaway net), before model and batch are built;")
    print("  static = model, optimizer, DDP and batch built, - base; peak = peak RSS over the steps - base;")
    print("  saved = autograd-saved bytes for backward (theory); ratio = peak at N / peak at 1 (same model,")
    print("  setting and global batch); peakRSS = peak with base; all N = peakRSS summed over the N workers")
    print(f"{'model':14s} {'ckpt':>4s} {'N':>2s} {'B/rank':>6s} {'torch':>5s} {'base':>5s} {'static':>6s} {'peak':>7s} "
          f"{'saved':>7s} {'ratio':>6s} {'peakRSS':>7s} {'all N':>6s} {'s/step':>6s}")
    one = {}
    for r in rows:
        key = (r.setup.preset, r.setup.checkpoint)
        if r.world == 1:
            one[key] = r.peak
        ratio = f"{r.peak / one[key]:6.2f}" if key in one and one[key] > 0 else f"{'-':>6s}"
        print(f"{r.setup.preset:14s} {'on' if r.setup.checkpoint else 'off':>4s} {r.world:2d} {r.per_rank_batch:6d} "
              f"{r.imported:5.0f} {r.base:5.0f} {r.static:6.1f} {r.peak:7.1f} {r.saved:7.1f} {ratio} {r.peak_rss:7.0f} "
              f"{r.total_rss:6.0f} {r.step_seconds:6.2f}")


def malloc_note(kind: str) -> str:
    if kind == "glibc":
        return "glibc's default malloc (mmap threshold growing to 32 MiB; freed tensors may stay in the heap)"
    return (f"MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}: tensors over 128 KiB are mmapped and returned to the OS "
            f"when freed, so RSS follows the live tensors (set it for CPU training too)")


def print_malloc_check(checks: list[tuple[Row, Row]]) -> None:
    if not checks:
        return
    print(f"\nALLOCATOR SPOT CHECK (N=1, peak - base in MiB): MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD} vs glibc's default")
    print(f"{'model':14s} {'ckpt':>4s} {'B/rank':>6s} {'threshold':>9s} {'glibc':>7s} {'glibc/thr':>9s}")
    for row, glibc in checks:
        print(f"{row.setup.preset:14s} {'on' if row.setup.checkpoint else 'off':>4s} {row.per_rank_batch:6d} "
              f"{row.peak:9.1f} {glibc.peak:7.1f} {glibc.peak / row.peak:9.2f}")


def print_extrapolation(rows: list[Row], machine_gib: float) -> None:
    machine = machine_gib * 1024  # MiB
    print(f"\nEXTRAPOLATION to {machine_gib:g} GiB machines, one worker per machine "
          "(peak - base = fixed + slope x per-rank batch, least squares over the runs above)")
    print(f"{'model':14s} {'ckpt':>4s} {'window':>6s} {'fixed':>7s} {'MiB/seq':>8s} {'kB/output':>9s} "
          f"{'max B/machine':>13s}   global batch that fits on 1 / 2 / 4 / 8 machines")
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        groups.setdefault((r.setup.preset, r.setup.checkpoint), []).append(r)
    limits = {}
    for (preset, ckpt), rs in groups.items():
        fixed, slope = fit(rs)
        r1 = min(rs, key=lambda r: r.world)
        growth = slope * (max(r.per_rank_batch for r in rs) - min(r.per_rank_batch for r in rs))
        kb_out = slope * MIB / r1.outputs / 1e3
        head = f"{preset:14s} {'on' if ckpt else 'off':>4s} {r1.setup.window:6d} {fixed:7.1f} {slope:8.2f} {kb_out:9.1f}"
        if not math.isfinite(slope) or growth < 4.0:
            lo, hi = min(r.per_rank_batch for r in rs), max(r.per_rank_batch for r in rs)
            print(f"{head} {'(flat)':>13s}   peak grew < 4 MiB from per-rank batch {lo} to {hi}: at this window "
                  f"compute, not memory, limits the batch")
            limits[(preset, ckpt)] = None
            continue
        b_max = int((machine - r1.base - fixed) // slope)
        limits[(preset, ckpt)] = b_max
        fits = " / ".join(str(n * b_max) for n in (1, 2, 4, 8))
        print(f"{head} {b_max:13d}   {fits}")
    print()
    for (preset, ckpt), b_max in limits.items():
        if ckpt or b_max is None:
            continue
        r1 = min(groups[(preset, ckpt)], key=lambda r: r.world)
        g, out = r1.setup.global_batch, r1.outputs
        need = r1.base + fit(groups[(preset, ckpt)])[0] + fit(groups[(preset, ckpt)])[1] * g
        print(f"{preset}: {out} outputs per sequence of {r1.setup.window} samples. One {machine_gib:g} GiB machine "
              f"trains a global batch of up to {b_max} sequences ({b_max * out} output samples) per step; "
              f"this run's {g} needs ~{need / 1024:.2f} GiB at 1 worker.")
        for target in sorted({2 * b_max, 4 * b_max, 10 * b_max}):
            print(f"  a global batch of {target} sequences needs {math.ceil(target / b_max)} machines "
                  f"(data.batch_size {math.ceil(target / math.ceil(target / b_max))} per worker)", end="")
            on = limits.get((preset, True), "absent")
            if on is None:
                print(", or 1 machine with checkpoint_activations (flat above)")
            elif isinstance(on, int):
                print(f", or {math.ceil(target / on)} with checkpoint_activations")
            else:
                print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batches and windows, 2 steps (< 1 min)")
    parser.add_argument("--models", nargs="+", default=["cnn-5k", "wavenet-mol24"], choices=sorted(DEFAULTS))
    parser.add_argument("--global-batch", type=int, default=None, help="sequences per step over all workers (default per model)")
    parser.add_argument("--window", type=int, default=None, help="input samples per sequence (default per model)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per worker")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="data-parallel worker counts")
    parser.add_argument("--checkpoint", nargs="+", choices=["off", "on"], default=["off", "on"],
                        help="checkpoint_activations settings to measure")
    parser.add_argument("--start-method", choices=["spawn", "forkserver"], default=None,
                        help="how workers start: spawn (default; a fresh interpreter each, as torchrun or Ray "
                             "start them) or forkserver (forked from one process with torch imported; --quick's default)")
    parser.add_argument("--malloc", choices=["mmap", "glibc"], default="mmap",
                        help=f"mmap: workers run with MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD} (default); glibc: glibc's "
                             "default allocator settings")
    parser.add_argument("--no-malloc-check", action="store_true",
                        help="skip the spot check of glibc's default allocator at N=1 (always skipped with --quick)")
    parser.add_argument("--run-timeout", type=float, default=None,
                        help=f"seconds one run's workers may take before their stacks are dumped and the run is started "
                             f"again, once (default {RUN_TIMEOUT_S['quick']} with --quick, {RUN_TIMEOUT_S['full']} otherwise)")
    parser.add_argument("--machine-gib", type=float, default=16.0, help="memory of one machine for the extrapolation")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = 2
    if args.run_timeout is None:
        args.run_timeout = RUN_TIMEOUT_S["quick" if args.quick else "full"]
    args.start_method = args.start_method or ("forkserver" if args.quick else "spawn")
    # A forkserver's children inherit the environment it started with: no per-run allocator switch.
    check_malloc = args.malloc == "mmap" and not (args.quick or args.no_malloc_check or args.start_method == "forkserver")
    if args.start_method == "forkserver":
        os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
        if args.malloc == "mmap":
            os.environ["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    if args.start_method == "forkserver":
        mp.set_forkserver_preload(["torch", "torch.distributed", "torch._dynamo", "fxdist.models", "fxdist.losses"])
    workers = sorted(set(args.workers))
    if workers[0] != 1:
        raise SystemExit("--workers must include 1 (ratios are against one worker)")
    if not sys.platform.startswith("linux"):
        raise SystemExit("peak RSS is read from /proc/self/status: Linux only")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}; workers are {args.start_method} processes (gloo + DDP for N > 1), {args.threads} torch thread(s) each, "
          f"{args.steps} training steps each")
    rows: list[Row] = []
    for preset in args.models:
        batch, window = DEFAULTS[preset][1 if args.quick else 0]
        batch = args.global_batch or batch
        window = args.window or window
        bad = [n for n in workers if batch % n]
        if bad:
            raise SystemExit(f"--global-batch {batch} is not divisible by {bad} workers")
        for ckpt in args.checkpoint:
            setup = Setup(preset, batch, window, ckpt == "on", args.steps, args.threads, args.malloc)
            saved = saved_bytes_per_sequence(setup)
            for n in workers:
                t0 = time.perf_counter()
                row = measure(setup, n, saved, args.start_method, args.run_timeout)
                rows.append(row)
                print(f"  measured {preset} ckpt {ckpt} N={n}: B/rank {row.per_rank_batch}, peak-base {row.peak:.1f} MiB "
                      f"(base {row.base:.0f}), {row.step_seconds:.2f} s/step, run {time.perf_counter() - t0:.1f} s", flush=True)
    checks = []
    if check_malloc:
        print("allocator spot check: one worker, glibc's default malloc")
        for row in [r for r in rows if r.world == 1]:
            glibc = measure(dataclasses.replace(row.setup, malloc="glibc"), 1, 0, args.start_method, args.run_timeout)
            checks.append((row, glibc))
            print(f"  measured {row.setup.preset} ckpt {'on' if row.setup.checkpoint else 'off'} N=1 glibc default: "
                  f"peak-base {glibc.peak:.1f} MiB", flush=True)
    print("\nsetups: " + "; ".join(sorted({f"{r.setup.preset}: global batch {r.setup.global_batch} x window "
                                           f"{r.setup.window} ({r.outputs} outputs/seq), {r.params} params"
                                           for r in rows})))
    if not all(r.peak_reset for r in rows):
        print("note: /proc/self/clear_refs was not writable; peak is the lifetime peak RSS (includes start-up)")
    print(f"allocator: workers ran with {malloc_note(args.malloc)}")
    print_table(rows)
    print_malloc_check(checks)
    print_extrapolation(rows, args.machine_gib)
    load = os.getloadavg()
    print(f"\nload average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; total wall {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
