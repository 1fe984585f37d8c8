"""The notebooks in notebooks/ run top to bottom on tiny data and show figures and audio.

Each runs in a real Jupyter kernel (nbclient + ipykernel) pointed at a tiny shard set and
a tiny checkpoint through its FXDIST_NB_* environment variables.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from fxdist.train import train
from tests.datasets import make_dataset
from tests.evaluate.common import zero_lstm
from tests.train.test_trainer import tiny_config

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> tuple[Path, Path]:
    """(shard set, folder of two pulled checkpoints: trained, and identity without a val ESR), 8 kHz."""
    root = tmp_path_factory.mktemp("nb")
    shards = make_dataset(root / "data", sample_rate=8000, tracks=3, seconds=2.0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(tiny_config(shards, root / "exp" / "1-trained", steps=4, val_every=4))
    finally:
        torch.set_num_threads(before)
    zero_lstm(root / "exp" / "2-identity" / "best.pt", 8000)
    return shards, root / "exp"


def run_notebook(name: str, tmp_path: Path, monkeypatch, env: dict[str, str]):
    for key, value in {**env, "FXDIST_NB_OUT": str(tmp_path / "out"), "FXDIST_NB_MAX_SECONDS": "1",
                       "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    kernel = _kernel_name()
    nbclient.NotebookClient(nb, kernel_name=kernel, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def _kernel_name() -> str:
    """'python3' when it runs this interpreter (jupyter swaps a bare 'python' for sys.executable)."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    if spec.argv[0] not in ("python", "python3", sys.executable):
        pytest.skip(f"kernel python3 runs {spec.argv[0]}, not {sys.executable}: python -m ipykernel install --sys-prefix")
    return "python3"


def outputs(nb) -> tuple[list[str], list[dict]]:
    """Every output's mime types, and the error outputs."""
    mimes, errors = [], []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out["output_type"] == "error":
                errors.append(out)
            mimes.extend(out.get("data", {}))
            if "<audio" in str(out.get("data", {}).get("text/html", "")):
                mimes.append("audio")
    return mimes, errors


@pytest.mark.slow
def test_evaluate_notebook_shows_verdict_figures_and_audio(experiment, tmp_path, monkeypatch):
    shards, exp = experiment
    nb = run_notebook("evaluate.ipynb", tmp_path, monkeypatch,
                      {"FXDIST_NB_CHECKPOINT": str(exp), "FXDIST_NB_DATA": str(shards)})
    mimes, errors = outputs(nb)
    assert not errors
    assert mimes.count("image/png") >= 4 and mimes.count("audio") == 3  # one test track: 4 figures, 3 players
    assert (tmp_path / "out" / "report.html").is_file()
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert f"checkpoint: {exp / '1-trained' / 'best.pt'}" in printed  # the only one with a validation ESR


@pytest.mark.slow
def test_compare_notebook_ranks_an_experiments_checkpoints(experiment, tmp_path, monkeypatch):
    shards, exp = experiment
    nb = run_notebook("compare_sweep.ipynb", tmp_path, monkeypatch,
                      {"FXDIST_NB_MODELS": str(exp), "FXDIST_NB_DATA": str(shards)})
    mimes, errors = outputs(nb)
    assert not errors
    assert mimes.count("image/png") == 5  # one bar chart per key metric
    table = next(str(o["data"]["text/html"]) for c in nb.cells for o in c.get("outputs", [])
                 if "<table>" in str(o.get("data", {}).get("text/html", "")))
    assert "1-trained" in table and "2-identity" in table
