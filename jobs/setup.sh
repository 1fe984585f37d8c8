#!/usr/bin/env bash
# Set up a machine for fxdist: a venv at .venv with fxdist installed editable. Safe to rerun;
# later runs install nothing new.
#   bash jobs/setup.sh runtime    # what fxdist runs on: venv, torch, fxdist (jobs/demo.sh)
#   bash jobs/setup.sh            # everything the tests need: the runtime, the test extras,
#                                 # system packages (when root and missing) and SLURM
#   FXDIST_NO_APT=1 bash ...      # skip system packages and SLURM
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-test}
case "$MODE" in
  runtime|test) ;;
  *) echo "setup: unknown mode '$MODE' (runtime or test)" >&2; exit 2 ;;
esac

if [[ "$MODE" == test && -z "${FXDIST_NO_APT:-}" ]]; then
  # sox + LADSPA plugins (external-command effects, tests of other hosts), chromium +
  # chromedriver (the ABX listening test is tested in a real headless browser).
  APT_PACKAGES=(sox libsox-fmt-all swh-plugins chromium chromium-driver)
  # The third-party effect suite (benchmarks/thirdparty/): LADSPA collections, GM soundfont + player.
  APT_PACKAGES+=(caps tap-plugins cmt guitarix-ladspa ladspa-sdk fluidsynth fluid-soundfont-gm)
  if command -v apt-get >/dev/null; then
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
      dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
      if [[ $(id -u) -eq 0 ]]; then
        echo "setup: installing system packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
      else
        echo "setup: not root, cannot install ${missing[*]}; tests that need them will skip with that reason"
      fi
    fi
  fi
  # SLURM (slurmctld, slurmd, client, munge, tini) for the local cluster the tests start.
  bash cluster/install-slurm.sh
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
pip_install() {
  .venv/bin/pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true
}
# torch==2.13.0 first, so nothing later pulls a multi-GB CUDA build.
pip_install torch==2.13.0
if [[ "$MODE" == runtime ]]; then
  pip_install -e .
else
  pip_install -e ".[test]"
  # Neural Amp Modeler's own loader checks our .nam exports in the tests. --no-deps: its full
  # install would replace torch and pull transformers; loading needs only these.
  pip_install --no-deps neural-amp-modeler==0.13.0 wavio==0.0.9 \
    pytorch-lightning==2.6.1 lightning-utilities==0.15.3 torchmetrics==1.9.0
fi
.venv/bin/python -c "import fxdist, torch, ray, pedalboard; print(f'setup: fxdist {fxdist.__version__}, torch {torch.__version__}, ray {ray.__version__}')"
