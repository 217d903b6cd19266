"""In-process workers: the same protocol and codec as a kernel worker, without sockets.

Every request is encoded to frames, handed to the worker's handler and decoded again,
so what works here works between processes. Virtual workers find each other through a
:class:`VirtualNetwork` (one per notebook by default), so ``ptr.move(bob)`` goes from
alice's handler straight to bob's.

>>> alice = VirtualWorker("alice")
>>> alice.info()["objects"]
0
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from ppdl_nb.errors import WorkerUnavailableError
from ppdl_nb.workers.core.worker import Worker
from ppdl_nb.workers.transport.client import WorkerClient
from ppdl_nb.workers.transport.party import Siblings

__all__ = ["LocalConnection", "VirtualNetwork", "VirtualWorker"]


class LocalConnection(WorkerClient):
    """A client for an in-process :class:`Worker`, speaking as ``caller``."""

    kind = "virtual"

    def __init__(self, server: Worker, *, caller: str, context: Any) -> None:
        super().__init__(server.name, caller=caller, context=context)
        self._server_ref = weakref.ref(server)

    @property
    def server(self) -> Worker:
        server = self._server_ref()
        if server is None:
            raise ConnectionError(f"virtual worker {self.name} no longer exists")
        return server

    def _roundtrip(self, frames: list[Any], timeout: float | None) -> Sequence[Any]:
        # The codec copies tensor buffers on decode, so nothing aliases the caller's memory.
        return self.server.handle(frames, caller=self.caller)


class VirtualNetwork:
    """Names to in-process workers, so virtual workers can reach each other."""

    def __init__(self) -> None:
        self._workers: dict[str, Worker] = {}
        self._links: dict[tuple[str, str], LocalConnection] = {}
        self.notebook = Siblings()  # the notebook's clients for the workers of this network

    def add(self, worker: Worker) -> None:
        self._workers[worker.name] = worker
        for key in [k for k in self._links if worker.name in k]:
            del self._links[key]

    def remove(self, name: str) -> None:
        self._workers.pop(name, None)

    def connect(self, caller: Worker, name: str) -> LocalConnection:
        if name not in self._workers:
            raise ConnectionError(
                f"{caller.name} cannot reach a worker named {name!r}: no such virtual worker "
                f"(known: {sorted(self._workers)})"
            )
        key = (caller.name, name)
        link = self._links.get(key)
        if link is None or link._server_ref() is not self._workers[name]:
            link = LocalConnection(self._workers[name], caller=caller.name, context=caller)
            self._links[key] = link
        return link


DEFAULT_NETWORK = VirtualNetwork()


class VirtualWorker(LocalConnection):
    """The notebook's connection (a client) to a worker it creates in this process.

    Despite the name, this object is not the worker: it is a :class:`LocalConnection`
    that speaks as ``caller`` (``"me"``, the notebook) and sends every request through
    the codec, exactly as a connection to a kernel worker does. Creating it also
    creates the :class:`~ppdl_nb.workers.core.worker.Worker` it talks to (an object
    store and message handlers, no thread or socket) and adds that worker to a
    :class:`VirtualNetwork`, so other virtual workers can reach it by name.
    ``.owner`` is that worker itself, the data owner's side: use it to store private
    data or release results, as code running on the worker would. ``shutdown()`` and
    ``restart()`` act on the worker, like a kernel worker's.
    """

    def __init__(
        self, name: str, *, network: VirtualNetwork | None = None, caller: str = "me",
        context: Any = None,
    ) -> None:
        self.network = network or DEFAULT_NETWORK
        server = self._new_server(name)
        self.owner = server  # the strong reference keeps the worker alive
        party = context or self.network.notebook
        super().__init__(server, caller=caller, context=party)
        self._running = True
        if isinstance(party, Siblings):
            party.add(self)
        else:
            party.register(self)

    def _new_server(self, name: str) -> Worker:
        net = self.network
        server = Worker(name, connect=lambda peer: net.connect(server, peer))
        net.add(server)
        return server

    def _roundtrip(self, frames: list[Any], timeout: float | None) -> Sequence[Any]:
        if not self._running:
            raise WorkerUnavailableError(
                f"worker {self.name} was shut down; restart it with {self.name}.restart()"
            )
        return super()._roundtrip(frames, timeout)

    def status(self) -> str:
        """'running' or 'shut down'."""
        return "running" if self._running else "shut down"

    def shutdown(self) -> None:
        """Drop everything the worker holds and take it off the network."""
        self.network.remove(self.name)
        self.owner.clear()
        self._running = False

    def restart(self) -> None:
        """A fresh, empty worker under the same name (like restarting a kernel)."""
        self.shutdown()
        self.owner = self._new_server(self.name)
        self._server_ref = weakref.ref(self.owner)
        self._running = True
