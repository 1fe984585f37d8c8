"""The HTTP side of an ABX session, on 127.0.0.1: the page, /state, /answer, the audio.

Audio URLs are ``/audio/<token>/<A|B|X>.wav`` with a random token per trial, so neither
the page, the URLs nor the /state answers say which file is clean, effect or model.

Only the page the server itself served may answer. Every request must name the server's
own loopback address in ``Host`` (a DNS-rebound name is refused), and ``POST /answer``
must carry the per-session token embedded in that page (``X-Fxdist-Token``) and, when the
browser sends one, the server's own ``Origin``. Anything else gets 403 and changes nothing,
so another web page open in the same browser cannot answer for the listener.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fxdist.abx.design import AbxConfig, cut_excerpts, load_tracks
from fxdist.abx.page import TOKEN_HEADER, render_page
from fxdist.abx.session import AbxSession, StaleAnswer
from fxdist.errors import ConfigError, DataError

_AUDIO_URL = re.compile(r"^/audio/([0-9a-f]{16})/([ABX])\.wav$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


class AbxServer:
    """A running ABX server: ``.url``, ``.shutdown()``, ``.wait(timeout)`` for the last answer.

    ``.token`` is the session token its page sends with each answer.
    """

    def __init__(self, httpd: ThreadingHTTPServer, session: AbxSession, token: str):
        self.httpd = httpd
        self.session = session
        self.token = token
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
    """Serve ``session`` over HTTP in a background thread on loopback; port 0 picks a free one.

    ``host`` must be a loopback name (``LOOPBACK_HOSTS``): the test has no login, so a
    listener on another machine reaches it through an SSH tunnel (``ssh -L``).
    """
    if host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"the ABX server listens on loopback only ({', '.join(LOOPBACK_HOSTS)}), not {host!r}: anyone who "
            f"can reach it could answer; for a listener on another machine forward the port (ssh -L PORT:127.0.0.1:PORT)"
        )
    if out_json is not None:
        session.results_json = Path(out_json)
    token = secrets.token_urlsafe(24)
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(session, token))
    httpd.daemon_threads = True
    return AbxServer(httpd, session, token)


def _handler(session: AbxSession, token: str) -> type[BaseHTTPRequestHandler]:
    page = render_page(token).encode()

    class Handler(BaseHTTPRequestHandler):
        server_version = "fxdist-abx"

        def _own_authorities(self) -> set[str]:
            port = self.server.server_address[1]
            return {f"{name}:{port}" for name in LOOPBACK_HOSTS}

        def _refusal(self, post: bool) -> str | None:
            """Why this request is not from the page this server served (None: it is)."""
            own = self._own_authorities()
            if self.headers.get("Host", "") not in own:
                return f"Host must be this server ({', '.join(sorted(own))})"
            if not post:
                return None
            origin = self.headers.get("Origin")
            if origin is not None and origin not in {f"http://{a}" for a in own}:
                return "cross-origin answers are refused"
            if not hmac.compare_digest(self.headers.get(TOKEN_HEADER, "").encode(), token.encode()):
                return f"missing or wrong {TOKEN_HEADER}: answer from the page this server serves"
            return None

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
            refusal = self._refusal(post=False)
            if refusal:
                return self._json(403, {"error": refusal})
            path = self.path.split("?", 1)[0]
            if path == "/":
                return self._send(200, page, "text/html; charset=utf-8")
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
            refusal = self._refusal(post=True)
            if refusal:
                return self._json(403, {"error": refusal})
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
