"""`fxdist ray-node`: the Ray-on-SLURM bootstrap as commands, for sbatch scripts (jobs/ray-sweep.sbatch).

`fxdist submit` does the same from Python (fxdist.slurm.submit.SweepJob); these commands let a
hand-written batch script start the head and workers with ``srun``, wait for them, and tell
them to stop. All state is in the rendezvous folder (shared filesystem), see fxdist.slurm.ray_node.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ray-node", help="start/join/stop a Ray cluster inside a SLURM job (for sbatch scripts)",
                       description="The Ray-on-SLURM bootstrap of fxdist.slurm.ray_node as commands: run `head` on the "
                                   "first node and `worker` on the others (srun), `wait` in the batch script, then `done`.")
    cmds = p.add_subparsers(dest="ray_command", required=True, metavar="ACTION")
    for name, text in (("head", "start the head here and keep it until `done`"),
                       ("worker", "join the head from here and stay until `done`")):
        q = cmds.add_parser(name, help=text)
        q.add_argument("--rendezvous", required=True, help="shared folder of this job run, e.g. $STORAGE/ray/$SLURM_JOB_ID-$SLURM_RESTART_COUNT")
        q.add_argument("--cpus", type=int, default=int(os.environ.get("SLURM_CPUS_PER_TASK", "1")), help="CPUs Ray may use on this node (default: $SLURM_CPUS_PER_TASK)")
        q.add_argument("--gpus", type=int, default=0, help="GPUs Ray may use on this node")
        q.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the head (worker) or to listen (head)")
        q.set_defaults(func=_head if name == "head" else _worker)
    q = cmds.add_parser("wait", help="wait for NODES nodes to join, print the head's address")
    q.add_argument("--rendezvous", required=True, help="the job run's shared rendezvous folder (as given to head/worker)")
    q.add_argument("--nodes", type=int, default=int(os.environ.get("SLURM_JOB_NUM_NODES", "1")), help="default: $SLURM_JOB_NUM_NODES")
    q.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the nodes (default 180)")
    q.set_defaults(func=_wait)
    q = cmds.add_parser("done", help="tell the head and workers of this rendezvous to stop")
    q.add_argument("--rendezvous", required=True, help="the job run's shared rendezvous folder")
    q.set_defaults(func=_done)


def _node_args(args) -> dict:
    return {"job_id": os.environ.get("SLURM_JOB_ID", str(os.getpid())), "restart": os.environ.get("SLURM_RESTART_COUNT", "0"),
            "num_cpus": args.cpus, "num_gpus": args.gpus, "timeout": args.timeout}


def _head(args) -> int:
    from fxdist.slurm import ray_node

    rdv = Path(args.rendezvous)
    ray_node.stay_until_done(ray_node.start_head(rdv, **_node_args(args)), rdv)
    return 0


def _worker(args) -> int:
    from fxdist.slurm import ray_node

    result = ray_node.serve_worker(Path(args.rendezvous), **_node_args(args))
    print(f"fxdist: Ray worker on {result['host']} stopped ({result['ended']})")
    return 0


def _wait(args) -> int:
    import ray

    from fxdist.slurm import ray_node

    rdv = Path(args.rendezvous)
    address = ray_node.read_head(rdv, args.timeout)
    ray_node.use_token(rdv)
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        ray_node.wait_for_nodes(args.nodes, args.timeout, rdv)
    finally:
        ray.shutdown()
    print(address)
    return 0


def _done(args) -> int:
    from fxdist.slurm import ray_node

    ray_node.mark_done(Path(args.rendezvous))
    return 0
