#!/usr/bin/env bash
# Install fxdist (see jobs/setup.sh) and run the main job on the embedded default:
# generate signals, render an effect, shard to Parquet, train on local Ray, report ESR.
# Extra arguments go to `fxdist pipeline` (e.g. --set train.steps=2000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash jobs/setup.sh
exec .venv/bin/fxdist pipeline configs/pipeline/default.yaml "$@"
