#!/bin/bash
# Wheels for the GPU machine, fetched HERE (the GPU machine reaches no network, not even PyPI).
#
#   bash jobs/gpu-wheels.sh       # -> .whl/: wheels + Ray unpacked and repacked (about 40 MB, 2-3 min of xz)
#
# The device image (docs/gpu.md) has Python 3.12 with a CUDA build of torch, numpy, scipy,
# pyarrow, numba, onnx, onnxruntime, matplotlib, tensorboard, pytest ...; it lacks the rest of
# fxdist's dependencies, listed below at the versions this checkout's .venv holds. A call to
# the device carries at most 64 MiB, and the Ray wheel alone is about 78 MB: its files go as
# .whl/ray-VERSION-slim.tar.xz (about 29 MB), without the Java jars, the dashboard's web client
# and RLlib, none of which a local Ray with the dashboard off uses; jobs/gpu-check.sh unpacks
# it into its site folder. .whl/ is ignored by git (.git/info/exclude).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# fxdist's dependencies missing from the device image (their own dependencies included).
MISSING=(annotated-types audioread auraloss cffi decorator jsonschema jsonschema-specifications librosa pedalboard
         platformdirs pooch pycparser pydantic pydantic-core pyloudnorm referencing rpds-py soundfile soxr submitit
         tensorboardx typing-inspection tzdata)
pinned() { "$PY" -c "import importlib.metadata as m, sys; print(f'{sys.argv[1]}=={m.version(sys.argv[1])}')" "$1"; }
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl
specs=()
for name in "${MISSING[@]}"; do specs+=("$(pinned "$name")"); done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" -d .whl "${specs[@]}"
ray=$(pinned ray)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" -d "$work" "$ray"
mkdir "$work/files"
(cd "$work/files" && unzip -q "$work"/ray-*.whl && rm -rf ray/jars ray/dashboard/client/build ray/rllib)
tar -C "$work/files" -cf - . | xz -T0 -6 > ".whl/ray-${ray#ray==}-slim.tar.xz"
du -sh .whl
