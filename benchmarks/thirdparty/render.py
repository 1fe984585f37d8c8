"""Render the third-party effect suite: Debian-packaged LADSPA effects on re-amp and GM audio.

    python benchmarks/thirdparty/render.py OUT --train-input reamp.wav [--quick] [--effects a,b]
    python benchmarks/thirdparty/render.py --check          # each effect on 1 s, twice
    python benchmarks/thirdparty/render.py --write-effects  # effects/*.yaml from effects.yaml

Installs nothing: it checks that sox (with LADSPA support), fluidsynth, the GM soundfont and
every plugin file exist, and names the apt package of whatever is missing. Each effect is an
fxdist ``command`` effect (effects/<name>.yaml) rendered by ``fxdist data render``. OUT gets,
per effect, pairs folders that ``fxdist data import`` takes::

    OUT/<effect>/train/clean/reamp.wav      OUT/<effect>/train/processed/reamp.wav
    OUT/<effect>/val/clean/*.wav            OUT/<effect>/val/processed/*.wav
    OUT/<effect>/test/clean/*.wav           OUT/<effect>/test/processed/*.wav

plus OUT/material/ (the clean audio) and OUT/suite.json (the printed table, package versions).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import material  # noqa: E402  (sibling module; benchmarks/ is not a package)

TABLE = HERE / "effects.yaml"
EFFECTS_DIR = HERE / "effects"
QUICK_EFFECTS = ("caps_ampvts_cab", "caps_compress", "cmt_fbdelay")
QUICK_SECONDS = 3.0
QUICK_REAMP_SECONDS = 4.0  # the shortest re-amp signal: calibrations at both ends, 4 s of content
QUICK_TEST = (("clean_guitar", "chords"), ("electric_bass", "lead"))
TIMEOUT_S = 300
MIN_ESR = 1e-4  # below this the effect is a plain gain on the check audio: the plugin does nothing
CLIP = 0.999   # sox carries audio as 32-bit integers: plugin output past full scale is clipped


@dataclass(frozen=True)
class Effect:
    """One row of effects.yaml: an fxdist effect made of sox-hosted LADSPA stages."""

    name: str
    family: str
    kind: str
    package: str
    version: str
    stages: tuple[dict, ...]
    post_gain_db: float | None = None

    @property
    def plugin(self) -> str:
        return " + ".join(f"{s['plugin']}:{s['label']}" for s in self.stages)

    def sox_args(self) -> list[str]:
        args: list[str] = []
        for s in self.stages:
            args += ["ladspa", s["plugin"], s["label"], *(_num(v) for v in s["settings"].values())]
            args += ["0"] * s.get("output_controls", 0)
        if self.post_gain_db is not None:
            args += ["gain", _num(self.post_gain_db)]
        return args

    def config(self, ladspa_path: str) -> dict:
        """The fxdist effect config (``kind: command``) of this effect."""
        stages = "; ".join(
            f"{s['label']} from {s['plugin']}.so ({', '.join(f'{k}={_num(v)}' for k, v in s['settings'].items())})"
            for s in self.stages
        )
        post = f", then {_num(self.post_gain_db)} dB" if self.post_gain_db is not None else ""
        description = (
            f"Third-party {self.kind}: LADSPA {stages}{post}, Debian package {self.package} "
            f"{self.version}, hosted by sox. Settings fixed before any model saw them "
            f"(apt-get install sox {self.package})."
        )
        return {
            "name": self.name,
            "family": self.family,
            "description": description,
            "chain": [{
                "command": ["sox", "{input}", "{output}", *self.sox_args()],
                "env": {"LADSPA_PATH": ladspa_path},
                "timeout_s": TIMEOUT_S,
            }],
        }


def _num(v: float | int) -> str:
    """A setting as sox reads it: ``1``, ``0.35``, ``-12``."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def load_table(path: Path = TABLE) -> tuple[str, list[Effect]]:
    data = yaml.safe_load(path.read_text())
    effects = [Effect(e["name"], e["family"], e["kind"], e["package"], str(e["version"]), tuple(e["stages"]),
                      e.get("post_gain_db")) for e in data["effects"]]
    return data["ladspa_path"], effects


def effect_yaml(effect: Effect, ladspa_path: str) -> str:
    head = f"# Written by benchmarks/thirdparty/render.py --write-effects from effects.yaml; edit that table.\n"
    return head + yaml.safe_dump(effect.config(ladspa_path), sort_keys=False, width=100)


def write_effects(ladspa_path: str, effects: list[Effect]) -> None:
    EFFECTS_DIR.mkdir(exist_ok=True)
    for e in effects:
        (EFFECTS_DIR / f"{e.name}.yaml").write_text(effect_yaml(e, ladspa_path))
    print(f"{len(effects)} effect(s) -> {EFFECTS_DIR}")


# --- what must be installed -------------------------------------------------------------

def missing_requirements(ladspa_path: str, effects: list[Effect], need_soundfont: bool = True) -> list[str]:
    """One line per missing program, soundfont or plugin file, naming its apt package."""
    problems = []
    if shutil.which("sox") is None:
        problems.append("program sox not found (apt-get install sox)")
    else:
        help_text = subprocess.run(["sox", "-h"], capture_output=True, text=True).stdout
        if "ladspa" not in help_text.split("EFFECTS:")[-1]:
            problems.append("sox was built without LADSPA support (apt-get install sox, Debian's build has it)")
    if need_soundfont:
        if shutil.which("fluidsynth") is None:
            problems.append("program fluidsynth not found (apt-get install fluidsynth)")
        if not material.SOUNDFONT.is_file():
            problems.append(f"soundfont {material.SOUNDFONT} not found (apt-get install fluid-soundfont-gm)")
    seen = set()
    for e in effects:
        for s in e.stages:
            so = Path(ladspa_path) / f"{s['plugin']}.so"
            if so not in seen and not so.is_file():
                problems.append(f"LADSPA plugin {so} not found, needed by {e.name} (apt-get install {e.package})")
            seen.add(so)
    return problems


def installed_version(package: str) -> str | None:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def port_mismatches(ladspa_path: str, effects: list[Effect]) -> list[str]:
    """Settings whose names or order differ from the plugin's control inputs (needs analyseplugin)."""
    if shutil.which("analyseplugin") is None:
        return []
    out = []
    for e in effects:
        for s in e.stages:
            proc = subprocess.run(["analyseplugin", str(Path(ladspa_path) / f"{s['plugin']}.so"), s["label"]],
                                  capture_output=True, text=True)
            ports = [line.split('"')[1] for line in proc.stdout.splitlines()
                     if '"' in line and "input, control" in line]
            if ports != list(s["settings"]):
                out.append(f"{e.name}: {s['label']} control inputs are {ports}, effects.yaml lists {list(s['settings'])}")
    return out


# --- rendering ----------------------------------------------------------------------------

def fxdist_render(effect_file: Path, clean_dir: Path, processed_dir: Path) -> None:
    """``fxdist data render`` of ``clean_dir/*.wav`` into ``processed_dir`` (same names)."""
    with tempfile.TemporaryDirectory(prefix="fxdist-3p-", dir=processed_dir.parent) as tmp:
        root = Path(tmp)
        (root / "clean").mkdir()
        for wav in sorted(clean_dir.glob("*.wav")):
            _link(wav, root / "clean" / wav.name)
        cmd = [sys.executable, "-m", "fxdist", "data", "render", str(root), "--effect", str(effect_file),
               "--workers", "1", "--no-progress"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"render.py: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        done = next((root / "processed").iterdir())
        processed_dir.mkdir(parents=True, exist_ok=True)
        for wav in sorted(done.glob("*.wav")):
            shutil.move(str(wav), processed_dir / wav.name)


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    return audio.mean(axis=1), sr


def reamp_signal(out: Path, seconds: float | None = None) -> Path:
    """Write the re-amp signal (and its section map ``out.json``) with ``fxdist data reamp``."""
    args = [sys.executable, "-m", "fxdist", "data", "reamp", str(out), "--overwrite"]
    if seconds is not None:
        args += ["--seconds", str(seconds)]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"render.py: fxdist data reamp {out} failed:\n{proc.stderr[-2000:]}")
    return out


def prepare_train(src: Path, dst: Path, seconds: float | None) -> float:
    """Copy the training input to ``dst`` as mono 48 kHz FLOAT WAV (first ``seconds`` if given)."""
    audio, sr = read_mono(src)
    if sr != material.SAMPLE_RATE:
        raise SystemExit(f"render.py: {src} is {sr} Hz; the suite renders at {material.SAMPLE_RATE} Hz "
                         f"(resample it first, e.g. sox {src} -r {material.SAMPLE_RATE} out.wav)")
    if seconds is not None:
        audio = audio[: int(seconds * sr)]
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(dst, audio, sr, subtype="FLOAT")
    return audio.size / sr


def render_material(out: Path, pieces: dict[str, tuple[tuple[str, str], ...]], seconds: float) -> None:
    for split, items in pieces.items():
        for inst, riff in items:
            dst = out / split / f"{inst}-{riff}.wav"
            if not dst.exists():
                material.render_piece(inst, riff, seconds, dst)


def pooled_stats(clean_dir: Path, processed_dir: Path) -> tuple[float, float, float]:
    """(seconds, peak of processed, do-nothing ESR pooled over every pair)."""
    from fxdist.dsp import do_nothing_esr

    cs, ts = [], []
    for wav in sorted(clean_dir.glob("*.wav")):
        cs.append(read_mono(wav)[0])
        ts.append(read_mono(processed_dir / wav.name)[0])
    c, t = np.concatenate(cs), np.concatenate(ts)
    return c.size / material.SAMPLE_RATE, float(np.max(np.abs(t))), do_nothing_esr(c, t)


def run_suite(args, ladspa_path: str, effects: list[Effect]) -> int:
    out = Path(args.out)
    seconds = QUICK_SECONDS if args.quick else args.seconds
    pieces = {"val": material.VALIDATION, "test": QUICK_TEST if args.quick else material.TEST}
    out.mkdir(parents=True, exist_ok=True)
    if args.train_input:
        train_src, cut = Path(args.train_input), QUICK_SECONDS if args.quick else None
    else:  # the re-amp signal, whole: its calibrations are at both ends
        train_src, cut = reamp_signal(out / "reamp_signal.wav", QUICK_REAMP_SECONDS if args.quick else None), None
    mat = out / "material"
    train_seconds = prepare_train(train_src, mat / "train" / "reamp.wav", cut)
    sidecar = train_src.with_suffix(".json")
    if sidecar.is_file() and cut is None:
        shutil.copyfile(sidecar, mat / "train" / "reamp.json")
    render_material(mat, pieces, seconds)

    rows = []
    for e in effects:
        effect_file = EFFECTS_DIR / f"{e.name}.yaml"
        for split in ("train", "val", "test"):
            base = out / e.name / split
            if base.exists():
                shutil.rmtree(base)
            (base / "clean").mkdir(parents=True)
            for wav in sorted((mat / split).glob("*.wav")):
                _link(wav, base / "clean" / wav.name)
                if wav.with_suffix(".json").is_file():  # the re-amp signal's section map travels with it
                    _link(wav.with_suffix(".json"), base / "clean" / wav.with_suffix(".json").name)
            fxdist_render(effect_file, base / "clean", base / "processed")
        secs, peak, esr = pooled_stats(out / e.name / "test" / "clean", out / e.name / "test" / "processed")
        rows.append({"effect": e.name, "kind": e.kind, "plugin": e.plugin, "package": e.package,
                     "version": installed_version(e.package) or e.version, "table_version": e.version,
                     "seconds": secs, "peak": peak, "do_nothing_esr": esr})
    summary = {"train_input": str(train_src), "train_seconds": train_seconds, "piece_seconds": seconds,
               "val": [f"{i}-{r}" for i, r in pieces["val"]], "test": [f"{i}-{r}" for i, r in pieces["test"]],
               "soundfont": str(material.SOUNDFONT), "soundfont_package": installed_version("fluid-soundfont-gm"),
               "effects": rows}
    (out / "suite.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{'effect':18} {'plugin':40} {'package':28} {'test s':>7} {'peak':>6} {'do-nothing ESR':>15}")
    for r in rows:
        print(f"{r['effect']:18} {r['plugin']:40} {r['package'] + ' ' + r['version']:28} "
              f"{r['seconds']:7.1f} {r['peak']:6.3f} {r['do_nothing_esr']:15.4f}")
        if r["version"] != r["table_version"]:
            print(f"  note: {r['package']} {r['version']} installed, settings were chosen on {r['table_version']}")
    print(f"train: {train_src} ({train_seconds:.1f} s); val: {len(pieces['val'])} piece(s); "
          f"test: {len(pieces['test'])} piece(s) of {seconds:g} s -> {out}")
    return 0


def run_check(ladspa_path: str, effects: list[Effect]) -> int:
    """Render 1 s of GM guitar through each effect twice; exit 1 unless every output differs from
    the input by more than a gain, is finite, not silent, not clipped and the same bytes twice."""
    from fxdist.dsp import do_nothing_esr

    bad = 0
    with tempfile.TemporaryDirectory(prefix="fxdist-3p-check-") as tmp:
        tmp = Path(tmp)
        clean = tmp / "clean"
        material.render_piece("clean_guitar", "chords", 1.0, clean / "clean_guitar-chords.wav")
        x, _ = read_mono(clean / "clean_guitar-chords.wav")
        print(f"{'effect':18} {'differs':>8} {'finite':>7} {'rms dB':>7} {'peak':>6} {'clipped':>8} "
              f"{'do-nothing ESR':>15} {'same bytes twice':>17}")
        for e in effects:
            effect_file = EFFECTS_DIR / f"{e.name}.yaml"
            outs = []
            for k in range(2):
                fxdist_render(effect_file, clean, tmp / f"{e.name}-{k}")
                outs.append((tmp / f"{e.name}-{k}" / "clean_guitar-chords.wav").read_bytes())
            y, _ = read_mono(tmp / f"{e.name}-0" / "clean_guitar-chords.wav")
            differs = y.shape != x.shape or not np.allclose(x, y, atol=1e-6)
            finite = bool(np.all(np.isfinite(y)))
            rms_db = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) + 1e-30)
            peak = float(np.max(np.abs(y)))
            clipped = int(np.sum(np.abs(y) >= CLIP))
            esr = do_nothing_esr(x, y) if finite else float("nan")
            same = outs[0] == outs[1]
            bad += not (differs and finite and rms_db > -60 and clipped == 0 and esr > MIN_ESR and same)
            print(f"{e.name:18} {str(differs):>8} {str(finite):>7} {rms_db:7.1f} {peak:6.3f} {clipped:8d} "
                  f"{esr:15.4f} {str(same):>17}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", help="output folder")
    p.add_argument("--train-input", help="training input WAV, 48 kHz (default: the re-amp signal of `fxdist data reamp`)")
    p.add_argument("--quick", action="store_true", help=f"{len(QUICK_EFFECTS)} effects, {QUICK_SECONDS:g} s pieces, "
                                                        f"{len(QUICK_TEST)} test pieces, a {QUICK_REAMP_SECONDS:g} s re-amp signal")
    p.add_argument("--effects", help="comma-separated effect names (default: all, or the quick three)")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each GM piece in s (default 8)")
    p.add_argument("--check", action="store_true", help="render 1 s through each effect twice and report")
    p.add_argument("--write-effects", action="store_true", help="write effects/*.yaml from effects.yaml")
    args = p.parse_args(argv)

    ladspa_path, effects = load_table()
    if args.write_effects:
        write_effects(ladspa_path, effects)
        return 0
    if args.effects:
        names = args.effects.split(",")
        unknown = sorted(set(names) - {e.name for e in effects})
        if unknown:
            p.error(f"unknown effect(s) {', '.join(unknown)}; the suite has {', '.join(e.name for e in effects)}")
        effects = [e for e in effects if e.name in names]
    elif args.quick:
        effects = [e for e in effects if e.name in QUICK_EFFECTS]
    problems = missing_requirements(ladspa_path, effects)
    if problems:
        print("render.py: cannot render the suite:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    for line in port_mismatches(ladspa_path, effects):
        print(f"render.py: {line}", file=sys.stderr)
        return 2
    if args.check:
        return run_check(ladspa_path, effects)
    if not args.out:
        p.error("give the output folder OUT (or --check / --write-effects)")
    return run_suite(args, ladspa_path, effects)


if __name__ == "__main__":
    sys.exit(main())
