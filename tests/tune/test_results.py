"""Reading a sweep back: a folder without an experiment is refused by name."""

from __future__ import annotations

import pytest

from fxdist.errors import ClusterError
from fxdist.tune import best, resume, status


def test_no_experiment_at_path(tmp_path):
    for call in (resume, status, best):
        with pytest.raises(ClusterError, match="no Ray Tune experiment here"):
            call(tmp_path)
