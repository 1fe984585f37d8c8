"""Render and shard a dataset as a SLURM job array on the real local cluster
(fxdist/data/array.py, fxdist/slurm/array.py, `fxdist submit --render`, jobs/render-array.sbatch).

Nothing is mocked: sbatch/scontrol of the 3-node cluster (2 CPUs per node), submitit's
array, the tasks rendering the distortion preset on the nodes. Each task asks for both
CPUs of a node, so three tasks must run on three nodes. Every wait is a bounded poll of
``scontrol show job -o ID``. Set FXDIST_UPDATE_GOLDEN=1 to rewrite the golden dry-run script.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fxdist.cli import main
from fxdist.data.manifest import verify
from fxdist.errors import ClusterError
from fxdist.data.array import chunk_hosts, load_render_config
from fxdist.slurm.array import submit_render
from tests.cluster.polling import poll
from tests.cluster.slurm_jobs import diagnosis, job_state

REPO = Path(__file__).resolve().parents[2]
CLUSTER = str(REPO / "configs/cluster/local.yaml")
GOLDEN = Path(__file__).parent / "golden" / "render-array-dry-run.txt"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}
pytestmark = pytest.mark.slow


def _config(tmp_path: Path, tracks: int = 6, **kw) -> Path:
    """A tiny render-array YAML: ``tracks`` synthetic 2 s tracks at 8 kHz, rooted in tmp_path."""
    data = {
        "root": str(tmp_path / "data"), "effect": "distortion",
        "generate": {"seed": 5, "sample_rate": 8000, "tracks": tracks, "segments_per_track": 2, "segment_seconds": 1.0},
        "tasks": 3, "cpus_per_task": 2,
        "shard": {"row_samples": 4000, "rows_per_group": 2, "rows_per_shard": 8, "val_fraction": 0.2, "test_fraction": 0.2},
        **kw,
    }
    path = tmp_path / "render.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _diagnosis(job_id: str, logs: Path) -> str:
    """scontrol and sinfo, then every log under ``logs`` (array tasks log in subfolders)."""
    out = [diagnosis(job_id)]
    for log in sorted(logs.rglob("*.out")) + sorted(logs.rglob("*_log.*")):
        out.append(f"--- {log}\n" + log.read_text()[-2000:])
    return "\n".join(out)


def _wait_done(job_id: str, logs: Path, timeout: float = 90) -> str:
    state = poll(f"job {job_id} finished", lambda: (s := job_state(job_id)) in TERMINAL and s, timeout,
                 lambda: _diagnosis(job_id, logs), interval=0.5)
    assert state == "COMPLETED", _diagnosis(job_id, logs)
    return state


def _queued() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30, check=True).stdout
    return set(out.split())


def test_dry_run_prints_the_array_and_finalize_scripts(local_slurm, tmp_path, capsys):
    """Golden file: the scripts of a site YAML of our own (so the shared local.yaml may change),
    with tmp_path and the Python path normalised."""
    site = tmp_path / "site.yaml"
    site.write_text("partition: debug\nnodes: 3\ncpus_per_node: 1\nmem_gb: 1\ntime_min: 20\n")
    config = _config(tmp_path)
    before = _queued()
    assert main(["submit", "--render", str(config), "--cluster", str(site), "--dry-run"]) == 0
    text = capsys.readouterr().out.replace(str(tmp_path), "<TMP>").replace(sys.executable, "<PYTHON>")
    if os.environ.get("FXDIST_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    assert "#SBATCH --array=0-2%3" in text and "#SBATCH --dependency=afterany:ARRAY_JOB_ID" in text
    assert _queued() == before
    assert not (tmp_path / "data").exists()  # a dry run writes nothing


def test_a_request_the_site_cannot_run_is_refused_before_anything_is_written(local_slurm, tmp_path):
    config = _config(tmp_path, cpus_per_task=4)
    before = _queued()
    with pytest.raises(ClusterError) as info:
        submit_render(config, CLUSTER)
    assert "cpus_per_node 4" in str(info.value) and "at most 2" in str(info.value) and "local.yaml" in str(info.value)
    assert _queued() == before and not (tmp_path / "data").exists()


def test_array_renders_on_three_nodes_and_resubmission_redoes_only_missing_chunks(local_slurm, tmp_path, capsys):
    config = _config(tmp_path)
    assert main(["submit", "--render", str(config), "--cluster", CLUSTER]) == 0
    printed = dict(re.findall(r"^(array job|finalize job|chunks|shards|logs): (.+)$", capsys.readouterr().out, re.MULTILINE))
    out, logs = Path(printed["shards"]), Path(printed["logs"])
    assert out == tmp_path / "data" / "shards" / "distortion" and printed["chunks"] == "0-2 of 3"
    assert logs == out / "render-array" / "slurm"
    with pytest.raises(ClusterError, match=f"job\\(s\\) .*{printed['finalize job']}.* are still queued or running"):
        submit_render(config, CLUSTER)  # two tasks on one chunk would delete each other's files
    _wait_done(printed["finalize job"], out / "render-array")
    assert (logs / f"{printed['array job']}_2" / f"{printed['array job']}_2_0_log.out").is_file()
    report = verify(out)
    assert sum(report.rows.values()) == 6 * 4  # 6 tracks of 2 s in rows of 0.5 s
    cfg = load_render_config(config)
    hosts = chunk_hosts(cfg)
    assert sorted(hosts) == [0, 1, 2] and len(set(hosts.values())) == 3, hosts  # one node per task
    assert all(re.fullmatch(r"node\d", h) for h in hosts.values()), hosts

    markers = {i: (out / "render-array" / f"chunk-{i:05d}.json").read_text() for i in range(3)}
    (out / "render-array" / "chunk-00001.json").unlink()  # as if task 1 had been killed
    again = submit_render(config, CLUSTER)
    assert again.chunks == [1] and again.total_chunks == 3
    _wait_done(again.finalize_job_id, out / "render-array")
    verify(out)
    for i in (0, 2):
        assert (out / "render-array" / f"chunk-{i:05d}.json").read_text() == markers[i], f"chunk {i} was redone"
    redone = json.loads((out / "render-array" / "chunk-00001.json").read_text())
    assert redone["job_id"] == again.array_job_id  # one chunk left: submitit queues it as a plain job
    assert submit_render(config, CLUSTER, dry_run=True).chunks == []  # nothing left to render


def test_the_sbatch_template_runs_a_two_task_array(local_slurm, tmp_path):
    """jobs/render-array.sbatch with plain sbatch, then finalize as its dependent job, as the template says."""
    config = _config(tmp_path, tracks=4, tasks=2)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def sbatch(*args: str) -> str:
        proc = subprocess.run(["sbatch", "--parsable", "--partition=debug", f"--chdir={tmp_path}", *args],
                              capture_output=True, text=True, timeout=30, env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip().split(";")[0]

    array = sbatch("--array=0-1", f"--output={tmp_path}/render-%A_%a.out", str(REPO / "jobs/render-array.sbatch"), str(config))
    final = sbatch(f"--dependency=afterany:{array}", f"--output={tmp_path}/finalize-%j.out",
                   "--wrap", f"fxdist data finalize {config}")
    _wait_done(final, tmp_path)
    verify(tmp_path / "data" / "shards" / "distortion")
    hosts = chunk_hosts(load_render_config(config))
    assert sorted(hosts) == [0, 1] and len(set(hosts.values())) == 2, hosts
    log = (tmp_path / f"render-{array}_1.out").read_text()
    assert f"chunk 1 of array job {array} on {hosts[1]}" in log and "chunk 1: 2 track(s)" in log
    assert "train" in (tmp_path / f"finalize-{final}.out").read_text()


def test_a_killed_task_fails_finalize_and_a_resubmission_redoes_its_chunk(local_slurm, tmp_path):
    """The effect ends in a command that waits while a gate file exists, so the tasks are
    running when array task 1 is cancelled; the gate then opens and the others finish."""
    gate = tmp_path / "gate"
    gate.touch()
    effect = tmp_path / "gated.yaml"
    wait = f'while [ -e {gate} ]; do sleep 0.2; done; cp "$0" "$1"'
    effect.write_text(yaml.safe_dump({"name": "gated", "family": "distortion", "chain": [
        {"builtin": "Distortion", "params": {"drive_db": 20}},
        {"command": ["sh", "-c", wait, "{input}", "{output}"], "timeout_s": 60}]}))
    config = _config(tmp_path, effect=str(effect))
    first = submit_render(config, CLUSTER)
    state = Path(first.out) / "render-array"
    task1 = f"{first.array_job_id}_1"
    poll(f"{task1} running", lambda: job_state(task1) == "RUNNING", 60, lambda: _diagnosis(task1, state))
    subprocess.run(["scancel", task1], check=True, timeout=30)
    poll(f"{task1} cancelled", lambda: job_state(task1) == "CANCELLED", 30, lambda: _diagnosis(task1, state))
    gate.unlink()
    poll(f"job {first.finalize_job_id} finished", lambda: job_state(first.finalize_job_id) in TERMINAL, 90,
         lambda: _diagnosis(first.finalize_job_id, state), interval=0.5)
    assert job_state(first.finalize_job_id) == "FAILED", _diagnosis(first.finalize_job_id, state)
    err = (state / "slurm" / first.finalize_job_id / f"{first.finalize_job_id}_0_log.err").read_text()
    assert "1 of 3 chunk(s) not done: 1 " in err, err[-3000:]
    assert not (Path(first.out) / "manifest.json").exists()
    assert sorted(chunk_hosts(load_render_config(config))) == [0, 2]

    again = submit_render(config, CLUSTER)
    assert again.chunks == [1]
    _wait_done(again.finalize_job_id, state)
    verify(first.out)
