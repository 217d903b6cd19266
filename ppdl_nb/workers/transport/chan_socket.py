"""ZeroMQ plumbing shared by both ends of the encrypted channel.

One zmq context per process, private ``ipc://`` endpoints, sending a message's parts
(without a copy when they are big), and the per-connection state both ends keep: the
peer's name, one AES-GCM key per direction and the last sequence number seen.

>>> private_endpoint("demo").startswith("ipc://")
True
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass

import zmq
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ppdl_nb.workers.transport import chan_wire as wire

__all__ = ["HWM", "MAX_MESSAGE_BYTES", "Session", "context", "private_endpoint", "send_parts"]

MAX_MESSAGE_BYTES = 1 << 34
HWM = 256  # messages (chunks are 1 MiB): bounds memory, gives back-pressure
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


def send_parts(sock: zmq.Socket, parts: list, ident: bytes | None = None) -> None:
    """Send one multipart message (to ``ident`` on a ROUTER socket)."""
    if ident is not None:
        parts = [ident, *parts]
    copy = all(len(p) < _BIG for p in parts)
    sock.send_multipart(parts, copy=copy)


@dataclass
class Session:
    """One authenticated connection, as either end sees it."""

    peer: str
    aead_in: AESGCM
    aead_out: AESGCM
    last_seq: int = 0
    inbound: wire.Inbound | None = None
