"""The client end of the encrypted channel (:mod:`.channel` has the server and the design).

A client sends one request at a time and waits for its reply; it holds one DEALER socket
and one session, made on first use and dropped after a timeout or a refusal.

>>> from ppdl_nb.workers.transport.channel import ChannelServer
>>> from ppdl_nb.workers.transport.keys import KeyPair
>>> server_keys, client_keys = KeyPair.generate(), KeyPair.generate()
>>> with ChannelServer(server_keys, None, lambda f, p: f, {"nb": client_keys.public}) as s:
...     with ChannelClient(client_keys, s.endpoint, server_keys.public, "nb") as c:
...         c.request([b"ping"])
[b'ping']
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import zmq
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from zmq.utils.monitor import recv_monitor_message

from ppdl_nb.errors import RemoteError, remote_exception
from ppdl_nb.workers.transport import chan_wire as wire
from ppdl_nb.workers.transport.chan_gate import OTHER_KEY, gate_client
from ppdl_nb.workers.transport.chan_socket import (
    MAX_MESSAGE_BYTES,
    Session,
    configure,
    context,
    send_parts,
    tcp_options,
)
from ppdl_nb.workers.transport.keys import (
    KeyPair,
    derive_session,
    hello_key,
    hello_tag,
    parse_public_key,
)

__all__ = ["ChannelClient", "SessionLost"]

_ALIVE_POLL_MS = 200
_GATE_POLL_MS = 20  # during a handshake: how soon the gate's refusal is noticed


class SessionLost(PermissionError):
    """The server no longer knows this connection's session (it restarted, say): the
    request was refused before it ran, so it is safe to connect again and resend it."""


class _Watch:
    """Connection events of one socket: did the server's gate refuse us, was the
    connection lost since it was made (TCP: also no heartbeat; ipc: the server's process
    closed it, so a reply in flight will never come)?"""

    def __init__(self, sock: zmq.Socket, *, tcp: bool) -> None:
        mask = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_DISCONNECTED
        if not tcp:  # on this machine a refused connect means nobody listens there
            mask |= zmq.EVENT_CONNECT_RETRIED
        self._events = sock.get_monitor_socket(mask)
        self._sock, self.tcp = sock, tcp
        self._lost, self.refused = False, 0  # refused: the gate's status code
        self.nobody_listens = False

    def _drain(self) -> None:
        while self._events.poll(0):
            event = recv_monitor_message(self._events)
            if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.refused = int(event["value"])
            elif event["event"] == zmq.EVENT_CONNECT_RETRIED:
                self.nobody_listens = True
            else:
                self._lost = True

    def lost(self) -> bool:
        self._drain()
        lost, self._lost = self._lost, False
        return lost

    def gate_refused(self) -> int:
        self._drain()
        return self.refused

    def close(self) -> None:
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self._events.close(linger=0)


class ChannelClient:
    """Send requests to one :class:`ChannelServer` and wait for the replies.

    ``name`` is how the server knows this client (its allowlist entry);
    ``server_public_key`` is the key the server must prove it holds; ``peer`` names the
    server in error messages. The handshake happens on the first request (or
    :meth:`connect`). After a timeout or a refusal the connection is dropped and the
    next request makes a fresh one, so a late reply can never be taken for the next.
    Safe to share between threads: a lock serialises round trips.
    """

    def __init__(
        self,
        keypair: KeyPair,
        endpoint: str,
        server_public_key: bytes | str,
        name: str,
        *,
        peer: str | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.keypair, self.endpoint, self.name = keypair, endpoint, name
        self.server_public_key = parse_public_key(server_public_key)
        self.peer = peer or endpoint
        self.max_message_bytes = max_message_bytes
        self._lock = threading.Lock()
        self._sock: zmq.Socket | None = None
        self._session: Session | None = None
        self._seq = 0
        self._closed = False
        self._hello_key = hello_key(keypair, self.server_public_key)
        self.alive: Callable[[], bool] | None = None  # set by owners of the peer's process
        self.connect_timeout: float | None = None  # at most this long for a handshake
        self._watch: _Watch | None = None  # the gate's refusal; a lost TCP connection
        self.handshakes = 0  # sessions made so far (more than one: it reconnected)

    def connect(self, timeout: float = 10.0) -> None:
        """Handshake now (instead of on the first request); raises like :meth:`request`."""
        with self._lock:
            self._ensure(time.monotonic() + timeout, timeout)

    def request(self, frames: Sequence[bytes | bytearray | memoryview], timeout: float = 60.0
                ) -> list:
        """Send ``frames``, return the reply frames (``bytes``; a writable ``memoryview`` if large).

        Raises ``TimeoutError`` if no full reply comes within ``timeout`` seconds,
        ``PermissionError`` if the server refuses us or fails to prove its key, and the
        server handler's exception (see :func:`ppdl_nb.errors.remote_exception`);
        ``ValueError`` (nothing sent) if the message exceeds ``max_message_bytes``.
        """
        if self._closed:
            raise ConnectionError(f"channel client to {self.peer} is closed")
        size = sum(memoryview(f).nbytes for f in frames)
        if size > self.max_message_bytes:
            raise ValueError(f"a message of {size} bytes exceeds the channel's limit of "
                             f"{self.max_message_bytes} bytes to {self.peer}; send it in "
                             "parts, or raise max_message_bytes on both ends")
        deadline = time.monotonic() + timeout
        with self._lock:
            try:
                return self._send(frames, deadline, timeout)
            except SessionLost:  # refused before it ran: one fresh session, same identity
                self._reset()
                return self._send(frames, deadline, timeout)

    def _send(self, frames: Sequence, deadline: float, timeout: float) -> list:
        if self._watch is not None and self._watch.lost():
            self._reset()  # lost while idle (a restart, a partition): make a fresh session
        try:
            session = self._ensure(deadline, timeout)
            self._seq += 1
            seq = self._seq
            for m in wire.seal_iter(session.aead_out, wire.KIND_REQUEST, seq, frames):
                self._sock.setsockopt(zmq.SNDTIMEO, _ms_left(deadline))
                send_parts(self._sock, m)
            return self._await_reply(session, seq, deadline, timeout)
        except zmq.Again:
            self._reset()
            raise self._timeout(timeout) from None
        except RemoteError:
            raise  # the handler failed; the connection is fine
        except BaseException:
            self._reset()
            raise

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the socket. Idempotent."""
        with self._lock:
            self._closed = True
            self._reset()

    def __enter__(self) -> ChannelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "connected" if self._session else "idle"
        return f"ChannelClient({self.name!r} -> {self.peer}, {state})"

    # -- internals (under self._lock) ----------------------------------------------------

    def _timeout(self, timeout: float) -> TimeoutError:
        return TimeoutError(
            f"no reply from {self.peer} ({self.endpoint}) within {timeout:g} s: it may be "
            "busy with a long request, dead, or not listening. Check that it is running "
            "(is_alive()), or pass a larger timeout"
        )

    def _reset(self) -> None:
        if self._watch is not None:
            self._watch.close()
        if self._sock is not None:
            self._sock.close(linger=0)
        self._sock, self._session, self._watch = None, None, None

    def _recv(self, deadline: float, timeout: float) -> list:
        watch = self._watch
        handshake = self._session is None
        watched = self.alive is not None or watch is not None
        while True:
            left = _ms_left(deadline)
            if left <= 0:
                raise self._timeout(timeout)
            if handshake and watch is not None and watch.gate_refused():
                raise self._gate_refusal(watch.refused)
            if handshake and watch is not None and watch.nobody_listens:
                raise ConnectionError(f"nobody listens at {self.endpoint}: {self.peer} is "
                                      "not running (its process stopped)")
            if watch is not None and not watch.tcp and not handshake and watch.lost():
                raise ConnectionError(
                    f"{self.peer} closed its connection while handling a request (its "
                    "process stopped, or it restarted); the request may or may not have run")
            if watch is not None and watch.tcp and watch.lost():
                raise ConnectionError(
                    f"the connection to {self.peer} ({self.endpoint}) was lost (no heartbeat "
                    "for 3 s, or it closed): the network is down or the peer stopped. A "
                    "request in flight may or may not have run; objects it holds are kept "
                    "while it runs. Try again when it is reachable")
            # wake up now and then to notice a peer process that died mid-request
            wait = min(left, _GATE_POLL_MS if handshake else _ALIVE_POLL_MS)
            if self._sock.poll(wait if watched else left):
                return self._sock.recv_multipart(copy=False)
            if self.alive is not None and not self.alive():
                raise ConnectionError(f"{self.peer} died while handling a request")

    def _ensure(self, deadline: float, timeout: float) -> Session:
        if self._session is not None:
            return self._session
        self._reset()
        tcp = self.endpoint.startswith("tcp://")
        mine = self._hello(tcp, deadline)
        if self.connect_timeout is not None and deadline - time.monotonic() > \
                self.connect_timeout:
            deadline, timeout = time.monotonic() + self.connect_timeout, self.connect_timeout
        while True:
            try:
                msg = self._recv(deadline, timeout)
            except TimeoutError:
                if not tcp:
                    raise
                raise ConnectionError(  # TCP: nobody answered, which is not a slow request
                    f"{self.peer} did not answer a handshake at {self.endpoint} within "
                    f"{timeout:g} s: it is not running, or the network to it is down") from None
            kind, seq, _ = wire.parse_prefix(msg[0].buffer)
            if kind == wire.KIND_REFUSED:
                raise _refusal(self.peer, "the connection", msg)
            if kind == wire.KIND_WELCOME and len(msg) in (3, 4):
                break
        why = wire.check_version(msg[3].bytes, self.peer) if len(msg) == 4 else None
        if why is not None:
            raise ConnectionRefusedError(f"{why}; refusing to talk to it")
        try:
            keys = derive_session(self.keypair, mine, self.server_public_key,
                                  parse_public_key(msg[1].bytes), client_side=True,
                                  name=self.name)
            session = Session(self.peer, AESGCM(keys.s2c), AESGCM(keys.c2s))
            session.aead_in.decrypt(bytes(12), msg[2].bytes, msg[0].bytes)
        except (InvalidTag, ValueError):
            raise PermissionError(
                f"{self.peer} at {self.endpoint} did not prove it holds the secret key for "
                f"public key {self.server_public_key.hex()[:16]}...: wrong server key, or "
                "another process is listening there. Refusing to talk to it"
            ) from None
        self._session, self._seq = session, 0
        self.handshakes += 1
        return session

    def _hello(self, tcp: bool, deadline: float) -> KeyPair:
        """Connect through the server's gate and send a hello; returns its ephemeral key."""
        sock = configure(context().socket(zmq.DEALER))
        gate_client(sock, self._hello_key, self.keypair.public, self.server_public_key,
                    self.name)
        if tcp:
            tcp_options(sock)
        self._watch = _Watch(sock, tcp=tcp)
        sock.connect(self.endpoint)
        self._sock = sock
        mine = KeyPair.generate()
        tag = hello_tag(self._hello_key, self.keypair.public, self.server_public_key,
                        self.name, mine.public)
        hello = [wire.prefix(wire.KIND_HELLO, 0), self.name.encode(), self.keypair.public,
                 mine.public, tag, wire.PROTOCOL]
        while True:  # the gate may refuse us before the hello is queued: then it cannot be
            sock.setsockopt(zmq.SNDTIMEO, min(_GATE_POLL_MS, _ms_left(deadline)))
            try:
                sock.send_multipart(hello)
                return mine
            except zmq.Again:
                if self._watch.gate_refused():
                    raise self._gate_refusal(self._watch.refused) from None
                if _ms_left(deadline) <= 0:
                    raise

    def _gate_refusal(self, status: int) -> PermissionError:
        if status == OTHER_KEY:
            return PermissionError(
                f"{self.peer} at {self.endpoint} refused the connection: it knows client "
                f"{self.name!r} but under another key of its own, so it did not prove its key "
                f"{self.server_public_key.hex()[:16]}...: wrong server key or fingerprint, "
                "or another process listens there. Refusing to talk to it")
        return PermissionError(
            f"{self.peer} refused the connection: client {self.name!r} with this public key "
            f"({self.keypair.public.hex()[:16]}...) is not known to {self.peer} (or this "
            "clock is more than 5 minutes off its clock). Tell it the client's public key "
            "first (server.allow; `ppdl-worker allow FINGERPRINT` for a served worker)")

    def _await_reply(self, session: Session, seq: int, deadline: float, timeout: float
                     ) -> list:
        inbound: wire.Inbound | None = None
        while True:
            msg = self._recv(deadline, timeout)
            try:
                kind, rseq, _ = wire.parse_prefix(msg[0].buffer)
            except ValueError:
                continue
            if rseq != seq:
                continue  # not ours (cannot happen on a fresh socket, but be strict)
            if kind == wire.KIND_REFUSED:
                raise _refusal(self.peer, f"request {seq}", msg)
            try:
                if kind == wire.KIND_REPLY and inbound is None:
                    inbound = wire.Inbound.open_head(session.aead_in, msg,
                                                     max_bytes=self.max_message_bytes)
                elif kind == wire.KIND_CHUNK and inbound is not None:
                    inbound.add_chunk(msg)
                else:
                    continue
            except wire.AuthError as exc:
                raise PermissionError(f"reply from {self.peer} failed authentication "
                                      f"({exc}); dropping the connection") from None
            if inbound.done:
                break
        if inbound.status == wire.STATUS_OK:
            return inbound.frames
        type_name, message, tb = (bytes(f).decode(errors="replace") for f in inbound.frames[:3])
        raise remote_exception(type_name, message, self.peer, tb)


def _refusal(peer: str, what: str, msg: list) -> PermissionError | ConnectionError:
    """The exception for a refusal: its code (third frame, if any) says which kind."""
    reason = msg[1].bytes.decode(errors="replace") if len(msg) > 1 else "no reason given"
    code = msg[2].bytes if len(msg) > 2 else b""
    if code == wire.REFUSED_VERSION:
        return ConnectionRefusedError(f"{peer} refused {what}: {reason}")
    kind = SessionLost if code == wire.REFUSED_NO_SESSION else PermissionError
    return kind(f"{peer} refused {what}: {reason}")


def _ms_left(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))
