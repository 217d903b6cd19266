"""ZeroMQ plumbing shared by both ends of the encrypted channel.

One zmq context per process, private ``ipc://`` endpoints, socket limits (bounded
queues, a frame size cap enforced by libzmq), sending a message's parts (without a copy
when they are big), the per-connection state both ends keep (the peer's name, one
AES-GCM key per direction, the last sequence number seen), the server's allowlist (one
public key is one name, fixed once known) and its outbox, which never blocks on a peer
that does not read.

>>> private_endpoint("demo").startswith("ipc://")
True
"""

from __future__ import annotations

import atexit
import collections
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import zmq
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ppdl_nb.workers.transport import chan_wire as wire
from ppdl_nb.workers.transport.keys import KeyPair, hello_key, parse_public_key

__all__ = ["HWM", "MAX_MESSAGE_BYTES", "Allowlist", "Outbox", "Session", "configure", "context",
           "private_endpoint", "reply_messages", "send_parts", "tcp_options"]

MAX_MESSAGE_BYTES = 1 << 34
HWM = 64  # messages per peer and direction (chunks are 4 MiB): bounds memory
_BIG = 1 << 16  # frames above this are handed to zmq without a copy

_ctx_lock = threading.Lock()
_ctx: tuple[int, zmq.Context] | None = None
_tmpdir: str | None = None


def context() -> zmq.Context:
    """One zmq context per process (re-made after a fork)."""
    global _ctx
    with _ctx_lock:
        if _ctx is None or _ctx[0] != os.getpid():
            _ctx = (os.getpid(), zmq.Context(io_threads=1))
        return _ctx[1]


def private_endpoint(name: str = "chan") -> str:
    """A fresh ``ipc://`` endpoint in this process's private (0700) temp directory.

    No ports to race for and no other user can connect. The directory is removed at exit.
    """
    global _tmpdir
    with _ctx_lock:
        if _tmpdir is None or not os.path.isdir(_tmpdir):
            _tmpdir = tempfile.mkdtemp(prefix="ppdl-")
            atexit.register(shutil.rmtree, _tmpdir, True)
        fd, path = tempfile.mkstemp(prefix=f"{name[:20]}-", suffix=".ipc", dir=_tmpdir)
    os.close(fd)
    os.unlink(path)
    return f"ipc://{path}"


def configure(sock: zmq.Socket) -> zmq.Socket:
    """Bounded queues both ways and libzmq's own cap on inbound frames."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME_BYTES)
    return sock


#: TCP peers: a heartbeat every second; no answer for 3 s closes the connection (so a
#: partition or a vanished host is noticed without waiting for TCP's own timeouts)
HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS = 1000, 3000


def tcp_options(sock: zmq.Socket) -> zmq.Socket:
    """Heartbeats, keep-alive and quick reconnects for a socket about to use TCP."""
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, 2 * HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
    sock.setsockopt(zmq.CONNECT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    return sock


def send_parts(sock: zmq.Socket, parts: list, ident: bytes | None = None, *,
               block: bool = True) -> None:
    """Send one multipart message (to ``ident`` on a ROUTER socket).

    ``block=False`` raises ``zmq.Again`` at once if the peer's queue is full.
    """
    if ident is not None:
        parts = [ident, *parts]
    copy = all(len(p) < _BIG for p in parts)
    sock.send_multipart(parts, flags=0 if block else zmq.NOBLOCK, copy=copy)


@dataclass
class Session:
    """One authenticated connection, as either end sees it."""

    peer: str
    aead_in: AESGCM
    aead_out: AESGCM
    last_seq: int = 0
    inbound: wire.Inbound | None = None


def reply_messages(session: Session, seq: int, frames: list, status: int, server: str
                   ) -> Iterator[list]:
    """Seal a reply; a handler that returned non-bytes gets an error reply instead."""
    try:
        messages = wire.seal_iter(session.aead_out, wire.KIND_REPLY, seq, frames,
                                  status=status)
        first = next(messages)  # bad frames fail here, before anything is sent
        yield first
        yield from messages
    except (TypeError, ValueError, BufferError) as exc:
        err = [b"TypeError", f"handler of {server!r} returned bad frames: {exc}".encode(), b""]
        yield from wire.seal_iter(session.aead_out, wire.KIND_REPLY, seq, err,
                                  status=wire.STATUS_ERROR)


class Allowlist:
    """Which public key is which client: one key is one name, and a name's key is fixed.

    >>> server, nb = KeyPair.generate(), KeyPair.generate()
    >>> allowed = Allowlist(server)
    >>> allowed.allow("me", nb.public)
    >>> allowed.lookup(nb.public)[0], allowed.lookup(bytes(32))
    ('me', None)
    """

    def __init__(self, keypair: KeyPair) -> None:
        self._keypair = keypair
        self._by_key: dict[bytes, tuple[str, bytes]] = {}  # key -> (name, hello key)
        self._by_name: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def allow(self, name: str, public_key: bytes | str, *, shared: bool = False) -> None:
        """Accept ``name`` holding ``public_key``; the same pair again is a no-op.

        Raises ``PermissionError`` if ``name`` already has another key (keys are fixed
        once known) and ``ValueError`` if the key already belongs to another name.
        ``shared=True`` lets several keys act as one name (a served worker's owner
        allowing several notebooks, each ``"me"``): only the owner's code passes it.
        """
        key = parse_public_key(public_key)
        with self._lock:
            known = self._by_name.get(name)
            if known == key or (shared and self._by_key.get(key, ("",))[0] == name):
                return
            if known is not None and not shared:
                raise PermissionError(
                    f"{name!r} is already known by another public key; a known peer's key "
                    "cannot be replaced. Launch a new group to use new keys")
            if key in self._by_key:
                raise ValueError(f"that public key already belongs to "
                                 f"{self._by_key[key][0]!r}; one key is one identity")
            self._by_key[key] = (name, hello_key(self._keypair, key))
            self._by_name.setdefault(name, key)

    def revoke(self, public_key: bytes | str) -> None:
        """Refuse ``public_key`` from now on (sessions it already opened stay open)."""
        key = parse_public_key(public_key)
        with self._lock:
            entry = self._by_key.pop(key, None)
            if entry is not None and self._by_name.get(entry[0]) == key:
                rest = [k for k, (n, _) in self._by_key.items() if n == entry[0]]
                if rest:
                    self._by_name[entry[0]] = rest[0]
                else:
                    del self._by_name[entry[0]]

    def lookup(self, public_key: bytes) -> tuple[str, bytes] | None:
        """``(name, hello key)`` of an allowed key, else ``None``."""
        return self._by_key.get(public_key)

    def names(self) -> list[str]:
        return list(self._by_name)


class Outbox:
    """Messages waiting to be sent on a ROUTER socket, per connection, never blocking.

    Any thread may :meth:`put`; only the socket's thread may :meth:`flush`. A connection
    whose queue is full (it does not read) keeps its messages here while the others go
    on; one that makes no progress for ``stall_s`` seconds loses them.
    """

    def __init__(self, sock: zmq.Socket, stall_s: float = 30.0) -> None:
        self._sock, self._stall_s = sock, stall_s
        self._incoming: collections.deque = collections.deque()  # (ident, parts), any thread
        self._queues: dict[bytes, collections.deque] = {}
        self._progress: dict[bytes, float] = {}
        self.dropped = 0

    def put(self, ident: bytes, parts: list) -> None:
        self._incoming.append((ident, parts))

    def __bool__(self) -> bool:
        return bool(self._incoming or self._queues)

    def flush(self) -> None:
        """Send what each connection's queue accepts now."""
        queues = self._queues
        while self._incoming:
            ident, parts = self._incoming.popleft()
            queue = queues.get(ident)
            if queue is None:  # nothing waits for this connection: send at once
                try:
                    send_parts(self._sock, parts, ident, block=False)
                    continue
                except zmq.Again:  # it is not reading (yet): keep it, and the order
                    queue = queues[ident] = collections.deque()
                    self._progress[ident] = time.monotonic()
                except zmq.ZMQError:
                    continue  # it went away
            queue.append(parts)
        if queues:
            self._flush_waiting()

    def _flush_waiting(self) -> None:
        now = time.monotonic()
        for ident in list(self._queues):
            queue = self._queues[ident]
            while queue:
                try:
                    send_parts(self._sock, queue[0], ident, block=False)
                except zmq.Again:
                    break  # that peer is not reading (yet)
                except zmq.ZMQError:
                    queue.clear()  # it went away
                    break
                queue.popleft()
                self._progress[ident] = now
            if queue and now - self._progress.setdefault(ident, now) < self._stall_s:
                continue
            self.dropped += len(queue)
            del self._queues[ident]
            self._progress.pop(ident, None)
