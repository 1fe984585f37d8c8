"""Judge a trained model on held-out audio: metrics, figures, audio and one HTML page.

``evaluate`` runs one checkpoint over the test split of a shard set (or over a folder of
recorded clean/processed pairs), scores every track against the do-nothing baseline
(the clean input at its best gain, see ``fxdist.dsp.do_nothing_esr``), and writes into
``out_dir``::

    metrics.json            per track + overall + model info + plain-words verdict
    report.html             one page: verdict, metrics beside the baseline, players, figures
    impulse_response.png    time-based effects (delay, reverb, chorus) whose config is known
    <track>/clean.wav effect.wav model.wav          (float WAV, at the model's rate)
    <track>/spectrograms.png waveforms.png error_spectrum.png [transfer_curve.png]

``compare`` scores several checkpoints on the same data (one row each, best ESR first).
``start_abx`` serves the blind ABX listening test (``fxdist.abx``) on model outputs.

Data and model must share a sample rate; otherwise evaluation refuses, unless
``resample=True`` (the data is then resampled to the model's rate, with a note on stderr).

Modules: ``data`` (loading tracks), ``checkpoints`` (which checkpoints a path names),
``score`` (running models, evaluate/compare/start_abx), ``verdict`` (the success rule),
``report`` (the HTML pages).
"""

from fxdist.evaluate.checkpoints import best_checkpoint, find_checkpoints, is_tune_experiment, short_labels
from fxdist.evaluate.data import EvalData, Track, conform, is_shard_set, load_data
from fxdist.evaluate.report import compare_table_html, metrics_table_html, render_compare, render_report
from fxdist.evaluate.score import (
    AMPLITUDE_KINDS,
    COMPARE_METRICS,
    TIME_KINDS,
    CompareReport,
    EvalReport,
    compare,
    evaluate,
    exact_math,
    model_info,
    run_model,
    start_abx,
)
from fxdist.evaluate.verdict import SPECTRAL_FACTOR, SUCCESS_FACTOR, verdict

__all__ = [
    "AMPLITUDE_KINDS",
    "COMPARE_METRICS",
    "SPECTRAL_FACTOR",
    "SUCCESS_FACTOR",
    "TIME_KINDS",
    "CompareReport",
    "EvalData",
    "EvalReport",
    "Track",
    "best_checkpoint",
    "compare",
    "compare_table_html",
    "conform",
    "evaluate",
    "exact_math",
    "find_checkpoints",
    "is_shard_set",
    "is_tune_experiment",
    "load_data",
    "metrics_table_html",
    "model_info",
    "render_compare",
    "render_report",
    "run_model",
    "short_labels",
    "start_abx",
    "verdict",
]
