"""Checkpoint files that are empty, cut off, foreign or hostile are refused with what is wrong."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from fxdist.checkpoint import load_checkpoint
from fxdist.errors import CheckpointError


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this should never run",))


def _payload(path):
    torch.save({"format": "fxdist-checkpoint", "weights": torch.zeros(2000)}, path)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p, b: p.write_bytes(b""), r"the file is empty \(0 bytes\)"),
        (lambda p, b: p.write_bytes(b[: len(b) // 2]), r"truncated or damaged checkpoint \(\d+ bytes"),
        (lambda p, b: p.write_text("hello\n"), r"not an fxdist checkpoint \(a PyTorch checkpoint is a zip archive; this file starts with b'hello\\n'\)"),
        (lambda p, b: p.write_bytes(pickle.dumps({"x": _RunsCode()})), "not an fxdist checkpoint"),
        (lambda p, b: torch.save({"x": _RunsCode()}, p), r"refused: it asks to import (posix|nt)\.system, and loading it could run code"),
    ],
    ids=["empty", "truncated", "text", "raw-pickle", "code-in-zip"],
)
def test_bad_checkpoint_files_say_what_is_wrong(tmp_path, capfd, make, message):
    path = tmp_path / "model.pt"
    good = _payload(tmp_path / "good.pt")
    make(path, good)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert "weights_only=False" not in text and "weights_only` set to `False" not in text
    assert "Errno" not in text and "pop from empty list" not in text
    assert "this should never run" not in capfd.readouterr().out
