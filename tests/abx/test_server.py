"""The ABX HTTP protocol, run_abx from files, a whole session in real Chromium, and answers
not from the served page (another origin, no session token, a foreign Host) refused.

The browser test drives Debian's chromium through chromedriver's W3C WebDriver HTTP API
with the standard library only. Headless Chromium has no sound device, so "Play" is
checked by what a player needs: the page's audio elements point at URLs that answer 200
with exactly the WAV bytes on disk, and Chromium decodes them to the right duration.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import soundfile as sf

from fxdist import abx
from fxdist.errors import ConfigError, DataError
from tests.abx.common import SR, make_session, oracle, triples


# ---------------------------------------------------------------- HTTP protocol


def http(url, data=None, headers=None):
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def page_token(page: bytes) -> str:
    """The session token the served page sends with its answers."""
    return re.search(rb'<meta name="fxdist-session" content="([A-Za-z0-9_-]+)">', page).group(1).decode()


def test_http_protocol_keeps_the_key_hidden(tmp_path):
    session = make_session(tmp_path, n_trials=3, control_fraction=0.34)
    with abx.serve(session, out_json=tmp_path / "out" / "res.json") as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, page, headers = http(server.url)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        status, body, _ = http(server.url + "state")
        state = json.loads(body)
        assert set(state) == {"index", "total", "token", "done"} and state["index"] == 1
        assert state["token"] == session.trials[0].token
        for word in ("clean", "effect", "model", "control"):
            assert word not in body.decode()
        assert http(server.url + "results")[0] == 409  # no peeking before the end
        wav = session.audio_path(state["token"], "X").read_bytes()
        status, got, headers = http(f"{server.url}audio/{state['token']}/X.wav")
        assert status == 200 and got == wav and headers["Content-Type"] == "audio/wav"
        status, got, headers = http(f"{server.url}audio/{state['token']}/X.wav", headers={"Range": "bytes=10-19"})
        assert status == 206 and got == wav[10:20] and headers["Content-Range"] == f"bytes 10-19/{len(wav)}"
        assert http(f"{server.url}audio/{'0' * 16}/X.wav")[0] == 404
        assert http(f"{server.url}audio/../abx_results.json")[0] == 404
        own = {"X-Fxdist-Token": page_token(page)}
        assert own["X-Fxdist-Token"] == server.token
        assert http(server.url + "answer", {"token": state["token"], "choice": "C"}, own)[0] == 400
        assert http(server.url + "answer", {"token": "nope", "choice": "A"}, own)[0] == 409
        for trial in session.trials:
            assert http(server.url + "answer", {"token": trial.token, "choice": oracle(trial)}, own)[0] == 200
        assert server.wait(timeout=1)
        status, body, _ = http(server.url + "results")
        assert status == 200 and json.loads(body)["answered"] == 3
        assert (tmp_path / "out" / "res.json").exists()


@pytest.mark.parametrize("headers, why", [
    ({"Origin": "http://evil.example"}, "cross-origin"),
    ({"Origin": "null"}, "cross-origin"),
    ({"X-Fxdist-Token": None}, "X-Fxdist-Token"),
    ({"X-Fxdist-Token": "wrong"}, "X-Fxdist-Token"),
    ({"Host": "evil.example"}, "Host must be this server"),
])
def test_answers_not_from_the_served_page_are_refused(tmp_path, headers, why):
    """A foreign Origin, a missing or wrong session token, a foreign Host (DNS rebinding): 403, no answer recorded."""
    session = make_session(tmp_path, n_trials=3, control_fraction=0.34)
    with abx.serve(session) as server:
        own = {"X-Fxdist-Token": server.token, "Origin": server.url.rstrip("/")}
        sent = {k: v for k, v in {**own, **headers}.items() if v is not None}
        trial = session.trials[0]
        status, body, _ = http(server.url + "answer", {"token": trial.token, "choice": oracle(trial)}, sent)
        assert status == 403 and why in json.loads(body)["error"]
        assert session.answers == [] and not session.results_json.exists()
        assert json.loads(http(server.url + "state")[1])["index"] == 1
        assert http(server.url + "answer", {"token": trial.token, "choice": oracle(trial)}, own)[0] == 200


def test_pages_asked_for_under_a_foreign_host_are_refused(tmp_path):
    session = make_session(tmp_path, n_trials=3, control_fraction=0.34)
    with abx.serve(session) as server:
        for path in ("", "state", f"audio/{session.trials[0].token}/X.wav"):
            assert http(server.url + path, headers={"Host": "rebound.example:80"})[0] == 403
        port = server.url.rsplit(":", 1)[1].rstrip("/")
        assert http(server.url + "state", headers={"Host": f"localhost:{port}"})[0] == 200


def test_each_session_has_its_own_token(tmp_path):
    with abx.serve(make_session(tmp_path / "a")) as one, abx.serve(make_session(tmp_path / "b")) as two:
        assert one.token != two.token and len(one.token) >= 32
        assert page_token(http(one.url)[1]) == one.token


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", ""])
def test_serve_listens_on_loopback_only(tmp_path, host):
    with pytest.raises(ConfigError, match="loopback only"):
        abx.serve(make_session(tmp_path), host=host)


def test_run_abx_from_wav_files(tmp_path):
    c, e, m = triples(1, seconds=3.0)[0]
    paths = []
    for name, x in zip(("clean", "effect", "model"), (c, e, m)):
        paths.append(tmp_path / f"{name}.wav")
        sf.write(paths[-1], x, SR, subtype="FLOAT")
    cfg = abx.AbxConfig(n_trials=4, excerpt_s=1.0, seed=0)
    with abx.run_abx(*paths, out_dir=tmp_path / "abx", cfg=cfg) as server:
        assert len(server.session.trials) == 4
        assert http(server.url + "state")[0] == 200
    with pytest.raises(DataError, match="lengths differ"):
        abx.run_abx(c, e, m[:-5], out_dir=tmp_path / "x", sr=SR)
    with pytest.raises(DataError, match="needs the sample rate"):
        abx.run_abx(c, e, m, out_dir=tmp_path / "x")


# ---------------------------------------------------------------- a whole session in Chromium

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class WebDriver:
    """The few W3C WebDriver calls this test needs, over chromedriver's HTTP API."""

    def __init__(self, profile: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(self.base + "/status", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.proc.kill()
                    raise
                time.sleep(0.1)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1000,900", "--autoplay-policy=no-user-gesture-required"]
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome",
                                                  "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}}
        try:
            self.session = self._call("POST", "/session", caps)["sessionId"]
        except Exception:
            self.proc.kill()
            raise

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["value"]

    def cmd(self, method, path, body=None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def get(self, url):
        self.cmd("POST", "/url", {"url": url})

    def find(self, css):
        return self.cmd("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def click(self, css):
        self.cmd("POST", f"/element/{self.find(css)}/click")

    def text(self, css):
        return self.cmd("GET", f"/element/{self.find(css)}/text")

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def js_async(self, script, *args):
        return self.cmd("POST", "/execute/async", {"script": script, "args": list(args)})

    def screenshot(self, path):
        Path(path).write_bytes(base64.b64decode(self.cmd("GET", "/screenshot")))

    def wait_for(self, script, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not self.js(script):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {script}")
            time.sleep(0.05)

    def quit(self):
        try:
            self.cmd("DELETE", "")
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=10)


FETCH_SHA = """
const [url, done] = arguments;
fetch(url).then(async (r) => {
  const digest = await crypto.subtle.digest("SHA-256", await r.arrayBuffer());
  done({status: r.status, sha: Array.from(new Uint8Array(digest)).map((b) => b.toString(16).padStart(2, "0")).join("")});
}).catch((e) => done({status: -1, sha: String(e)}));
"""


@pytest.mark.slow
@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="chromium/chromedriver not installed (apt-get install chromium chromium-driver)"
)
def test_whole_session_in_headless_chromium(tmp_path):
    session = make_session(tmp_path, n_trials=6, control_fraction=1 / 3, seed=7)
    model_trials = [t for t in session.trials if t.kind == "model"]
    missed = model_trials[-1]  # the listener hears this model output as the clean input
    shots = Path(os.environ.get("FXDIST_ABX_SCREENSHOTS", tmp_path))
    with abx.serve(session) as server:
        driver = WebDriver(tmp_path / "profile")
        try:
            driver.get(server.url)
            for k, trial in enumerate(session.trials, start=1):
                driver.wait_for(f"return document.getElementById('progress').textContent === 'Trial {k} / 6'")
                for role in abx.ROLES:
                    driver.click(f"#play-{role}")
                    src = driver.js(f"return document.getElementById('audio-{role}').src")
                    assert src == f"{server.url}audio/{trial.token}/{role}.wav"
                    got = driver.js_async(FETCH_SHA, src)
                    want = hashlib.sha256(session.audio_path(trial.token, role).read_bytes()).hexdigest()
                    assert got == {"status": 200, "sha": want}
                # Chromium itself decoded the WAV: its duration is the excerpt's
                driver.wait_for("return document.getElementById('audio-X').readyState >= 1")
                assert driver.js("return document.getElementById('audio-X').duration") == pytest.approx(1.0, abs=0.01)
                assert driver.text("#n-X") in ("played 1×", "not played")
                if k == 2:
                    driver.screenshot(shots / "abx_mid_session.png")
                driver.click(f"#answer-{oracle(trial, trial is not missed)}")
            driver.wait_for("return document.body.dataset.finished === '1'")
            driver.screenshot(shots / "abx_results.png")
            assert driver.text("#r-model") == "3 / 4 (75 %)"
            assert driver.text("#r-control") == "2 / 2 (100 %)"
            assert driver.text("#r-p") == "0.312"
        finally:
            driver.quit()
    res = json.loads(session.results_json.read_text())
    assert res["complete"] and [a["trial_id"] for a in res["answers"]] == [t.trial_id for t in session.trials]
    assert res["model_judged_effect_rate"] == 0.75 and res["control_correct_rate"] == 1.0
    assert res["p_value"] == pytest.approx(5 / 16)
    assert all(a["plays"]["X"] >= 1 and a["seconds"] > 0 for a in res["answers"])
    png = (shots / "abx_mid_session.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


FOREIGN_PAGE = """<!doctype html><html><body><script>
const [target, trialToken] = [%s, %s];
const tries = [
  {mode: "no-cors", headers: {"Content-Type": "text/plain"}},
  {mode: "cors", headers: {"Content-Type": "application/json", "X-Fxdist-Token": "guess"}},
];
Promise.all(tries.map((t) => fetch(target + "answer", {method: "POST", ...t,
    body: JSON.stringify({token: trialToken, choice: "A", plays: {X: 1}})})
  .then((r) => r.type + ":" + r.status).catch((e) => "blocked")))
  .then((outcomes) => { document.body.dataset.outcomes = outcomes.join(","); });
</script></body></html>"""


@pytest.mark.slow
@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="chromium/chromedriver not installed (apt-get install chromium chromium-driver)"
)
def test_another_site_in_the_same_browser_cannot_answer(tmp_path):
    """A page of another origin posts answers to the ABX server (even knowing the trial token): refused, nothing recorded."""
    session = make_session(tmp_path, n_trials=3, control_fraction=0.34)
    with abx.serve(session) as server:
        page = (FOREIGN_PAGE % (json.dumps(server.url), json.dumps(session.trials[0].token))).encode()

        class Foreign(BaseHTTPRequestHandler):
            def log_message(self, *args):
                """No request log on stderr."""

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

        foreign = ThreadingHTTPServer(("127.0.0.1", 0), Foreign)
        threading.Thread(target=foreign.serve_forever, daemon=True).start()
        driver = WebDriver(tmp_path / "profile")
        try:
            driver.get(f"http://localhost:{foreign.server_address[1]}/")
            driver.wait_for("return document.body.dataset.outcomes !== undefined")
            outcomes = driver.js("return document.body.dataset.outcomes").split(",")
        finally:
            driver.quit()
            foreign.shutdown()
            foreign.server_close()
        assert outcomes[0] == "opaque:0" and outcomes[1] == "blocked", outcomes  # sent, and refused by the server
        assert session.answers == [] and not session.results_json.exists()
        assert json.loads(http(server.url + "state")[1])["index"] == 1
