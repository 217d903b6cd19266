"""Data links: sealed one-way pipes between two workers for a protocol's rounds.

Why: a round on the request channel costs a request, its reply and about four thread
hand-offs per party (about a millisecond here for 8 bytes each way). A data link is a
Unix stream socket to the receiver's listening socket: the sender's thread seals and
writes (one system call; ZeroMQ ``PUSH``/``PULL`` measured 20-40 us more per round), the
receiver's waiting thread reads and opens (:meth:`DataLinks.pump`) and hands each message
to whoever registered its link. What the socket cannot take at once goes on from the
link's writer thread, so a routine never blocks on a peer that is itself writing.

Keys: the *sender* draws a 32-byte AES-GCM key and a 16-byte link id per link and gives
them to the receiver over the authenticated channel (which tells it who the sender is);
a link carries one direction, so the sender's sequence number is a nonce used once per
key, and the receiver refuses anything not sealed under the key of the link id it names,
replayed or out of order. On the socket: the link id, then each sealed part (a round's
few bytes sealed whole, :func:`.chan_wire.seal_link`) as a 4-byte length, prefix and
body. A worker listens in its private (0700) directory; a connection that names no link
or breaks the framing is closed and counted, a part that fails authentication dropped
and counted.

>>> import os
>>> got = []
>>> bob = DataLinks("bob")
>>> link_id, key = os.urandom(16), os.urandom(32)
>>> bob.accept(link_id, key, lambda frames: got.append(bytes(frames[0])))
>>> out = OutLink(bob.endpoint, link_id, key)
>>> out.send([b"hello"])
>>> bob.pump(5.0), got
(True, [b'hello'])
>>> out.close(); bob.close()
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import selectors
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ppdl_nb.workers.transport.chan_socket import private_endpoint
from ppdl_nb.workers.transport.chan_wire import (
    KIND_REQUEST,
    KIND_WHOLE,
    PREFIX_BYTES,
    TAG,
    AuthError,
    Inbound,
    open_whole,
    parse_prefix,
    seal_link,
)
from ppdl_nb.workers.transport.keys import KEY_BYTES

__all__ = ["KEY_BYTES", "LINK_ID_BYTES", "DataLinks", "OutLink", "attach", "close", "links_of"]

LINK_ID_BYTES = 16
SEND_TIMEOUT = 60.0  # seconds: a receiver that stopped reading fails the send, never hangs it
MAX_MESSAGE_BYTES = 1 << 31
_LENGTH = struct.Struct("<I")
_READ = 1 << 18  # bytes per read of a connection
_BIG = 1 << 16  # parts from this size are read straight into their own buffer
_STATE_KEY = "datalinks"  # in worker.state: None until first use, then the DataLinks


def attach(worker_state: dict[str, Any], name: str) -> None:
    """Give a worker data links, made on first use (for a worker with its own process)."""
    worker_state.setdefault(_STATE_KEY, [name, None])


def links_of(worker_state: dict[str, Any]) -> DataLinks | None:
    """The worker's :class:`DataLinks` (made now if attached and not yet made), or None."""
    slot = worker_state.get(_STATE_KEY)
    if slot is None:
        return None
    if slot[1] is None:
        slot[1] = DataLinks(slot[0])
    return slot[1]


def close(worker_state: dict[str, Any]) -> None:
    """Close the worker's data links, if it made any."""
    slot = worker_state.pop(_STATE_KEY, None)
    if slot is not None and slot[1] is not None:
        slot[1].close()


@dataclass
class _InLink:
    aead: AESGCM
    deliver: Callable[[list[Any]], None]
    next_seq: int = 0
    inbound: Inbound | None = None


@dataclass
class _Conn:
    """One sender's connection: the link it names, and the bytes of an unfinished part."""

    sock: socket.socket
    link: _InLink | None = None
    pending: bytearray = field(default_factory=bytearray)
    big: memoryview | None = None  # a big part being read in place
    filled: int = 0


class DataLinks:
    """A worker's receiving end: one listening socket and the links registered on it."""

    def __init__(self, name: str, endpoint: str | None = None) -> None:
        self.name = name
        path = endpoint or private_endpoint(f"{name}-data").removeprefix("ipc://")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.endpoint: str = path
        self._links: dict[bytes, _InLink] = {}
        self._lock = threading.Lock()
        self.dropped = 0  # connections or parts refused: no such link, bad framing or seal
        self._reader = threading.Lock()  # one thread reads the sockets at a time
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)

    def accept(self, link_id: bytes, key: bytes, deliver: Callable[[list[Any]], None]
               ) -> None:
        """Receive on link ``link_id`` (sealed under ``key``): every complete message's
        frames go to ``deliver``, called by the thread that pumps."""
        if not isinstance(link_id, bytes) or len(link_id) != LINK_ID_BYTES:
            raise ValueError(f"a link id is {LINK_ID_BYTES} bytes")
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise ValueError(f"a link key is {KEY_BYTES} bytes")
        with self._lock:
            if link_id in self._links:
                raise ValueError("this link id is taken; draw a fresh one")
            self._links[link_id] = _InLink(AESGCM(key), deliver)

    def pump(self, timeout: float) -> bool:
        """Receive for up to ``timeout`` seconds, until something arrived, then what else
        is there; False if another thread is reading. No receive thread: a routine that
        waits for its peers reads itself (its worker unlocked), so a round costs no
        thread hand-off; other links' messages go to their own receivers."""
        if not self._reader.acquire(blocking=False):
            return False
        try:
            events = self._selector.select(timeout)
            while events:
                for key, _ in events:
                    if key.data is None:
                        self._accept_connections()
                    else:
                        self._read(key.data)
                events = self._selector.select(0)
        finally:
            self._reader.release()
        return True

    def _accept_connections(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, _Conn(sock))

    def _read(self, conn: _Conn) -> None:
        try:
            if conn.big is not None:
                got = conn.sock.recv_into(conn.big[conn.filled:])
            else:
                data = conn.sock.recv(_READ)
                got = len(data)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            got = 0
        if not got:  # the sender closed: an unfinished part is a broken one
            self._drop(conn, count=bool(conn.pending) or conn.big is not None)
            return
        if conn.big is not None:
            conn.filled += got
            if conn.filled < len(conn.big):
                return
            part, conn.big = conn.big, None
            self._part(conn, part)
        else:
            conn.pending += data
        self._parse(conn)

    def _parse(self, conn: _Conn) -> None:
        buf = conn.pending
        if conn.link is None:
            if len(buf) < LINK_ID_BYTES:
                return
            with self._lock:
                conn.link = self._links.get(bytes(buf[:LINK_ID_BYTES]))
            if conn.link is None:
                self._drop(conn)
                return
            del buf[:LINK_ID_BYTES]
        pos = 0
        while len(buf) - pos >= _LENGTH.size:
            (n,) = _LENGTH.unpack_from(buf, pos)
            if not PREFIX_BYTES + TAG <= n <= MAX_MESSAGE_BYTES:
                self._drop(conn)
                return
            start = pos + _LENGTH.size
            if n >= _BIG:  # read the rest of a big part straight into its own buffer
                have = min(len(buf) - start, n)
                conn.big = memoryview(bytearray(n))
                conn.big[:have] = buf[start:start + have]
                conn.filled, pos = have, start + have
                if have == n:
                    part, conn.big = conn.big, None
                    self._part(conn, part)
                    continue
                break
            if len(buf) - start < n:
                break
            self._part(conn, memoryview(bytes(buf[start:start + n])))
            pos = start + n
        del buf[:pos]

    def _part(self, conn: _Conn, part: memoryview) -> None:
        link = conn.link
        try:
            done = _open(link, [part[:PREFIX_BYTES], part[PREFIX_BYTES:]])
        except (AuthError, ValueError):
            self.dropped += 1
            return
        if done is not None:
            link.deliver(done)

    def _drop(self, conn: _Conn, count: bool = True) -> None:
        self.dropped += count
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        conn.pending.clear()
        conn.big = None
        conn.sock.close()

    def close(self) -> None:
        with self._reader:
            for key in list(self._selector.get_map().values()):
                key.fileobj.close()
            self._selector.close()
            with contextlib.suppress(OSError):
                os.unlink(self.endpoint)


def _open(link: _InLink, msg: list[Any]) -> list[Any] | None:
    """Add one sealed part to the link's current message; its frames once complete."""
    kind, seq, index = parse_prefix(msg[0])
    if link.inbound is None:
        if index != 0 or kind not in (KIND_REQUEST, KIND_WHOLE) or seq != link.next_seq:
            raise AuthError(f"expected message {link.next_seq} on this link")
        if kind == KIND_WHOLE:
            frames = open_whole(link.aead, msg)
            link.next_seq += 1
            return frames
        link.inbound = Inbound.open_head(link.aead, msg, max_bytes=MAX_MESSAGE_BYTES)
        link.next_seq += 1
    else:
        link.inbound.add_chunk(msg)
    inbound = link.inbound
    if not inbound.done:
        return None
    link.inbound = None
    return inbound.frames


class OutLink:
    """The sending end of one link: ``send`` seals and writes on the caller's thread; what
    the socket cannot take at once goes on from this link's writer thread, in order."""

    def __init__(self, endpoint: str, link_id: bytes, key: bytes) -> None:
        self.link_id = link_id
        self._aead = AESGCM(key)
        self._seq = 0
        self._cv = threading.Condition()
        self._queue: collections.deque[memoryview] = collections.deque()
        self._writer: threading.Thread | None = None
        self._error: str | None = None
        self._closed = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(SEND_TIMEOUT)
        try:
            self._sock.connect(endpoint)
            self._sock.sendall(link_id)
        except OSError as exc:
            self._sock.close()
            raise ConnectionError(f"cannot open a data link to {endpoint}: {exc}") from None
        self._sock.setblocking(False)
        self.bytes_sent = 0

    def lost(self) -> bool:
        """Whether the receiver went away: it never writes, so readable means closed."""
        with self._cv:
            if self._error is not None:
                return True
            if self._closed:
                return False
            try:
                return bool(_ready(self._sock, select.POLLIN, 0)) and not \
                    self._sock.recv(1, socket.MSG_PEEK)
            except OSError as exc:  # would block: still there; anything else: gone
                return not isinstance(exc, BlockingIOError)

    def send(self, frames: Sequence[Any]) -> None:
        """Seal and send one message (a list of byte frames)."""
        with self._cv:
            if self._error is not None:
                raise ConnectionError(f"a data link failed: {self._error}")
            seq, self._seq = self._seq, self._seq + 1
            for head, body in seal_link(self._aead, seq, frames):
                parts = [_LENGTH.pack(len(head) + len(body)), head, body]
                self.bytes_sent += len(body)
                if self._queue:
                    self._queue.extend(memoryview(p) for p in parts)
                    continue
                try:
                    sent = self._sock.sendmsg(parts)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError as exc:
                    self._error = str(exc)
                    raise ConnectionError(f"a data link failed: {exc}") from None
                self._queue.extend(_unsent(parts, sent))
            if self._queue:
                self._start_writer()
                self._cv.notify()

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._write, daemon=True,
                                            name="ppdl-datalink-writer")
            self._writer.start()

    def _write(self) -> None:
        """WRITER THREAD: send the queue's head whenever the socket can take more."""
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
            try:
                writable = _ready(self._sock, select.POLLOUT, SEND_TIMEOUT)
            except (OSError, ValueError):
                writable = None
            with self._cv:
                if self._closed:
                    return
                if not writable:
                    self._error = (f"its receiver read nothing for {SEND_TIMEOUT:g} s"
                                   if writable == 0 else "the socket closed")
                    return
                try:
                    sent = self._sock.send(self._queue[0])
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    self._error = str(exc)
                    return
                head = self._queue.popleft()
                if sent < len(head):
                    self._queue.appendleft(head[sent:])

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
            self._sock.close()


def _ready(sock: socket.socket, event: int, timeout: float) -> int:
    """``sock``'s poll events, 0 if none in ``timeout`` s (poll: any fd number works)."""
    poller = select.poll()
    poller.register(sock, event)
    got = poller.poll(int(timeout * 1000))
    return got[0][1] if got else 0


def _unsent(parts: list[bytes], sent: int) -> list[memoryview]:
    """What of ``parts`` is left after the first ``sent`` bytes went out."""
    out, start = [], 0
    for p in parts:
        if start + len(p) > sent:
            out.append(memoryview(p)[max(sent - start, 0):])
        start += len(p)
    return out
