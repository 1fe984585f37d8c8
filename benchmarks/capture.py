"""`fxdist capture` beside Neural Amp Modeler's trainer on the third-party effect suite.

For each effect of benchmarks/thirdparty (LADSPA plugins hosted by sox), the effect's recording
of fxdist's re-amp signal is the training data of two systems, started together with the same
wall budget and thread count, each pinned to its own cores with ``taskset`` when there are enough:

- fxdist: ``fxdist capture RECORDING --signal REAMP.wav --budget S --threads N`` (import, shard,
  a sweep over its candidate families, pick by validation);
- NAM 0.13 (in its own venv, ``--nam-python``): ``nam.train.full.main`` training NAM's default
  WaveNet (the ``channels_8`` submodel of its packed default, as a plain WaveNet) with
  ``trainer.max_time`` set to what is left of the budget, on the same imported (latency-removed)
  train section, validating on the first ``NAM_VALIDATION_S`` s of the validation section.

Both trained models then process the suite's held-out test pieces (GM instruments and riffs that
neither training nor validation used), NAM's output with its -18 dBFS target scaling undone. Both
outputs are delayed by the latency the import removed and scored by one scorer,
``fxdist.metrics.evaluate_pair`` over the test pieces joined end to end: ESR and MR-STFT against
the effect's output, beside do-nothing (the clean input at its best single gain). A row per effect
gives the verdict against the bars in ``BARS``.

    python benchmarks/capture.py --effects gx_overdrive,caps_compress,caps_ampvts_cab,cmt_fbdelay \\
        --budget 240 --threads 1 --nam-python /tmp/namvenv/bin/python --work runs/capture-bench \\
        --json runs/capture-bench/rows.json
    python benchmarks/capture.py --quick        # 2 effects, 3 s test pieces, 30 s budget, no NAM

NAM's venv: ``python3 -m venv V && V/bin/pip install torch==2.13.0 && V/bin/pip install
neural-amp-modeler==0.13.0``. Without ``--nam-python`` (or when it does not run) the NAM columns
are ``-`` and the NAM bar is reported as not checked.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
SUITE = REPO / "benchmarks" / "thirdparty"

QUICK_EFFECTS = ("caps_ampvts_cab", "caps_compress")
QUICK_BUDGET = 30.0
QUICK_CANDIDATES = "fir,wh"
# --quick renders 3 s test pieces but the whole re-amp signal: render.py's own --quick signal
# (4 s of content, 0.8 s of validation) is too short for any candidate to beat doing nothing.
QUICK_PIECE_S = 3.0
PIECE_S = 8.0
NAM_VALIDATION_S = 5.0
NAM_EXPORT_S = 10.0  # kept back from NAM's max_time for its checkpoint load and export

# (name, how the bar reads, the effect families/kinds it applies to)
DRIVE, TIME, MODULATION, PITCH = "drive", "time", "modulation", "pitch"
BARS = {
    DRIVE: "ESR >= 10x below do-nothing, >= 3x below NAM, MR-STFT not above do-nothing",
    TIME: "ESR >= 10x below do-nothing",
    MODULATION: "ESR >= 10x or MR-STFT >= 5x below do-nothing",
    PITCH: "MR-STFT >= 3x below do-nothing",
}


def bar_of(family: str, kind: str) -> str | None:
    """Which bar an effect of the suite is judged by (None: the suite's wah and EQ have none)."""
    if family in ("distortion", "fuzz", "amp_cab", "compression"):
        return DRIVE
    if family in ("delay", "reverb"):
        return TIME
    if family == "chorus" or any(k in kind for k in ("chorus", "flanger", "phaser")):
        return MODULATION
    if family == "pitch":
        return PITCH
    return None


def verdict(bar: str | None, m: dict, nam: dict | None) -> str:
    """'pass' or 'miss: <reasons>' for the fxdist model's test scores ``m`` (evaluate_pair keys)."""
    if bar is None:
        return "no bar for this kind"
    esr_x = m["baseline_esr"] / max(m["esr"], 1e-12)
    stft_x = m["baseline_mrstft"] / max(m["mrstft"], 1e-12)
    misses, unchecked = [], None
    if bar == DRIVE:
        if esr_x < 10:
            misses.append(f"ESR only {esr_x:.1f}x below do-nothing (bar 10x)")
        if m["mrstft"] > m["baseline_mrstft"]:
            misses.append(f"MR-STFT {m['mrstft']:.3f} above do-nothing's {m['baseline_mrstft']:.3f}")
        if nam is None:
            unchecked = "NAM bar not checked (NAM did not run)"
        elif nam["esr"] / max(m["esr"], 1e-12) < 3:
            misses.append(f"ESR only {nam['esr'] / max(m['esr'], 1e-12):.2f}x below NAM's (bar 3x)")
    elif bar == TIME:
        if esr_x < 10:
            misses.append(f"ESR only {esr_x:.1f}x below do-nothing (bar 10x)")
    elif bar == MODULATION:
        if esr_x < 10 and stft_x < 5:
            misses.append(f"ESR {esr_x:.1f}x (bar 10x) and MR-STFT {stft_x:.1f}x (bar 5x) below do-nothing")
    elif bar == PITCH:
        if stft_x < 3:
            misses.append(f"MR-STFT only {stft_x:.1f}x below do-nothing (bar 3x)")
    if misses:
        return "miss: " + "; ".join(misses)
    return "pass" + (f" ({unchecked})" if unchecked else "")


# -- NAM's side: runs inside NAM's venv (no fxdist import) ---------------------------------------


def nam_train(spec_path: Path) -> int:
    """Train NAM's default WaveNet from ``spec`` and process the test pieces with it.

    spec: {train_x, train_y, val_x, val_y (PCM WAVs), budget, threads, outdir, tests: [clean wavs],
    test_out (folder)}. Writes test_out/<name>.wav (float, NAM's output scaling undone) and
    outdir/nam_result.json (params, seconds, scale).
    """
    started = time.monotonic()
    spec = json.loads(spec_path.read_text())
    import numpy as np
    import soundfile as sf
    import torch

    torch.set_num_threads(int(spec["threads"]))
    from nam.data import Split, init_dataset
    from nam.models._from_nam import init_from_nam
    from nam.train import core
    from nam.train.full import main as nam_main

    packed = core._get_packed_model_config()
    sub = next(s for s in packed["net"]["config"]["submodels"] if s["name"] == "channels_8")
    model_config = {"net": {"name": "WaveNet", "config": sub["config"]},
                    **{k: v for k, v in packed.items() if k != "net"}}
    sr = 48000
    data_config = {
        "train": {"x_path": spec["train_x"], "y_path": spec["train_y"], "ny": core._NY_DEFAULT},
        "validation": {"x_path": spec["val_x"], "y_path": spec["val_y"], "ny": None,
                       "stop_samples": int(NAM_VALIDATION_S * sr), "require_input_pre_silence": None},
        "common": {"delay": 0, "allow_unequal_lengths": True},
        "joint": [{"name": "nam.data.normalize_joint_dataset_output", "kwargs": {"level_rms_dbfs": -18.0}}],
    }
    max_time = max(1, int(spec["budget"] - (time.monotonic() - started) - NAM_EXPORT_S))
    learning_config = {
        "train_dataloader": {"batch_size": 16, "shuffle": True, "pin_memory": False, "drop_last": True,
                             "num_workers": 0},
        "val_dataloader": {},
        "trainer": {"max_epochs": 1_000_000, "max_time": {"seconds": max_time}, "accelerator": "cpu",
                    "enable_progress_bar": False},
    }
    outdir = Path(spec["outdir"])
    outdir.mkdir(parents=True, exist_ok=True)
    nam_main(data_config, model_config, learning_config, outdir, no_show=True, make_plots=False)
    trained_s = time.monotonic() - started

    # The scale NAM put on the targets: -18 dBFS over the RMS of the training output it read.
    cfg = {**data_config, "common": {**data_config["common"], "nx": 1}}
    y = init_dataset(cfg, Split.TRAIN).y
    scale = 10 ** (-18.0 / 20) / float(torch.sqrt(torch.mean(torch.square(y))))
    model = init_from_nam(json.loads(next(outdir.glob("*.nam")).read_text()))
    model.eval()
    test_out = Path(spec["test_out"])
    test_out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for wav in spec["tests"]:
            x, rate = sf.read(wav, dtype="float32", always_2d=True)
            out = model(torch.from_numpy(np.ascontiguousarray(x.mean(axis=1)))).numpy().reshape(-1)
            sf.write(test_out / Path(wav).name, out / scale, rate, subtype="FLOAT")
    params = sum(p.numel() for p in model.parameters())
    (outdir / "nam_result.json").write_text(json.dumps(
        {"params": params, "seconds": round(trained_s, 1), "max_time": max_time, "scale": scale,
         "receptive_field": model.receptive_field}, indent=2))
    return 0


# -- fxdist's side --------------------------------------------------------------------------------


def render(work: Path, names: list[str], quick: bool) -> Path:
    """Render (or keep) the suite's pairs of ``names`` under ``work/suite``."""
    suite = work / "suite"
    table = suite / "suite.json"
    seconds = QUICK_PIECE_S if quick else PIECE_S
    have = set()
    if table.is_file():
        done = json.loads(table.read_text())
        if done.get("piece_seconds") == seconds:
            have = {r["effect"] for r in done["effects"] if (suite / r["effect"] / "test" / "processed").is_dir()}
    todo = [n for n in names if n not in have]
    if not todo:
        print(f"renders kept: {suite}")
        return suite
    if have:  # render.py rewrites suite.json with the effects it is given
        todo = sorted(set(todo) | have)
    args = [sys.executable, str(SUITE / "render.py"), str(suite), "--effects", ",".join(todo), "--seconds", str(seconds)]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    print(proc.stdout, end="")
    if proc.returncode != 0:
        raise SystemExit(f"capture.py: {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return suite


def import_train(recording: Path, signal: Path, root: Path, effect: str):
    """The same import capture does, for NAM's data and for the latency: -> (reports by split)."""
    from fxdist.data.ingest import import_pairs

    if root.exists():
        shutil.rmtree(root)
    reports = import_pairs([(signal, recording)], root, effect_id=effect)
    return {r.split: r for r in reports}


def pcm(src: Path, dst: Path) -> Path:
    """A 24-bit PCM copy (NAM reads WAVs with wavio, which takes PCM)."""
    import soundfile as sf

    audio, sr = sf.read(src, dtype="float32")
    sf.write(dst, audio, sr, subtype="PCM_24")
    return dst


def cores_for(threads: int) -> tuple[str | None, str | None, str]:
    """taskset core lists for (fxdist, NAM) and a line saying how they were placed."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2 * threads:
        a, b = cores[:threads], cores[threads:2 * threads]
        return ",".join(map(str, a)), ",".join(map(str, b)), f"fxdist on core(s) {a}, NAM on core(s) {b}"
    return None, None, f"only {len(cores)} core(s) for 2 x {threads} thread(s): not pinned"


def _pinned(cmd: list[str], cores: str | None) -> list[str]:
    return (["taskset", "-c", cores] if cores else []) + cmd


def start_both(e: str, suite: Path, work: Path, args, nam_spec: Path | None):
    """Start fxdist capture and (if given) NAM's trainer together -> {name: (Popen, log, started)}."""
    train = suite / e / "train"
    fx_cores, nam_cores, placed = cores_for(args.threads)
    print(f"{e}: {placed}")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "PYTHONUNBUFFERED": "1"}
    cap = [sys.executable, "-m", "fxdist", "capture", str(train / "processed" / "reamp.wav"),
           "--signal", str(train / "clean" / "reamp.wav"), "--out", str(work / e / "fxdist"),
           "--budget", str(args.budget), "--threads", str(args.threads), "--effect-id", e]
    if args.candidates:
        cap += ["--candidates", args.candidates]
    runs = {}
    log = open(work / e / "fxdist.log", "w")
    runs["fxdist"] = (subprocess.Popen(_pinned(cap, fx_cores), stdout=log, stderr=subprocess.STDOUT, env=env,
                                       cwd=REPO), log, time.monotonic())
    if nam_spec is not None:
        log = open(work / e / "nam.log", "w")
        cmd = [args.nam_python, str(HERE), "--nam-train", str(nam_spec)]
        runs["nam"] = (subprocess.Popen(_pinned(cmd, nam_cores), stdout=log, stderr=subprocess.STDOUT, env=env,
                                        cwd=REPO), log, time.monotonic())
    return runs


def wait_all(runs) -> dict[str, tuple[int, float]]:
    done = {}
    for name, (proc, log, started) in runs.items():
        rc = proc.wait()
        log.close()
        done[name] = (rc, time.monotonic() - started)
    return done


# -- the one scorer -------------------------------------------------------------------------------


def score(tests: list[Path], targets: Path, outputs: dict[str, Path], latency: int) -> dict:
    """evaluate_pair over the test pieces joined end to end; each model output is delayed by the
    import's ``latency`` (both models learned the latency-removed target) -> {model: metrics}."""
    import numpy as np

    from fxdist.audio import read_audio
    from fxdist.metrics import evaluate_pair

    def mono(path: Path):
        audio, sr = read_audio(path)
        return audio.mean(axis=0), sr

    def delayed(y, n):
        return np.concatenate([np.zeros(latency, y.dtype), y])[:n]

    clean, target, preds = [], [], {k: [] for k in outputs}
    preds["do-nothing"] = clean  # scored like a model; only its baseline keys are kept
    for wav in tests:
        c, sr = mono(wav)
        t, _ = mono(targets / wav.name)
        n = min(len(c), len(t))
        clean.append(c[:n])
        target.append(t[:n])
        for k, folder in outputs.items():
            preds[k].append(delayed(mono(folder / wav.name)[0], n))
    c, t = np.concatenate(clean), np.concatenate(target)
    return {k: evaluate_pair(c, t, np.concatenate(p), sr) for k, p in preds.items()}


def fxdist_outputs(best: Path, tests: list[Path], folder: Path, threads: int) -> Path:
    import torch

    from fxdist.audio import read_audio, write_audio
    from fxdist.checkpoint import load_model
    from fxdist.process import predict

    torch.set_num_threads(threads)
    model, _ = load_model(best)
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    for wav in tests:
        audio, sr = read_audio(wav)
        with torch.no_grad():
            write_audio(folder / wav.name, predict(model, audio.mean(axis=0)), sr)
    return folder


# -- one effect -----------------------------------------------------------------------------------


def run_effect(e, suite: Path, work: Path, args) -> dict:
    effect_dir = work / e.name
    for sub in ("fxdist", "nam", "nam_data", "fxdist_test"):
        shutil.rmtree(effect_dir / sub, ignore_errors=True)
    effect_dir.mkdir(parents=True, exist_ok=True)
    train = suite / e.name / "train"
    tests = sorted((suite / e.name / "test" / "clean").glob("*.wav"))
    reports = import_train(train / "processed" / "reamp.wav", train / "clean" / "reamp.wav",
                           effect_dir / "nam_data", e.name)
    latency = reports["train"].latency_samples
    nam_spec = None
    if args.nam_python:
        data = effect_dir / "nam_data"
        spec = {
            "train_x": str(pcm(reports["train"].clean_out, data / "train_x.wav")),
            "train_y": str(pcm(reports["train"].processed_out, data / "train_y.wav")),
            "val_x": str(pcm(reports["validation"].clean_out, data / "val_x.wav")),
            "val_y": str(pcm(reports["validation"].processed_out, data / "val_y.wav")),
            "budget": args.budget, "threads": args.threads, "outdir": str(effect_dir / "nam"),
            "tests": [str(p) for p in tests], "test_out": str(effect_dir / "nam_test"),
        }
        nam_spec = effect_dir / "nam_spec.json"
        nam_spec.write_text(json.dumps(spec, indent=2))
    runs = start_both(e.name, suite, work, args, nam_spec)
    done = wait_all(runs)
    row = {"effect": e.name, "kind": e.kind, "family": None, "params": None, "latency": latency,
           "fxdist_seconds": round(done["fxdist"][1], 1), "nam_seconds": None, "nam_params": None,
           "fxdist": None, "nam": None, "do-nothing": None, "bar": bar_of(e.family, e.kind)}
    notes = []
    outputs = {}
    cap_json = effect_dir / "fxdist" / "capture.json"
    if done["fxdist"][0] != 0 or not cap_json.is_file():
        notes.append(f"fxdist capture exited {done['fxdist'][0]} (log: {effect_dir / 'fxdist.log'})")
    else:
        cap = json.loads(cap_json.read_text())
        chosen = next((c for c in cap["candidates"] if c["chosen"]), None)
        if chosen is None:
            notes.append("fxdist capture chose no model: " + "; ".join(cap.get("notes") or []))
        else:
            row.update(family=f"{chosen['name']} ({chosen['family']})", params=chosen["params"],
                       fxdist_capture_seconds=cap["wall_seconds"])
            outputs["fxdist"] = fxdist_outputs(Path(cap["best"]), tests, effect_dir / "fxdist_test", args.threads)
    if "nam" in done:
        result = effect_dir / "nam" / "nam_result.json"
        if done["nam"][0] != 0 or not result.is_file():
            notes.append(f"NAM exited {done['nam'][0]} (log: {effect_dir / 'nam.log'})")
        else:
            nam = json.loads(result.read_text())
            row.update(nam_seconds=nam["seconds"], nam_params=nam["params"], nam_wall=round(done["nam"][1], 1))
            outputs["nam"] = effect_dir / "nam_test"
    else:
        notes.append("NAM skipped: no --nam-python")
    scores = score(tests, suite / e.name / "test" / "processed", outputs, latency)
    nothing = scores.pop("do-nothing")
    row["do-nothing"] = {"esr": float(nothing["baseline_esr"]), "mrstft": float(nothing["baseline_mrstft"])}
    for k, m in scores.items():
        row[k] = {key: float(m[key]) for key in ("esr", "baseline_esr", "mrstft", "baseline_mrstft")}
    row["verdict"] = (verdict(row["bar"], row["fxdist"], row["nam"]) if row["fxdist"]
                      else "miss: no fxdist model (" + "; ".join(notes) + ")")
    row["notes"] = notes
    return row


# -- the table ------------------------------------------------------------------------------------

HEAD = ["effect", "kind", "family chosen", "params", "fx s", "NAM s", "fx ESR", "do-nothing", "ratio", "NAM ESR",
        "NAM/fx", "MR-STFT fx/NAM/do-nothing", "verdict"]


def table_rows(rows: list[dict]) -> list[list[str]]:
    def g(v, fmt):
        return "-" if v is None else format(v, fmt)

    out = []
    for r in rows:
        fx, nam, base = r["fxdist"] or {}, r["nam"] or {}, r["do-nothing"]
        ratio = base["esr"] / max(fx["esr"], 1e-12) if fx else None
        vs = nam["esr"] / max(fx["esr"], 1e-12) if fx and nam else None
        stft = "/".join(g(m.get("mrstft"), ".3f") for m in (fx, nam)) + "/" + g(base["mrstft"], ".3f")
        out.append([r["effect"], r["kind"], r["family"] or "-", g(r["params"], "d"), g(r["fxdist_seconds"], ".0f"),
                    g(r["nam_seconds"], ".0f"), g(fx.get("esr"), ".4g"), g(base["esr"], ".4g"),
                    "-" if ratio is None else f"{ratio:.1f}x", g(nam.get("esr"), ".4g"),
                    "-" if vs is None else f"{vs:.2f}x", stft, r["verdict"]])
    return out


def print_table(rows: list[dict]) -> None:
    body = table_rows(rows)
    widths = [max(len(c) for c in col) for col in zip(HEAD, *body)]
    print("\nCAPTURE BENCHMARK (test: held-out GM pieces; ratio = do-nothing ESR / fxdist ESR; "
          "NAM/fx = NAM ESR / fxdist ESR)")
    for line in (HEAD, *body):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
    for r in rows:
        for n in r["notes"]:
            print(f"  {r['effect']}: {n}")
    print("bars: " + "; ".join(f"{k}: {v}" for k, v in BARS.items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--effects", help="comma-separated suite effects (default: all; --quick: "
                                     f"{','.join(QUICK_EFFECTS)})")
    p.add_argument("--budget", type=float, help="wall seconds for each system (default 240; --quick: 30)")
    p.add_argument("--threads", type=int, default=1, help="threads (and cores) for each system (default 1)")
    p.add_argument("--candidates", help=f"fxdist capture's --candidates (default: its own; --quick: {QUICK_CANDIDATES})")
    p.add_argument("--work", help="folder for renders (kept and reused) and runs (default: a temp folder)")
    p.add_argument("--nam-python", help="python of a venv with neural-amp-modeler 0.13 (default: NAM skipped)")
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--quick", action="store_true", help=f"2 effects, {QUICK_PIECE_S:g} s test pieces, "
                                                        f"{QUICK_BUDGET:g} s budget, no NAM")
    p.add_argument("--nam-train", help=argparse.SUPPRESS)  # NAM's side, run inside its venv
    args = p.parse_args(argv)
    if args.nam_train:
        return nam_train(Path(args.nam_train))

    sys.path.insert(0, str(SUITE))
    sys.path.insert(0, str(REPO))
    import render as suite_render

    ladspa_path, effects = suite_render.load_table()
    names = args.effects.split(",") if args.effects else list(QUICK_EFFECTS if args.quick else (e.name for e in effects))
    unknown = sorted(set(names) - {e.name for e in effects})
    if unknown:
        p.error(f"unknown effect(s) {', '.join(unknown)}; the suite has {', '.join(e.name for e in effects)}")
    if args.quick:
        args.nam_python = None
        args.candidates = args.candidates or QUICK_CANDIDATES
    args.budget = args.budget or (QUICK_BUDGET if args.quick else 240.0)
    if args.nam_python and not Path(args.nam_python).is_file():
        print(f"NAM skipped: {args.nam_python} not found")
        args.nam_python = None
    elif args.nam_python is None and not args.quick:
        print("NAM skipped: no --nam-python given")
    problems = suite_render.missing_requirements(ladspa_path, [e for e in effects if e.name in names])
    if problems:
        print("capture.py: cannot render the suite:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    import tempfile

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="fxdist-capture-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    suite = render(work, names, args.quick)
    print(f"budget {args.budget:.0f} s and {args.threads} thread(s) per system; work: {work}; load: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    rows = []
    for e in (e for e in effects if e.name in names):
        t0 = time.monotonic()
        row = run_effect(e, suite, work, args)
        rows.append(row)
        print(f"{e.name}: done in {time.monotonic() - t0:.0f} s; load {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
              f"{row['verdict']}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
