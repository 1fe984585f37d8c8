"""Everything that talks to SLURM: submit a sweep (``submit``), run Ray inside an allocation
(``ray_node``), submit a render-array dataset (``array``), and render the sbatch script
submitit would write (``sbatch``, the one module that reads submitit internals).

The sweep's ``submit()`` is called as ``fxdist.slurm.submit.submit``: re-exporting it here
would hide the ``submit`` module behind the function of the same name.
"""

from fxdist.slurm.array import RenderSubmitResult, submit_render
from fxdist.slurm.sbatch import sbatch_script
from fxdist.slurm.submit import (
    JOB_PREFIX,
    ClusterConfig,
    JobInfo,
    SubmitResult,
    SweepJob,
    cancel,
    check_cluster,
    jobs,
    load_cluster_config,
    make_executor,
)

__all__ = [
    "JOB_PREFIX", "ClusterConfig", "JobInfo", "RenderSubmitResult", "SubmitResult", "SweepJob", "cancel",
    "check_cluster", "jobs", "load_cluster_config", "make_executor", "sbatch_script", "submit_render",
]
