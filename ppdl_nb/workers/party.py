"""The notebook as a party: its name and the workers it is connected to.

Pointers decoded from a reply belong to a party (the notebook, or a worker holding a
pointer onwards), which must know how to reach the worker a pointer points to. A
:class:`Worker` answers ``client_for(name)`` itself; in the notebook that role is
played by the :class:`LocalParty` returned by :func:`local_party`.
"""

from __future__ import annotations

import weakref
from typing import Any

__all__ = ["LocalParty", "Siblings", "local_party"]


class LocalParty:
    """The notebook's identity (``"me"``) and its clients, by worker name."""

    def __init__(self, name: str = "me") -> None:
        self.name = name
        self._clients: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

    def register(self, client: Any) -> None:
        self._clients[client.name] = client

    def unregister(self, name: str) -> None:
        self._clients.pop(name, None)

    def client_for(self, name: str) -> Any:
        client = self._clients.get(name)
        if client is None:
            raise ConnectionError(
                f"the notebook is not connected to a worker named {name!r} "
                f"(connected: {sorted(self._clients)}); launch or connect it first"
            )
        return client

    def workers(self) -> list[Any]:
        return [self._clients[k] for k in sorted(self._clients)]


_LOCAL = LocalParty()


def local_party() -> LocalParty:
    """The notebook's party (one per process)."""
    return _LOCAL


class Siblings:
    """Workers launched together, seen from the notebook: names resolve among them first.

    A pointer that arrives from alice to "bob" means *her* bob (launched with her), even if
    the notebook has since made another worker called bob elsewhere.
    """

    def __init__(self, party: LocalParty | None = None) -> None:
        self.party = party or local_party()
        self.name = self.party.name
        self._clients: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

    def add(self, client: Any) -> None:
        self._clients[client.name] = client
        self.party.register(client)

    def client_for(self, name: str) -> Any:
        client = self._clients.get(name)
        return client if client is not None else self.party.client_for(name)
