"""One listening session: the trials' audio on disk, the answers, and the results JSON.

The key (which file is clean, effect or model, and which trials are controls) lives only
in server memory and in the results JSON, which is never served.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from fxdist.abx.design import ROLES, AbxConfig, AbxTrial, _level, make_trials
from fxdist.audio import write_audio
from fxdist.errors import DataError
from fxdist.fsutil import write_text_atomic


class StaleAnswer(DataError):
    """An answer for a trial that is not the current one (a double click, an old tab)."""


class AbxSession:
    """Trials, their audio files in ``out_dir/audio/<token>/``, the answers and the results JSON.

    ``excerpts``: one (clean, effect, model) triple of equal-length (N,) arrays per
    excerpt, already levelled. Thread-safe: the HTTP server calls it from many threads.
    """

    def __init__(
        self,
        out_dir: str | Path,
        trials: Sequence[AbxTrial],
        excerpts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
        sr: int,
        results_json: str | Path | None = None,
        meta: dict | None = None,
    ):
        self.out_dir = Path(out_dir)
        self.trials = list(trials)
        self.sr = sr
        self.results_json = Path(results_json) if results_json else self.out_dir / "abx_results.json"
        self.meta = dict(meta or {})
        self.answers: list[dict] = []
        self._lock = threading.Lock()
        self._shown_at: float | None = None
        self.finished = threading.Event()
        self._by_token = {t.token: t for t in self.trials}
        if not self.trials:
            raise DataError("an ABX session needs at least one trial")
        for trial in self.trials:
            sources = dict(zip(("clean", "effect", "model"), excerpts[trial.excerpt]))
            for role in ROLES:
                write_audio(self.audio_path(trial.token, role), sources[trial.source(role)], sr, subtype="PCM_16")

    @classmethod
    def create(
        cls,
        excerpts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
        sr: int,
        out_dir: str | Path,
        cfg: AbxConfig | None = None,
        results_json: str | Path | None = None,
    ) -> "AbxSession":
        """Design trials over levelled (clean, effect, model) excerpts and write their audio."""
        cfg = cfg or AbxConfig()
        levelled = []
        for i, triple in enumerate(excerpts):
            lengths = [np.asarray(x).size for x in triple]
            if len(set(lengths)) != 1:
                raise DataError(f"excerpt {i}: clean, effect and model lengths differ: {lengths} samples")
            levelled.append(tuple(_level([np.asarray(x, dtype=np.float32).reshape(-1) for x in triple], cfg.peak_dbfs)))
        trials = make_trials(len(levelled), cfg.n_trials, cfg.control_fraction, cfg.seed)
        return cls(out_dir, trials, levelled, sr, results_json, meta={"config": asdict(cfg)})

    def audio_path(self, token: str, role: str) -> Path:
        return self.out_dir / "audio" / token / f"{role}.wav"

    def is_audio(self, token: str, role: str) -> bool:
        return token in self._by_token and role in ROLES

    @property
    def done(self) -> bool:
        return len(self.answers) >= len(self.trials)

    def state(self) -> dict:
        """What the page may know: position, total and the current trial's opaque token."""
        with self._lock:
            return self._state()

    def _state(self) -> dict:
        if self.done:
            return {"index": len(self.trials), "total": len(self.trials), "token": None, "done": True}
        if self._shown_at is None:
            self._shown_at = time.monotonic()
        token = self.trials[len(self.answers)].token
        return {"index": len(self.answers) + 1, "total": len(self.trials), "token": token, "done": False}

    def answer(self, token: str, choice: str, plays: dict | None = None) -> dict:
        """Record "X is ``choice``" (A or B) for the current trial; return the next state."""
        if choice not in ("A", "B"):
            raise DataError(f"choice must be 'A' or 'B', got {choice!r}")
        with self._lock:
            if self.done or token != self.trials[len(self.answers)].token:
                raise StaleAnswer(f"answer for trial token {token!r} but it is not the current trial")
            trial = self.trials[len(self.answers)]
            heard = trial.source(choice)
            seconds = time.monotonic() - self._shown_at if self._shown_at is not None else None
            self.answers.append({
                "trial_id": trial.trial_id, "index": len(self.answers) + 1, "excerpt": trial.excerpt,
                "kind": trial.kind, "a_is": trial.a_source, "b_is": trial.b_source, "x_is": trial.x_source,
                "choice": choice, "x_judged_as": heard,
                "judged_effect": heard == "effect" if trial.kind == "model" else None,
                "correct": heard == trial.x_source if trial.kind == "control" else None,
                "seconds": None if seconds is None else round(seconds, 3),
                "plays": {k: int(v) for k, v in (plays or {}).items() if k in ROLES and isinstance(v, (int, float))},
            })
            self._shown_at = None
            summary = self._summary()
            write_text_atomic(self.results_json, json.dumps(summary, indent=2) + "\n")
            if self.done:
                self.finished.set()
            return self._state()

    def results(self) -> dict:
        """The summary (see module doc) with every answer; ``complete`` says whether all are in."""
        with self._lock:
            return self._summary()

    def _summary(self) -> dict:
        from scipy.stats import binomtest

        model = [a for a in self.answers if a["kind"] == "model"]
        control = [a for a in self.answers if a["kind"] == "control"]
        k = sum(a["judged_effect"] for a in model)
        c = sum(a["correct"] for a in control)
        p = float(binomtest(k, len(model), 0.5, alternative="greater").pvalue) if model else None
        out = {
            "complete": self.done,
            "n_trials": len(self.trials),
            "answered": len(self.answers),
            "model_trials": len(model),
            "model_judged_effect": k,
            "model_judged_effect_rate": k / len(model) if model else None,
            "control_trials": len(control),
            "control_correct": c,
            "control_correct_rate": c / len(control) if control else None,
            "p_value": p,
            "p_value_text": "–" if p is None else f"{p:.3g}",
            "verdict": _verdict(k, len(model), c, len(control), p),
            "sample_rate": self.sr,
            **self.meta,
            "answers": list(self.answers),
        }
        return out


def _verdict(k: int, n: int, c: int, m: int, p: float | None) -> str:
    parts = []
    if m and c / m < 0.75:
        parts.append(f"Only {c} of {m} attention checks were right: treat this result with caution.")
    if p is None:
        parts.append("No model trial answered yet.")
    elif p < 0.05:
        parts.append(f"The model was heard as the effect in {k} of {n} trials, more often than chance (p = {p:.3g}).")
    else:
        parts.append(
            f"The model was heard as the effect in {k} of {n} trials: not clearly more often than chance (p = {p:.3g})."
        )
    return " ".join(parts)
