"""A worker served by its data owner, on a TCP port, without Jupyter (``ppdl-worker serve``).

The owner runs ``ppdl-worker serve --name alice --listen HOST:PORT --state-dir DIR``; the
worker loads its identity from DIR (made once, 0600), serves the message protocol on
``tcp://HOST:PORT`` over the encrypted channel, and accepts only the keys the owner
allowed (``DIR/allowed.json``, see :mod:`.served_state`): notebooks act as ``"me"``
(several allowed notebooks share that role), peer workers under their names. The owner's
datasets (``DIR/datasets.json``) are loaded as private DP datasets at every start, and
their privacy ledgers live in DIR, so a restart keeps datasets and budgets; objects made
in an earlier life are gone (each life numbers its objects from a new offset, so an old
pointer can never reach a new object).

Who dials whom: the notebook dials each worker; a worker dials a peer when it has
something to send it (a move, an SPDZ opening). A served worker listens on TCP; a kernel
worker listens only on a private ``ipc://`` path of the notebook's machine, so a served
worker reaches kernel workers only when it runs on that machine, while any worker
reaches a served one wherever its port is reachable. Unlike a kernel worker, a served
worker does not trust the notebook's introductions: a peer must be one its owner allowed
(``ppdl-worker allow FINGERPRINT --name bob --peer``), with that very key.

>>> import tempfile
>>> from ppdl_nb.workers.transport.served_state import OwnerState
>>> rt = ServedRuntime("doc_alice", OwnerState(tempfile.mkdtemp()), "tcp://127.0.0.1:*")
>>> rt.server.endpoint.startswith("tcp://127.0.0.1:"), len(rt.fingerprint)
(True, 64)
>>> rt.close()
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from ppdl_nb.workers.core.messages import message
from ppdl_nb.workers.core.worker import Worker
from ppdl_nb.workers.transport import chan_wire as wire
from ppdl_nb.workers.transport.runtime import WorkerRuntime
from ppdl_nb.workers.transport.served_state import OwnerState, fingerprint, load_table

__all__ = ["BOOT_SHIFT", "Attach", "ServedRuntime", "serve"]

#: object ids of life n start at n << BOOT_SHIFT
BOOT_SHIFT = 32
#: the owner's hook that holds (x, y) as a private DP dataset (dp's attach_dataset)
Attach = Callable[..., Any]
_WATCH_S = 0.5


class ServedRuntime(WorkerRuntime):
    """A worker, its owner's state directory and its TCP channel server."""

    def __init__(self, name: str, state: OwnerState, endpoint: str, *,
                 attach: Attach | None = None) -> None:
        self.state = state
        self.boot = state.next_boot()
        super().__init__(name, None, inspect=False, keys=state.keypair(), endpoint=endpoint)
        self.worker.store.start_ids_at(self.boot << BOOT_SHIFT)
        self.owner_allowed: dict[str, dict[str, str]] = {}
        self._allowed_mtime = -1.0
        self.reload_allowed()
        self.datasets = self._load_datasets(attach) if attach is not None else []
        self._stop = threading.Event()
        threading.Thread(target=self._watch_allowed, daemon=True,
                         name=f"ppdl-{name}-allowed").start()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.keys.public)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "fingerprint": self.fingerprint, "boot": self.boot,
                "protocol": wire.PROTOCOL.decode(), "datasets": self.datasets}

    def reload_allowed(self) -> None:
        """Read ``allowed.json`` again: new entries are served, removed ones refused."""
        try:
            mtime = self.state.allowed_path.stat().st_mtime
        except FileNotFoundError:
            mtime = 0.0
        if mtime == self._allowed_mtime:
            return
        self._allowed_mtime = mtime
        fresh = self.state.allowed()
        allowlist = self.server.allowlist
        for entry in self.owner_allowed.values():
            if entry not in fresh.values():
                allowlist.revoke(entry["key"])
        for label, entry in fresh.items():
            if entry["role"] == "notebook":
                allowlist.allow("me", entry["key"], shared=True)
            else:
                allowlist.allow(label, entry["key"])
        self.owner_allowed = fresh

    def _watch_allowed(self) -> None:
        while not self._stop.wait(_WATCH_S):
            try:
                self.reload_allowed()
            except (ValueError, PermissionError) as exc:  # a bad edit: keep the old list
                print(f"ppdl-worker {self.worker.name}: allowed.json not applied: {exc}",
                      file=sys.stderr, flush=True)

    def _load_datasets(self, attach: Attach) -> list[str]:
        names = []
        for name, entry in self.state.datasets().items():
            x, y = load_table(self.state.root / entry["path"], entry.get("target", -1))
            attach(self.worker, name, x, y, epsilon=float(entry["epsilon"]),
                   delta=float(entry["delta"]))
            names.append(name)
        return names

    def introduce(self, peers: dict[str, Any]) -> None:
        """Learn peers' endpoints; only peers the owner allowed, with the allowed key."""
        for name, (_, key) in peers.items():
            if name == self.worker.name:
                continue
            entry = self.owner_allowed.get(name)
            if entry is None or entry["role"] != "peer" or \
                    bytes.fromhex(entry["key"]) != _raw(key):
                raise PermissionError(
                    f"{self.worker.name}'s owner has not allowed worker {name!r} with that "
                    f"key (fingerprint {_raw(key).hex()}); served workers take peers only "
                    f"from their owner: `ppdl-worker allow {_raw(key).hex()} --name {name} "
                    "--peer --state-dir DIR`")
        super().introduce(peers)

    def close(self) -> None:
        self._stop.set()
        super().close()


def _raw(key: Any) -> bytes:
    return bytes.fromhex(key) if isinstance(key, str) else bytes(key)


@message("served")
def _served(worker: Worker, msg: dict, caller: str) -> dict[str, Any]:
    """A served worker says who it is: name, life number, protocol, datasets."""
    runtime = worker.state.get("runtime")
    if not isinstance(runtime, ServedRuntime):
        raise TypeError(f"{worker.name} is not a served worker")
    info = runtime.describe()
    return {k: info[k] for k in ("name", "boot", "protocol", "datasets", "fingerprint")}


def serve(name: str, state: OwnerState, listen: str, *, attach: Attach | None = None,
          ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Serve worker ``name`` until SIGTERM or SIGINT (what ``ppdl-worker serve`` runs)."""
    from ppdl_nb.workers.core import handlers as _handlers  # noqa: F401  (core vocabulary)

    os.environ["PPDL_NB_STATE_DIR"] = str(state.ledgers)  # this process's ledgers: in DIR
    runtime = ServedRuntime(name, state, f"tcp://{listen}", attach=attach)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if ready is not None:
            ready(runtime.describe())
        while not stop.wait(3600):
            pass
    finally:
        runtime.close()
