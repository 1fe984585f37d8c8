"""The built wheel works on its own: presets ship inside it, and a preset model trains and an
effect preset renders from a folder outside the checkout.

The wheel is built from a copy of the source (nothing is written into the checkout) and
installed with ``--no-deps`` into a fresh venv whose heavy dependencies (torch, ray, ...) come
from this test's own environment through a ``.pth`` line.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def build_wheel(tmp_path: Path, env: dict[str, str]) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(REPO / "fxdist", src / "fxdist", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
        cwd=tmp_path, env=env)
    (wheel,) = dist.glob("fxdist-*.whl")
    return wheel


def fresh_venv(tmp_path: Path, env: dict[str, str]) -> Path:
    """A venv without pip whose dependencies resolve from this interpreter's site-packages.

    A ``.pth`` line adds those folders to ``sys.path`` after the venv's own site-packages, without
    running their ``.pth`` files, so the checkout's editable install stays out.
    """
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path, env=env)
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    (Path(purelib.stdout.strip()) / "fxdist-test-deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    return venv


@pytest.mark.slow
def test_wheel_install_trains_a_preset_and_renders_an_effect_preset(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    wheel = build_wheel(tmp_path, env)
    venv = fresh_venv(tmp_path, env)
    python, fxdist = venv / "bin" / "python", venv / "bin" / "fxdist"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        cwd=tmp_path, env=env)

    work = tmp_path / "work"
    work.mkdir()
    where = run([str(python), "-c", "import fxdist, fxdist.presets as p; print(fxdist.__file__); print(p.model_dir())"],
                cwd=work, env=env).stdout.split()
    assert all(Path(w).resolve().is_relative_to(venv.resolve()) for w in where), where
    assert fxdist.is_file()

    root = work / "data"
    run([str(fxdist), "data", "generate", str(root), "--tracks", "4", "--segments", "1", "--sample-rate", "16000",
         "--set", "segment_seconds=2.0"], cwd=work, env=env)
    rendered = run([str(fxdist), "data", "render", str(root), "--effect", "distortion", "--no-progress"], cwd=work, env=env)
    assert "rendered 4 track(s)" in rendered.stdout
    run([str(fxdist), "data", "shard", str(root), "--effect", "distortion", "--set", "row_samples=4000"], cwd=work, env=env)
    shards = root / "shards" / "distortion"
    assert (shards / "manifest.json").is_file()

    (work / "train.yaml").write_text(
        "model: lstm-tiny\n"
        f"data: {{shards: {shards}, batch_size: 4, output_len: 1024, chunk_len: 1024, run_seconds: 0.5,"
        " warmup_samples: 256, val_max_seconds: 2.0}\n"
        "steps: 4\nval_every: 2\ncheckpoint_every: 2\nlog_every: 2\nprogress: false\nout_dir: run\n"
    )
    trained = run([str(fxdist), "train", "train.yaml"], cwd=work, env=env)
    result = json.loads(trained.stdout)
    assert result["step"] == 4
    assert Path(work / result["best_checkpoint"]).is_file() or Path(result["best_checkpoint"]).is_file()
    assert (work / "run" / "last.pt").is_file()
