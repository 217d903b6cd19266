"""Wire format of the encrypted channel: sealing a multipart message into ZeroMQ messages.

A logical message (a list of opaque byte frames) travels as one *head* ZeroMQ message
followed by zero or more *chunk* messages, each sent as its own ZeroMQ message so the
receiver can decrypt chunk i while chunk i+1 is still on the wire (ZeroMQ delivers a
multipart message only once it is complete, which would serialise encryption, transfer
and decryption)::

    head:  [prefix(kind, seq), AES-GCM(meta)]    meta = status, frame lengths, small frames
    chunk: [prefix("C", seq, index), AES-GCM(slice of a large frame)]

Frames up to ``INLINE_MAX`` bytes ride inside the head while the head's inline total
stays within ``HEAD_INLINE_MAX`` (both ends compute this from the frame lengths); the
others are cut into ``CHUNK`` byte pieces. So no ZeroMQ frame of the channel exceeds
``MAX_FRAME_BYTES``, which servers enforce in libzmq (``ZMQ_MAXMSGSIZE``): a bigger
frame, from anyone, drops that connection before Python sees it. Each direction has
its own key; the nonce is ``seq || index`` (index 0 is the head), never sent, so a
nonce is used once per key as long as ``seq`` only grows, which both ends enforce.
The prefix is the AAD, so a chunk cannot be moved to another message or position, and
a replayed or reordered message fails the sequence check or authentication. A data
link (:mod:`.datalink`) seals a small message whole instead, one part under kind ``S``
(:func:`seal_link`): a protocol round's few bytes cost one encryption and one parse.

>>> import os
>>> key = os.urandom(32)
>>> msgs = seal(key, KIND_REQUEST, 7, [b"hi", bytes(3 * CHUNK)])
>>> inbound = Inbound.open_head(key, msgs[0], max_bytes=1 << 30)
>>> for m in msgs[1:]:
...     inbound.add_chunk(m)
>>> inbound.done, [len(f) for f in inbound.frames] == [2, 3 * CHUNK], len(msgs)
(True, True, 4)
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "CHUNK",
    "HEAD_INLINE_MAX",
    "INLINE_MAX",
    "KIND_CHUNK",
    "KIND_HELLO",
    "KIND_REFUSED",
    "KIND_REPLY",
    "KIND_REQUEST",
    "KIND_WELCOME",
    "KIND_WHOLE",
    "MAX_FRAMES",
    "MAX_FRAME_BYTES",
    "PREFIX_BYTES",
    "PROTOCOL",
    "STATUS_ERROR",
    "STATUS_OK",
    "WHOLE_MAX",
    "AuthError",
    "Inbound",
    "check_version",
    "open_whole",
    "parse_prefix",
    "prefix",
    "seal",
    "seal_iter",
    "seal_link",
]

CHUNK = 4 << 20
INLINE_MAX = 1 << 14
HEAD_INLINE_MAX = 1 << 20  # inline bytes in one head, all frames together
MAX_FRAMES = 1 << 16  # frames in one logical message
TAG = 16
MAGIC = b"PPDL\x01"
KIND_HELLO, KIND_WELCOME, KIND_REFUSED = b"H", b"W", b"X"
KIND_REQUEST, KIND_REPLY, KIND_CHUNK = b"Q", b"R", b"C"
KIND_WHOLE = b"S"  # a data link's small message, sealed whole (see seal_link)
WHOLE_MAX = 1 << 16  # bytes of frames a message may have to be sealed whole
#: what a hello and a welcome carry: peers of another major version refuse each other
PROTOCOL = b"ppdl-nb/3.0"
#: refusal codes (third frame of a refusal; older peers read only the reason)
REFUSED_VERSION, REFUSED_NO_SESSION = b"version", b"session"
STATUS_OK, STATUS_ERROR = 0, 1
_PREFIX = struct.Struct(">5scQI")
PREFIX_BYTES = _PREFIX.size
_COUNT = struct.Struct(">BII")  # status, frame count, chunk size
_MIN_CHUNK, _MAX_CHUNK = 1 << 12, 1 << 23
_LEN = struct.Struct(">Q")
_WHOLE_BODY_MAX = 256 * _LEN.size + WHOLE_MAX + 255 * 7 + TAG
# the largest ZeroMQ frame a channel sends: a chunk (a head is at most ~1.6 MiB)
MAX_FRAME_BYTES = _MAX_CHUNK + TAG + 1024


class AuthError(ValueError):
    """A message failed authentication: tampered, replayed, misplaced or wrong key."""


def prefix(kind: bytes, seq: int, index: int = 0) -> bytes:
    """The cleartext (but authenticated) first frame of every channel message."""
    return _PREFIX.pack(MAGIC, kind, seq, index)


def parse_prefix(frame: bytes | memoryview) -> tuple[bytes, int, int]:
    """``(kind, seq, index)`` of a prefix frame; ``ValueError`` if it is not one."""
    if len(frame) != _PREFIX.size:
        raise ValueError(f"not a ppdl-nb channel message (prefix of {len(frame)} bytes)")
    magic, kind, seq, index = _PREFIX.unpack(frame)
    if magic != MAGIC:
        raise ValueError("not a ppdl-nb channel message, or another protocol version")
    return kind, seq, index


def check_version(theirs: bytes, who: str) -> str | None:
    """Why a peer speaking ``theirs`` is refused, or ``None`` if its major version is ours.

    >>> check_version(PROTOCOL, "alice") is None
    True
    >>> check_version(b"ppdl-nb/9.1", "alice")[:44]
    'alice speaks protocol ppdl-nb/9.1, this side'
    """
    mine = PROTOCOL.split(b".")[0]
    if theirs.split(b".")[0] == mine and theirs.startswith(b"ppdl-nb/"):
        return None
    return (f"{who} speaks protocol {theirs[:40].decode(errors='replace')}, this side "
            f"{PROTOCOL.decode()}: different major versions do not interoperate. Install the "
            "same ppdl-nb release on both machines")


def _nonce(seq: int, index: int) -> bytes:
    return struct.pack(">QI", seq, index)


def _inline(lengths: Sequence[int]) -> list[bool]:
    """Which frames ride in the head: small ones, while the head stays small."""
    plan, total = [], 0
    for n in lengths:
        inline = n <= INLINE_MAX and total + n <= HEAD_INLINE_MAX
        total += n if inline else 0
        plan.append(inline)
    return plan


def seal(key: bytes | AESGCM, kind: bytes, seq: int,
         frames: Sequence[bytes | bytearray | memoryview], **options: Any
         ) -> list[list[bytes]]:
    """Encrypt ``frames`` as message ``seq``; return the ZeroMQ messages to send, in order
    (``options``: those of :func:`seal_iter`).

    Prefer :func:`seal_iter` for big messages: it yields each chunk as soon as it is
    encrypted so sending overlaps encryption.
    """
    return list(seal_iter(key, kind, seq, frames, **options))


def seal_iter(
    key: bytes | AESGCM,
    kind: bytes,
    seq: int,
    frames: Sequence[bytes | bytearray | memoryview],
    *,
    status: int = STATUS_OK,
    chunk: int | None = None,
) -> Iterator[list[bytes]]:
    """Generator form of :func:`seal` (head first, then each chunk when encrypted)."""
    aead = key if isinstance(key, AESGCM) else AESGCM(key)
    if len(frames) > MAX_FRAMES:
        raise ValueError(f"a channel message has at most {MAX_FRAMES} frames, got "
                         f"{len(frames)}; join small frames into bigger ones")
    views = [memoryview(f).cast("B") for f in frames]
    lengths = [v.nbytes for v in views]
    chunk = chunk or CHUNK
    if not _MIN_CHUNK <= chunk <= _MAX_CHUNK:
        raise ValueError(f"chunk must be in [{_MIN_CHUNK}, {_MAX_CHUNK}] bytes, got {chunk}")
    inline = _inline(lengths)
    meta = [_COUNT.pack(status, len(views), chunk)]
    meta.extend(_LEN.pack(n) for n in lengths)
    meta.extend(bytes(v) for v, small in zip(views, inline, strict=True) if small)
    head = prefix(kind, seq)
    yield [head, aead.encrypt(_nonce(seq, 0), b"".join(meta), head)]
    index = 0
    for v, n, small in zip(views, lengths, inline, strict=True):
        if small:
            continue
        for start in range(0, n, chunk):
            index += 1
            p = prefix(KIND_CHUNK, seq, index)
            yield [p, aead.encrypt(_nonce(seq, index), v[start : start + chunk], p)]


def seal_link(aead: AESGCM, seq: int, frames: Sequence[Any]) -> Iterator[list[bytes]]:
    """A data link's sealing (:mod:`.datalink`): a message of at most ``WHOLE_MAX`` bytes
    in at most 255 frames is one part, ``[prefix("S", seq), AES-GCM(count, lengths,
    frames)]`` (each frame 8-byte aligned), one encryption and one parse for a protocol
    round's few bytes; a bigger one is :func:`seal_iter`'s head and chunks. Same key and
    nonce rules: ``seq || 0`` is used once; the kind in the AAD keeps a whole message
    from passing as a head.

    >>> import os
    >>> aead = AESGCM(os.urandom(32))
    >>> (part,) = seal_link(aead, 3, [b"ab", b"c"])
    >>> [bytes(f) for f in open_whole(aead, part)]
    [b'ab', b'c']
    """
    views = [f if type(f) is bytes else memoryview(f).cast("B") for f in frames]
    if len(views) > 255 or sum(len(v) for v in views) > WHOLE_MAX:
        yield from seal_iter(aead, KIND_REQUEST, seq, views)
        return
    plain = [_LEN.pack(len(views)), *(_LEN.pack(len(v)) for v in views)]
    for v in views:
        plain += (v, bytes(-len(v) % 8))
    head = _PREFIX.pack(MAGIC, KIND_WHOLE, seq, 0)
    yield [head, aead.encrypt(_nonce(seq, 0), b"".join(plain), head)]


def open_whole(aead: AESGCM, msg: Sequence) -> list[memoryview]:
    """The frames of a message sealed whole by :func:`seal_link` (writable and 8-byte
    aligned, decrypted into a fresh buffer); :class:`AuthError` or ``ValueError`` if it
    is not one."""
    head, body = (_buf(m) for m in msg)
    kind, seq, index = parse_prefix(head)
    if kind != KIND_WHOLE or index != 0 or not TAG + 8 <= len(body) <= _WHOLE_BODY_MAX:
        raise ValueError("not a message sealed whole")
    out = bytearray(len(body) - TAG)
    try:
        aead.decrypt_into(_nonce(seq, 0), body, head, out)
    except InvalidTag:
        raise AuthError(f"message {seq} failed authentication") from None
    view = memoryview(out)
    (count,) = _LEN.unpack_from(view)
    pos = 8 + 8 * count
    if count > 255 or pos > len(view):
        raise ValueError(f"message {seq} has inconsistent frame lengths")
    frames = []
    for (n,) in _LEN.iter_unpack(view[8:pos]):
        frames.append(view[pos:pos + n])
        pos += n + (-n % 8)
    if pos != len(view):
        raise ValueError(f"message {seq} has inconsistent frame lengths")
    return frames


class Inbound:
    """A message being received: its head is opened, chunks are decrypted as they come.

    Large frames are decrypted straight into preallocated buffers, returned as writable
    ``memoryview`` s (no copy, no zero fill); small frames are ``bytes``. ``frames`` is
    complete once ``done`` is true.
    """

    __slots__ = ("_aead", "_plan", "done", "frames", "kind", "next_index", "seq", "status")

    def __init__(self, aead: AESGCM, kind: bytes, seq: int, status: int,
                 frames: list, plan: list[memoryview]) -> None:
        self._aead = aead
        self.kind, self.seq, self.status = kind, seq, status
        self.frames = frames
        self._plan = plan  # target slice for each chunk, in order
        self.next_index = 1
        self.done = not plan

    @classmethod
    def open_head(cls, key: bytes | AESGCM, msg: Sequence, *, max_bytes: int) -> Inbound:
        """Authenticate and parse a head message; raise :class:`AuthError` or ``ValueError``."""
        if len(msg) != 2:
            raise ValueError(f"a message head has 2 frames, got {len(msg)}")
        head, body = (_buf(m) for m in msg)
        kind, seq, index = parse_prefix(head)
        aead = key if isinstance(key, AESGCM) else AESGCM(key)
        try:
            meta = aead.decrypt(_nonce(seq, 0), body, head)
        except InvalidTag:
            raise AuthError(f"message {seq} failed authentication") from None
        if index != 0:
            raise ValueError("head with a chunk index")  # authenticated, so a sender bug
        try:
            status, count, chunk = _COUNT.unpack_from(meta)
            pos = _COUNT.size
            if count > MAX_FRAMES:
                raise ValueError(f"message {seq} has {count} frames, more than {MAX_FRAMES}")
            lengths = [_LEN.unpack_from(meta, pos + 8 * i)[0] for i in range(count)]
        except struct.error:
            raise ValueError(f"message {seq} has a truncated head") from None
        pos += 8 * count
        if not _MIN_CHUNK <= chunk <= _MAX_CHUNK:
            raise ValueError(f"message {seq} has an invalid chunk size {chunk}")
        if sum(lengths) > max_bytes:
            raise ValueError(f"message of {sum(lengths)} bytes exceeds the limit of {max_bytes}")
        frames: list = []
        plan: list[memoryview] = []
        view = memoryview(meta)
        for n, small in zip(lengths, _inline(lengths), strict=True):
            if not small:
                mv = memoryview(np.empty(n, dtype=np.uint8)).cast("B")  # no zero fill
                plan.extend(mv[s : s + chunk] for s in range(0, n, chunk))
                frames.append(mv)
            else:
                frames.append(bytes(view[pos : pos + n]))
                pos += n
        if pos != len(meta):
            raise ValueError("message head has trailing bytes")
        return cls(aead, kind, seq, status, frames, plan)

    def add_chunk(self, msg: Sequence) -> None:
        """Decrypt the next chunk in place; :class:`AuthError` if it is not the expected one."""
        if self.done:
            raise ValueError(f"message {self.seq} is already complete")
        if len(msg) != 2:
            raise ValueError(f"a chunk has 2 frames, got {len(msg)}")
        head, body = (_buf(m) for m in msg)
        kind, seq, index = parse_prefix(head)
        if kind != KIND_CHUNK or seq != self.seq or index != self.next_index:
            raise AuthError(
                f"expected chunk {self.next_index} of message {self.seq}, "
                f"got {kind!r} {index} of message {seq}"
            )
        target = self._plan[index - 1]
        if len(body) != target.nbytes + TAG:
            raise AuthError(f"chunk {index} of message {seq} has the wrong size")
        try:
            self._aead.decrypt_into(_nonce(seq, index), body, head, target)
        except InvalidTag:
            raise AuthError(f"chunk {index} of message {seq} failed authentication") from None
        self.next_index += 1
        self.done = self.next_index > len(self._plan)


def _buf(m) -> bytes | memoryview:
    """bytes or a zmq.Frame's buffer."""
    return m if isinstance(m, bytes | memoryview) else m.buffer
