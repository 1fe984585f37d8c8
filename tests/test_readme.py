"""The README's step-by-step block, run as written, line by line, in a fresh folder.

The block names inputs a user has and a test does not: ``~/Music/di-guitar`` (a folder of
music), ``recorded/`` (a recording of the re-amp signal through a pedal) and ``guitar.wav``.
The test makes small ones (HOME points at a temporary folder); everything else is the README's.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pedalboard as pb
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def readme_block(heading: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index(heading):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_the_step_by_step_block_names_the_inputs_this_test_makes():
    lines = readme_block("## Step by step")
    assert lines[0] == ". .venv/bin/activate"
    joined = "\n".join(lines)
    for needed in ("~/Music/di-guitar", "recorded/", "guitar.wav"):
        assert needed in joined


@pytest.mark.slow
def test_the_step_by_step_block_runs_as_written(tmp_path):
    from fxdist.data.reamp import write_reamp

    home = tmp_path / "home"
    music = home / "Music" / "di-guitar"
    music.mkdir(parents=True)
    t = np.arange(3 * 44100) / 44100
    riff = 0.4 * np.sin(2 * np.pi * 196 * t) * np.exp(-3 * (t % 0.5))
    sf.write(str(music / "riff.flac"), np.stack([riff, riff], 1), 44100)  # stereo FLAC at another rate
    signal = write_reamp(tmp_path / "recorded" / "clean" / "take.wav")
    pedal = pb.Pedalboard([pb.Distortion(18), pb.LowpassFilter(4000)])
    recording = np.concatenate([np.zeros(57, np.float32), pedal(signal.audio, 48000)])  # the interface's latency
    (tmp_path / "recorded" / "processed").mkdir()
    sf.write(str(tmp_path / "recorded" / "processed" / "take.wav"), recording, 48000, subtype="PCM_24")
    sf.write(str(tmp_path / "guitar.wav"), riff.astype(np.float32), 48000)
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    (tmp_path / "configs").symlink_to(REPO / "configs")

    env = {**os.environ, "HOME": str(home), "MPLBACKEND": "Agg"}
    script = "set -euo pipefail\n" + "\n".join(f"echo '+ {line[:60]}'\n{line}" for line in readme_block("## Step by step"))
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for made in ("runs/data/shards/distortion/manifest.json", "runs/data/shards/my_pedal/manifest.json",
                 "runs/train/lstm/best.pt", "guitar-distorted.wav", "lstm.onnx", "runs/eval/lstm/report.html"):
        assert (tmp_path / made).exists(), made
    assert "latency 57 samples" in proc.stdout and "from the calibration blips" in proc.stdout
