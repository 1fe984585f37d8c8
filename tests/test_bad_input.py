"""Bad input through the real CLI: each case exits 2 with one line naming the file and the problem.

Every case runs ``fxdist.cli.main`` in this process (the entry point ``fxdist`` runs) and checks:
exit code 2, a ``fxdist: error:`` line that matches the case's pattern (the file, the problem and
the fix where there is one), no traceback on stderr, and no partial output left behind.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
import torch

from fxdist.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "train" / "tiny.yaml")


@dataclass
class Case:
    """``argv`` and ``expect`` may hold ``{tmp}``, ``{run}`` (a finished tiny run), ``{shards}``, ``{wav}``."""

    id: str
    argv: list[str]
    expect: str  # regex searched in stderr
    setup: Callable[[Path], None] | None = None
    no_output: list[str] = field(default_factory=list)  # paths (templated) that must not exist afterwards


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this should never run",))


def _write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return make


def _wav_bytes(frames: int = 4800, sample_rate: int = 16000) -> bytes:
    """A 24-bit mono WAV at the tiny shards' (and so the tiny run's) rate."""
    import io

    buf = io.BytesIO()
    sf.write(buf, np.full(frames, 0.1, np.float32), sample_rate, format="WAV", subtype="PCM_24")
    return buf.getvalue()


def _code_checkpoint(tmp: Path) -> None:
    torch.save({"x": _RunsCode()}, tmp / "evil.pt")


def _dataset(tmp: Path) -> None:
    """ROOT (2 clean tracks of 1 s and their copies as processed/copy) and PAIRS (the same as pairs);
    plus ``afile``, a regular file that bad outputs are asked to go under."""
    import shutil

    from fxdist.data.generate import GenerateConfig, generate

    generate(GenerateConfig(tracks=2, segments_per_track=1, segment_seconds=1.0), tmp / "root" / "clean")
    shutil.copytree(tmp / "root" / "clean", tmp / "root" / "processed" / "copy")
    shutil.copytree(tmp / "root" / "clean", tmp / "pairs" / "clean")
    shutil.copytree(tmp / "root" / "clean", tmp / "pairs" / "processed")
    (tmp / "afile").write_text("a file, not a folder")


UNDER_A_FILE = r"afile\S*: .*\(a part of the path is a file, not a folder: choose another path\)"


_TINY_SHARDS: list[Path] = []  # the session's tiny shard set, set by the test before a case's setup


def _manifest_edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """A copy of the tiny shard set at ``{tmp}/set`` whose manifest ``change`` edits."""
    def make(tmp: Path) -> None:
        import json
        import shutil

        shutil.copytree(_TINY_SHARDS[0], tmp / "set")
        data = json.loads((tmp / "set" / "manifest.json").read_text())
        change(data)
        (tmp / "set" / "manifest.json").write_text(json.dumps(data))
    return make


def _set(key, value):
    def change(data):
        data[key] = value
    return change


def _first_shard_path(value):
    def change(data):
        data["splits"]["train"]["shards"][0]["path"] = value
    return change


def _swapped_pair(tmp: Path) -> None:
    rng = np.random.default_rng(4)
    x = (np.convolve(rng.standard_normal(32000), np.ones(8) / 8, mode="same") * 0.3).astype(np.float32)
    (tmp / "swap" / "clean").mkdir(parents=True)
    (tmp / "swap" / "processed").mkdir()
    sf.write(str(tmp / "swap" / "clean" / "a.wav"), np.concatenate([np.zeros(300, np.float32), x]), 16000)
    sf.write(str(tmp / "swap" / "processed" / "a.wav"), np.concatenate([x, np.zeros(300, np.float32)]), 16000)


def _unrelated_pair(tmp: Path) -> None:
    rng = np.random.default_rng(5)
    (tmp / "noise" / "clean").mkdir(parents=True)
    (tmp / "noise" / "processed").mkdir()
    t = np.arange(32000) / 16000
    sf.write(str(tmp / "noise" / "clean" / "a.wav"), (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    sf.write(str(tmp / "noise" / "processed" / "a.wav"), (0.1 * rng.standard_normal(32000)).astype(np.float32), 16000)


def _misaligned_root(tmp: Path) -> None:
    t = np.arange(32000) / 16000
    x = (0.5 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0)).astype(np.float32)
    (tmp / "mis" / "clean").mkdir(parents=True)
    (tmp / "mis" / "processed" / "fx").mkdir(parents=True)
    sf.write(str(tmp / "mis" / "clean" / "a.wav"), x, 16000)
    sf.write(str(tmp / "mis" / "processed" / "fx" / "a.wav"), np.concatenate([np.zeros(800, np.float32), x])[:32000], 16000)


def _copy_run(tmp: Path, run: Path) -> None:
    import shutil

    shutil.copytree(run, tmp / "run")


CASES = [
    # -- config and overrides
    Case("override-without-equals", ["train", TINY, "--set", "optim.lr"], r"override 'optim.lr' is not KEY=VALUE"),
    Case("unknown-config-key", ["train", TINY, "--set", "optim.lrr=1"], r"tiny.yaml: optim: unknown key\(s\) 'lrr' for OptimConfig; allowed keys: grad_clip, lr"),
    Case("missing-config-file", ["train", "{tmp}/nope.yaml"], r"nope.yaml: cannot read config file"),
    Case("config-not-yaml", ["train", "{tmp}/bad.yaml"], r"bad.yaml: invalid YAML", setup=_write("bad.yaml", "a: [1, 2\n")),
    # -- run folders
    Case("resume-a-missing-run", ["train", TINY, "--shards", "{shards}", "--out", "{tmp}/typo", "--resume"],
         r"typo: nothing to resume, there is no last.pt .*check --out, or leave out --resume", no_output=["{tmp}/typo"]),
    Case("train-over-a-finished-run", ["train", TINY, "--shards", "{shards}", "--out", "{tmp}/run"],
         r"run: holds a run \(best.pt, last.pt, metrics.jsonl\); pass --resume to continue it, --overwrite",
         setup="copy-run"),
    Case("run-folder-is-a-file", ["train", TINY, "--shards", "{shards}", "--out", "{tmp}/afile"],
         r"afile: the run folder is a file", setup=_write("afile", "x")),
    # -- audio inputs
    Case("process-missing-input", ["process", "{run}/best.pt", "{tmp}/missing.wav", "{tmp}/out.wav"],
         r"missing.wav: no such audio file", no_output=["{tmp}/out.wav"]),
    Case("process-empty-input", ["process", "{run}/best.pt", "{tmp}/empty.wav", "{tmp}/out.wav"],
         r"empty.wav: the file is empty \(0 bytes\)", setup=_write("empty.wav", b""), no_output=["{tmp}/out.wav"]),
    Case("process-truncated-input", ["process", "{run}/best.pt", "{tmp}/cut.wav", "{tmp}/out.wav"],
         r"cut.wav: truncated WAV: its header promises 14400 bytes of audio \(4800 frames",
         setup=_write("cut.wav", _wav_bytes()[:6000]), no_output=["{tmp}/out.wav"]),
    Case("process-text-as-audio", ["process", "{run}/best.pt", "{tmp}/notes.wav", "{tmp}/out.wav"],
         r"notes.wav: cannot decode audio \(Format not recognised\).*export it again as WAV or FLAC",
         setup=_write("notes.wav", "not audio\n" * 40), no_output=["{tmp}/out.wav"]),
    Case("process-damaged-mp3", ["process", "{run}/best.pt", "{tmp}/noise.mp3", "{tmp}/out.wav"],
         r"noise.mp3: cannot decode audio \(no decodable audio stream in it\)",
         setup=_write("noise.mp3", bytes(range(256)) * 20), no_output=["{tmp}/out.wav"]),
    Case("process-a-folder", ["process", "{run}/best.pt", "{tmp}", "{tmp}/out.wav"],
         r": not a regular file \(a folder\?\)", no_output=["{tmp}/out.wav"]),
    # -- checkpoints
    Case("checkpoint-missing", ["process", "{tmp}/none.pt", "{wav}", "{tmp}/out.wav"], r"none.pt: no such checkpoint file",
         no_output=["{tmp}/out.wav"]),
    Case("checkpoint-empty", ["process", "{tmp}/empty.pt", "{wav}", "{tmp}/out.wav"], r"empty.pt: the file is empty \(0 bytes\)",
         setup=_write("empty.pt", b""), no_output=["{tmp}/out.wav"]),
    Case("checkpoint-text", ["process", "{tmp}/notes.pt", "{wav}", "{tmp}/out.wav"],
         r"notes.pt: not an fxdist checkpoint \(a PyTorch checkpoint is a zip archive", setup=_write("notes.pt", "hello\n"),
         no_output=["{tmp}/out.wav"]),
    Case("checkpoint-truncated", ["process", "{tmp}/run/cut.pt", "{wav}", "{tmp}/out.wav"],
         r"cut.pt: truncated or damaged checkpoint", setup="cut-checkpoint", no_output=["{tmp}/out.wav"]),
    Case("checkpoint-runs-code", ["process", "{tmp}/evil.pt", "{wav}", "{tmp}/out.wav"],
         r"evil.pt: refused: it asks to import (posix|nt).system, and loading it could run code", setup=_code_checkpoint,
         no_output=["{tmp}/out.wav"]),
    # -- outputs that cannot be written (a path under a regular file)
    Case("process-output-under-a-file", ["process", "{run}/best.pt", "{wav}", "{tmp}/afile/out.wav"], UNDER_A_FILE, setup=_dataset),
    Case("train-output-under-a-file", ["train", TINY, "--shards", "{shards}", "--out", "{tmp}/afile/run"], UNDER_A_FILE, setup=_dataset),
    Case("generate-under-a-file", ["data", "generate", "{tmp}/afile/root", "--tracks", "1", "--segments", "1"], UNDER_A_FILE, setup=_dataset),
    Case("ingest-under-a-file", ["data", "ingest", "{tmp}/root/clean", "{tmp}/afile/root"], UNDER_A_FILE, setup=_dataset),
    Case("import-under-a-file", ["data", "import", "{tmp}/pairs", "{tmp}/afile/root"], UNDER_A_FILE, setup=_dataset),
    Case("shard-under-a-file", ["data", "shard", "{tmp}/root", "--effect", "copy", "--dest", "{tmp}/afile/shards"],
         r"afile/shards: cannot create the shard set there \(a part of the path is a file, not a folder", setup=_dataset),
    Case("export-under-a-file", ["export", "{run}/best.pt", "--format", "onnx", "-o", "{tmp}/afile/m.onnx"], UNDER_A_FILE, setup=_dataset),
    Case("evaluate-under-a-file", ["evaluate", "{run}/best.pt", "--data", "{shards}", "--out", "{tmp}/afile/report"], UNDER_A_FILE,
         setup=_dataset),
    # -- running a model over a file
    Case("process-block-zero", ["process", "{run}/best.pt", "{wav}", "{tmp}/out.wav", "--block", "0"],
         r"block size must be a positive number of samples, got 0", no_output=["{tmp}/out.wav"]),
    Case("process-unknown-subtype", ["process", "{run}/best.pt", "{wav}", "{tmp}/out.wav", "--subtype", "PCM_99"],
         r"out.wav: sample format 'PCM_99' is not one WAV files hold; choose one of FLOAT, PCM_24", no_output=["{tmp}/out.wav"]),
    Case("process-mp3-output", ["process", "{run}/best.pt", "{wav}", "{tmp}/out.mp3"],
         r"out.mp3: cannot write audio with suffix '.mp3'; use one of .wav", no_output=["{tmp}/out.mp3"]),
    Case("process-other-rate", ["process", "{run}/best.pt", "{tmp}/hi.wav", "{tmp}/out.wav"],
         r"hi.wav: sample rate 48000 Hz differs from the model's 16000 Hz .*pass --resample",
         setup=_write("hi.wav", _wav_bytes(sample_rate=48000)), no_output=["{tmp}/out.wav"]),
    # -- export
    Case("export-onnx-named-wav", ["export", "{run}/best.pt", "--format", "onnx", "-o", "{tmp}/model.wav"],
         r"model.wav: a onnx export is written as .onnx, not .wav; name it model.onnx", no_output=["{tmp}/model.wav"]),
    Case("export-ir-of-an-lstm", ["export", "{run}/best.pt", "--format", "ir", "-o", "{tmp}/m.wav"],
         r"cannot export .* as ir: an impulse response holds a linear time-invariant effect", no_output=["{tmp}/m.wav"]),
    # -- shard sets
    Case("train-manifest-rate-is-text", ["train", TINY, "--shards", "{tmp}/set", "--out", "{tmp}/r"],
         r"manifest.json: sample_rate is 'fast', expected a positive whole number", setup=_manifest_edit(_set("sample_rate", "fast")),
         no_output=["{tmp}/r"]),
    Case("verify-shard-outside-the-set", ["data", "verify", "{tmp}/set"],
         r"shard path '../outside.parquet' of split 'train' is not inside the set's train/ folder",
         setup=_manifest_edit(_first_shard_path("../outside.parquet"))),
    Case("verify-absolute-shard-path", ["data", "verify", "{tmp}/set"], r"shard path '/etc/passwd' of split 'train' is not inside",
         setup=_manifest_edit(_first_shard_path("/etc/passwd"))),
    Case("verify-no-splits", ["data", "verify", "{tmp}/set"], r"the manifest lists no rows in any split \(splits: none\)",
         setup=_manifest_edit(_set("splits", {}))),
    Case("verify-not-a-set", ["data", "verify", "{tmp}"], r"no manifest at .*: incomplete or not a shard set"),
    Case("shard-misaligned-strict", ["data", "shard", "{tmp}/mis", "--effect", "fx", "--strict"],
         r"1 pair\(s\) do not line up sample-aligned \(--strict\):.*800 samples \(50.0 ms\) later", setup=_misaligned_root,
         no_output=["{tmp}/mis/shards"]),
    Case("shard-missing-effect", ["data", "shard", "{tmp}/root", "--effect", "nope"], r"processed/nope: folder missing",
         setup=_dataset, no_output=["{tmp}/root/shards"]),
    # -- import and the re-amp signal
    Case("import-swapped-files", ["data", "import", "{tmp}/swap", "{tmp}/out"], r"leads the clean one by 300 samples .*files swapped\?",
         setup=_swapped_pair, no_output=["{tmp}/out"]),
    Case("import-unrelated-audio", ["data", "import", "{tmp}/noise", "{tmp}/out"],
         r"does not line up with the clean file anywhere: .*Unrelated audio, or the wrong pair\?", setup=_unrelated_pair,
         no_output=["{tmp}/out"]),
    Case("import-missing-folder", ["data", "import", "{tmp}/none", "{tmp}/out"], r"none: not a folder of recorded pairs",
         no_output=["{tmp}/out"]),
    Case("reamp-over-a-file", ["data", "reamp", "{tmp}/afile.wav", "--seconds", "4"],
         r"afile.wav: exists \(a recording may have been made from it\); pass --overwrite", setup=_write("afile.wav", "keep me")),
    Case("reamp-not-wav", ["data", "reamp", "{tmp}/sig.flac", "--seconds", "4"], r"sig.flac: the re-amp signal is written as WAV",
         no_output=["{tmp}/sig.flac"]),
    # -- other commands
    Case("generate-config-missing", ["data", "generate", "{tmp}/root2", "--config", "{tmp}/gen.yaml"], r"gen.yaml: cannot read config file",
         no_output=["{tmp}/root2"]),
    Case("train-unknown-model", ["train", TINY, "--shards", "{shards}", "--out", "{tmp}/r", "--set", "model=lstm-huge"],
         r"model 'lstm-huge': no preset or file .*presets: .*lstm-tiny", no_output=["{tmp}/r"]),
    Case("capture-missing-pairs", ["capture", "{tmp}/nopairs", "--out", "{tmp}/cap"], r"nopairs: no such folder of recorded pairs",
         no_output=["{tmp}/cap"]),
    Case("capture-file-without-signal", ["capture", "{wav}", "--out", "{tmp}/cap"], r"\.wav: a single recording needs --signal",
         no_output=["{tmp}/cap"]),
    Case("capture-missing-signal", ["capture", "{wav}", "--out", "{tmp}/cap", "--signal", "{tmp}/reamp.wav"],
         r"reamp.wav: no such re-amp signal file", no_output=["{tmp}/cap"]),
    Case("capture-unknown-candidate", ["capture", "{tmp}", "--out", "{tmp}/cap", "--candidates", "wavenet,lstmm"],
         r"unknown candidate\(s\) lstmm; known: fir", no_output=["{tmp}/cap"]),
    Case("capture-out-is-a-file", ["capture", "{tmp}", "--out", "{tmp}/afile"], r"afile: the capture folder is a file",
         setup=_write("afile", "keep me")),
    Case("evaluate-missing-data", ["evaluate", "{run}/best.pt", "--data", "{tmp}/nodata", "--out", "{tmp}/rep"], r"nodata",
         no_output=["{tmp}/rep"]),
]


@pytest.fixture(scope="module")
def finished_run(tiny_shards, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("bad-input") / "run"
    assert main(["train", TINY, "--shards", str(tiny_shards), "--out", str(run), "--set", "steps=4",
                 "--set", "val_every=2", "--set", "checkpoint_every=2"]) == 0
    return run


def _fill(text: str, tmp: Path, run: Path, shards: Path, wav: Path) -> str:
    return text.format(tmp=tmp, run=run, shards=shards, wav=wav)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line(case: Case, tmp_path, finished_run, tiny_shards, capfd):
    _TINY_SHARDS[:] = [tiny_shards]
    wav = tmp_path / "in.wav"
    wav.write_bytes(_wav_bytes())
    if case.setup == "copy-run":
        _copy_run(tmp_path, finished_run)
    elif case.setup == "cut-checkpoint":
        (tmp_path / "run").mkdir()
        data = (finished_run / "best.pt").read_bytes()
        (tmp_path / "run" / "cut.pt").write_bytes(data[: len(data) // 2])
    elif case.setup is not None:
        case.setup(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    argv = [_fill(a, tmp_path, finished_run, tiny_shards, wav) for a in case.argv]
    code = main(argv)
    err = capfd.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("fxdist: error:")]
    assert len(lines) == 1, err
    assert re.search(case.expect, lines[0]), lines[0]
    assert "weights_only=False" not in err and "System error" not in err
    for path in case.no_output:
        assert not Path(_fill(path, tmp_path, finished_run, tiny_shards, wav)).exists()
    changed = [p for p, t in before.items() if p.exists() and p.stat().st_mtime_ns != t and p.is_file()]
    assert not changed, f"bad input changed {changed}"
    stray = [p for p in tmp_path.rglob("*") if p not in before and p.name.startswith(".")]
    assert not stray, f"temp files left: {stray}"


def test_case_ids_are_unique_and_counted(capsys):
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids), sorted({i for i in ids if ids.count(i) > 1})
    assert len(ids) >= 40
    with capsys.disabled():
        print(f"\nbad-input cases through the CLI: {len(CASES)}")
