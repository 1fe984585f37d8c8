"""The sbatch script submitit would write for an executor, for dry runs and golden files.

submitit's public API submits but does not show the script first; this module is the one
place that reads submitit internals to render it. Written for submitit 1.5.x (1.5.4), the
range pyproject.toml pins; tests/slurm/test_sbatch.py checks it against the installed
version, including that it matches the file submitit hands to ``sbatch``.
"""

from __future__ import annotations


def sbatch_script(executor, map_count: int | None = None, dependency: str | None = None) -> str:
    """The batch script ``executor`` (a ``submitit.AutoExecutor`` on SLURM or a ``SlurmExecutor``)
    would submit: for one job, or with ``map_count`` for an array of that many tasks
    (``--array=0-<n-1>%<parallelism>``); ``dependency`` adds ``--dependency``."""
    from submitit.slurm.slurm import _make_sbatch_string

    inner = getattr(executor, "_executor", executor)  # AutoExecutor wraps the SlurmExecutor
    params = dict(inner.parameters)
    if map_count is not None:
        params["map_count"] = map_count
    if dependency:
        params["dependency"] = dependency
    return _make_sbatch_string(command=inner._submitit_command_str, folder=inner.folder, **params)
