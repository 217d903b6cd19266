"""The notebook as a party: its name and the workers it is connected to.

Pointers decoded from a reply belong to a party (the notebook, or a worker holding a
pointer onwards), which must know how to reach the worker a pointer points to. A
:class:`Worker` answers ``client_for(name)`` itself; in the notebook that role is
played by the :class:`LocalParty` returned by :func:`local_party`.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

__all__ = ["LocalParty", "Siblings", "local_party"]


class LocalParty:
    """The notebook's identity (``"me"``) and its clients.

    A name resolves to the live client registered last under it; :meth:`workers` lists
    every live client, so a second worker called "alice" (say a virtual one next to a
    kernel one) does not hide the first from traces and dashboards.
    """

    def __init__(self, name: str = "me") -> None:
        self.name = name
        self._clients: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        self._all: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
        self._order = itertools.count()

    def register(self, client: Any) -> None:
        self._clients[client.name] = client
        if not any(c is client for c in self._all.values()):
            self._all[next(self._order)] = client

    def client_for(self, name: str) -> Any:
        client = self._clients.get(name)
        if client is None:  # the newest by that name is gone: fall back to an older one
            named = [c for _, c in sorted(self._all.items()) if c.name == name]
            if not named:
                raise ConnectionError(
                    f"the notebook is not connected to a worker named {name!r} "
                    f"(connected: {sorted({c.name for c in self._all.values()})}); "
                    "launch or connect it first"
                )
            client = self._clients[name] = named[-1]
        return client

    def workers(self) -> list[Any]:
        """Every live client, by name, then in the order they were made."""
        live = sorted(self._all.items(), key=lambda kv: (kv[1].name, kv[0]))
        return [client for _, client in live]


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
