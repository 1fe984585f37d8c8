"""How exactly `fxdist data import` finds latency, polarity and clock drift on third-party effects.

For each effect of the third-party suite (benchmarks/thirdparty, rendered from the re-amp signal
by Debian-packaged LADSPA plugins hosted by sox), the rendered pair is shifted by a known added
latency (0, 1, 37, 480 and 4000 samples) and imported twice:

- ``calibration``: the clean file with its re-amp sidecar, so import reads the calibration blips;
- ``correlation``: the same audio without the sidecar, so import correlates waveforms, then onset
  envelopes.

A plugin has a latency of its own, so the figure is the error of the added part:
``found(d) - found(0) - d`` in samples (``-`` where import refused the pair, with its reason
below the table). The drift column imports the pair recorded 20 ppm slow and prints the drift
import measured. Printed per effect and method; the last lines count the pairs accepted and those
within +-1 sample.

    python benchmarks/thirdparty/render.py runs/thirdparty          # once: renders the suite
    python benchmarks/import_accuracy.py runs/thirdparty
    python benchmarks/import_accuracy.py --quick                    # 3 effects, a short signal
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from fxdist.data.align import correct_drift  # noqa: E402
from fxdist.data.ingest import import_pair  # noqa: E402
from fxdist.errors import DataError  # noqa: E402

ADDED = (0, 1, 37, 480, 4000)
DRIFT_PPM = 20.0
MAX_LATENCY_MS = 200.0


def _pair(folder: Path, clean: Path, processed: np.ndarray, sr: int, sidecar: bool) -> tuple[Path, Path]:
    (folder / "clean").mkdir(parents=True, exist_ok=True)
    (folder / "processed").mkdir(parents=True, exist_ok=True)
    c = folder / "clean" / "take.wav"
    shutil.copyfile(clean, c)
    if sidecar:
        shutil.copyfile(clean.with_suffix(".json"), c.with_suffix(".json"))
    p = folder / "processed" / "take.wav"
    sf.write(str(p), processed.astype(np.float32), sr, subtype="FLOAT")
    return c, p


def _import(work: Path, clean: Path, processed: np.ndarray, sr: int, sidecar: bool):
    """-> (latency, polarity, drift ppm, method) or the refusal's text."""
    if work.exists():
        shutil.rmtree(work)
    c, p = _pair(work / "pairs", clean, processed, sr, sidecar)
    try:
        report = import_pair(c, p, work / "root", max_latency_ms=MAX_LATENCY_MS, effect_id="fx")[0]
    except DataError as exc:
        return str(exc).split(": ", 1)[-1]
    return report.latency_samples, report.polarity, report.drift_ppm, report.method


def measure(effect_dir: Path, work: Path) -> dict:
    clean = effect_dir / "train" / "clean" / "reamp.wav"
    y, sr = sf.read(str(effect_dir / "train" / "processed" / "reamp.wav"), dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    out: dict = {"effect": effect_dir.name}
    for method, sidecar in (("calibration", True), ("correlation", False)):
        found = {d: _import(work, clean, np.concatenate([np.zeros(d, np.float32), y]), sr, sidecar) for d in ADDED}
        base = found[0]
        errors, refused = {}, {}
        for d, r in found.items():
            if isinstance(r, str) or isinstance(base, str):
                refused[d] = r if isinstance(r, str) else "the 0-sample pair was refused"
            else:
                errors[d] = r[0] - base[0] - d
        drifted = _import(work, clean, correct_drift(y, -DRIFT_PPM), sr, sidecar)
        out[method] = {
            "latency": None if isinstance(base, str) else base[0],
            "polarity": None if isinstance(base, str) else base[1],
            "errors": errors,
            "refused": refused,
            "drift_ppm": None if isinstance(drifted, str) else drifted[2],
            "drift_refused": drifted if isinstance(drifted, str) else None,
        }
    return out


def _row(r: dict, method: str) -> str:
    m = r[method]
    cells = [f"{m['errors'][d]:+d}" if d in m["errors"] else "-" for d in ADDED]
    lat = "-" if m["latency"] is None else str(m["latency"])
    pol = {1: "+", -1: "inv", None: "-"}[m["polarity"]]
    drift = "-" if m["drift_ppm"] is None else f"{m['drift_ppm']:+.1f}"
    return f"{r['effect']:18} {method:12} {lat:>8} {pol:>4} " + " ".join(f"{c:>5}" for c in cells) + f" {drift:>8}"


def report(rows: list[dict]) -> None:
    print(f"{'effect':18} {'method':12} {'latency':>8} {'pol':>4} " + " ".join(f"{'+' + str(d):>5}" for d in ADDED)
          + f" {'drift':>8}")
    print(f"{'':18} {'':12} {'(found)':>8} {'':>4} " + " ".join(f"{'err':>5}" for _ in ADDED) + f" {'(ppm)':>8}")
    for r in rows:
        for method in ("calibration", "correlation"):
            print(_row(r, method))
    for method in ("calibration", "correlation"):
        pairs = [(r, d) for r in rows for d in ADDED]
        accepted = sum(d in r[method]["errors"] for r, d in pairs)
        exact = sum(d in r[method]["errors"] and abs(r[method]["errors"][d]) <= 1 for r, d in pairs)
        drifts = [r[method]["drift_ppm"] for r in rows if r[method]["drift_ppm"] is not None]
        within = sum(abs(p - DRIFT_PPM) <= 2.0 for p in drifts)
        print(f"{method}: {accepted}/{len(pairs)} pairs accepted, {exact}/{len(pairs)} within +-1 sample; "
              f"{DRIFT_PPM:g} ppm drift measured within 2 ppm on {within}/{len(rows)} effects")
    for r in rows:
        for method in ("calibration", "correlation"):
            for d, why in r[method]["refused"].items():
                print(f"  {r['effect']} {method} +{d}: refused: {why[:160]}")
            if r[method]["drift_refused"]:
                print(f"  {r['effect']} {method} drift: refused: {r[method]['drift_refused'][:160]}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("suite", nargs="?", help="folder written by benchmarks/thirdparty/render.py")
    p.add_argument("--quick", action="store_true", help="render the quick suite (3 effects) into a temp folder first")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="fxdist-import-accuracy-") as tmp:
        suite = Path(args.suite) if args.suite else Path(tmp) / "suite"
        if args.quick and not args.suite:
            subprocess.run([sys.executable, str(HERE / "thirdparty" / "render.py"), str(suite), "--quick"], check=True,
                           stdout=subprocess.DEVNULL)
        if not suite or not (suite / "suite.json").is_file():
            p.error("give the folder benchmarks/thirdparty/render.py wrote, or --quick")
        effects = [e["effect"] for e in json.loads((suite / "suite.json").read_text())["effects"]]
        rows = [measure(suite / name, Path(tmp) / "work") for name in effects]
    report(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
