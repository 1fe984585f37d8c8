"""A blind ABX listening test of a model against its effect, served on 127.0.0.1.

Protocol. Each trial plays A and B: the clean input and the effect's output for one
excerpt, in a random order per trial. X is either the model's output for that excerpt
(a *model* trial) or an exact copy of A or B (a *control* trial). The listener answers
"X is A" or "X is B", i.e. which of the two X sounds like. A model that has learnt the
effect is heard as the effect; controls have a right answer and show whether the
listener was attentive. At the end: share of model trials judged as the effect, share of
controls right, and the one-sided binomial p-value of "the model is judged as the effect
more often than chance (1/2)".

Blindness. Audio URLs are ``/audio/<token>/<A|B|X>.wav`` with a random token per trial;
neither the page nor the URLs nor the /state answers say which file is clean, effect or
model, or whether a trial is a control. The key lives in server memory and in the results
JSON in the session folder, which is never served. The seed fixes the design (order, A/B
sides, which trials are controls); the tokens are always fresh.

Levels. The three versions of one excerpt share one gain that puts their joint peak at
``peak_dbfs``, so their relative loudness is kept (a louder effect stays louder).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from fxdist.audio import read_audio, to_mono, write_audio
from fxdist.errors import DataError
from fxdist.fsutil import write_text_atomic

Source = Literal["clean", "effect", "model"]
ROLES = ("A", "B", "X")


@dataclass
class AbxConfig:
    """Design of a listening session."""

    n_trials: int = 12
    # Share of trials whose X is an exact copy of A or B (attention checks).
    control_fraction: float = 0.25
    excerpt_s: float = 4.0
    fade_s: float = 0.02
    # Joint peak of the three versions of an excerpt after levelling (dBFS).
    peak_dbfs: float = -1.0
    seed: int = 0

    def __post_init__(self):
        if self.n_trials < 1:
            raise ValueError(f"n_trials must be >= 1, got {self.n_trials}")
        if not 0 <= self.control_fraction < 1:
            raise ValueError(f"control_fraction must be in [0, 1), got {self.control_fraction}")
        if not 0.5 <= self.excerpt_s <= 30:
            raise ValueError(f"excerpt_s must be in [0.5, 30] seconds, got {self.excerpt_s}")
        if not 0 <= self.fade_s <= self.excerpt_s / 4:
            raise ValueError(f"fade_s must be in [0, excerpt_s/4], got {self.fade_s}")
        if self.peak_dbfs > 0:
            raise ValueError(f"peak_dbfs must be <= 0, got {self.peak_dbfs}")


# ---------------------------------------------------------------- excerpts


def excerpt(x: np.ndarray, sr: int, start_s: float, dur_s: float, fade_s: float = 0.02) -> np.ndarray:
    """``x[start : start + dur]`` with raised-cosine fades in and out; (N,) -> float32 (M,)."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    i0 = int(round(start_s * sr))
    seg = x[i0 : i0 + int(round(dur_s * sr))].copy()
    if seg.size == 0:
        raise DataError(f"excerpt at {start_s:.2f} s is outside the {x.size / sr:.2f} s of audio")
    n = min(int(round(fade_s * sr)), seg.size // 2)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
        seg[:n] *= ramp
        seg[-n:] *= ramp[::-1]
    return seg


def pick_starts(target: np.ndarray, sr: int, n: int, dur_s: float, seed: int = 0) -> list[float]:
    """Start times (s) of up to ``n`` non-overlapping ``dur_s`` windows, drawn among the loudest.

    The track is cut into consecutive windows; ``n`` are drawn at random (seeded) from the
    louder half of those within 20 dB of the loudest, so excerpts have music in them (fewer
    than ``n`` if fewer qualify). A track shorter than ``dur_s`` gives [0.0].
    """
    x = np.asarray(target, dtype=np.float64).reshape(-1)
    size = int(round(dur_s * sr))
    count = x.size // size
    if count <= 1:
        return [0.0]
    rms = np.sqrt(np.mean(x[: count * size].reshape(count, size) ** 2, axis=1))
    ranked = [i for i in np.argsort(-rms) if rms[i] >= 0.1 * rms.max()]  # within 20 dB of the loudest
    loud = np.array(ranked[: max(n, (len(ranked) + 1) // 2)])
    rng = np.random.default_rng(seed)
    chosen = rng.choice(loud, size=min(n, loud.size), replace=False)
    return sorted(float(i * size / sr) for i in chosen)


def _level(triple: Sequence[np.ndarray], peak_dbfs: float) -> list[np.ndarray]:
    """Scale three excerpts by one common gain so their joint peak is ``peak_dbfs``."""
    peak = max(float(np.max(np.abs(x))) for x in triple)
    if peak <= 0:
        raise DataError("an ABX excerpt is silent in clean, effect and model alike")
    gain = 10 ** (peak_dbfs / 20) / peak
    return [(x * gain).astype(np.float32) for x in triple]


# ---------------------------------------------------------------- design


@dataclass(frozen=True)
class AbxTrial:
    """One trial: which excerpt, which source is A (B is the other), what X is."""

    trial_id: str
    token: str
    excerpt: int
    a_source: Literal["clean", "effect"]
    x_source: Source

    @property
    def b_source(self) -> str:
        return "effect" if self.a_source == "clean" else "clean"

    @property
    def kind(self) -> str:
        return "model" if self.x_source == "model" else "control"

    def source(self, role: str) -> str:
        return {"A": self.a_source, "B": self.b_source, "X": self.x_source}[role]


def make_trials(n_excerpts: int, n_trials: int, control_fraction: float, seed: int) -> list[AbxTrial]:
    """A seeded random design: ``round(control_fraction * n_trials)`` controls, the rest model trials.

    Model trials walk through the excerpts in turn; controls use random excerpts and copy
    A or B (half each, rounded at random); A is clean or effect at random per trial; the
    order is shuffled. Tokens come from ``secrets`` and are not seeded.
    """
    if n_excerpts < 1:
        raise DataError("an ABX session needs at least one excerpt")
    rng = np.random.default_rng(seed)
    n_control = int(round(control_fraction * n_trials))
    if control_fraction > 0 and n_trials >= 2:
        n_control = max(1, n_control)
    n_control = min(n_control, n_trials - 1)
    specs: list[tuple[int, str]] = [(i % n_excerpts, "model") for i in range(n_trials - n_control)]
    copies = ["clean", "effect"] * n_control
    rng.shuffle(copies)
    specs += [(int(rng.integers(n_excerpts)), copies[i]) for i in range(n_control)]
    order = rng.permutation(len(specs))
    sides = rng.integers(0, 2, size=len(specs))
    return [
        AbxTrial(
            trial_id=f"t{k + 1:02d}", token=secrets.token_hex(8), excerpt=specs[j][0],
            a_source="clean" if sides[k] == 0 else "effect", x_source=specs[j][1],  # type: ignore[arg-type]
        )
        for k, j in enumerate(order)
    ]


# ---------------------------------------------------------------- session


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


# ---------------------------------------------------------------- server

_AUDIO_URL = re.compile(r"^/audio/([0-9a-f]{16})/([ABX])\.wav$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class AbxServer:
    """A running ABX server: ``.url``, ``.shutdown()``, ``.wait(timeout)`` for the last answer."""

    def __init__(self, httpd: ThreadingHTTPServer, session: AbxSession):
        self.httpd = httpd
        self.session = session
        host, port = httpd.server_address[:2]
        self.url = f"http://{host}:{port}/"
        self._thread = threading.Thread(target=httpd.serve_forever, name="fxdist-abx", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every trial is answered (True) or ``timeout`` seconds pass (False)."""
        return self.session.finished.wait(timeout)

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "AbxServer":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def serve(session: AbxSession, host: str = "127.0.0.1", port: int = 0, out_json: str | Path | None = None) -> AbxServer:
    """Serve ``session`` over HTTP in a background thread; port 0 picks a free one."""
    if out_json is not None:
        session.results_json = Path(out_json)
    httpd = ThreadingHTTPServer((host, port), _handler(session))
    httpd.daemon_threads = True
    return AbxServer(httpd, session)


def _handler(session: AbxSession) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "fxdist-abx"

        def log_message(self, format, *args):  # noqa: A002 - keep the terminal quiet
            pass

        def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, obj) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/":
                return self._send(200, PAGE.encode(), "text/html; charset=utf-8")
            if path == "/state":
                return self._json(200, session.state())
            if path == "/results":
                if not session.done:
                    return self._json(409, {"error": "the session is not finished"})
                return self._json(200, session.results())
            match = _AUDIO_URL.match(path)
            if match and session.is_audio(*match.groups()):
                return self._audio(session.audio_path(*match.groups()).read_bytes())
            return self._json(404, {"error": f"no such page: {path}"})

        def _audio(self, data: bytes) -> None:
            """Serve WAV bytes, honouring a single byte range (Safari's media player needs 206)."""
            rng = _RANGE.match(self.headers.get("Range", "").strip())
            if not rng or rng.groups() == ("", ""):
                return self._send(200, data, "audio/wav", {"Accept-Ranges": "bytes"})
            first, last = rng.groups()
            size = len(data)
            start = int(first) if first else max(0, size - int(last))
            end = min(size - 1, int(last)) if first and last else size - 1
            if start >= size or start > end:
                return self._send(416, b"", "audio/wav", {"Content-Range": f"bytes */{size}"})
            self._send(206, data[start : end + 1], "audio/wav",
                       {"Accept-Ranges": "bytes", "Content-Range": f"bytes {start}-{end}/{size}"})

        def do_POST(self):
            if self.path != "/answer":
                return self._json(404, {"error": f"no such endpoint: {self.path}"})
            try:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(min(length, 65536)) or b"{}")
                state = session.answer(str(body.get("token")), str(body.get("choice")), body.get("plays"))
            except StaleAnswer as exc:
                return self._json(409, {"error": str(exc), "state": session.state()})
            except (ValueError, AttributeError, DataError) as exc:
                return self._json(400, {"error": str(exc)})
            return self._json(200, state)

    return Handler


# ---------------------------------------------------------------- convenience

def _load(item, sr: int | None, what: str) -> tuple[np.ndarray, int]:
    if isinstance(item, (str, Path)):
        audio, file_sr = read_audio(item)
        return to_mono(audio, item, downmix=True)[0], file_sr
    if sr is None:
        raise DataError(f"{what}: audio given as an array needs the sample rate sr")
    a = np.asarray(item, dtype=np.float32)
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 1:
        raise DataError(f"{what}: expected mono audio (N,) or (1, N), got shape {a.shape}")
    return a, sr


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def load_tracks(clean, effect, model, sr: int | None = None) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], int]:
    """Load (clean, effect, model) tracks from paths or arrays; check lengths and rates match.

    Each argument is one item or a list of items (one per track); an item is a WAV path
    (stereo is averaged) or a mono array (then ``sr`` is required).
    """
    lists = [_as_list(clean), _as_list(effect), _as_list(model)]
    if len({len(x) for x in lists}) != 1:
        raise DataError(f"clean, effect and model track counts differ: {[len(x) for x in lists]}")
    tracks, rate = [], None
    for i, items in enumerate(zip(*lists)):
        loaded = [_load(item, sr, f"{name} track {i}") for item, name in zip(items, ("clean", "effect", "model"))]
        rates = {r for _, r in loaded}
        if len(rates) != 1 or (rate is not None and rates != {rate}):
            raise DataError(f"track {i}: sample rates differ: {[r for _, r in loaded]} (session rate {rate})")
        rate = rates.pop()
        lengths = [a.size for a, _ in loaded]
        if len(set(lengths)) != 1:
            names = [str(x) if isinstance(x, (str, Path)) else n for x, n in zip(items, ("clean", "effect", "model"))]
            raise DataError(f"track {i}: lengths differ: " + ", ".join(f"{n} {m} samples" for n, m in zip(names, lengths)))
        tracks.append(tuple(a for a, _ in loaded))
    return tracks, int(rate)


def cut_excerpts(
    tracks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], sr: int, n: int, cfg: AbxConfig
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Up to ``n`` faded (clean, effect, model) excerpts spread over the tracks, loud parts first."""
    per_track = -(-n // len(tracks))
    out = []
    for i, (c, e, m) in enumerate(tracks):
        for start in pick_starts(e, sr, per_track, cfg.excerpt_s, seed=cfg.seed + i):
            out.append(tuple(excerpt(x, sr, start, cfg.excerpt_s, cfg.fade_s) for x in (c, e, m)))
    return out[:n] if len(out) > n else out


def run_abx(
    clean, effect, model, out_dir: str | Path, sr: int | None = None, cfg: AbxConfig | None = None,
    host: str = "127.0.0.1", port: int = 0,
) -> AbxServer:
    """Cut excerpts, design the trials, write the audio and start the server.

    ``clean``/``effect``/``model``: WAV paths or (N,) arrays, or lists of them (one per
    track). Returns the running ``AbxServer``: open ``server.url`` in a browser,
    ``server.wait()`` for the last answer, then ``server.shutdown()``. Results go to
    ``out_dir/abx_results.json`` after every answer.
    """
    cfg = cfg or AbxConfig()
    tracks, rate = load_tracks(clean, effect, model, sr)
    n_model = cfg.n_trials - int(round(cfg.control_fraction * cfg.n_trials))
    excerpts = cut_excerpts(tracks, rate, max(1, n_model), cfg)
    session = AbxSession.create(excerpts, rate, out_dir, cfg)
    return serve(session, host=host, port=port)


PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fxdist · blind listening test</title>
<style>
  :root { --ink: #1d2430; --muted: #5b6577; --line: #d9dee7; --accent: #2f6fdf; --bg: #f5f7fb; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 17px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }
  main { max-width: 760px; margin: 40px auto; padding: 32px 40px; background: #fff; border: 1px solid var(--line); border-radius: 14px; box-shadow: 0 4px 18px rgba(20,30,60,.06); }
  h1 { margin: 0 0 6px; font-size: 26px; }
  .lead { margin: 0 0 22px; color: var(--muted); }
  .progress { display: flex; align-items: center; gap: 14px; margin-bottom: 26px; font-weight: 600; }
  .bar { flex: 1; height: 10px; background: #e7ebf2; border-radius: 5px; overflow: hidden; }
  .bar > div { height: 100%; width: 0; background: var(--accent); transition: width .25s; }
  .row { display: flex; gap: 16px; justify-content: center; margin: 18px 0; }
  button { font: inherit; font-weight: 600; border-radius: 10px; cursor: pointer; border: 2px solid transparent; }
  .play { width: 170px; padding: 18px 0; background: #eef3fd; color: var(--accent); border-color: #c9d8f6; }
  .play.x { background: #fff4e5; color: #b25d00; border-color: #f3d2a2; }
  .play.on { outline: 3px solid var(--accent); outline-offset: 2px; }
  .play .n { display: block; font-size: 13px; font-weight: 500; color: var(--muted); }
  .answer { width: 260px; padding: 16px 0; background: var(--accent); color: #fff; font-size: 19px; }
  .answer:disabled, .play:disabled { opacity: .45; cursor: default; }
  .question { text-align: center; margin: 30px 0 4px; font-size: 19px; font-weight: 600; }
  .keys { text-align: center; color: var(--muted); font-size: 14px; margin-top: 16px; }
  kbd { border: 1px solid var(--line); border-bottom-width: 2px; border-radius: 4px; padding: 0 5px; font-size: 13px; background: #fafbfd; }
  table { width: 100%; border-collapse: collapse; margin: 16px 0; }
  td { padding: 10px 6px; border-bottom: 1px solid var(--line); }
  td.v { text-align: right; font-weight: 700; font-variant-numeric: tabular-nums; }
  .verdict { padding: 14px 16px; background: #eef3fd; border-radius: 10px; }
  .error { color: #b00020; min-height: 1.5em; margin: 8px 0 0; text-align: center; }
  [hidden] { display: none !important; }
</style>
</head>
<body>
<main>
  <h1>Blind listening test</h1>
  <p class="lead">A and B are two different versions of the same short excerpt. X is a third version.
  Listen to all three as often as you like, then say which one X sounds like.</p>
  <section id="test">
    <div class="progress"><span id="progress">Trial – / –</span><div class="bar"><div id="bar"></div></div></div>
    <div class="row">
      <button class="play" id="play-A" data-role="A">▶ Play A<span class="n" id="n-A">not played</span></button>
      <button class="play" id="play-B" data-role="B">▶ Play B<span class="n" id="n-B">not played</span></button>
      <button class="play x" id="play-X" data-role="X">▶ Play X<span class="n" id="n-X">not played</span></button>
    </div>
    <p class="question">X sounds like …</p>
    <div class="row">
      <button class="answer" id="answer-A" data-choice="A">X is A</button>
      <button class="answer" id="answer-B" data-choice="B">X is B</button>
    </div>
    <p class="keys"><kbd>A</kbd> <kbd>B</kbd> <kbd>X</kbd> play · <kbd>1</kbd> X is A · <kbd>2</kbd> X is B · <kbd>Space</kbd> stop</p>
    <p class="error" id="error"></p>
  </section>
  <section id="done" hidden>
    <h2>Thank you — all trials answered</h2>
    <table>
      <tr><td>Model trials where X was heard as the effect</td><td class="v" id="r-model">–</td></tr>
      <tr><td>Attention checks answered right</td><td class="v" id="r-control">–</td></tr>
      <tr><td>p-value (model heard as the effect more often than chance)</td><td class="v" id="r-p">–</td></tr>
    </table>
    <p class="verdict" id="r-verdict"></p>
  </section>
</main>
<script>
"use strict";
const players = {};
let state = null, plays = {A: 0, B: 0, X: 0}, busy = false;
for (const role of ["A", "B", "X"]) {
  const audio = new Audio();
  audio.preload = "auto";
  audio.id = "audio-" + role;
  audio.addEventListener("ended", () => mark(null));
  document.body.appendChild(audio);
  players[role] = audio;
}
const $ = (id) => document.getElementById(id);

function mark(role) {
  for (const r of ["A", "B", "X"]) $("play-" + r).classList.toggle("on", r === role);
}
function stopAll() { for (const a of Object.values(players)) { a.pause(); } mark(null); }
function play(role) {
  if (!state || state.done) return;
  stopAll();
  const audio = players[role];
  audio.currentTime = 0;
  plays[role] += 1;
  $("n-" + role).textContent = "played " + plays[role] + "×";
  mark(role);
  audio.play().catch((e) => { mark(null); $("error").textContent = "Cannot play audio here: " + e.message; });
}
function render() {
  stopAll();
  if (state.done) { return showResults(); }
  $("progress").textContent = "Trial " + state.index + " / " + state.total;
  $("bar").style.width = (100 * (state.index - 1) / state.total) + "%";
  plays = {A: 0, B: 0, X: 0};
  for (const role of ["A", "B", "X"]) {
    players[role].src = "/audio/" + state.token + "/" + role + ".wav";
    players[role].load();
    $("n-" + role).textContent = "not played";
  }
  for (const b of document.querySelectorAll("button")) b.disabled = false;
  busy = false;
}
async function answer(choice) {
  if (busy || !state || state.done) return;
  busy = true;
  for (const b of document.querySelectorAll(".answer")) b.disabled = true;
  try {
    const r = await fetch("/answer", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({token: state.token, choice: choice, plays: plays})});
    const body = await r.json();
    if (!r.ok && !body.state) throw new Error(body.error || r.status);
    state = r.ok ? body : body.state;
    $("error").textContent = "";
    render();
  } catch (e) {
    $("error").textContent = "Could not send the answer: " + e.message;
    busy = false;
    for (const b of document.querySelectorAll(".answer")) b.disabled = false;
  }
}
function pct(k, n) { return n ? k + " / " + n + " (" + Math.round(100 * k / n) + " %)" : "–"; }
async function showResults() {
  $("test").hidden = true;
  $("done").hidden = false;
  const r = await (await fetch("/results")).json();
  $("r-model").textContent = pct(r.model_judged_effect, r.model_trials);
  $("r-control").textContent = pct(r.control_correct, r.control_trials);
  $("r-p").textContent = r.p_value_text;
  $("r-verdict").textContent = r.verdict;
  document.body.dataset.finished = "1";
}
for (const b of document.querySelectorAll(".play")) b.addEventListener("click", () => play(b.dataset.role));
for (const b of document.querySelectorAll(".answer")) b.addEventListener("click", () => answer(b.dataset.choice));
document.addEventListener("keydown", (e) => {
  const k = e.key.toUpperCase();
  if (k === "A" || k === "B" || k === "X") play(k);
  else if (k === "1") answer("A");
  else if (k === "2") answer("B");
  else if (k === " ") { e.preventDefault(); stopAll(); }
});
fetch("/state").then((r) => r.json()).then((s) => { state = s; render(); });
</script>
</body>
</html>
"""
