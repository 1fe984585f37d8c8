"""The HTTP side of an ABX session, on 127.0.0.1: the page, /state, /answer, the audio.

Audio URLs are ``/audio/<token>/<A|B|X>.wav`` with a random token per trial, so neither
the page, the URLs nor the /state answers say which file is clean, effect or model.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fxdist.abx.design import AbxConfig, cut_excerpts, load_tracks
from fxdist.abx.page import PAGE
from fxdist.abx.session import AbxSession, StaleAnswer
from fxdist.errors import DataError

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
