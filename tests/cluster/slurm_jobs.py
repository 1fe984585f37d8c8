"""SLURM job helpers for the real-SLURM tests: state from scontrol, a diagnosis for failures, bounded waits."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.cluster.polling import poll


def job_state(job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30, check=False).stdout
    match = re.search(r"\bJobState=(\S+)", out)
    return match.group(1) if match else ""


def diagnosis(job_id: str, logs: Path | None = None) -> str:
    out = [subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False).stdout
           for cmd in (["scontrol", "show", "job", "-o", job_id], ["sinfo", "-N", "-o", "%N %T %E"])]
    for log in sorted(logs.glob("*_log.*")) if logs and logs.is_dir() else []:
        out.append(f"--- {log.name}\n" + log.read_text()[-3000:])
    return "\n".join(out)


def poll_job(what: str, check, timeout: float, job_id: str, logs: Path | None = None, interval: float = 0.5):
    return poll(what, check, timeout, lambda: diagnosis(job_id, logs), interval)


def wait_state(job_id: str, states: set[str], timeout: float, logs: Path | None = None) -> str:
    return poll_job(f"job {job_id} in {sorted(states)}", lambda: (s := job_state(job_id)) in states and s, timeout, job_id, logs)


def worker_host(logs: Path, task: int) -> str:
    """The node submitit says task ``task`` ran on (first line of its log)."""
    match = re.search(r"hostname=(\w+)", (logs / f"{logs.name}_{task}_log.out").read_text())
    return match.group(1) if match else ""
