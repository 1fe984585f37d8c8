#!/usr/bin/env python3
"""A real multi-node SLURM cluster on one machine, for tests and demos.

A controller (``ctl``) and N compute nodes (``node1``..``nodeN``) each run in their own
network + UTS + mount + PID namespace, joined by a bridge in the root namespace. Every
node has its own IP and hostname, so ``srun -N3 hostname`` prints three names and
anything that spans nodes (submitit multi-node jobs, a Ray cluster) really crosses
a network. Nothing leaves the machine: the namespaces have no default route.

Layout of one run (``NET`` is a free private /24 picked per run)::

    bridge <run>        NET.1/24   root namespace; clients here use SLURM_CONF
    netns <run>-ctl     NET.10     slurmctld (hostname ctl)
    netns <run>-nodeI   NET.(10+I) slurmd under tini as PID 1 (hostname nodeI)
    munged (user munge) root namespace, socket /run/fxdist-local-slurm/<run>.munge/munge.sock

Needs root with CAP_NET_ADMIN + CAP_SYS_ADMIN and the Debian packages ``slurmctld
slurmd slurm-client munge tini`` (``cluster/install-slurm.sh``). Standard library only,
so ``cluster/local-slurm`` runs with any python3.

CLI::

    cluster/local-slurm up --nodes 3          # prints: export SLURM_CONF=...
    cluster/local-slurm status
    cluster/local-slurm down                  # or --all, or --state-dir DIR

Python::

    with LocalSlurm(nodes=3) as cluster:
        subprocess.run(["srun", "-N3", "hostname"], env={**os.environ, **cluster.env()})
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import json
import os
import pwd
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:  # a ClusterError when fxdist is importable; the CLI also runs without it.
    from fxdist.errors import ClusterError as _BaseError
except ImportError:  # pragma: no cover - depends on the interpreter running the CLI
    _BaseError = RuntimeError


class LocalSlurmError(_BaseError):
    """The local cluster cannot be brought up, used or torn down (message says why)."""


RUN_PREFIX = "fxsl"  # every bridge, veth and netns of this harness starts with it
RUN_NAME_RE = re.compile(rf"^{RUN_PREFIX}[0-9a-f]{{6}}")
REGISTRY = Path("/run/fxdist-local-slurm")  # tmpfs: cleared at boot, like the namespaces
DEFAULT_CLI_STATE_DIR = Path(os.environ.get("FXDIST_SLURM_STATE", "/tmp/fxdist-local-slurm"))
DEFAULT_CPUS_PER_NODE = 2
DEFAULT_MEM_PER_NODE_MB = 2048
PARTITION = "debug"
DEFAULT_CRED_EXPIRE_S = 10
CTL = "ctl"
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
REQUIRED_BINARIES = ("slurmctld", "slurmd", "munged", "tini", "unshare", "nsenter", "ip",
                     "sinfo", "scontrol", "srun", "sbatch", "mount", "hostname")
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
# Candidate subnets: 10.(200..254).(0..255).0/24, picked at random among the free ones.
_SUBNET_SECOND_OCTETS = range(200, 255)


# ---------------------------------------------------------------------------------------
# helpers


def _which(name: str) -> str | None:
    """Path of a binary, also looking in sbin dirs a non-login PATH may lack."""
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(SBIN_DIRS)
    return shutil.which(name, path=path)


def _bin(name: str) -> str:
    found = _which(name)
    if found is None:
        raise LocalSlurmError(f"{name}: not found on PATH or in {', '.join(SBIN_DIRS)} "
                              f"(run cluster/install-slurm.sh as root)")
    return found


def _run(cmd: list[str], check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    """Run a short command, capturing text output; a failure raises with its stderr."""
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as exc:
        raise LocalSlurmError(f"{' '.join(cmd)}: no answer after {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        raise LocalSlurmError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _quiet(cmd: list[str]) -> None:
    """Run a teardown command whose failure (already gone) is fine."""
    with contextlib.suppress(Exception):
        subprocess.run(cmd, check=False, capture_output=True, timeout=30)


def _effective_caps() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _tail(path: Path, lines: int = 15) -> str:
    """Last lines of a log, without the harmless PMIx plugin errors every daemon logs."""
    try:
        text = [t for t in path.read_text(errors="replace").splitlines() if "pmix" not in t.lower()]
    except OSError:
        return f"  ({path}: missing)"
    return "\n".join(f"  {line}" for line in text[-lines:]) or f"  ({path}: empty)"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _netns_pids(netns: str) -> list[int]:
    proc = subprocess.run(["ip", "netns", "pids", netns], check=False, capture_output=True, text=True, timeout=30)
    return [int(p) for p in proc.stdout.split() if p.isdigit()] if proc.returncode == 0 else []


def _netns_exists(netns: str) -> bool:
    return Path("/run/netns", netns).exists()


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` is alive (zombies count as gone); returns those still
    alive at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if _alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------
# capability check


def capability_problem() -> str | None:
    """One line saying why the harness cannot run here, or None when it can.

    Tests skip with this reason (never silently).
    """
    if not sys.platform.startswith("linux"):
        return f"local SLURM cluster needs Linux namespaces (platform is {sys.platform})"
    if os.geteuid() != 0:
        return f"local SLURM cluster needs root (euid is {os.geteuid()}) for network namespaces and a bridge"
    caps = _effective_caps()
    missing_caps = [name for bit, name in ((CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"))
                    if not caps >> bit & 1]
    if missing_caps:
        return f"local SLURM cluster needs {' and '.join(missing_caps)} (CapEff={caps:#x})"
    missing = [b for b in REQUIRED_BINARIES if _which(b) is None]
    if missing:
        return f"local SLURM cluster needs {', '.join(missing)} (run cluster/install-slurm.sh as root)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "local SLURM cluster needs the 'munge' user (Debian package munge)"
    probe = subprocess.run(["unshare", "--net", "--uts", "--mount", "--pid", "--fork", "--mount-proc", "true"], check=False,
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"local SLURM cluster cannot create namespaces here: unshare: {probe.stderr.strip()}"
    return None


# ---------------------------------------------------------------------------------------
# the cluster


class LocalSlurm:
    """A controller plus ``nodes`` compute nodes, each in its own namespaces on one bridge.

    ``cpus_per_node`` (default 2) and ``mem_per_node`` (MB, default 2048) are what
    slurm.conf declares; ``SlurmdParameters=config_overrides`` makes slurmd accept more
    than the machine has, so three 2-CPU nodes run on a 2-core machine (jobs then share
    the real cores). ``state_dir`` (default: a fresh temp dir) holds slurm.conf, logs,
    spool dirs and ``cluster.json``; ``down()`` removes it unless ``keep``. The private
    munged's key and socket live in ``/run/fxdist-local-slurm/<run>.munge`` instead:
    the munge user must reach them, and a state dir under a 0700 dir (pytest's tmp_path,
    a home dir) would hide them. ``cred_expire`` (s) is the munge credential lifetime
    and also how long a requeued job waits before it may start again (SLURM's default
    120 s is too slow for tests; below ~10 s a step launch on a busy machine risks
    "credential expired").
    """

    def __init__(self, nodes: int = 3, cpus_per_node: int | None = None, mem_per_node: int | None = None,
                 state_dir: str | os.PathLike | None = None, startup_timeout: float = 60.0,
                 cred_expire: int = DEFAULT_CRED_EXPIRE_S):
        if nodes < 1 or nodes > 200:
            raise LocalSlurmError(f"nodes must be 1..200, got {nodes}")
        self.cpus_per_node = int(cpus_per_node or DEFAULT_CPUS_PER_NODE)
        self.mem_per_node = int(mem_per_node or DEFAULT_MEM_PER_NODE_MB)
        if self.cpus_per_node < 1 or self.mem_per_node < 1:
            raise LocalSlurmError(f"cpus_per_node and mem_per_node must be >= 1, got "
                                  f"{self.cpus_per_node} and {self.mem_per_node}")
        if cred_expire < 5:
            raise LocalSlurmError(f"cred_expire must be >= 5 s, got {cred_expire}")
        self.cred_expire = int(cred_expire)
        self.node_count = nodes
        self.startup_timeout = startup_timeout
        self._state_dir_arg = Path(state_dir).absolute() if state_dir is not None else None
        self.info: dict = {}
        self._created_state: Path | None = None  # removed by down() even if up() failed early
        self._procs: dict[str, subprocess.Popen] = {}

    # -- description ------------------------------------------------------------------

    @classmethod
    def attach(cls, state_dir: str | os.PathLike) -> LocalSlurm:
        """The cluster described by ``<state_dir>/cluster.json`` (for status and down)."""
        path = Path(state_dir).absolute() / "cluster.json"
        try:
            info = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise LocalSlurmError(f"{path}: no local cluster recorded there") from exc
        except json.JSONDecodeError as exc:
            raise LocalSlurmError(f"{path}: unreadable ({exc})") from exc
        self = cls(nodes=max(1, len(info.get("nodes", []))), cpus_per_node=info.get("cpus_per_node"),
                   mem_per_node=info.get("mem_per_node"), state_dir=info.get("state_dir", state_dir),
                   cred_expire=info.get("cred_expire", DEFAULT_CRED_EXPIRE_S))
        self.info = info
        return self

    @property
    def state_dir(self) -> Path:
        return Path(self.info["state_dir"]) if self.info else self._state_dir_arg

    @property
    def slurm_conf(self) -> Path:
        return self.state_dir / "slurm.conf"

    @property
    def nodes(self) -> list[str]:
        """Compute node names, ``node1``..``nodeN``."""
        return [n["name"] for n in self.info.get("nodes", [])] or [f"node{i}" for i in range(1, self.node_count + 1)]

    def _member(self, name: str) -> dict:
        for member in [self.info.get("controller", {}), *self.info.get("nodes", [])]:
            if member.get("name") == name:
                return member
        raise LocalSlurmError(f"{name!r}: not a member of this cluster (nodes: {', '.join(self.nodes)}, controller: {CTL})")

    def node_ip(self, name: str) -> str:
        """IP address of a node (or of ``ctl``)."""
        return self._member(name)["ip"]

    def netns(self, name: str) -> str:
        """Network namespace name of a node (or of ``ctl``), for ``ip netns``/``nsenter``."""
        return self._member(name)["netns"]

    def env(self) -> dict[str, str]:
        """What a client process needs in its environment to use this cluster."""
        return {"SLURM_CONF": str(self.slurm_conf)}

    # -- context manager --------------------------------------------------------------

    def __enter__(self) -> LocalSlurm:  # noqa: PYI034 (typing.Self needs 3.11)
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    # -- up ---------------------------------------------------------------------------

    def up(self) -> LocalSlurm:
        """Create everything and wait until every node is idle; on failure tear down and raise."""
        problem = capability_problem()
        if problem:
            raise LocalSlurmError(problem)
        try:
            self._create()
            self._wait_idle(self.startup_timeout)
        except BaseException:
            self.down()
            raise
        return self

    def _save(self) -> None:
        _write_atomic(self.state_dir / "cluster.json", json.dumps(self.info, indent=2) + "\n")

    def _prepare_state_dir(self) -> Path:
        if self._state_dir_arg is None:
            state = Path(tempfile.mkdtemp(prefix="fxdist-slurm-", dir="/tmp"))
        else:
            state = self._state_dir_arg
            if (state / "cluster.json").exists():
                raise LocalSlurmError(f"{state}: a local cluster is already recorded there; run "
                                      f"`cluster/local-slurm down --state-dir {state}` first or pick another --state-dir")
            if state.exists() and any(state.iterdir()):
                raise LocalSlurmError(f"{state}: exists and is not empty; pick an empty or new --state-dir")
            state.mkdir(parents=True, exist_ok=True)
        self._created_state = state
        state.chmod(0o755)  # logs readable by anyone, as on a cluster's shared filesystem
        for sub in ("log", "run", "spool", "ctld"):
            (state / sub).mkdir(mode=0o755)
        return state

    def _create(self) -> None:
        state = self._prepare_state_dir()
        REGISTRY.mkdir(mode=0o755, exist_ok=True)
        with open(REGISTRY / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # subnet and run id chosen and claimed atomically
            run_id, net = self._pick_names()
            gateway = net.network_address + 1
            self.info = {
                "run_id": run_id, "state_dir": str(state), "slurm_conf": str(state / "slurm.conf"),
                "bridge": run_id, "netns_prefix": f"{run_id}-", "subnet": str(net), "gateway": str(gateway),
                "partition": PARTITION, "cpus_per_node": self.cpus_per_node, "mem_per_node": self.mem_per_node,
                "cred_expire": self.cred_expire,
                "munged_pid": None, "munge_dir": str(REGISTRY / f"{run_id}.munge"), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "controller": self._member_info(run_id, net, CTL, 10, "c"),
                "nodes": [self._member_info(run_id, net, f"node{i}", 10 + i, f"n{i}") for i in range(1, self.node_count + 1)],
            }
            self._save()  # recorded before creating anything, so down() can always clean up
            _write_atomic(REGISTRY / run_id, str(state) + "\n")
            _run(["ip", "link", "add", run_id, "type", "bridge"])
            _run(["ip", "addr", "add", f"{gateway}/{net.prefixlen}", "dev", run_id])
            _run(["ip", "link", "set", run_id, "up"])
        for member in [self.info["controller"], *self.info["nodes"]]:
            self._add_netns(member, net.prefixlen)
        self._write_configs()
        self._start_munged()
        self._spawn(self.info["controller"], daemon="slurmctld")
        for node in self.info["nodes"]:
            self._spawn(node, daemon="slurmd")

    @staticmethod
    def _member_info(run_id: str, net: ipaddress.IPv4Network, name: str, host: int, veth_suffix: str) -> dict:
        return {"name": name, "ip": str(net.network_address + host), "netns": f"{run_id}-{name}",
                "veth": f"{run_id}{veth_suffix}", "pid": None}

    @staticmethod
    def _pick_names() -> tuple[str, ipaddress.IPv4Network]:
        """A run id not in use and a /24 overlapping no local address or route."""
        used: list[ipaddress.IPv4Network] = []
        for cmd in (["ip", "-4", "-o", "addr", "show"], ["ip", "-4", "route", "show", "table", "all"]):
            for token in _run(cmd, check=False).stdout.split():
                with contextlib.suppress(ValueError):
                    if "/" in token or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", token):
                        used.append(ipaddress.ip_network(token, strict=False))
        for _ in range(100):
            run_id = f"{RUN_PREFIX}{random.getrandbits(24):06x}"
            if not _link_exists(run_id) and not (REGISTRY / run_id).exists():
                break
        else:
            raise LocalSlurmError("could not find an unused run id")
        candidates = [ipaddress.ip_network(f"10.{a}.{b}.0/24") for a in _SUBNET_SECOND_OCTETS for b in range(256)]
        random.shuffle(candidates)
        for net in candidates:
            if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
                return run_id, net
        raise LocalSlurmError("no free 10.200-254.x.0/24 subnet: every candidate overlaps a local address or route")

    def _add_netns(self, member: dict, prefixlen: int) -> None:
        ns, veth = member["netns"], member["veth"]
        _run(["ip", "netns", "add", ns])
        _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        _run(["ip", "link", "set", veth, "master", self.info["bridge"], "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{member['ip']}/{prefixlen}", "dev", "eth0"])
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _write_configs(self) -> None:
        state = self.state_dir
        ctl = self.info["controller"]
        hosts = ["127.0.0.1 localhost", f"{ctl['ip']} {CTL}"] + [f"{n['ip']} {n['name']}" for n in self.info["nodes"]]
        _write_atomic(state / "hosts", "\n".join(hosts) + "\n")
        node_lines = [f"NodeName={n['name']} NodeAddr={n['ip']} CPUs={self.cpus_per_node} "
                      f"RealMemory={self.mem_per_node} State=UNKNOWN" for n in self.info["nodes"]]
        names = ",".join(self.nodes)
        conf = f"""\
# Written by cluster/local_slurm.py for run {self.info['run_id']}; removed by `local-slurm down`.
ClusterName={self.info['run_id']}
SlurmctldHost={CTL}({ctl['ip']})
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Private munged; short cred_expire: a requeued job may start again cred_expire+1 s later.
AuthInfo=socket={self.info['munge_dir']}/munge.sock,cred_expire={self.cred_expire}
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/spool/%n
SlurmctldPidFile={state}/run/slurmctld.pid
SlurmdPidFile={state}/run/slurmd-%n.pid
SlurmctldLogFile={state}/log/slurmctld.log
SlurmdLogFile={state}/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Declared CPUs/RealMemory may exceed the machine's: slurmd takes them from this file.
SlurmdParameters=config_overrides
ReturnToService=2
# Notice a dead node within ~10-20 s; kill a cancelled job's processes 2 s after SIGTERM.
SlurmdTimeout=10
KillWait=2
InactiveLimit=0
MinJobAge=300
# Frequent scheduling passes: a requeued job restarts in ~15 s, not at the next 30-60 s pass.
SchedulerParameters=bf_interval=2,sched_interval=5
MailProg=/bin/true
{chr(10).join(node_lines)}
PartitionName={PARTITION} Nodes={names} Default=YES MaxTime=INFINITE State=UP
"""
        _write_atomic(state / "slurm.conf", conf)
        for node in self.nodes:  # slurmd wants its spool dir to exist (its socket lives there)
            (state / "spool" / node).mkdir(mode=0o755, exist_ok=True)

    def _start_munged(self) -> None:
        munge_dir = Path(self.info["munge_dir"])
        munge_dir.mkdir(mode=0o755)
        user = pwd.getpwnam("munge")
        os.chown(munge_dir, user.pw_uid, user.pw_gid)
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        os.chown(key, user.pw_uid, user.pw_gid)
        sock = munge_dir / "munge.sock"
        log = self.state_dir / "log" / "munged.console"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [_bin("munged"), "-F", f"--socket={sock}", f"--key-file={key}",
                 f"--pid-file={munge_dir / 'munged.pid'}", f"--log-file={munge_dir / 'munged.log'}",
                 f"--seed-file={munge_dir / 'munged.seed'}", "--num-threads=4"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                user=user.pw_uid, group=user.pw_gid, extra_groups=[], start_new_session=True)
        self._procs["munged"] = proc
        self.info["munged_pid"] = proc.pid
        self._save()
        deadline = time.monotonic() + 10
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LocalSlurmError(f"munged did not create {sock} (exit {proc.poll()}):\n"
                                      f"{_tail(log)}\n{_tail(munge_dir / 'munged.log')}")
            time.sleep(0.02)

    def _spawn(self, member: dict, daemon: str) -> None:
        """Start ``daemon`` as PID 1's child (tini) in the member's namespaces."""
        name = member["name"]
        log = self.state_dir / "log" / f"{name}.console"
        daemon_cmd = [_bin(daemon), "-D", "-f", str(self.slurm_conf)]
        if daemon == "slurmd":
            daemon_cmd += ["-N", name]
        # nsenter --net (not `ip netns exec`, which remounts /sys and hides the cgroup fs
        # slurmd 22.05 needs); unshare gives a hostname, a private /etc/hosts and a PID ns
        # whose PID 1 (tini) reaps orphaned slurmstepd processes.
        cmd = [_bin("nsenter"), f"--net=/run/netns/{member['netns']}", "--",
               _bin("unshare"), "--uts", "--mount", "--pid", "--fork", "--kill-child=SIGTERM", "--mount-proc", "--",
               "sh", "-c", 'hostname "$0" && mount --bind "$1" /etc/hosts && shift && exec "$@"',
               name, str(self.state_dir / "hosts"), _bin("tini"), "-s", "-g", "--", *daemon_cmd]
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self._procs[name] = proc
        member["pid"] = proc.pid
        self._save()

    def _sinfo_states(self) -> dict[str, str]:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], check=False, capture_output=True, text=True, timeout=30,
                              env={**os.environ, **self.env()})
        if proc.returncode != 0:
            return {}
        states: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                states[parts[0]] = parts[1]
        return states

    def node_states(self) -> dict[str, str]:
        """``sinfo`` state of every node (e.g. ``idle``, ``allocated``, ``idle*``, ``down*``)."""
        return self._sinfo_states()

    def _dead_members(self) -> list[str]:
        return [m["name"] for m in [self.info["controller"], *self.info["nodes"]] if not _alive(m.get("pid"))]

    def _failure_report(self) -> str:
        """Tails of the daemon logs; the console (stdout/stderr) too for dead daemons."""
        log = self.state_dir / "log"
        dead = set(self._dead_members())
        paths = [log / "slurmctld.log"] + [log / f"slurmd-{n}.log" for n in self.nodes]
        paths += [log / f"{m}.console" for m in [CTL, *self.nodes] if m in dead]
        return "\n".join(f"--- {p}:\n{_tail(p, 8)}" for p in paths if p.exists())

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            dead = self._dead_members()
            if dead:
                raise LocalSlurmError(f"local SLURM cluster in {self.state_dir}: daemon of {', '.join(dead)} exited "
                                      f"during startup\n{self._failure_report()}")
            states = self._sinfo_states()
            if states and all(states.get(n) == "idle" for n in self.nodes):
                return
            time.sleep(0.1)
        raise LocalSlurmError(f"local SLURM cluster in {self.state_dir}: nodes not idle after {timeout:.0f} s "
                              f"(sinfo: {states or 'no answer'})\n{self._failure_report()}")

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Block until every node is idle again (e.g. after ``restart_node``)."""
        self._wait_idle(timeout)

    # -- using nodes ------------------------------------------------------------------

    def _init_pid(self, name: str) -> int:
        """Root-namespace PID of the member's PID-namespace init (tini)."""
        pid = self._member(name).get("pid")
        if not _alive(pid):
            raise LocalSlurmError(f"{name}: not running (its daemon was killed or never started)")
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:  # kernels without CONFIG_PROC_CHILDREN: scan parent PIDs
            children = [p for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == pid]
        if not children:
            raise LocalSlurmError(f"{name}: namespace init not started yet (unshare pid {pid} has no child)")
        return int(children[0])

    def exec_in(self, name: str, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        """Run ``cmd`` inside a node's namespaces (its net, hostname, /etc/hosts, PIDs)."""
        full = [_bin("nsenter"), "-t", str(self._init_pid(name)), "--net", "--uts", "--mount", "--pid", "--", *cmd]
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        kw.setdefault("check", False)
        return subprocess.run(full, **kw)  # noqa: PLW1510 (check is in kw)

    def kill_node(self, name: str, timeout: float = 10.0) -> list[int]:
        """SIGKILL every process in the node's network namespace (slurmd, job steps, Ray, ...).

        The namespace and its address stay, so the controller gets "connection refused"
        and marks the node not responding, then DOWN. Returns the killed PIDs.
        """
        member = self._member(name)
        pids = _netns_pids(member["netns"])
        self._stop_member(member)
        left = [p for p in _netns_pids(member["netns"]) if _alive(p)]
        for pid in left:
            _kill(pid, signal.SIGKILL)
        left = _wait_gone(left, timeout)
        if left:
            raise LocalSlurmError(f"{name}: processes {left} still alive {timeout:.0f} s after SIGKILL")
        return pids

    def _stop_member(self, member: dict) -> None:
        """SIGKILL the member's PID-namespace init (tini): the kernel then kills every
        process of that node at once, and unshare (our child) exits and is reaped here,
        so nothing is orphaned to PID 1. SIGKILL on unshare (its --kill-child sends
        SIGTERM to tini) is the fallback."""
        pid = member.get("pid")
        if not pid or not self._ours(pid):
            return
        if _alive(pid):
            with contextlib.suppress(LocalSlurmError, OSError, ValueError):
                _kill(self._init_pid(member["name"]), signal.SIGKILL)
            if _wait_gone([pid], 2.0):
                _kill(pid, signal.SIGKILL)
                _wait_gone([pid], 2.0)
        self._reap()

    def restart_node(self, name: str) -> None:
        """Start the node's slurmd again (after ``kill_node``); ReturnToService=2 lets it rejoin."""
        member = self._member(name)
        if name == CTL:
            raise LocalSlurmError("restart_node: only compute nodes can be restarted")
        if _netns_pids(member["netns"]):
            raise LocalSlurmError(f"{name}: still has processes in {member['netns']}; kill_node first")
        self._spawn(member, daemon="slurmd")

    def _reap(self) -> None:
        """Collect the exit status of our own dead daemons (only ours: reaping any child
        would steal exit codes from other subprocess users in the same process)."""
        for proc in self._procs.values():
            proc.poll()

    # -- down -------------------------------------------------------------------------

    def _ours(self, pid: int) -> bool:
        """Whether a recorded PID still belongs to this run (guards against PID reuse)."""
        cmdline = _pid_cmdline(pid)
        return bool(cmdline) and (str(self.state_dir) in cmdline or self.info.get("run_id", "\0") in cmdline)

    def down(self, keep: bool = False) -> None:
        """Kill every daemon and job, delete namespaces, veths and bridge; idempotent."""
        if not self.info:
            if self._created_state is not None and not keep:
                shutil.rmtree(self._created_state, ignore_errors=True)
                self._created_state = None
            return
        members = [self.info["controller"], *self.info["nodes"]]
        for member in members:
            self._stop_member(member)
        for _ in range(3):  # anything else in a node's netns (e.g. entered with nsenter --net)
            leftovers = [p for m in members if _netns_exists(m["netns"]) for p in _netns_pids(m["netns"])]
            if not leftovers:
                break
            for pid in leftovers:
                _kill(pid, signal.SIGKILL)
            _wait_gone(leftovers, 5.0)
        munged = self.info.get("munged_pid")
        if munged and self._ours(munged):
            _kill(munged, signal.SIGTERM)
            if _wait_gone([munged], 3.0):
                _kill(munged, signal.SIGKILL)
                _wait_gone([munged], 3.0)
        munge_dir = self.info.get("munge_dir")
        if munge_dir and RUN_NAME_RE.match(Path(munge_dir).name):
            if keep:
                with contextlib.suppress(OSError):
                    shutil.copy(Path(munge_dir) / "munged.log", self.state_dir / "log" / "munged.log")
            shutil.rmtree(munge_dir, ignore_errors=True)
        self._reap()
        self._procs.clear()
        for m in members:
            if _netns_exists(m["netns"]):
                _quiet(["ip", "netns", "del", m["netns"]])
            if _link_exists(m["veth"]):
                _quiet(["ip", "link", "del", m["veth"]])
        bridge = self.info.get("bridge")
        if bridge and RUN_NAME_RE.match(bridge) and _link_exists(bridge):
            _quiet(["ip", "link", "del", bridge])
        run_id = self.info.get("run_id")
        if run_id:
            with contextlib.suppress(FileNotFoundError):
                (REGISTRY / run_id).unlink()
        if keep:
            for m in members:
                m["pid"] = None
            self.info["munged_pid"] = None
            self.info["down"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            with contextlib.suppress(OSError):
                os.replace(self.state_dir / "cluster.json", self.state_dir / "cluster.down.json")
        else:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        self.info = {} if not keep else self.info

    # -- status -----------------------------------------------------------------------

    def status(self) -> dict:
        """Liveness of every daemon and the sinfo state of every node."""
        members = [self.info["controller"], *self.info["nodes"]]
        return {
            "run_id": self.info["run_id"], "state_dir": str(self.state_dir), "slurm_conf": str(self.slurm_conf),
            "bridge": self.info["bridge"], "subnet": self.info["subnet"],
            "munged": _alive(self.info.get("munged_pid")),
            "daemons": {m["name"]: _alive(m.get("pid")) for m in members},
            "sinfo": self._sinfo_states() if _alive(self.info["controller"].get("pid")) else {},
        }


# ---------------------------------------------------------------------------------------
# finding runs


def registered_runs() -> dict[str, Path]:
    """Run id -> state dir of every cluster this machine has up (per the registry in /run)."""
    runs = {}
    if REGISTRY.is_dir():
        for entry in REGISTRY.iterdir():
            if RUN_NAME_RE.fullmatch(entry.name):
                with contextlib.suppress(OSError):
                    runs[entry.name] = Path(entry.read_text().strip())
    return runs


def sweep_orphans() -> list[str]:
    """Delete namespaces, links and munge dirs named like this harness's whose run is no
    longer registered (left by a killed `up`), with the processes in them."""
    live = set(registered_runs())
    removed = []
    netns = _run(["ip", "netns", "list"], check=False).stdout.split()
    for ns in netns:
        match = RUN_NAME_RE.match(ns)
        if match and match.group(0) not in live and "-" in ns:
            for pid in _netns_pids(ns):
                _kill(pid, signal.SIGKILL)
            _quiet(["ip", "netns", "del", ns])
            removed.append(ns)
    for link in sorted(os.listdir("/sys/class/net")):
        match = RUN_NAME_RE.match(link)
        if match and match.group(0) not in live:
            _quiet(["ip", "link", "del", link])
            removed.append(link)
    if REGISTRY.is_dir():
        for entry in REGISTRY.iterdir():
            match = RUN_NAME_RE.match(entry.name)
            if match and entry.name.endswith(".munge") and match.group(0) not in live:
                munged = [int(p) for p in os.listdir("/proc") if p.isdigit() and str(entry) in _pid_cmdline(int(p))]
                for pid in munged:
                    _kill(pid, signal.SIGKILL)
                _wait_gone(munged, 3.0)
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(str(entry))
    return removed


# ---------------------------------------------------------------------------------------
# CLI


def _cmd_up(args) -> int:
    cluster = LocalSlurm(nodes=args.nodes, cpus_per_node=args.cpus_per_node, mem_per_node=args.mem_per_node,
                         state_dir=args.state_dir, startup_timeout=args.timeout, cred_expire=args.cred_expire)
    start = time.monotonic()
    cluster.up()
    info = cluster.info
    print(f"local-slurm: {len(cluster.nodes)} node(s) idle in {time.monotonic() - start:.1f} s "
          f"(bridge {info['bridge']}, subnet {info['subnet']}, partition {PARTITION})", file=sys.stderr)
    print(f"local-slurm: controller {CTL} {info['controller']['ip']}; "
          + ", ".join(f"{n['name']} {n['ip']}" for n in info["nodes"]), file=sys.stderr)
    print(f"local-slurm: description {cluster.state_dir / 'cluster.json'}; stop with: "
          f"cluster/local-slurm down --state-dir {cluster.state_dir}", file=sys.stderr)
    print(f"export SLURM_CONF={cluster.slurm_conf}")
    return 0


def _cmd_down(args) -> int:
    dirs: list[Path] = []
    if args.all:
        dirs = list(registered_runs().values())
        if args.state_dir:
            dirs.append(Path(args.state_dir))
    else:
        dirs = [Path(args.state_dir or DEFAULT_CLI_STATE_DIR)]
    for state in dirs:
        if (state / "cluster.json").exists():
            LocalSlurm.attach(state).down(keep=args.keep)
            print(f"local-slurm: down {state}", file=sys.stderr)
        elif not args.all:
            print(f"local-slurm: no cluster recorded in {state}; nothing to do", file=sys.stderr)
    if args.all:
        removed = sweep_orphans()
        if removed:
            print(f"local-slurm: removed orphans {' '.join(removed)}", file=sys.stderr)
    return 0


def _cmd_status(args) -> int:
    dirs = list(registered_runs().values()) if args.all else [Path(args.state_dir or DEFAULT_CLI_STATE_DIR)]
    if not dirs:
        print("local-slurm: no cluster up")
        return 1
    rc = 0
    for state in dirs:
        if not (state / "cluster.json").exists():
            print(f"local-slurm: no cluster in {state}")
            rc = 1
            continue
        st = LocalSlurm.attach(state).status()
        up = st["munged"] and all(st["daemons"].values())
        rc = rc or (0 if up else 1)
        print(f"{st['run_id']}  {st['state_dir']}  bridge {st['bridge']}  subnet {st['subnet']}  "
              f"{'up' if up else 'DEGRADED'}")
        print(f"  export SLURM_CONF={st['slurm_conf']}")
        print(f"  munged {'running' if st['munged'] else 'dead'}; daemons: "
              + ", ".join(f"{k} {'running' if v else 'dead'}" for k, v in st["daemons"].items()))
        print("  sinfo: " + (", ".join(f"{k} {v}" for k, v in st["sinfo"].items()) or "no answer"))
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local-slurm", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a controller and N nodes; prints `export SLURM_CONF=...`")
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--cpus-per-node", type=int, default=None, help=f"declared CPUs (default {DEFAULT_CPUS_PER_NODE})")
    up.add_argument("--mem-per-node", type=int, default=None, help=f"declared MB (default {DEFAULT_MEM_PER_NODE_MB})")
    up.add_argument("--state-dir", default=str(DEFAULT_CLI_STATE_DIR), help="default %(default)s ($FXDIST_SLURM_STATE)")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for idle nodes")
    up.add_argument("--cred-expire", type=int, default=DEFAULT_CRED_EXPIRE_S,
                    help="munge credential lifetime, s; also a requeued job's wait (default %(default)s)")
    down = sub.add_parser("down", help="stop a cluster and remove its namespaces, bridge and state dir")
    down.add_argument("--state-dir", default=None, help=f"default {DEFAULT_CLI_STATE_DIR}")
    down.add_argument("--all", action="store_true", help="every cluster of this harness on the machine")
    down.add_argument("--keep", action="store_true", help="keep the state dir (logs)")
    status = sub.add_parser("status", help="daemons and node states")
    status.add_argument("--state-dir", default=None, help=f"default {DEFAULT_CLI_STATE_DIR}")
    status.add_argument("--all", action="store_true", help="every cluster of this harness on the machine")
    args = parser.parse_args(argv)
    try:
        return {"up": _cmd_up, "down": _cmd_down, "status": _cmd_status}[args.command](args)
    except LocalSlurmError as exc:
        print(f"local-slurm: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
