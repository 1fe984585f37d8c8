"""SIGKILL `fxdist data render` mid-way: no output is ever half a file (written beside and
renamed), and a rerun renders the rest; every output then decodes at its clean track's length."""

from __future__ import annotations

import soundfile as sf
import pytest

from fxdist.data.generate import GenerateConfig, generate
from tests.datasets import TINY_RATE
from tests.faults.killing import fxdist, kill_when

pytestmark = pytest.mark.slow


def test_killed_render_reruns_to_complete_decodable_outputs(tmp_path):
    root = tmp_path / "data"
    generate(GenerateConfig(seed=0, sample_rate=TINY_RATE, tracks=10, segments_per_track=2, segment_seconds=3.0), root / "clean")
    out = root / "processed" / "distortion"
    args = ["data", "render", str(root), "--effect", "distortion", "--workers", "1", "--no-progress"]

    def outputs() -> list:
        return sorted(p for p in out.glob("*.wav") if not p.name.startswith("."))

    def writing() -> bool:  # a temp output open: the kill lands inside a write
        return any(out.glob(".*.wav*"))

    kills = 0
    for when in (writing, lambda: len(outputs()) >= 3, lambda: len(outputs()) >= 6 and writing()):
        run = kill_when(args, when, timeout=90)
        kills += run.killed
        assert run.killed or run.returncode == 0, run.log[-3000:]
        for wav in outputs():  # whatever is there under its final name is complete
            sf.read(wav)
    assert kills >= 2, "the renders finished before the kills"
    done = fxdist(*args)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    clean = sorted((root / "clean").glob("*.wav"))
    assert [p.name for p in outputs()] == [p.name for p in clean]
    for src in clean:
        audio, sr = sf.read(out / src.name, dtype="float32")
        assert sr == TINY_RATE and len(audio) == sf.info(src).frames and abs(audio).max() > 0
