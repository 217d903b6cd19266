"""The gate in front of every channel server: libzmq admits only clients the allowlist knows.

Why: a stranger on the same machine can reach a worker's endpoint. If its frames reach
Python, each one costs the worker's serve thread some work; a stranger sending as fast
as it can then takes a core from the worker and the notebook, and their latency suffers
(measured before the gate, ``benchmarks/bench_flood.py``: flooded ping p99 5-6x the
unflooded one). With the gate, a connection must pass ZeroMQ's authentication handshake
(ZAP, with the PLAIN mechanism carrying a proof instead of a password) before libzmq
delivers a single frame from it; a stranger's connection fails inside libzmq's I/O
thread, and its sends queue on its own side until they time out.

What a client proves: its static public key, a fresh nonce with the time, and an
HMAC-SHA256 of those under the key only the two static secrets can make
(:func:`.keys.hello_key`). The server's check (:class:`.chan_socket.Allowlist`) accepts
an allowed key under its own name, proven now. It is admission only: the hello that
follows still proves the key and makes the session keys, and nothing is encrypted here.
Over TCP the PLAIN frames travel in clear: a sniffer could replay a proof within
``MAX_AGE_S`` to get past the gate (never to a session).

One ZAP handler thread serves every gated socket of the process's context; each server
registers a check under its own ZAP domain.

>>> from ppdl_nb.workers.transport.keys import KeyPair, hello_key
>>> server, client = KeyPair.generate(), KeyPair.generate()
>>> proof = make_proof(hello_key(client, server.public), client.public, server.public, "nb")
>>> check_proof(proof, "nb", server.public, lambda k: ("nb", hello_key(server, k)))
200
"""

from __future__ import annotations

import hmac
import itertools
import os
import struct
import threading
import time
from collections.abc import Callable

import zmq

from ppdl_nb.workers.transport.keys import hello_tag

__all__ = ["ADMITTED", "MAX_AGE_S", "NOT_ALLOWED", "OTHER_KEY", "check_proof", "gate_client",
           "gate_server", "make_proof", "ungate_server"]

ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by ZeroMQ's RFC 27
MAX_AGE_S = 300  # a proof older (or further in the future) than this is refused
_NONCE = 16
_PROOF = 32 + _NONCE + 8 + 32  # client key, nonce, time, tag
#: ZAP status codes, which libzmq hands the client (``EVENT_HANDSHAKE_FAILED_AUTH``'s value)
ADMITTED, NOT_ALLOWED, OTHER_KEY = 200, 400, 500  # 500: an allowed key, proven for
# another server key: the client holds a wrong key for this server (a wrong fingerprint)

Check = Callable[[bytes, bytes], int]  # (username, password) -> a status below
Lookup = Callable[[bytes], "tuple[str, bytes] | None"]  # public key -> (name, hello key)

_lock = threading.Lock()
_handlers: dict[int, tuple[zmq.Context, dict[bytes, Check]]] = {}  # by pid: one per context
_domains = itertools.count()


def make_proof(key: bytes, client_public: bytes, server_public: bytes, name: str) -> bytes:
    """The PLAIN password a client presents: its key, a nonce, the time and their tag."""
    fresh = os.urandom(_NONCE) + struct.pack(">q", int(time.time()))
    return client_public + fresh + hello_tag(key, client_public, server_public, name,
                                             b"gate" + fresh)


def check_proof(proof: bytes, name: str, server_public: bytes, lookup: Lookup) -> int:
    """``ADMITTED`` if ``proof`` shows an allowed key, allowed as ``name``, proven
    recently; ``OTHER_KEY`` if it is that but proven for another server key;
    ``NOT_ALLOWED`` otherwise."""
    if len(proof) != _PROOF:
        return NOT_ALLOWED
    client_public, fresh, tag = proof[:32], proof[32:-32], proof[-32:]
    (stamp,) = struct.unpack(">q", fresh[_NONCE:])
    known = lookup(client_public)
    if known is None or known[0] != name or abs(time.time() - stamp) > MAX_AGE_S:
        return NOT_ALLOWED
    if hmac.compare_digest(tag, hello_tag(known[1], client_public, server_public, name,
                                          b"gate" + fresh)):
        return ADMITTED
    return OTHER_KEY


def gate_client(sock: zmq.Socket, key: bytes, client_public: bytes, server_public: bytes,
                name: str) -> None:
    """Make ``sock`` (before it connects) present a proof for ``name``."""
    sock.plain_username = name.encode()
    sock.plain_password = make_proof(key, client_public, server_public, name)


def gate_server(sock: zmq.Socket, check: Check) -> bytes:
    """Make ``sock`` (before it binds) admit only connections ``check`` accepts; returns
    its ZAP domain, for :func:`ungate_server`."""
    ctx, checks = _handler(sock.context)
    domain = f"ppdl-{os.getpid()}-{next(_domains)}".encode()
    with _lock:
        checks[domain] = check
    sock.zap_domain = domain
    sock.plain_server = True
    return domain


def ungate_server(domain: bytes) -> None:
    """Forget a closed server's check (its domain then admits nobody)."""
    with _lock:
        entry = _handlers.get(os.getpid())
        if entry is not None:
            entry[1].pop(domain, None)


def _handler(ctx: zmq.Context) -> tuple[zmq.Context, dict[bytes, Check]]:
    with _lock:
        entry = _handlers.get(os.getpid())
        if entry is not None and entry[0] is ctx:
            return entry
        entry = (ctx, {})
        sock = ctx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(ZAP_ENDPOINT)
        threading.Thread(target=_serve, args=(sock, entry[1]), name="ppdl-zap",
                         daemon=True).start()
        _handlers[os.getpid()] = entry
        return entry


class _RefusalBudget:
    """At most ``rate`` refusals a second on average (bursts of ``burst``): beyond that
    the ZAP thread sleeps (without the GIL), so a stranger making connection after
    connection with forged proofs cannot take the process's CPU; libzmq holds or drops
    its pending handshakes meanwhile. Established sessions are never checked again."""

    def __init__(self, rate: float = 2000.0, burst: float = 200.0) -> None:
        self.rate, self.burst = rate, burst
        self._tokens, self._at = burst, time.monotonic()

    def spend(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            time.sleep((1 - self._tokens) / self.rate)
            self._tokens, self._at = 1.0, time.monotonic()
        self._tokens -= 1


def _serve(sock: zmq.Socket, checks: dict[bytes, Check]) -> None:
    budget = _RefusalBudget()
    while True:
        try:
            version, request_id, domain, _addr, _ident, mechanism, *creds = \
                sock.recv_multipart()
        except zmq.ContextTerminated:
            sock.close()
            return
        except ValueError:  # libzmq sends well-formed requests; never leave REP stuck
            sock.send_multipart([b"1.0", b"", b"500", b"malformed", b"", b""])
            continue
        check = checks.get(domain)
        status = NOT_ALLOWED
        if check is not None and mechanism == b"PLAIN" and len(creds) == 2:
            try:
                status = check(creds[0], creds[1])
            except Exception:  # a check must never stop admission for everyone
                status = NOT_ALLOWED
        ok = status == ADMITTED
        sock.send_multipart([version, request_id, str(status).encode(),
                             b"OK" if ok else b"refused", creds[0] if ok else b"", b""])
        if not ok:
            budget.spend()
