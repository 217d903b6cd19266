"""Data links: sealed one-way pipes between two workers for a protocol's rounds.

Why: a protocol round on the request channel costs a request, its reply and about four
thread hand-offs per party (a send pool, the serve thread, a handler thread, the waiting
routine's wake-up): about a millisecond here, for 8 bytes each way. A data link is a
ZeroMQ ``PUSH`` socket of the sender connected to the receiver's ``PULL`` socket: the
sender's own thread seals and sends, no reply comes back, and the receiver's waiting
thread reads and opens what arrives (:meth:`DataLinks.pump`), handing each message to
whoever registered its link.

Keys: the *sender* draws a fresh 32-byte AES-GCM key and a 16-byte link id per link and
gives them to the receiver over the authenticated, encrypted channel (the receiver learns
who the sender is from that channel, never from the link); each link carries one
direction, so the sender's growing sequence number is a nonce used once per key, and the
receiver refuses anything not sealed under the key of the link id it names, replayed or
out of order. Frames are sealed with :mod:`.chan_wire` (the channel's own format).

A worker's ``PULL`` socket listens next to its channel: a private ``ipc://`` path for a
kernel worker. A frame from a stranger fails authentication and is dropped.

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

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import zmq
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from zmq.utils.monitor import recv_monitor_message

from ppdl_nb.workers.transport.chan_socket import context, private_endpoint
from ppdl_nb.workers.transport.chan_wire import (
    KIND_REQUEST,
    PREFIX_BYTES,
    AuthError,
    Inbound,
    parse_prefix,
    seal_iter,
)
from ppdl_nb.workers.transport.keys import KEY_BYTES

__all__ = ["KEY_BYTES", "LINK_ID_BYTES", "DataLinks", "OutLink", "attach", "close", "links_of"]

LINK_ID_BYTES = 16
SEND_TIMEOUT_MS = 60_000  # a receiver that stopped reading fails the send, never hangs it
MAX_MESSAGE_BYTES = 1 << 31
_ZERO_COPY_FROM = 1 << 16  # smaller frames are cheaper to copy than to pin


_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)  # plain ints: no enum work per round
_STATE_KEY = "datalinks"  # in worker.state: None until first use, then the DataLinks


def attach(worker_state: dict[str, Any], name: str) -> None:
    """Give a worker data links, made on first use (its runtime calls this where the
    worker has its own process and a private ipc directory)."""
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


class DataLinks:
    """A worker's receiving end: one ``PULL`` socket and the links registered on it."""

    def __init__(self, name: str, endpoint: str | None = None) -> None:
        self.name = name
        self._sock = context().socket(zmq.PULL)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(endpoint or private_endpoint(f"{name}-data"))
        self.endpoint: str = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._sock.setsockopt(zmq.RCVHWM, 0)
        self._links: dict[bytes, _InLink] = {}
        self._lock = threading.Lock()
        self.dropped = 0  # frames that named no link or failed authentication
        self._reader = threading.Lock()  # one thread reads the socket at a time
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)

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
        """Receive for up to ``timeout`` seconds, until one message was delivered; read
        what else is queued at once. False if another thread is reading (wait for it).

        There is no receive thread: a routine that waits for its peers' messages reads
        them itself, with its worker unlocked, so a round costs no thread hand-off; the
        messages of other links it meets on the way go to their own receivers."""
        if not self._reader.acquire(blocking=False):
            return False
        try:
            sock = self._sock
            if sock.getsockopt(_EVENTS) & _POLLIN or self._poller.poll(int(timeout * 1000)):
                while True:
                    self._take(sock.recv_multipart(copy=False))
                    if not sock.getsockopt(_EVENTS) & _POLLIN:
                        break
        finally:
            self._reader.release()
        return True

    def _take(self, msg: list[Any]) -> None:
        if len(msg) == 1:  # a small part travels as one frame: link id, prefix, body
            whole = msg[0].bytes
            cut = LINK_ID_BYTES + PREFIX_BYTES
            msg = [whole[:LINK_ID_BYTES], whole[LINK_ID_BYTES:cut], whole[cut:]]
            link_id = msg[0]
        elif len(msg) == 3:
            link_id = bytes(msg[0].buffer)
        else:
            self.dropped += 1
            return
        with self._lock:
            link = self._links.get(link_id)
        if link is None:
            self.dropped += 1
            return
        try:
            done = _open(link, msg[1:])
        except (AuthError, ValueError):
            self.dropped += 1
            return
        if done is not None:
            link.deliver(done)

    def close(self) -> None:
        with self._reader:
            self._sock.close(linger=0)


def _open(link: _InLink, msg: list[Any]) -> list[Any] | None:
    """Add one ZeroMQ message to the link's current message; its frames once complete."""
    head = msg[0] if isinstance(msg[0], bytes) else msg[0].buffer
    kind, seq, index = parse_prefix(head)
    if link.inbound is None:
        if index != 0 or kind != KIND_REQUEST or seq != link.next_seq:
            raise AuthError(f"expected message {link.next_seq} on this link")
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
    """The sending end of one link: ``send`` seals on the caller's thread."""

    def __init__(self, endpoint: str, link_id: bytes, key: bytes) -> None:
        self.link_id = link_id
        self._aead = AESGCM(key)
        self._seq = 0
        self._lock = threading.Lock()  # a ZeroMQ socket is used by one thread at a time
        self._sock = context().socket(zmq.PUSH)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
        self._sock.setsockopt(zmq.SNDHWM, 0)  # rounds are small; a full pipe is a bug
        self._monitor = self._sock.get_monitor_socket(
            zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        self._connected = self._gone = False
        self._sock.connect(endpoint)
        self.bytes_sent = 0

    def lost(self) -> bool:
        """Whether the receiver went away after the link was up (its process died or it
        closed the link): on one machine a closed ``ipc`` connection means just that."""
        with self._lock:
            while not self._gone and self._monitor.poll(0):
                event = recv_monitor_message(self._monitor)["event"]
                self._connected |= event == zmq.EVENT_CONNECTED
                self._gone = self._connected and event == zmq.EVENT_DISCONNECTED
            return self._gone

    def send(self, frames: Sequence[Any]) -> None:
        """Seal and send one message (a list of byte frames)."""
        with self._lock:
            seq, self._seq = self._seq, self._seq + 1
            try:
                for head, body in seal_iter(self._aead, KIND_REQUEST, seq, frames):
                    if len(body) < _ZERO_COPY_FROM:  # one frame: cheaper than three
                        self._sock.send(b"".join((self.link_id, head, body)))
                    else:
                        self._sock.send_multipart([self.link_id, head, body], copy=False)
                    self.bytes_sent += len(body)
            except zmq.Again:
                raise TimeoutError(f"a data link could not send within "
                                   f"{SEND_TIMEOUT_MS / 1000:g} s: its receiver does not "
                                   "read") from None

    def close(self) -> None:
        with self._lock:
            self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._sock.close(linger=0)
