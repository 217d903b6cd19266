"""The notebook's side of served workers: its persistent identity, ``connect``, introductions.

The notebook proves who it is with its own key pair, made once and kept in
``$PPDL_NB_IDENTITY`` (a file path; tests set it) or
``~/.config/ppdl_nb/identity/x25519.key`` (0600), so a data owner can allow it once
(``ppdl-worker allow FINGERPRINT --name nb``). :func:`notebook_identity` shows it;
``rotate=True`` makes a new one (the old file is kept beside it, renamed), which owners
must then allow.

``connect("alice@host:7700", fingerprint="...")`` dials the worker, checks that it
proves the key the fingerprint names, and returns a :class:`ServedWorker`, used like a
kernel worker (pointers, ``send``, SPDZ, FL, DP steps). ``join=(bob, charlie)``
introduces it to workers the notebook already has, kernel or served, so they can talk
peer to peer (see :mod:`.served` for who dials whom).

>>> parse_address("alice@10.0.0.5:7700")
('alice', 'tcp://10.0.0.5:7700')
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from ppdl_nb.workers.transport.channel_client import ChannelClient
from ppdl_nb.workers.transport.keys import KeyPair
from ppdl_nb.workers.transport.party import local_party
from ppdl_nb.workers.transport.runtime import DEFAULT_TIMEOUT, ChannelConnection
from ppdl_nb.workers.transport.served_state import fingerprint, parse_fingerprint

__all__ = ["IDENTITY_ENV", "ServedWorker", "connect", "identity_file", "introduce",
           "notebook_identity", "parse_address"]

IDENTITY_ENV = "PPDL_NB_IDENTITY"
CONNECT_TIMEOUT = 10.0
_BOOT_SHIFT = 32  # as served.BOOT_SHIFT (not imported: the server side is not needed here)


def identity_file() -> Path:
    """Where this user's notebook identity lives (see the module docstring)."""
    env = os.environ.get(IDENTITY_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "ppdl_nb" / "identity" / "x25519.key"


def notebook_identity(*, rotate: bool = False) -> KeyPair:
    """The notebook's persistent key pair (made on first use); ``rotate=True``: a new one.

    >>> import os, tempfile
    >>> os.environ["PPDL_NB_IDENTITY"] = os.path.join(tempfile.mkdtemp(), "id", "nb.key")
    >>> first = notebook_identity()
    >>> notebook_identity().public == first.public, notebook_identity(rotate=True) == first
    (True, False)
    """
    path = identity_file()
    path.parent.parent.mkdir(parents=True, exist_ok=True)
    if rotate and path.exists():
        os.replace(path, path.with_name(f"{path.name}.{int(time.time())}.old"))
    return KeyPair.load_or_create(path)


def parse_address(address: str) -> tuple[str, str]:
    """``"name@host:port"`` -> ``(name, "tcp://host:port")``; ``ValueError`` otherwise."""
    m = re.fullmatch(r"([A-Za-z_]\w*)@(\[[0-9a-fA-F:]+\]|[\w.\-]+):(\d{1,5})", address.strip())
    if m is None:
        raise ValueError(f"{address!r} is not a served worker's address: write "
                         "'name@host:port', e.g. 'alice@127.0.0.1:7700'")
    return m.group(1), f"tcp://{m.group(2)}:{m.group(3)}"


class ServedWorker(ChannelConnection):
    """The notebook's handle on a worker its owner serves (see :func:`connect`)."""

    kind = "served"

    def __init__(self, name: str, endpoint: str, public_key: bytes, *,
                 timeout: float = DEFAULT_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT
                 ) -> None:
        channel = ChannelClient(notebook_identity(), endpoint, public_key, "me", peer=name)
        channel.connect_timeout = connect_timeout
        super().__init__(name, channel, caller="me", context=local_party(), timeout=timeout)
        self.endpoint, self.public_key = endpoint, public_key.hex()
        self.fingerprint = fingerprint(public_key)
        self.boot: int | None = None
        self.datasets: list[str] = []
        self.peers: dict[str, list[str]] = {}  # introduced to it; sent again after a restart
        self._seen = 0  # handshakes seen: another one means it reconnected
        local_party().register(self)

    def __repr__(self) -> str:
        return f"<ServedWorker {self.name} at {self.endpoint[6:]} ({self.fingerprint[:16]}...)>"

    def status(self) -> str:
        """"running" while the notebook's connection is open (its owner runs the process:
        whether it answers, a request tells), "closed" after :meth:`close`."""
        return "closed" if self.channel.closed else "running"

    def shutdown(self) -> None:
        """Close the notebook's connection (the worker keeps running: its owner stops it)."""
        self.close()

    def request(self, message: dict[str, Any], *, timeout: float | None = None) -> Any:
        if message.get("kind") in ("served", "peers"):
            return super().request(message, timeout=timeout)
        try:
            result = super().request(message, timeout=timeout)
        except KeyError as exc:
            self._check_life()
            raise self._explain(exc) from None
        self._check_life()
        return result

    def refresh(self) -> dict[str, Any]:
        """Ask who it is (name, life, datasets); after a restart, introduce its peers again."""
        self._seen = self.channel.handshakes
        info = super().request({"kind": "served"}, timeout=CONNECT_TIMEOUT)
        restarted = self.boot is not None and info["boot"] != self.boot
        self.boot, self.datasets = info["boot"], list(info["datasets"])
        if restarted and self.peers:
            super().request({"kind": "peers", "peers": self.peers})
        return info

    def _check_life(self) -> None:
        if self.channel.handshakes != self._seen:
            self.refresh()

    def _explain(self, exc: KeyError) -> KeyError:
        text = str(exc.args[0]) if exc.args else str(exc)
        m = re.search(r"holds no object (\d+)", text)
        if m is None or self.boot is None or int(m.group(1)) >> _BOOT_SHIFT >= self.boot:
            return exc
        return KeyError(
            f"object {m.group(1)} was made by {self.name} before it restarted (life "
            f"{int(m.group(1)) >> _BOOT_SHIFT}, now {self.boot}): objects do not survive a "
            "restart of a served worker (its datasets and budgets do). Compute it again")


def connect(address: str, *, fingerprint: str, join: tuple[Any, ...] = (),
            timeout: float = DEFAULT_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT
            ) -> ServedWorker:
    """Connect to the worker served at ``address`` (``"name@host:port"``) whose owner
    published ``fingerprint``; ``join``: workers to introduce it to (and they to it).

    Raises ``PermissionError`` if the worker does not prove that key, or its owner has not
    allowed this notebook (the message shows this notebook's fingerprint),
    ``ConnectionRefusedError`` for an incompatible protocol version, ``TimeoutError``
    if nothing answers within ``connect_timeout`` seconds.
    """
    name, endpoint = parse_address(address)
    worker = ServedWorker(name, endpoint, parse_fingerprint(fingerprint), timeout=timeout,
                          connect_timeout=connect_timeout)
    try:
        info = worker.refresh()
    except PermissionError as exc:
        worker.close()
        if "did not prove its key" in str(exc):  # it checked our hello with another key
            raise PermissionError(
                f"the worker at {endpoint} does not hold the key of fingerprint "
                f"{fingerprint[:16]}...: a wrong fingerprint, or another process listens "
                "there. Check the fingerprint its owner published") from None
        if "is not known to" not in str(exc):
            raise
        mine = _fingerprint_of_me()
        raise PermissionError(
            f"{name}'s owner has not allowed this notebook. Send them your fingerprint "
            f"{mine}; they run `ppdl-worker allow {mine} --name nb --state-dir DIR`") from None
    except BaseException:
        worker.close()
        raise
    if info["name"] != name:
        worker.close()
        raise ValueError(f"the worker at {endpoint} is {info['name']!r}, not {name!r}; "
                         f"connect to '{info['name']}@...' or check the address")
    if join:
        introduce(worker, *join)
    return worker


def _fingerprint_of_me() -> str:
    return fingerprint(notebook_identity().public)


def introduce(*workers: Any) -> None:
    """Tell each of ``workers`` (served or kernel) the others' endpoints and keys.

    Served workers are told first: one refuses a peer its owner did not allow
    (``PermissionError``) before any other worker learns anything.
    """
    for w in workers:
        if not hasattr(w, "endpoint") or not hasattr(w, "public_key"):
            raise TypeError(f"{w!r} cannot be introduced: only kernel and served workers "
                            "talk peer to peer (virtual workers mix only with virtual ones)")
    peers = {w.name: [w.endpoint, w.public_key] for w in workers}
    for w in sorted(workers, key=lambda w: not isinstance(w, ServedWorker)):
        w.request({"kind": "peers", "peers": peers})
        if isinstance(w, ServedWorker):
            w.peers.update({n: p for n, p in peers.items() if n != w.name})
