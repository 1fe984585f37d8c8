"""Fixtures for the local multi-node SLURM cluster (cluster/local_slurm.py).

The cluster needs root with CAP_NET_ADMIN + CAP_SYS_ADMIN and the slurm/munge/tini
packages (cluster/install-slurm.sh); elsewhere every test here skips with the reason.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_local_slurm():
    """Import cluster/local_slurm.py (not part of the fxdist package) as ``local_slurm``."""
    if "local_slurm" in sys.modules:
        return sys.modules["local_slurm"]
    spec = importlib.util.spec_from_file_location("local_slurm", REPO / "cluster" / "local_slurm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_slurm"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def local_slurm_module():
    """The harness module, or a skip saying why it cannot run on this machine."""
    module = load_local_slurm()
    problem = module.capability_problem()
    if problem:
        pytest.skip(problem)
    return module


@pytest.fixture(scope="session")
def local_slurm(local_slurm_module):
    """A 3-node cluster (2 CPUs each, partition debug) with SLURM_CONF set in os.environ.

    Torn down at the end of the session, and by atexit if the session dies first.
    """
    cluster = local_slurm_module.LocalSlurm(nodes=3)
    atexit.register(cluster.down)
    old = os.environ.get("SLURM_CONF")
    try:
        cluster.up()
        os.environ.update(cluster.env())
        yield cluster
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        cluster.down()
        atexit.unregister(cluster.down)
