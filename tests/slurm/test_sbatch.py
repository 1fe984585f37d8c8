"""fxdist/slurm/sbatch.py against the installed submitit: the dry-run script is the one submitit submits.

No SLURM here: ``srun`` and ``sbatch`` on PATH are stand-ins (submitit's SLURM executor looks
for ``srun``; the fake ``sbatch`` keeps a copy of each script it is handed and prints a job id).
"""

from __future__ import annotations

import ast
import os
import stat
import sys
from pathlib import Path

import pytest
import submitit

from fxdist.slurm.sbatch import sbatch_script
from fxdist.slurm.submit import ClusterConfig, make_executor

FAKE_SBATCH = """#!/bin/sh
n=$(ls "$FXDIST_SBATCH_CAPTURE" | wc -l)
cp "$1" "$FXDIST_SBATCH_CAPTURE/$n.sh"
echo "Submitted batch job 4242"
"""


PACKAGE = Path(__file__).resolve().parents[2] / "fxdist"


def _job(x: int) -> int:
    return x


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """PATH with a fake ``srun`` and ``sbatch``; returns the folder the scripts are copied to."""
    bin_dir, capture = tmp_path / "bin", tmp_path / "submitted"
    bin_dir.mkdir()
    capture.mkdir()
    for name, text in (("srun", "#!/bin/sh\nexit 0\n"), ("sbatch", FAKE_SBATCH)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FXDIST_SBATCH_CAPTURE", str(capture))
    return capture


def _submitted(capture: Path) -> list[str]:
    return [p.read_text() for p in sorted(capture.glob("*.sh"), key=lambda p: int(p.stem))]


def test_installed_submitit_is_the_pinned_minor_version():
    assert submitit.__version__.startswith("1.5."), submitit.__version__


def test_single_job_script_is_the_one_submitit_submits(fake_slurm, tmp_path):
    site = ClusterConfig(partition="debug", nodes=2, cpus_per_node=3, mem_gb=1, time_min=20)
    ex = make_executor(site, "fxdist-test", str(tmp_path / "logs" / "%j"))
    script = sbatch_script(ex)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for line in ("#SBATCH --job-name=fxdist-test", "#SBATCH --nodes=2", "#SBATCH --cpus-per-task=3",
                 "#SBATCH --partition=debug", "#SBATCH --time=20", "#SBATCH --no-kill"):
        assert line in lines, (line, script)
    assert not any(x.startswith(("#SBATCH --array", "#SBATCH --dependency")) for x in lines), script
    command = lines[-1]
    assert command.startswith("srun --unbuffered") and "--no-kill" in command
    assert command.endswith(f"{sys.executable} -u -m submitit.core._submit {tmp_path / 'logs' / '%j'}"), command

    job = ex.submit(_job, 1)
    assert job.job_id == "4242"
    assert _submitted(fake_slurm) == [script]


def test_array_script_with_dependency_is_the_one_submitit_submits(fake_slurm, tmp_path):
    site = ClusterConfig(partition="debug", nodes=1, cpus_per_node=2, time_min=20)
    folder = str(tmp_path / "logs" / "%j")
    array = make_executor(site, "fxdist-array", folder)
    array.update_parameters(slurm_array_parallelism=2)
    script = sbatch_script(array, map_count=3, dependency="afterany:17")
    lines = script.splitlines()
    for line in ("#SBATCH --job-name=fxdist-array", "#SBATCH --array=0-2%2", "#SBATCH --dependency=afterany:17",
                 f"#SBATCH --output={tmp_path / 'logs'}/%A_%a/%A_%a_0_log.out"):
        assert line in lines, (line, script)
    assert lines[-1].endswith(f"-u -m submitit.core._submit {folder}"), lines[-1]

    array.update_parameters(slurm_dependency="afterany:17")
    jobs = array.map_array(_job, [1, 2, 3])
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1", "4242_2"]
    assert _submitted(fake_slurm) == [script]



SUBMITIT_INTERNALS = {"_executor", "_submitit_command_str", "_make_submission_file_text", "_make_sbatch_string",
                      "_internal_update_parameters", "_internal_process_submissions"}


def submitit_internals(source: str) -> list[str]:
    """Where ``source`` imports from a submitit submodule other than ``helpers``, or reads one of
    submitit's private names."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("submitit.") \
                and node.module != "submitit.helpers":
            found.append(f"{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and node.attr in SUBMITIT_INTERNALS:
            found.append(f"{node.lineno}: .{node.attr}")
    return found


def test_only_sbatch_py_reads_submitit_internals():
    """fxdist/slurm/sbatch.py alone reads submitit's internals, so an upgrade has one place to check."""
    found = {str(path.relative_to(PACKAGE.parent)): hits for path in sorted(PACKAGE.rglob("*.py"))
             if path != PACKAGE / "slurm" / "sbatch.py" and (hits := submitit_internals(path.read_text()))}
    assert not found, found
    assert submitit_internals((PACKAGE / "slurm" / "sbatch.py").read_text())  # the check sees them
