"""An authenticated, encrypted request/reply channel over ZeroMQ between two parties:
AES-256-GCM (which releases the GIL) with keys from an X25519 handshake (:mod:`.keys`),
big messages pipelined in chunks (:mod:`.chan_wire`).

Why not CurveZMQ: measured (``benchmarks/bench_channel.py``, one run, loopback ipc,
64 MiB one way, median of 9 interleaved), this channel moves 388 MB/s, CurveZMQ with
ZAP 170 MB/s (2.28x; plain ZeroMQ 1547 MB/s), and ``bench_pointers.py``'s 64 MiB send
and move may not slow down. What CurveZMQ with ZAP gives is built here instead (see
docs/ARCHITECTURE.md, "Channel"): a hello proves the client's static key (an HMAC only
the two static secrets can make, :func:`.keys.hello_tag`) before the server keeps
anything; a connection becomes a session only once its first request authenticates;
the allowlist (:class:`.chan_socket.Allowlist`: one key is one name, fixed once known)
is the one place that says who may connect, and libzmq enforces it before any frame
reaches Python (:mod:`.chan_gate`: ZAP admits a connection only with a proof made with
an allowed key, so a stranger's flood dies in libzmq); libzmq drops frames over
``MAX_FRAME_BYTES``; a refusal is never a blocking send.

A server accepts only clients whose public key it was told (``allowed_peers`` or
:meth:`ChannelServer.allow`), a client only the server whose key it was given. The
handler gets the allowlist's name for the proven key, never a name from a request. Each
connection has its own keys, one per direction; replayed, reordered or tampered
messages are refused and the server keeps serving.

>>> server_keys, client_keys = KeyPair.generate(), KeyPair.generate()
>>> echo = lambda frames, peer: [b"hello " + peer.encode(), *frames]
>>> with ChannelServer(server_keys, None, echo, {"nb": client_keys.public}) as server:
...     with ChannelClient(client_keys, server.endpoint, server_keys.public, "nb") as c:
...         c.request([b"x"])
[b'hello nb', b'x']

The client is :class:`.channel_client.ChannelClient` (re-exported here). Threads: a
server runs its loop in one background thread, which alone touches the socket and
never blocks on a peer (replies wait in an :class:`.chan_socket.Outbox`). With
``threads=1`` (the default) it calls ``handler`` there, one request at a time.
With ``threads=N > 1`` it hands each complete request to one of ``N`` handler threads
(at most ``MAX_QUEUED`` waiting; more are refused as busy) and keeps receiving, so a
handler may wait for another request to arrive (a protocol step waiting for a peer's
message). A client may be shared between threads (a lock serialises round trips); a
thread that must not wait behind a long request should open its own client.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import queue
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence

import zmq
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ppdl_nb.errors import error_message, wire_type
from ppdl_nb.workers.transport import chan_wire as wire
from ppdl_nb.workers.transport.chan_gate import ADMITTED, check_proof, gate_server, ungate_server
from ppdl_nb.workers.transport.chan_socket import (
    MAX_MESSAGE_BYTES,
    Allowlist,
    Outbox,
    Session,
    configure,
    context,
    private_endpoint,
    reply_messages,
    send_parts,
    tcp_options,
)
from ppdl_nb.workers.transport.channel_client import ChannelClient
from ppdl_nb.workers.transport.keys import KeyPair, derive_session, hello_tag, parse_public_key

__all__ = ["MAX_QUEUED", "ChannelClient", "ChannelServer", "Frames", "Handler",
           "private_endpoint"]

Frames = list[bytes | bytearray | memoryview]
Handler = Callable[[list, str], Sequence]
MAX_QUEUED = 256  # complete requests waiting for a handler thread
_MAX_SESSIONS = 1024  # proven connections; only key holders can add one
_MAX_PENDING = 64  # handshakes whose first request has not come yet
_POLL_MS = 50
_BUSY_POLL_MS = 2  # while replies wait for a slow reader


class ChannelServer:
    """Serve ``handler(frames, peer_name) -> frames`` to authenticated clients.

    ``endpoint`` is ``None`` (a private ``ipc://`` path), an ``ipc://`` path or
    ``tcp://HOST:PORT`` (``PORT`` may be ``*`` for any free port; TCP connections get
    heartbeats, :func:`.chan_socket.tcp_options`); the bound address is ``server.endpoint``.
    ``allowed_peers`` maps client names to their public keys (32 bytes or hex). A
    handler exception is sent back as an error the client re-raises (with this side's
    traceback); the server keeps serving.
    """

    def __init__(  # long: validates, opens the socket and starts its threads
        self,
        keypair: KeyPair,
        endpoint: str | None,
        handler: Handler,
        allowed_peers: Mapping[str, bytes | str] | None = None,
        *,
        name: str = "server",
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        threads: int = 1,
    ) -> None:
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an int >= 1, got {threads!r}")
        self.keypair, self.handler, self.name = keypair, handler, name
        self.max_message_bytes = max_message_bytes
        self.allowlist = Allowlist(keypair)
        self._lock = threading.Lock()
        for peer, key in (allowed_peers or {}).items():
            self.allow(peer, key)
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()
        self._pending: OrderedDict[bytes, Session] = OrderedDict()
        self.refused = 0  # messages refused (bad auth, replay, unknown peer, ...)
        self.served = 0
        self._sock = configure(context().socket(zmq.ROUTER))
        self._sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        endpoint = endpoint or private_endpoint(name)
        if endpoint.startswith("tcp://"):
            tcp_options(self._sock)
        self._gate = gate_server(self._sock, self._admit)
        try:
            self._sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self._sock.close()
            ungate_server(self._gate)
            raise ConnectionError(
                f"channel server {name!r} cannot listen on {endpoint}: {exc}; "
                "pass endpoint=None for a private ipc path"
            ) from None
        self.endpoint: str = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._ipc_path = self.endpoint[6:] if self.endpoint.startswith("ipc://") else None
        self._stop = threading.Event()
        self._jobs: queue.SimpleQueue | None = None
        self._outbox = Outbox(self._sock)
        self._wake_r = self._wake_w = -1
        self._handlers: list[threading.Thread] = []
        if threads > 1:
            # a SimpleQueue hands a job to a waiting thread in C; a Queue's Condition
            # costs several GIL hand-offs per request (measured: +5% per pointer op).
            # Only the loop thread puts, so checking qsize() first bounds it.
            self._jobs = queue.SimpleQueue()
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            for i in range(threads):
                t = threading.Thread(target=self._work, name=f"ppdl-chan-{name}-h{i}",
                                     daemon=True)
                t.start()
                self._handlers.append(t)
        self._thread = threading.Thread(target=self._serve, name=f"ppdl-chan-{name}", daemon=True)
        self._thread.start()

    def allow(self, name: str, public_key: bytes | str) -> None:
        """Accept connections from client ``name`` holding the secret of ``public_key``.

        A name's key is fixed once allowed (``PermissionError`` on another key), and
        one key is one name (``ValueError``); see :class:`.chan_socket.Allowlist`.
        """
        self.allowlist.allow(name, public_key)

    @property
    def public_key(self) -> bytes:
        return self.keypair.public

    @property
    def sessions(self) -> list[str]:
        """The client name of each proven session (for tests and diagnostics)."""
        with self._lock:
            return sorted(s.peer for s in self._sessions.values())

    def close(self) -> None:
        """Stop serving, close the socket and remove the ipc file. Idempotent."""
        self._stop.set()
        ungate_server(self._gate)
        if self._jobs is not None:
            for _ in self._handlers:
                self._jobs.put(None)  # unbounded for these: every handler must wake
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)
        self._close_wake_pipe()
        if self._ipc_path and os.path.exists(self._ipc_path):
            with contextlib.suppress(OSError):
                os.unlink(self._ipc_path)

    def __enter__(self) -> ChannelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._stop.is_set() else "serving"
        peers = self.allowlist.names()
        return f"ChannelServer({self.name!r}, {self.endpoint}, {state}, peers={peers})"

    def _admit(self, username: bytes, proof: bytes) -> int:
        """The gate's check (ZAP thread): may this connection deliver frames at all?"""
        status = check_proof(proof, username.decode(errors="replace"), self.keypair.public,
                             self.allowlist.lookup)
        if status != ADMITTED:
            with self._lock:
                self.refused += 1
        return status

    # -- the serving loop (background thread only) ---------------------------------------

    def _serve(self) -> None:
        sock = self._sock
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if self._wake_r >= 0:
            poller.register(self._wake_r, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(_BUSY_POLL_MS if self._outbox else _POLL_MS))
                if self._wake_r in events:
                    self._drain_wakeups()
                self._outbox.flush()
                if sock not in events:
                    continue
                # one message per poll: a recv that finds nothing would contend for the
                # GIL with a busy handler thread (measured: +1 ms per request)
                self._dispatch(sock.recv_multipart(copy=False))
        finally:
            sock.close(linger=0)

    def _close_wake_pipe(self) -> None:
        """Close the wake-up pipe once no handler thread can write to it any more (a
        handler still busy keeps it open: its fd number must not be reused under it)."""
        if self._wake_r < 0 or threading.current_thread() in self._handlers:
            return
        for t in self._handlers:
            t.join(timeout=0.5)
        if any(t.is_alive() for t in self._handlers) or self._thread.is_alive():
            return
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except OSError:  # BlockingIOError included
            pass

    def _work(self) -> None:
        """A handler thread: run requests, hand the sealed replies to the loop thread."""
        assert self._jobs is not None
        while True:
            job = self._jobs.get()
            if job is None or self._stop.is_set():
                return
            ident, session, inbound = job
            for m in self._answer(session, inbound):
                self._outbox.put(ident, m)
                try:
                    os.write(self._wake_w, b"x")
                except (BlockingIOError, OSError):
                    pass  # the pipe is full of wake-ups already, or the server closed

    def _refuse(self, ident: bytes, seq: int, reason: str, code: bytes = b"") -> None:
        """Tell the sender why, if its queue has room; never wait for it."""
        self.refused += 1
        parts = [wire.prefix(wire.KIND_REFUSED, seq), reason.encode(), *([code] if code else [])]
        try:
            send_parts(self._sock, parts, ident, block=False)
        except zmq.ZMQError:
            pass  # full (it does not read) or gone: drop the refusal

    def _dispatch(self, msg: list) -> None:  # long: one branch per message kind
        if len(msg) < 2:
            return
        ident, body = msg[0].bytes, msg[1:]
        try:
            kind, seq, _ = wire.parse_prefix(body[0].buffer)
        except ValueError:
            self.refused += 1
            return  # not our protocol: do not answer strangers
        if kind == wire.KIND_HELLO:
            self._hello(ident, body)
            return
        session = self._sessions.get(ident) or self._pending.get(ident)
        if session is None:  # only admitted keys get here (the gate): tell them why
            self._refuse(ident, seq, "no session with this server (it may have restarted): "
                         "connect again", wire.REFUSED_NO_SESSION)
            return
        if kind == wire.KIND_REQUEST:
            if seq <= session.last_seq:
                self._refuse(ident, seq, f"replayed or reordered message {seq} refused "
                             f"(last accepted {session.last_seq})")
                return
            try:
                inbound = wire.Inbound.open_head(session.aead_in, body,
                                                 max_bytes=self.max_message_bytes)
            except wire.AuthError as exc:
                self._refuse(ident, seq, f"message refused: {exc}")
                return
            except ValueError as exc:  # authenticated, but not acceptable
                self._promote(ident, session)
                session.last_seq = seq
                self._refuse(ident, seq, f"message refused: {exc}")
                return
            self._promote(ident, session)
            session.last_seq = seq
            session.inbound = inbound
        elif kind == wire.KIND_CHUNK:
            inbound = session.inbound
            if inbound is None or inbound.seq != seq:
                return  # rest of a refused message
            try:
                inbound.add_chunk(body)
            except ValueError as exc:
                session.inbound = None
                self._refuse(ident, seq, f"message refused: {exc}")
                return
        else:
            self._refuse(ident, seq, f"unexpected message kind {kind!r}")
            return
        if inbound.done:
            session.inbound = None
            self._reply(ident, session, inbound)

    def _promote(self, ident: bytes, session: Session) -> None:
        """A request authenticated under the session key: the client proved its key."""
        if self._pending.pop(ident, None) is None:
            return
        with self._lock:
            self._sessions[ident] = session
            while len(self._sessions) > _MAX_SESSIONS:
                self._sessions.popitem(last=False)

    def _hello(self, ident: bytes, body: list) -> None:
        try:
            _, name_b, static, ephemeral, tag, *version = (f.bytes for f in body)
            name = name_b.decode()
            static, ephemeral = parse_public_key(static), parse_public_key(ephemeral)
        except (ValueError, UnicodeDecodeError):
            self._refuse(ident, 0, "malformed hello")
            return
        why = wire.check_version(version[0] if version else wire.PROTOCOL, f"client {name!r}")
        if why is not None:  # before anything else: the client learns why, whoever it is
            self._refuse(ident, 0, f"{why}; refused by {self.name!r}", wire.REFUSED_VERSION)
            return
        known = self.allowlist.lookup(static)
        if known is None or known[0] != name:
            self._refuse(ident, 0, f"client {name!r} with this public key is not known to "
                         f"{self.name!r}: refused. Tell {self.name!r} the client's public "
                         "key (server.allow) first")
            return
        if not hmac.compare_digest(tag, hello_tag(known[1], static, self.keypair.public,
                                                  name, ephemeral)):
            self._refuse(ident, 0, f"hello for {name!r} did not prove its key: refused")
            return
        mine = KeyPair.generate()
        try:
            keys = derive_session(self.keypair, mine, static, ephemeral,
                                  client_side=False, name=name)
        except ValueError as exc:
            self._refuse(ident, 0, str(exc))
            return
        session = Session(name, AESGCM(keys.c2s), AESGCM(keys.s2c))
        self._pending[ident] = session  # a session once its first request authenticates
        while len(self._pending) > _MAX_PENDING:
            self._pending.popitem(last=False)
        head = wire.prefix(wire.KIND_WELCOME, 0)
        confirm = session.aead_out.encrypt(bytes(12), b"welcome " + name_b, head)
        self._outbox.put(ident, [head, mine.public, confirm, wire.PROTOCOL])
        self._outbox.flush()

    def _reply(self, ident: bytes, session: Session, inbound: wire.Inbound) -> None:
        if self._jobs is not None:
            if self._jobs.qsize() >= MAX_QUEUED:  # only this thread puts: the bound holds
                self._refuse(ident, inbound.seq, f"{self.name!r} is busy ({MAX_QUEUED} "
                             "requests waiting): try again later")
            else:
                self._jobs.put((ident, session, inbound))  # a handler thread answers
            return
        for m in self._answer(session, inbound):
            self._outbox.put(ident, m)
            self._outbox.flush()

    def _answer(self, session: Session, inbound: wire.Inbound) -> Iterator[list]:
        """Run the handler; yield the sealed reply messages in order."""
        try:
            frames, status = list(self.handler(inbound.frames, session.peer)), wire.STATUS_OK
            with self._lock:  # handler threads count too
                self.served += 1
        except Exception as exc:  # a handler bug must not stop the server
            status = wire.STATUS_ERROR
            frames = [wire_type(exc).encode(), error_message(exc).encode(),
                      traceback.format_exc().encode()]
        yield from reply_messages(session, inbound.seq, frames, status, self.name)
