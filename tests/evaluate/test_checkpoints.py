"""Which checkpoints a path names, and the labels that tell them apart."""

from __future__ import annotations

from pathlib import Path

from fxdist.evaluate import short_labels


def test_short_labels_tell_checkpoints_apart():
    assert short_labels([Path("runs/best/1-a/best.pt"), Path("runs/best/2-b/best.pt")]) == ["1-a", "2-b"]
    assert short_labels([Path("x/lstm.pt"), Path("y/wavenet.pt")]) == ["lstm", "wavenet"]
    assert short_labels([Path("a/run/m.pt"), Path("b/run/m.pt")]) == ["a/run", "b/run"]
