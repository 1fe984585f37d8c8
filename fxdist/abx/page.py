"""The listening page served at ``/``: one self-contained HTML file with its CSS and script.

It knows only the current trial's opaque token, fetched from ``/state``; answers go to
``/answer`` with the session token that ``render_page`` writes into the page.
"""

TOKEN_HEADER = "X-Fxdist-Token"
_TOKEN_SLOT = "@@SESSION_TOKEN@@"


def render_page(token: str) -> str:
    """The page carrying ``token`` (URL-safe base64), which it sends in ``TOKEN_HEADER`` with each answer."""
    if not token or not all(c.isalnum() or c in "-_" for c in token):
        raise ValueError(f"a session token is URL-safe base64, got {token!r}")
    return PAGE.replace(_TOKEN_SLOT, token)


PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="fxdist-session" content="@@SESSION_TOKEN@@">
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
const sessionToken = document.querySelector('meta[name="fxdist-session"]').content;

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
    const r = await fetch("/answer", {method: "POST", headers: {"Content-Type": "application/json", "X-Fxdist-Token": sessionToken},
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
