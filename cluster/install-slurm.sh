#!/usr/bin/env bash
# Install the system packages the local SLURM cluster harness needs (cluster/local_slurm.py):
# slurmctld slurmd slurm-client munge tini. Installs only what is missing, only as root.
# Safe to rerun; a rerun with everything present installs nothing and touches no package list.
#   bash cluster/install-slurm.sh
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge tini)

if ! command -v apt-get >/dev/null; then
  echo "install-slurm: no apt-get here; install ${PACKAGES[*]} by hand (the cluster tests will skip with the reason)" >&2
  exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-slurm: not root, cannot install ${missing[*]}; the cluster tests will skip with that reason" >&2
  exit 0
fi

echo "install-slurm: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
# policy-rc.d keeps the package scripts from starting system-wide slurmctld/slurmd/munge
# daemons: the harness runs its own private ones in namespaces. The lock timeout waits for
# another apt-get (a parallel setup) instead of failing.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  created_policy=1
fi
trap 'if [[ $created_policy -eq 1 ]]; then rm -f "$policy"; fi' EXIT
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-slurm: $(slurmctld -V 2>/dev/null || echo 'slurmctld missing after install')"
