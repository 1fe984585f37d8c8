"""Every place fxdist opens a listening socket or starts a server is a reviewed one.

The behaviour of each is tested beside its module (the local Ray and its trial workers in
tests/tune/test_run.py, the ABX server in tests/abx/test_server.py, sweep folders in
tests/tune/test_trust.py); this inventory makes a new listener fail here until someone
has checked what it binds to.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fxdist"

# (module, call) -> what it listens on. ``init`` is ``ray.init``.
REVIEWED = {
    ("abx/server.py", "ThreadingHTTPServer"): "127.0.0.1 only; Host, Origin and a session token checked",
    ("tune/run.py", "init"): "init_local_ray: node address 127.0.0.1; _ray_session: joins the cluster given",
    ("tune/loopback.py", "bind"): "torch's rendezvous store of a local Ray's trial, on loopback",
    ("tune/loopback.py", "listen"): "the same socket",
    ("slurm/ray_node.py", "bind"): "a free-port probe on the node's cluster address, closed at once",
    ("slurm/submit.py", "init"): "joins the job's own Ray cluster (token auth, cluster network)",
    ("cli/raynode.py", "init"): "joins the job's own Ray cluster (token auth, cluster network)",
}
SERVER_CALLS = {
    "HTTPServer", "ThreadingHTTPServer", "TCPServer", "ThreadingTCPServer", "UDPServer", "start_server",
    "create_server", "bind", "listen", "TCPStore", "init_process_group", "serve", "run_simple",
}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute):
            if func.attr == "init" and isinstance(func.value, ast.Name) and func.value.id == "ray":
                yield "init", node.lineno
            elif func.attr in SERVER_CALLS:
                yield func.attr, node.lineno
        elif isinstance(func, ast.Name) and func.id in SERVER_CALLS:
            yield func.id, node.lineno


def test_every_listener_in_the_package_is_reviewed():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for call, line in _calls(ast.parse(path.read_text(), filename=str(path))):
            found.setdefault((module, call), []).append(line)
    # abx's ``serve`` is fxdist's own function, called from run_abx: not a new listener
    found.pop(("abx/server.py", "serve"), None)
    new = {f"fxdist/{m}:{lines} {c}(...)" for (m, c), lines in found.items() if (m, c) not in REVIEWED}
    assert not new, (
        f"new listening sockets or servers: {sorted(new)}; bind them to 127.0.0.1 (or authenticate them), "
        f"test that, and add them to REVIEWED"
    )
