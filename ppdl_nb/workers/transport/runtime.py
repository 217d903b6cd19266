"""The worker runtime: a :class:`Worker` served over an encrypted channel.

Inside a worker kernel, the launcher runs :func:`start`, which loads the worker's own
key pair (made once, on the worker's first start, and kept in its state directory:
:func:`identity_path`), serves the message protocol on a private ``ipc://`` endpoint to
the notebook (known by its public key), and returns the endpoint and public key. The
notebook then introduces workers to each other (``peers``: names, endpoints, public
keys), so worker-to-worker traffic is keyed by the two workers alone:
the notebook cannot read what bob sends charlie.

Identity across restarts: a worker's key pair belongs to its name and state root
(``$PPDL_NB_STATE_DIR``, which kernel workers inherit from the notebook), like its
privacy ledgers. A restarted worker reloads it, so its public key is unchanged and the
peers that fixed it accept it again (they learn its new endpoint; the key is what they
check). Two workers of the same name launched under one state root (two groups with an
"alice") are one identity: each group's peers know only the workers of their own group,
and the secret file is as private as the worker's process (0600, this user only: any
process of the same user can read it, as it can read the process).

:class:`ChannelConnection` is the calling side, used both by the notebook (to reach a
kernel worker) and by a worker (to reach a peer).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ppdl_nb.errors import WorkerUnavailableError
from ppdl_nb.workers.core.messages import message
from ppdl_nb.workers.core.state import state_dir
from ppdl_nb.workers.core.worker import Worker
from ppdl_nb.workers.transport import datalink
from ppdl_nb.workers.transport.channel import ChannelServer
from ppdl_nb.workers.transport.channel_client import ChannelClient
from ppdl_nb.workers.transport.client import WorkerClient
from ppdl_nb.workers.transport.keys import KeyPair, parse_public_key

__all__ = ["ChannelConnection", "WorkerRuntime", "current", "identity_path", "start"]

DEFAULT_TIMEOUT = 120.0
HANDLER_THREADS = 8  # requests a worker may have in hand at once (most wait for a peer)


class ChannelConnection(WorkerClient):
    """A client for a worker in another process, over an encrypted channel."""

    kind = "kernel"
    owns_replies = True

    def __init__(self, name: str, channel: ChannelClient, *, caller: str, context: Any,
                 timeout: float = DEFAULT_TIMEOUT,
                 alive: Callable[[], bool] | None = None) -> None:
        super().__init__(name, caller=caller, context=context)
        self.channel = channel
        self.timeout = timeout
        self._alive = alive

    def _roundtrip(self, frames: list[Any], timeout: float | None) -> Sequence[Any]:
        if self._alive is not None and not self._alive():
            raise self._dead()
        try:
            return self.channel.request(frames, timeout=timeout or self.timeout)
        except TimeoutError as exc:
            if self._alive is not None and not self._alive():
                raise self._dead() from None
            raise TimeoutError(f"worker {self.name}: {exc}") from None
        except ConnectionRefusedError:
            raise  # an incompatible peer: its own message says why
        except ConnectionError as exc:
            if self._alive is not None and not self._alive():
                raise self._dead() from None
            raise WorkerUnavailableError(f"worker {self.name} is unreachable: {exc}") from None

    def _dead(self) -> WorkerUnavailableError:
        return WorkerUnavailableError(
            f"worker {self.name} is not running (its process died or was shut down); "
            f"restart it with {self.name}.restart() or %ppdl restart {self.name}"
        )

    def close(self) -> None:
        self.channel.close()


def identity_path(worker: Worker) -> str:
    """Where ``worker`` keeps the secret half of its key pair (see the module docstring)."""
    return os.path.join(state_dir(worker), "identity", "x25519.key")


class WorkerRuntime:
    """One worker, its key pair, its channel server and its links to peers.

    ``keys`` defaults to the worker's stored identity (:func:`identity_path`);
    ``endpoint`` to a private ``ipc://`` path (a served worker passes its TCP address,
    and ``notebook_key=None``: its owner's allowlist says who may connect).
    """

    def __init__(self, name: str, notebook_key: str | bytes | None, *, inspect: bool = True,
                 keys: KeyPair | None = None, endpoint: str | None = None) -> None:
        self.peers: dict[str, tuple[str, bytes]] = {}
        self._links: dict[str, ChannelConnection] = {}
        self._links_lock = threading.Lock()  # handler threads connect; introduce updates
        self.worker = Worker(name, connect=self._connect)
        self.keys = keys or KeyPair.load_or_create(identity_path(self.worker))
        self.worker.state["runtime"] = self
        self.inspect = inspect
        # several handler threads: a protocol step may wait for a peer's message
        # (Worker.wait_until), which another thread must be free to receive
        allowed = {} if notebook_key is None else {"me": parse_public_key(notebook_key)}
        self.server = ChannelServer(self.keys, endpoint, self._handle, allowed, name=name,
                                    threads=HANDLER_THREADS)
        if self.server.endpoint.startswith("ipc://"):  # peers on this machine: data links
            datalink.attach(self.worker.state, name)

    def _handle(self, frames: list[Any], caller: str) -> list[Any]:
        return self.worker.handle(frames, caller, owned=True)  # fresh receive buffers

    def describe(self) -> dict[str, Any]:
        return {"name": self.worker.name, "endpoint": self.server.endpoint,
                "public_key": self.keys.public_hex, "pid": os.getpid()}

    def introduce(self, peers: dict[str, Any]) -> None:
        """Learn the group's workers: ``{name: (endpoint, public key)}``.

        Trust model: a kernel worker trusts the notebook that launched it (its parent
        process) for the keys it introduces when the group forms. After that a peer's
        key is fixed: introducing a known name again with another key is a
        ``PermissionError`` (nothing is changed), and a key already known under another
        name (the notebook's own, say) a ``ValueError``. The same key at a new endpoint
        is a restarted peer (it keeps its identity): its endpoint is updated and the old
        link dropped; whoever listens there must still prove the fixed key.
        """
        fresh: dict[str, tuple[str, bytes]] = {}
        for name, (endpoint, key) in peers.items():
            if name == self.worker.name:
                continue
            public = parse_public_key(key)
            known = self.peers.get(name)
            if known is not None and known[1] != public:
                raise PermissionError(
                    f"{self.worker.name} already knows worker {name!r} by another public "
                    "key; peer keys are fixed when the group forms and cannot be replaced. "
                    "Launch a new group to use new keys")
            if known is None or known[0] != str(endpoint):
                fresh[name] = (str(endpoint), public)
        for name, (endpoint, public) in fresh.items():
            self.server.allow(name, public)  # refuses a key that is already someone's
            with self._links_lock:
                self.peers[name] = (endpoint, public)
                old = self._links.pop(name, None)
            if old is not None:  # a restarted peer: close the link to its old endpoint
                threading.Thread(target=old.close, daemon=True).start()  # may wait on it

    def _connect(self, name: str) -> ChannelConnection:
        with self._links_lock:
            return self._link(name)

    def _link(self, name: str) -> ChannelConnection:
        link = self._links.get(name)
        if link is None:
            if name not in self.peers:
                raise ConnectionError(
                    f"{self.worker.name} does not know a worker named {name!r}: the notebook "
                    f"introduces workers it launched together (known: {sorted(self.peers)})"
                )
            endpoint, key = self.peers[name]
            channel = ChannelClient(self.keys, endpoint, key, self.worker.name, peer=name)
            link = ChannelConnection(name, channel, caller=self.worker.name,
                                     context=self.worker)
            self._links[name] = link
        return link

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        datalink.close(self.worker.state)
        self.server.close()


_CURRENT: WorkerRuntime | None = None


def start(name: str, notebook_key: str, *, inspect: bool = True) -> dict[str, Any]:
    """Start this process's worker (once); returns its endpoint, public key and pid."""
    global _CURRENT
    if _CURRENT is not None:
        raise RuntimeError(f"this process already runs worker {_CURRENT.worker.name}")
    from ppdl_nb.workers.core import handlers as _handlers  # noqa: F401  (core vocabulary)

    _CURRENT = WorkerRuntime(name, notebook_key, inspect=inspect)
    return _CURRENT.describe()


def current() -> Worker:
    """The worker this process runs: the data owner's side, for code run inside it."""
    if _CURRENT is None:
        raise RuntimeError("no worker runs in this process; this is for code inside a worker")
    return _CURRENT.worker


@message("peers", peers=dict)
def _peers(worker: Worker, msg: dict, caller: str) -> list[str]:
    """The notebook introduces the workers it launched: names, endpoints, public keys.

    ``caller`` is the name the channel gave the connection's proven key: only the
    launching notebook's key is ``"me"``.
    """
    if caller != "me":
        raise PermissionError(f"only the notebook that launched {worker.name} introduces peers")
    runtime = worker.state.get("runtime")
    if runtime is None:
        raise TypeError(f"{worker.name} is not a kernel worker; it has no peers to introduce")
    runtime.introduce(msg["peers"])
    return sorted(runtime.peers)
