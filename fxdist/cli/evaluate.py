"""`fxdist evaluate`, `fxdist compare` and `fxdist abx`."""

from __future__ import annotations

import argparse
from pathlib import Path

DATA_HELP = "shard set (folder or URI with manifest.json) or a folder of clean/processed pairs"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="judge a trained model: metrics, figures, audio, report.html",
                       description="Run a checkpoint over held-out data and write metrics.json, figures, "
                                   "audio and one report.html.")
    p.add_argument("model", help="checkpoint (.pt) written by fxdist train")
    _data_args(p)
    p.add_argument("--out", help="output folder (default: <checkpoint name>-eval beside the checkpoint)")
    p.add_argument("--no-audio", action="store_true", help="do not write clean/effect/model WAVs")
    p.add_argument("--no-plots", action="store_true", help="do not draw figures")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("compare", help="score several checkpoints on the same data",
                       description="Score checkpoints (or experiment folders, searched for **/best.pt) on the "
                                   "same data; write compare.json, bar charts and compare.html.")
    p.add_argument("models", nargs="+", help="checkpoints and/or experiment folders")
    _data_args(p)
    p.add_argument("--out", default="runs/compare", help="output folder (default: runs/compare)")
    p.add_argument("--trust", action="store_true", help="read experiment folders others can write (see docs/trust.md)")
    p.set_defaults(func=_compare)

    p = sub.add_parser("abx", help="blind ABX listening test of a model in the browser",
                       description="Run the model on excerpts of the data and serve a blind ABX test on 127.0.0.1.")
    p.add_argument("model", help="checkpoint (.pt) written by fxdist train")
    _data_args(p)
    p.add_argument("--trials", type=int, default=12, help="number of trials (default 12)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    p.add_argument("--seed", type=int, default=0, help="seed of the trial design")
    p.add_argument("--out", help="session folder (default: <checkpoint name>-abx beside the checkpoint)")
    p.set_defaults(func=_abx)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--split", default="test", help="split of a shard set (default: test)")
    p.add_argument("--max-seconds", type=float, help="use only the first S seconds of each track")
    p.add_argument("--max-tracks", type=int, help="use only the first N tracks")
    p.add_argument("--resample", action="store_true",
                   help="resample data whose rate differs from the model's (default: refuse)")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1 ...")


def _default_out(model: str, suffix: str) -> Path:
    path = Path(model)
    return path.with_name(f"{path.stem}-{suffix}")


def _evaluate(args) -> int:
    from fxdist.evaluate import evaluate

    out = args.out or _default_out(args.model, "eval")
    report = evaluate(args.model, args.data, out, split=args.split, max_seconds=args.max_seconds,
                      write_audio=not args.no_audio, plots=not args.no_plots, resample=args.resample,
                      max_tracks=args.max_tracks, device=args.device)
    m, info, data = report.overall, report.model, report.data
    print(f"{info['checkpoint']}: {info['family']} model, {info['params']:,} parameters, {info['sample_rate']} Hz")
    print(f"data: {data['tracks']} track(s), {data['seconds']:.1f} s of {data['source']}"
          + (f" (split {data['split']})" if data["split"] else ""))
    print(overall_table(m))
    print(f"verdict: {report.verdict}")
    print(f"metrics: {report.metrics_json}")
    print(f"report: {report.report_html}")
    return 0


def overall_table(m: dict) -> str:
    """The overall metrics beside the do-nothing baseline, as aligned text lines."""
    import math

    base_snr = min(200.0, -10 * math.log10(max(m["baseline_esr"], 1e-20)))
    rows = [
        ("metric", "model", "do-nothing", "model/base"),
        ("ESR", f"{m['esr']:.4g}", f"{m['baseline_esr']:.4g}", f"{m['esr_ratio']:.3g}"),
        ("SNR (dB)", f"{m['snr_db']:.2f}", f"{base_snr:.2f}", ""),
        ("ESR pre-emph.", f"{m['esr_pre']:.4g}", "", ""),
        ("MR-STFT", f"{m['mrstft']:.4g}", f"{m['baseline_mrstft']:.4g}", f"{m['mrstft_ratio']:.3g}"),
        ("log-mel (dB)", f"{m['log_mel']:.3g}", "", ""),
        ("loudness (LU)", f"{m['lufs_diff']:+.2f}", "", ""),
    ]
    return "\n".join(f"  {a:<15}{b:>12}{c:>12}{d:>12}" for a, b, c, d in rows)


def _compare(args) -> int:
    from fxdist.evaluate import compare

    report = compare(args.models, args.data, args.out, split=args.split, max_seconds=args.max_seconds,
                     resample=args.resample, max_tracks=args.max_tracks, device=args.device, trust=args.trust)
    width = max(len(r["model"]) for r in report.rows)
    print(f"  {'#':>2}  {'model':<{width}}  {'ESR':>10}  {'do-nothing':>10}  {'ratio':>8}  verdict")
    for r in report.rows:
        print(f"  {r['rank']:>2}  {r['model']:<{width}}  {r['esr']:>10.4g}  {r['baseline_esr']:>10.4g}  "
              f"{r['esr_ratio']:>8.3g}  {r['verdict_level']}")
    print(f"table: {report.compare_json}")
    print(f"report: {report.report_html}")
    return 0


def _abx(args) -> int:
    from fxdist.abx import AbxConfig
    from fxdist.errors import ConfigError
    from fxdist.evaluate import start_abx

    try:
        cfg = AbxConfig(n_trials=args.trials, seed=args.seed)
    except ValueError as exc:
        raise ConfigError(f"--trials/--seed: {exc}") from exc
    out = Path(args.out or _default_out(args.model, "abx"))
    server = start_abx(args.model, args.data, out, split=args.split, cfg=cfg, max_seconds=args.max_seconds,
                       max_tracks=args.max_tracks, resample=args.resample, port=args.port, device=args.device)
    interrupted = False
    try:
        print(f"ABX test of {args.model}: open {server.url} in a browser ({len(server.session.trials)} trials; "
              "Ctrl-C stops)", flush=True)
        while not server.wait(0.5):
            pass
    except KeyboardInterrupt:
        interrupted = True
    finally:
        server.shutdown()
    summary = server.session.results()
    if interrupted:
        print(f"stopped after {summary['answered']} of {summary['n_trials']} trials")
    print(summary["verdict"])
    if summary["model_trials"]:
        print(f"model heard as the effect: {summary['model_judged_effect']} / {summary['model_trials']}, "
              f"attention checks right: {summary['control_correct']} / {summary['control_trials']}, "
              f"p = {summary['p_value_text']}")
    path = server.session.results_json
    if summary["answered"]:
        print(f"results: {path}")
    else:
        print("no answers: nothing written")
    return 130 if interrupted else 0
