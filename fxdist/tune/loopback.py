"""Ray Train's rendezvous store on loopback when a trial's workers all run on a local Ray.

torch's TCPStore server listens on every interface, whatever address it is given. On a
local Ray (node address 127.0.0.1, ``run.init_local_ray``) Ray Train gives the workers
127.0.0.1 as the master address, so the rank-0 worker binds that port on loopback itself
and hands torch the listening socket (``master_listen_fd``). On a cluster the master
address is the node's own and nothing changes. Checked against Ray 2.58 and torch 2.13.
"""

from __future__ import annotations

import socket

from ray.train.torch import TorchConfig

try:
    from ray.train.torch.config import _TorchBackend
except ImportError:  # another Ray's internals: torch_config() falls back to Ray's own
    _TorchBackend = None

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def torch_config() -> TorchConfig:
    """The TorchConfig for a TorchTrainer whose rendezvous store stays on loopback on a local Ray."""
    return _LoopbackTorchConfig() if _TorchBackend is not None else TorchConfig()


def _listen(host: str, port: int) -> int | None:
    """A socket listening on ``host:port`` (loopback), detached to its fd; None if the port is taken."""
    family = socket.AF_INET6 if host == "::1" else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1" if host == "localhost" else host, port))
        sock.listen(socket.SOMAXCONN)
    except OSError:  # a store of this process already serves it (torch's multi-tenant reuse)
        sock.close()
        return None
    return sock.detach()


def _store_on_loopback() -> None:
    """In a Ray Train worker, before its process group starts: a master TCPStore asked for
    on a loopback address listens there only."""
    import importlib

    # the module: ``import torch.distributed.rendezvous as m`` gives its rendezvous() function
    rendezvous = importlib.import_module("torch.distributed.rendezvous")
    real = rendezvous.TCPStore
    if getattr(real, "fxdist_loopback", False):
        return

    def store(host_name, port, world_size=None, is_master=False, *args, **kwargs):
        if is_master and host_name in LOOPBACK and kwargs.get("master_listen_fd") is None and not args:
            fd = _listen(host_name, port)
            if fd is not None:
                kwargs["master_listen_fd"] = fd
        return real(host_name, port, world_size, is_master, *args, **kwargs)

    store.fxdist_loopback = True
    rendezvous.TCPStore = store


if _TorchBackend is not None:

    class _LoopbackTorchBackend(_TorchBackend):
        def on_start(self, worker_group, backend_config) -> None:
            worker_group.execute(_store_on_loopback)
            super().on_start(worker_group, backend_config)

    class _LoopbackTorchConfig(TorchConfig):
        @property
        def backend_cls(self):
            return _LoopbackTorchBackend
