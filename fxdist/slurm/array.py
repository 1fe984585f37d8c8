"""Submit a render-array dataset (``fxdist.data.array``) to SLURM: one array task per chunk.

``submit_render`` queues the chunks without a done marker as a submitit array and
``finalize`` as a job that starts after it (``--dependency=afterany``, so that it reports
the chunks that failed instead of waiting forever). The job ids go to
``<out>/render-array/submitted.json``, so a resubmission can refuse to run while they are
still queued.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fxdist.data.array import Plan, finalize, load_render_config, prepare, render_chunk
from fxdist.errors import ClusterError, ShardError
from fxdist.fsutil import write_text_atomic
from fxdist.slurm.sbatch import sbatch_script
from fxdist.slurm.submit import JOB_PREFIX, check_cluster, jobs, load_cluster_config, make_executor

SUBMITTED_FILE = "submitted.json"  # in the plan's state folder: the job ids of the last submit_render


@dataclass
class RenderSubmitResult:
    """What ``submit_render`` queued (job ids are None for a dry run)."""

    array_job_id: str | None  # None also when every chunk was done already
    finalize_job_id: str | None
    chunks: list[int]  # the chunks submitted (those without a done marker)
    total_chunks: int
    out: str  # the shard set
    logs_dir: str  # submitit's folder: <out>/render-array/slurm, <array id>_<chunk>/ and <finalize id>/ in it
    scripts: dict[str, str]  # "array" and "finalize" sbatch scripts


def submit_render(config_yaml: str | Path, cluster_yaml: str | Path, dry_run: bool = False,
                  overrides: dict[str, Any] | None = None) -> RenderSubmitResult:
    """Submit the chunks of ``config_yaml`` without a done marker as one SLURM array (one task per
    chunk, one node each, ``cpus_per_task`` or the site's ``cpus_per_node`` CPUs), and
    ``finalize`` as a job that runs after the whole array (``afterany``).

    Checked before anything is queued: both configs (strict keys), the request against
    ``sinfo``, the plan (an ``out`` planned with another config is refused), and that no job
    of the previous submission is still queued or running (two tasks on one chunk would
    delete each other's files). Resubmitting the same config queues only the chunks not
    done. ``dry_run`` writes and queues nothing and returns the scripts.
    """
    cfg = load_render_config(config_yaml, overrides)
    cluster = load_cluster_config(cluster_yaml)
    task_site = dataclasses.replace(cluster, nodes=1, cpus_per_node=cfg.cpus_per_task or cluster.cpus_per_node)
    check_cluster(task_site, source=str(cluster_yaml))
    plan = prepare(cfg, write=not dry_run)
    cfg = dataclasses.replace(cfg, root=str(plan.root), out=str(plan.out))  # the job's cwd may differ
    todo = plan.todo()
    name = f"{JOB_PREFIX}render-{plan.effect_id}"
    folder = f"{plan.state}/slurm/%j"  # submitit: %j is <array id>_<task> for array tasks

    array = make_executor(task_site, name, folder)
    array.update_parameters(slurm_array_parallelism=cfg.max_parallel or max(1, len(todo)))
    final = make_executor(dataclasses.replace(task_site, cpus_per_node=1), f"{name}-finalize", folder)
    scripts = {"array": sbatch_script(array, max(1, len(todo))),
               "finalize": sbatch_script(final, None, dependency="afterany:ARRAY_JOB_ID")}
    if dry_run:
        return RenderSubmitResult(None, None, todo, len(plan.chunks), str(plan.out), str(plan.state / "slurm"), scripts)
    if running := _still_queued(plan):
        raise ClusterError(
            f"{plan.state}: job(s) {', '.join(running)} of the previous submission of this render are still queued "
            f"or running; wait for them (`fxdist jobs`) or cancel them (`fxdist cancel ID`), then resubmit"
        )
    array_id = None
    try:
        if todo:
            array_jobs = array.map_array(render_chunk, [cfg] * len(todo), todo)
            array_id = str(array_jobs[0].job_id).split("_")[0]
            final.update_parameters(slurm_dependency=f"afterany:{array_id}")
        job = final.submit(finalize, cfg)
    except Exception as exc:  # submitit raises FailedJobError/FailedSubmissionError/CalledProcessError
        raise ClusterError(f"sbatch refused the job: {exc}") from exc
    ids = {"array_job_id": array_id, "finalize_job_id": str(job.job_id), "chunks": todo}
    write_text_atomic(plan.state / SUBMITTED_FILE, json.dumps(ids, indent=1))
    return RenderSubmitResult(array_id, str(job.job_id), todo, len(plan.chunks), str(plan.out), str(plan.state / "slurm"), scripts)


def _still_queued(plan: Plan) -> list[str]:
    """Jobs of the last ``submit_render`` of this plan that squeue still lists."""
    path = plan.state / SUBMITTED_FILE
    if not path.is_file():
        return []
    try:
        submitted = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ShardError(f"{path}: unreadable ({exc}); delete it once no job of this render is queued (`fxdist jobs`)") from exc
    ids = {v for k, v in submitted.items() if k.endswith("_job_id") and v}
    return sorted(j.job_id for j in jobs() if j.job_id.split("_")[0] in ids)


__all__ = ["RenderSubmitResult", "submit_render"]
