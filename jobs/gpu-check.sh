#!/bin/bash
# Everything fxdist measures on a GPU, in one run of under 10 minutes on one H200:
# the gpu-marked tests, the trials-per-GPU packing benchmark, and the GPU columns of the
# training-throughput and real-time benchmarks. Results go to $OUT (the device tool's
# folder), else ./gpu-results: env.txt, gpu-tests.txt, gpu-packing.txt,
# train-throughput-cuda.txt, realtime-cuda.txt, realtime-cpu.txt, summary.txt.
#
# On this workplace's GPU machine (nvidia-h200, see docs/gpu.md): nothing outside it can be
# reached, not even PyPI, and its python3 already holds a CUDA build of torch (2.11.0+cu130
# when last read), not the 2.13.0 pyproject.toml pins. So fxdist runs from this checkout
# (PYTHONPATH) on that torch, and its other dependencies come as wheels carried in .whl/,
# built here first:
#   bash jobs/gpu-wheels.sh
#   device run: command "bash jobs/gpu-check.sh", carry [".whl"], timeout_s 600
# Elsewhere (a GPU node with a network): with only the CPU build of torch present, it
# installs torch==2.13.0 from PyPI, whose Linux x86_64 wheel is the CUDA build (with its
# nvidia-* wheels, several GB); pass PY=/path/to/python to choose the interpreter.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-results}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
started=$(date +%s)
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0 FXDIST_REQUIRE_GPU=1

note() { echo "$*" | tee -a "$SUMMARY"; }

# The interpreter: $PY, else the first of python3 / .venv that has a CUDA torch, else python3.
if [ -z "${PY:-}" ]; then
  for cand in python3 .venv/bin/python; do
    if command -v "$cand" >/dev/null && "$cand" -c "import torch, sys; sys.exit(torch.version.cuda is None)" 2>/dev/null; then
      PY=$cand; break
    fi
  done
  PY=${PY:-python3}
fi
if ! "$PY" -c "import torch, sys; sys.exit(torch.version.cuda is None)" 2>/dev/null; then
  # pip counts an installed 2.13.0+cpu as 2.13.0: force the reinstall, from PyPI, not a local wheel folder.
  note "torch in $PY is missing or CPU-only; installing torch==2.13.0 (the CUDA build PyPI serves for Linux)"
  "$PY" -m pip install -q --force-reinstall --no-cache-dir --index-url https://pypi.org/simple "torch==2.13.0" \
    || { note "FAIL: cannot install the CUDA build of torch here (no network?)"; exit 3; }
fi

# fxdist's other dependencies: the carried wheels, into a site folder of this run.
SITE=${SITE:-/tmp/fxdist-site}
if [ -d .whl ]; then
  mkdir -p "$SITE"
  pipi() { "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$@"; }
  if ! pipi .whl/*.whl; then  # one at a time, so one wheel that does not fit leaves the others installed
    for wheel in .whl/*.whl; do pipi "$wheel" || note "WARN: $wheel does not install with $PY"; done
  fi
  for tarball in .whl/*-slim.tar.xz; do
    [ -e "$tarball" ] && tar -C "$SITE" -xJf "$tarball"
  done
fi
export PYTHONPATH=$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}

{
  date -u
  nvidia-smi || true
  "$PY" - <<'PYEOF'
import importlib, sys
import torch
print(f"python {sys.version.split()[0]} at {sys.executable}")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"device {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
for name in ("fxdist", "numpy", "ray", "librosa", "soundfile", "pedalboard", "auraloss", "pyarrow", "numba", "onnxruntime"):
    try:
        mod = importlib.import_module(name)
        print(f"{name} {getattr(mod, '__version__', '?')}")
    except Exception as exc:
        print(f"{name} MISSING: {type(exc).__name__}: {exc}")
PYEOF
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  note "FAIL: torch sees no CUDA device (env.txt)"; exit 3
fi
if ! "$PY" -c "import fxdist.train, tests.datasets" 2>>"$OUT/env.txt"; then
  note "FAIL: fxdist does not import (missing dependencies? build .whl/ with jobs/gpu-wheels.sh and carry it)"; exit 3
fi

# step NAME SECONDS FILE COMMAND...: run with a time limit, output to FILE, status to the summary.
step() {
  local name=$1 limit=$2 file=$3; shift 3
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$file" 2>&1
  local rc=$?
  note "$name: exit $rc in $(( $(date +%s) - t0 )) s (limit $limit s) -> $file"
  tail -n 25 "$OUT/$file"
  return $rc
}

step "gpu tests" 250 gpu-tests.txt "$PY" -m pytest tests/gpu -m gpu -q -rs -p no:cacheprovider --timeout 240
step "gpu packing (ray)" 170 gpu-packing.txt "$PY" benchmarks/gpu_packing.py --packing 1 2 4 8 --rounds 1
packing_rc=$?
# Ray failed before its table (it may not start in this sandbox): the same trials as plain
# processes, in the time left over for it (the last three steps need 100 s).
spare=$(( 570 - ($(date +%s) - started) - 100 ))
if [ "$packing_rc" -ne 0 ] && ! grep -q "CAPTURES PER GPU-HOUR" "$OUT/gpu-packing.txt" && [ "$spare" -ge 45 ]; then
  mv "$OUT/gpu-packing.txt" "$OUT/gpu-packing-ray-failed.txt"
  step "gpu packing (processes)" $(( spare < 120 ? spare : 120 )) gpu-packing.txt "$PY" benchmarks/gpu_packing.py --packing 1 2 4 8 --rounds 1 \
    --runner processes --skip-saturation
  tail -n 40 "$OUT/gpu-packing-ray-failed.txt" >> "$OUT/gpu-packing.txt"
  rm -f "$OUT/gpu-packing-ray-failed.txt"
fi
step "train throughput on cuda" 50 train-throughput-cuda.txt "$PY" benchmarks/train_throughput.py --quick --device cuda
step "realtime on cuda" 25 realtime-cuda.txt "$PY" benchmarks/realtime.py --quick --device cuda
step "realtime on cpu" 25 realtime-cpu.txt "$PY" benchmarks/realtime.py --quick
note "total $(( $(date +%s) - started )) s"
