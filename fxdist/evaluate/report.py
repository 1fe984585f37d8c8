"""The HTML pages of ``evaluate`` (report.html) and ``compare`` (compare.html).

Pure rendering: each function takes the result dicts written to metrics.json /
compare.json and returns HTML, figures inlined as base64 PNG, audio linked relatively.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fxdist.evaluate.verdict import verdict


# metric -> (name, unit, what it means); the baseline column shows baseline_<key> when present.
_METRIC_TEXT = {
    "esr": ("Error-to-signal ratio (ESR)", "",
            "Energy of the difference ÷ energy of the effect's output. 0 = identical, 1 = as wrong as silence."),
    "esr_ratio": ("ESR ÷ do-nothing ESR", "", "Below 1: better than doing nothing. The project asks for 0.1 or less."),
    "snr_db": ("Signal-to-error ratio", "dB", "How far the error sits below the effect. Higher is better; 20 dB ≈ ESR 0.01."),
    "esr_pre": ("ESR with treble emphasis", "", "ESR after boosting highs, where distortion's harmonics live (the training loss)."),
    "mrstft": ("Spectral distance (MR-STFT)", "", "How different the spectra are, at three time resolutions. 0 = identical."),
    "mrstft_ratio": ("MR-STFT ÷ do-nothing", "", "Below 1: the spectrum is closer than the clean input's."),
    "log_mel": ("Spectrogram difference", "dB", "Average level difference in the spectrogram as the ear bands it."),
    "lufs_diff": ("Loudness difference", "LU", "Model minus effect loudness. 0 = equally loud; +1 LU ≈ 1 dB louder."),
}
_TABLE_METRICS = ("esr", "snr_db", "esr_pre", "mrstft", "log_mel", "lufs_diff")
_PLOT_TEXT = {
    "spectrograms": ("Spectrograms",
                     ("Time left to right, pitch bottom to top, brightness = loudness. The middle picture (model) "
                      "should look like the right one (effect), not the left one (clean input).")),
    "waveforms": ("Waveforms",
                  "The orange dashed line (model) should sit on the blue line (effect). The lower panel zooms on a few cycles."),
    "error_spectrum": ("Where the model is wrong",
                       ("Red is what is left when the effect is subtracted from the model. The further the red curve "
                        "sits below the blue one, the less you can hear the difference at that pitch.")),
    "transfer_curve": ("Transfer curve",
                       ("How each input level becomes an output level. Clipping and compression show as bends; the "
                        "model's dashed curve should follow the effect's.")),
}
_LEVEL_STYLE = {"good": ("#e6f4ea", "#1e7d32", "✔"), "partial": ("#fff4e0", "#a65e00", "◐"),
                "bad": ("#fde8e8", "#b3261e", "✘"), "gain-only": ("#eef2fb", "#2f5fb3", "ⓘ")}

_LEVEL_WORDS = {"good": "yes", "partial": "not yet", "bad": "no", "gain-only": "gain only"}

_CSS = """
:root { --ink:#1d2430; --muted:#5b6577; --line:#d9dee7; --bg:#f5f7fb; }
* { box-sizing: border-box; }
body { margin:0; font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--ink); background:var(--bg); }
main { max-width:1120px; margin:24px auto; padding:28px 36px; background:#fff; border:1px solid var(--line); border-radius:12px; }
h1 { font-size:27px; margin:0 0 4px; } h2 { font-size:21px; margin:34px 0 10px; padding-top:14px; border-top:1px solid var(--line); }
h3 { font-size:17px; margin:22px 0 4px; } .sub { color:var(--muted); margin:0 0 18px; }
.verdict { padding:16px 20px; border-radius:10px; border-left:6px solid; font-size:18px; margin:18px 0; }
.verdict b { display:block; font-size:20px; margin-bottom:4px; }
.verdict.small { font-size:15px; padding:10px 16px; } .verdict.small b { font-size:16px; }
details { margin:10px 0; } summary { cursor:pointer; color:var(--muted); font-weight:600; }
table { border-collapse:collapse; width:100%; margin:8px 0 4px; font-size:15px; }
th, td { padding:7px 9px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:#f0f3f8; font-weight:600; } td.n { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.why { color:var(--muted); font-size:14px; }
.players { display:grid; grid-template-columns:repeat(3,1fr); gap:14px; margin:10px 0; }
.players div { background:#f7f9fc; border:1px solid var(--line); border-radius:8px; padding:8px 10px; }
.players span { display:block; font-weight:600; margin-bottom:4px; } audio { width:100%; }
figure { margin:14px 0 22px; } figure img { width:100%; max-width:1040px; display:block; border:1px solid var(--line); border-radius:6px; }
figcaption { color:var(--muted); font-size:14px; margin-top:4px; }
.kv td:first-child { color:var(--muted); width:230px; } .note { color:#a65e00; }
.clean { color:#6b6b6b; } .effect { color:#1f77b4; } .model { color:#d26a00; }
"""


def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    v = float(v)
    text = f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return f"{text} {unit}".strip()


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _baseline_of(m: dict, key: str):
    if key == "snr_db":
        b = m.get("baseline_esr")
        return None if b is None else min(200.0, -10 * math.log10(max(b, 1e-20)))
    return m.get(f"baseline_{key}")


def metrics_table_html(m: dict) -> str:
    """An HTML table of one metrics dict: model, do-nothing baseline, their ratio, what it means."""
    rows = []
    for key in _TABLE_METRICS:
        name, unit, why = _METRIC_TEXT[key]
        ratio = m.get(f"{key}_ratio")
        rows.append(
            f"<tr><td>{name}</td><td class='n'><b>{_fmt(m.get(key), unit)}</b></td>"
            f"<td class='n'>{_fmt(_baseline_of(m, key), unit)}</td><td class='n'>{_fmt(ratio)}</td>"
            f"<td class='why'>{html.escape(why)}</td></tr>"
        )
    return ("<table><tr><th>Measure</th><th>Model</th><th>Doing nothing<br><small>(clean input at best volume)</small>"
            "</th><th>Model ÷ nothing</th><th>What it means</th></tr>" + "".join(rows) + "</table>")


def _verdict_box(level: str, sentence: str, small: bool = False) -> str:
    bg, fg, icon = _LEVEL_STYLE.get(level, _LEVEL_STYLE["bad"])
    head = {"good": "Models the effect", "partial": "Does not model the effect yet", "bad": "Does not model the effect",
            "gain-only": "The effect is a volume change"}.get(level, level)
    cls = "verdict small" if small else "verdict"
    return (f'<div class="{cls}" style="background:{bg};border-color:{fg}">'
            f'<b style="color:{fg}">{icon} {head}</b>{html.escape(sentence)}</div>')


def render_report(result: dict, out_dir: Path) -> str:
    """The single-page report of one ``evaluate`` result (figures inlined, audio linked relatively)."""
    model, data, overall = result["model"], result["data"], result["overall"]
    effect = data.get("effect_id") or model.get("effect_id") or "the effect"
    title = f"How well does the {html.escape(str(model['family']))} model imitate {html.escape(str(effect))}?"
    parts = [f"<h1>{title}</h1>",
             (f"<p class='sub'>{data['tracks']} track(s), {data['seconds']:.1f} s of "
              f"{'the ' + html.escape(str(data['split'])) + ' split of ' if data['split'] else ''}"
              f"<code>{html.escape(data['source'])}</code>; model <code>{html.escape(model['checkpoint'])}</code> "
              f"({html.escape(str(model['family']))}, {_fmt(model['params'])} parameters)</p>"),
             _verdict_box(result["verdict_level"], result["verdict"])]
    parts += [f"<p class='note'>Note: {html.escape(n)}</p>" for n in result.get("notes", [])]
    parts += ["<h2>All tracks together</h2>",
              ("<p>Each measure compares the model's output with the effect's output. The <b>doing nothing</b> column "
               "is the clean input turned to its best volume: a model must beat it clearly to have learnt anything.</p>"),
              metrics_table_html(overall)]
    if len(result["tracks"]) > 1:
        parts.append(_track_table(result["tracks"]))
    imp = result.get("impulse_response")
    if imp:
        parts += ["<h2>Echoes and tails: the answer to a single click</h2>",
                  (f"<figure>{_img(out_dir / imp['png'])}<figcaption>A click played through the effect (blue) and "
                   f"the model (orange). Each echo is a spike; a reverb tail is a slope in the lower panel. "
                   f"ESR of the model's response: {_fmt(imp['esr'])}.</figcaption></figure>")]
    for track_id, t in result["tracks"].items():
        parts.append(f"<h2>Track <code>{html.escape(track_id)}</code> <small class='sub'>"
                     f"({t['seconds']:.1f} s)</small></h2>")
        single = len(result["tracks"]) == 1  # its verdict and numbers are those above
        if not single:
            parts.append(_verdict_box(*verdict(t, result.get("judged_by") == "mrstft"), small=True))
        if t["audio"]:
            players = "".join(
                f"<div><span class='{k}'>{label}</span><audio controls preload='metadata' "
                f"src='{html.escape(t['audio'][k])}'></audio></div>"
                for k, label in (("clean", "Clean input"), ("effect", "Effect (target)"), ("model", "Model"))
                if k in t["audio"]
            )
            parts.append(f"<h3>Listen</h3><div class='players'>{players}</div>")
        if not single:
            parts.append("<details><summary>All numbers for this track</summary>" + metrics_table_html(t) + "</details>")
        for key, rel in t["plots"].items():
            name, why = _PLOT_TEXT.get(key, (key, ""))
            parts.append(f"<h3>{name}</h3><figure>{_img(out_dir / rel)}<figcaption>{html.escape(why)}</figcaption></figure>")
    parts.append("<h2>The model</h2>" + _kv_table([
        ("Checkpoint", f"<code>{html.escape(model['checkpoint'])}</code>"),
        ("Family", html.escape(str(model["family"]))), ("Parameters", _fmt(model["params"])),
        ("Receptive field", _receptive_text(model["receptive_field"], model["sample_rate"])),
        ("Sample rate", f"{model['sample_rate']:,} Hz"), ("Trained on effect", html.escape(str(model.get("effect_id") or "—"))),
        ("Training steps", _fmt(model.get("step"))),
        ("Best validation ESR (training)", _fmt(model.get("best_val_esr"))),
        ("Do-nothing validation ESR (training)", _fmt(model.get("baseline_val_esr"))),
    ]))
    parts.append(f"<p class='sub'>fxdist {html.escape(result['fxdist_version'])}, {html.escape(result['created'])}. "
                 "All numbers are in <code>metrics.json</code> beside this page.</p>")
    return _page(title, "".join(parts))


def _receptive_text(rf: int, sr: int) -> str:
    if rf <= 1:
        return "1 sample (recurrent: it remembers the past through its state)"
    return f"{rf:,} samples ({1000 * rf / sr:.1f} ms of input per output sample)"


def _track_table(tracks: dict) -> str:
    rows = "".join(
        f"<tr><td><code>{html.escape(k)}</code></td><td class='n'>{t['seconds']:.1f} s</td>"
        f"<td class='n'>{_fmt(t['esr'])}</td><td class='n'>{_fmt(t['baseline_esr'])}</td>"
        f"<td class='n'>{_fmt(t['esr_ratio'])}</td><td class='n'>{_fmt(t['snr_db'], 'dB')}</td>"
        f"<td>{'✔ yes' if t['models_effect'] else '✘ no'}</td></tr>"
        for k, t in tracks.items()
    )
    return ("<h3>Track by track</h3><table><tr><th>Track</th><th>Length</th><th>ESR</th><th>Doing nothing</th>"
            "<th>Ratio</th><th>SNR</th><th>Models the effect?</th></tr>" + rows + "</table>")


def _kv_table(items: list[tuple[str, str]]) -> str:
    return "<table class='kv'>" + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in items) + "</table>"


def _page(title: str, body: str) -> str:
    plain = html.unescape(title)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(plain)}</title>"
            f"<style>{_CSS}</style></head><body><main>{body}</main></body></html>\n")


def compare_table_html(rows: Sequence[dict]) -> str:
    """An HTML table of ``compare`` rows: rank, model, size, ESR beside the baseline, verdict."""
    head = ("<tr><th>#</th><th>Model</th><th>Family</th><th>Params</th><th>ESR</th><th>Doing nothing</th>"
            "<th>ESR ÷ nothing</th><th>SNR</th><th>MR-STFT ÷ nothing</th><th>Spectrogram diff.</th><th>Models the effect?</th></tr>")
    body = "".join(
        f"<tr><td>{r['rank']}</td><td><code>{html.escape(r['model'])}</code></td><td>{html.escape(str(r['family']))}</td>"
        f"<td class='n'>{_fmt(r['params'])}</td><td class='n'><b>{_fmt(r['esr'])}</b></td>"
        f"<td class='n'>{_fmt(r['baseline_esr'])}</td><td class='n'>{_fmt(r['esr_ratio'])}</td>"
        f"<td class='n'>{_fmt(r['snr_db'], 'dB')}</td><td class='n'>{_fmt(r['mrstft_ratio'])}</td>"
        f"<td class='n'>{_fmt(r['log_mel'], 'dB')}</td>"
        f"<td style='color:{_LEVEL_STYLE.get(r['verdict_level'], _LEVEL_STYLE['bad'])[1]}'>"
        f"{_LEVEL_STYLE.get(r['verdict_level'], _LEVEL_STYLE['bad'])[2]} {_LEVEL_WORDS.get(r['verdict_level'], '?')}</td></tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>"


def render_compare(doc: dict, out_dir: Path) -> str:
    """The single-page comparison: a ranked table and one bar chart per key metric (inlined)."""
    rows = doc["rows"]
    data = doc["data"]
    parts = [f"<h1>Which model imitates {html.escape(str(data.get('effect_id') or 'the effect'))} best?</h1>",
             (f"<p class='sub'>{len(rows)} model(s) on {data['tracks']} track(s), {data['seconds']:.1f} s of "
              f"<code>{html.escape(data['source'])}</code>. Best first. A model imitates the effect when its ESR is "
              "at most a tenth of doing nothing's (ESR ÷ nothing ≤ 0.1); a pitch shifter, whose waveform is its own, "
              "when its MR-STFT distance is at most a third of doing nothing's.</p>"),
             _verdict_box(rows[0]["verdict_level"], f"Best: {rows[0]['model']}. {rows[0]['verdict']}"),
             compare_table_html(rows)]
    for metric, name in doc["plots"].items():
        label, _, why = _METRIC_TEXT.get(metric, (metric, "", ""))
        parts.append(f"<h2>{html.escape(label)}</h2><figure>{_img(out_dir / name)}"
                     f"<figcaption>{html.escape(why)}</figcaption></figure>")
    return _page("Model comparison", "".join(parts))
