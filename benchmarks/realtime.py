"""Real-time factor of every model preset on ONE CPU core, through fxdist's streaming path and ONNX Runtime.

    python benchmarks/realtime.py [--quick] [--presets wavenet-small lstm-small ...] [--seconds 0.5] [--device cuda]

For each preset (fxdist/presets/model/*.yaml, weights as built) and block size (64, 256, 2048 at
48 kHz) it streams blocks of noise-like audio for about ``--seconds`` of wall time (best of
3 rounds):

- torch: ``fxdist.realtime.Streamer(model, scripted=True)`` (TorchScript streaming module,
  per-layer histories; ``cnn`` runs eager, the naive window rerun), ``torch.set_num_threads(1)``;
- onnxruntime: the ``fxdist export --format onnx`` block function, one intra-op thread.

Real-time factor (RTF) = seconds of audio per second of compute; implied MAC/s = MACs/sample
x 48000 x RTF. Target: the default presets ``wavenet-small`` and ``lstm-small`` at
>= 10x real time at block 256; PASS/FAIL is printed per path. ``--quick`` (< 1 min) runs only
those two presets at block 256. Timings on a shared machine vary: the load average is printed.

``--device cuda``: the torch path streams on the GPU (blocks and state there, each block timed
to a CUDA synchronise); the GPU, driver, torch and CUDA versions are printed above the table.
ONNX Runtime stays on one CPU core.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fxdist.export import ExportMetadata, onnx_initial_state, onnx_session, write_onnx
from fxdist.models import build_model_from_yaml
from fxdist.presets import model_dir
from fxdist.realtime import Streamer

SR = 48000
PRESETS = model_dir()
TARGET_PRESETS = ("wavenet-small", "lstm-small")
TARGET_BLOCK, TARGET_RTF = 256, 10.0


def time_blocks(step, block: int, seconds: float, rounds: int = 3) -> float:
    """Real-time factor of ``step()`` (one block of ``block`` samples): the best of ``rounds``
    rounds of ~``seconds / rounds`` each, so a burst of load from other processes on a shared
    machine does not decide the figure."""
    step()  # warm-up (TorchScript profiling runs, ORT allocations)
    step()
    best = 0.0
    for _ in range(rounds):
        n, start = 0, time.perf_counter()
        while True:
            step()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / rounds and n >= 2:
                break
        best = max(best, n * block / SR / elapsed)
    return best


def torch_rtf(model, block: int, seconds: float, device: str = "cpu") -> float:
    streamer = Streamer(model, scripted=model.family != "cnn", device=device)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 1, block)).astype(np.float32) * 0.1).to(device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def step():
        streamer(x)
        sync()

    with torch.inference_mode():
        return time_blocks(step, block, seconds)


def onnx_rtf(path: Path, block: int, seconds: float) -> float:
    sess = onnx_session(path, threads=1)
    state = onnx_initial_state(path)
    names = [f"state_in_{i}" for i in range(len(state))]
    x = np.random.default_rng(0).standard_normal((1, 1, block)).astype(np.float32) * 0.1

    def step():
        nonlocal state
        _, *state = sess.run(None, {"x": x, **dict(zip(names, state))})

    return time_blocks(step, block, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="target presets at block 256 only (< 1 min)")
    parser.add_argument("--presets", nargs="*", help="preset names (default: every fxdist/presets/model/*.yaml)")
    parser.add_argument("--blocks", nargs="*", type=int, default=[64, 256, 2048])
    parser.add_argument("--seconds", type=float, default=None, help="wall time per measurement (default 1.5; quick 0.9)")
    parser.add_argument("--device", default="cpu", help="where the torch path streams: cpu or cuda")
    args = parser.parse_args(argv)
    if args.device != "cpu":
        if not torch.cuda.is_available():
            print(f"--device {args.device}: torch {torch.__version__} finds no CUDA device", file=sys.stderr)
            return 2
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from gpu_info import device_label

        print(f"torch path on {device_label(args.device)}")
    torch.set_num_threads(1)
    names = args.presets or (list(TARGET_PRESETS) if args.quick else sorted(p.stem for p in PRESETS.glob("*.yaml")))
    blocks = [TARGET_BLOCK] if args.quick else args.blocks
    seconds = args.seconds or (0.9 if args.quick else 1.5)
    print(f"one core (torch threads {torch.get_num_threads()}, onnxruntime intra-op 1), {SR} Hz; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    header = (f"{'preset':<14} {'params':>8} {'MACs/smp':>9} {'block':>6} {'torch RTF':>10} {'torch MAC/s':>12} "
              f"{'ORT RTF':>9} {'ORT MAC/s':>11}")
    print(header)
    print("-" * len(header))
    results: dict[tuple[str, int], tuple[float, float | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            model = build_model_from_yaml(PRESETS / f"{name}.yaml").eval()
            macs = model.macs_per_sample()
            onnx_path = None
            if model.family != "cnn":
                onnx_path = Path(tmp) / f"{name}.onnx"
                write_onnx(model, onnx_path, ExportMetadata(name=name, sample_rate=SR))
            for block in blocks:
                t = torch_rtf(model, block, seconds, args.device)
                o = onnx_rtf(onnx_path, block, seconds) if onnx_path else None
                results[(name, block)] = (t, o)
                ort_cols = f"{o:>9.1f} {macs * SR * o:>11.3g}" if o is not None else f"{'-':>9} {'-':>11}"
                torch_cols = f"{t:>10.2f} {macs * SR * t:>12.3g}"
                print(f"{name:<14} {model.num_parameters():>8} {macs:>9} {block:>6} {torch_cols} {ort_cols}", flush=True)
    print()
    ok_all = True
    for name in TARGET_PRESETS:
        if (name, TARGET_BLOCK) not in results:
            continue
        t, o = results[(name, TARGET_BLOCK)]
        best = max(t, o or 0.0)
        ok_all &= best >= TARGET_RTF
        print(f"target {name} >= {TARGET_RTF:g}x at block {TARGET_BLOCK}: torch {t:.1f}x {_verdict(t)}, "
              f"onnxruntime {o or 0:.1f}x {_verdict(o)} -> best {best:.1f}x {_verdict(best)}")
    return 0 if ok_all else 1


def _verdict(rtf: float | None) -> str:
    return "PASS" if rtf is not None and rtf >= TARGET_RTF else "FAIL"


if __name__ == "__main__":
    sys.exit(main())
