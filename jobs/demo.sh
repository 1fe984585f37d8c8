#!/usr/bin/env bash
# Install the fxdist runtime (jobs/setup.sh runtime: venv, torch, fxdist; no test tools) and
# run the main job on the embedded default: generate signals, render an effect, shard to
# Parquet, train on local Ray, report ESR.
# Extra arguments go to `fxdist pipeline` (e.g. --set train.steps=2000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash jobs/setup.sh runtime
exec .venv/bin/fxdist pipeline configs/pipeline/default.yaml "$@"
