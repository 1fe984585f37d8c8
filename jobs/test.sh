#!/usr/bin/env bash
# Install what the tests need (see jobs/setup.sh), then run the whole test suite, slow
# tests included. Extra arguments go to pytest (e.g. -m "not slow", -k stream).
set -euo pipefail
cd "$(dirname "$0")/.."
bash jobs/setup.sh
exec .venv/bin/python -m pytest "$@"
