"""The third-party effect suite (benchmarks/thirdparty/): its table, its effect files, its
GM material and a ``--quick`` render of three effects into import-ready pairs folders.

The render test skips, naming the apt package, when sox, fluidsynth, the soundfont or a
plugin is not installed (``bash jobs/setup.sh`` installs them as root).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "benchmarks" / "thirdparty"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


render = _load("thirdparty_render", SUITE / "render.py")
material = render.material

REQUIRED_KINDS = ("amp + cabinet", "overdrive", "fuzz", "compressor", "chorus", "flanger", "phaser", "delay",
                  "reverb", "pitch", "wah", "EQ")


def test_table_covers_the_kinds_and_effect_files_are_written_from_it():
    ladspa_path, effects = render.load_table()
    assert len(effects) >= 12
    kinds = " | ".join(e.kind for e in effects)
    for kind in REQUIRED_KINDS:
        assert kind in kinds, f"no {kind} effect in effects.yaml"
    names = [e.name for e in effects]
    assert len(set(names)) == len(names)
    assert sorted(p.stem for p in render.EFFECTS_DIR.glob("*.yaml")) == sorted(names)
    for e in effects:
        text = (render.EFFECTS_DIR / f"{e.name}.yaml").read_text()
        assert text == render.effect_yaml(e, ladspa_path), (
            f"effects/{e.name}.yaml differs from effects.yaml; run render.py --write-effects")
        assert e.package and e.version and e.stages


def test_effect_files_load_as_fxdist_command_effects():
    from fxdist.effects import load_effect, load_effect_config

    _, effects = render.load_table()
    for e in effects:
        config = load_effect_config(render.EFFECTS_DIR / f"{e.name}.yaml")
        assert config.name == e.name and config.chain[0].kind == "command"
    if shutil.which("sox") is None:
        pytest.skip("building the chains needs sox (apt-get install sox)")
    for e in effects:
        assert load_effect(str(render.EFFECTS_DIR / f"{e.name}.yaml")).name == e.name


def test_missing_plugin_names_its_apt_package(tmp_path):
    _, effects = render.load_table()
    problems = render.missing_requirements(str(tmp_path), effects, need_soundfont=False)
    plugin_lines = [p for p in problems if "LADSPA plugin" in p]
    assert plugin_lines and all("apt-get install" in p for p in plugin_lines)
    assert any("apt-get install caps" in p for p in plugin_lines)


def test_midi_is_deterministic_and_splits_are_disjoint():
    a = material.piece_midi("clean_guitar", "chords", 4.0)
    assert a == material.piece_midi("clean_guitar", "chords", 4.0)
    assert a.startswith(b"MThd") and b"MTrk" in a
    assert a != material.piece_midi("clean_guitar", "lead", 4.0)
    val_instruments = {i for i, _ in material.VALIDATION}
    val_riffs = {r for _, r in material.VALIDATION}
    assert material.TEST and not ({i for i, _ in material.TEST} & val_instruments)
    assert not ({r for _, r in material.TEST} & val_riffs)
    assert len({i for i, _ in material.TEST}) >= 4 and len({r for _, r in material.TEST}) >= 3


@pytest.mark.slow
def test_quick_render_writes_import_ready_pairs(tmp_path):
    ladspa_path, effects = render.load_table()
    quick = [e for e in effects if e.name in render.QUICK_EFFECTS]
    problems = render.missing_requirements(ladspa_path, quick)
    if problems:
        pytest.skip("third-party suite cannot render: " + "; ".join(problems))
    sr = material.SAMPLE_RATE
    t = np.arange(5 * sr) / sr
    x = 0.3 * np.sin(2 * np.pi * (80 * t + 190 * t ** 2)) + 0.02 * np.random.default_rng(0).standard_normal(t.size)
    train = tmp_path / "reamp.wav"
    sf.write(train, x.astype(np.float32), sr, subtype="FLOAT")
    out = tmp_path / "suite"
    proc = subprocess.run([sys.executable, str(SUITE / "render.py"), str(out), "--train-input", str(train), "--quick"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "do-nothing ESR" in proc.stdout
    summary = json.loads((out / "suite.json").read_text())
    assert [r["effect"] for r in summary["effects"]] == [e.name for e in quick]
    for row in summary["effects"]:
        assert render.MIN_ESR < row["do_nothing_esr"] <= 1.0 and 0.0 < row["peak"] < render.CLIP
        for split in ("train", "val", "test"):
            clean = sorted((out / row["effect"] / split / "clean").glob("*.wav"))
            assert clean, f"{row['effect']}/{split}: no clean files"
            for c in clean:
                cx, csr = sf.read(c, dtype="float32")
                px, psr = sf.read(out / row["effect"] / split / "processed" / c.name, dtype="float32")
                assert csr == psr == sr and cx.shape == px.shape and cx.ndim == 1
                assert np.all(np.isfinite(px)) and not np.allclose(cx, px, atol=1e-4)
                assert np.sqrt(np.mean(px ** 2)) > 1e-3
    assert (out / "material" / "train" / "reamp.wav").is_file()


@pytest.mark.slow
def test_import_finds_added_latency_polarity_and_drift_on_the_quick_suite(tmp_path):
    """benchmarks/import_accuracy.py --quick: every pair accepted, the added latency found to the
    sample by both methods, the amp's inversion reported, a 20 ppm drift measured within 2 ppm."""
    ladspa_path, effects = render.load_table()
    problems = render.missing_requirements(ladspa_path, [e for e in effects if e.name in render.QUICK_EFFECTS])
    if problems:
        pytest.skip("third-party suite cannot render: " + "; ".join(problems))
    out = tmp_path / "accuracy.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "import_accuracy.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["effect"]: r for r in json.loads(out.read_text())}
    assert sorted(rows) == sorted(render.QUICK_EFFECTS)
    for name, r in rows.items():
        for method in ("calibration", "correlation"):
            m = r[method]
            assert not m["refused"], (name, method, m["refused"])
            assert all(abs(e) <= 1 for e in m["errors"].values()), (name, method, m["errors"])
            assert m["drift_ppm"] == pytest.approx(20.0, abs=2.0), (name, method)
    assert rows["caps_ampvts_cab"]["calibration"]["polarity"] == -1
    assert "calibration: 15/15 pairs accepted, 15/15 within +-1 sample" in proc.stdout
