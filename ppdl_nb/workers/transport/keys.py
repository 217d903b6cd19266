"""Static key pairs and per-connection session keys for the worker channel.

Every party (each worker kernel, the notebook) makes its own X25519 key pair with
:meth:`KeyPair.generate`; the secret half never leaves that process (it is not
serialisable and has no accessor). Peers know each other only by 32-byte public keys,
written as 64 hex characters when they travel through the notebook. The notebook can
therefore introduce bob to alice ("bob's public key is ...") without being able to
read their traffic.

Session keys come from a small handshake (see :mod:`.channel`): each side also makes a
fresh ephemeral key pair per connection, and :func:`derive_session` mixes the
static-static and the ephemeral-ephemeral Diffie-Hellman results with HKDF-SHA256 over
the whole transcript. The static part authenticates both sides (only holders of a
static secret can compute it); the ephemeral part gives every connection its own keys,
one per direction, so counters can serve as nonces without ever repeating.

A hello proves the client's static key before the server keeps anything: it carries
:func:`hello_tag`, an HMAC under a key only the two static secrets can compute
(:func:`hello_key`, cached per allowed peer, so refusing a forged hello costs one HMAC).

>>> alice, bob = KeyPair.generate(), KeyPair.generate()
>>> a_eph, b_eph = KeyPair.generate(), KeyPair.generate()
>>> k1 = derive_session(alice, a_eph, bob.public, b_eph.public, client_side=True, name="a")
>>> k2 = derive_session(bob, b_eph, alice.public, a_eph.public, client_side=False, name="a")
>>> k1 == k2
True
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["KEY_BYTES", "KeyPair", "SessionKeys", "derive_session", "hello_key", "hello_tag",
           "parse_public_key"]

KEY_BYTES = 32
_INFO = b"ppdl-nb channel v1"


class KeyPair:
    """An X25519 key pair whose secret half stays inside this object.

    >>> kp = KeyPair.generate()
    >>> len(kp.public), len(kp.public_hex)
    (32, 64)
    """

    __slots__ = ("_secret", "public")

    def __init__(self, secret: X25519PrivateKey) -> None:
        self._secret = secret
        self.public: bytes = secret.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh key pair from the operating system's random generator."""
        return cls(X25519PrivateKey.generate())

    @property
    def public_hex(self) -> str:
        """The public key as 64 hex characters (what the notebook passes around)."""
        return self.public.hex()

    def exchange(self, peer_public: bytes) -> bytes:
        """Diffie-Hellman with a peer's public key (32 shared bytes)."""
        shared = self._secret.exchange(X25519PublicKey.from_public_bytes(peer_public))
        if shared == bytes(KEY_BYTES):
            raise ValueError("peer public key is a low-order point; refusing the exchange")
        return shared

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public_hex[:16]}...)"

    def __reduce__(self):  # no pickling: the secret must not leave the process
        raise TypeError("a KeyPair cannot be pickled: its secret key never leaves the process")


def parse_public_key(key: bytes | str) -> bytes:
    """Accept a public key as 32 raw bytes or 64 hex characters; return the raw bytes.

    >>> parse_public_key("00" * 32) == bytes(32)
    True
    """
    if isinstance(key, str):
        try:
            raw = bytes.fromhex(key)
        except ValueError:
            raise ValueError(
                f"public key {key[:20]!r}... is not hex; pass the 64 hex characters of "
                "KeyPair.public_hex (or its 32 raw bytes)"
            ) from None
    elif isinstance(key, bytes | bytearray | memoryview):
        raw = bytes(key)
    else:
        raise TypeError(f"a public key is bytes or a hex string, not {type(key).__name__}")
    if len(raw) != KEY_BYTES:
        raise ValueError(
            f"a public key has {KEY_BYTES} bytes ({2 * KEY_BYTES} hex characters), "
            f"got {len(raw)} bytes; pass KeyPair.public or KeyPair.public_hex"
        )
    return raw


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """AES-256-GCM keys of one connection: client-to-server and server-to-client."""

    c2s: bytes
    s2c: bytes


def derive_session(
    static: KeyPair,
    ephemeral: KeyPair,
    peer_static: bytes,
    peer_ephemeral: bytes,
    *,
    client_side: bool,
    name: str,
) -> SessionKeys:
    """Session keys for one connection, computed the same way on both ends.

    ``name`` is the client's name as sent in its hello, bound into the keys so that a
    hello cannot be relabelled. Raises ``ValueError`` on a degenerate peer key.
    """
    ss = static.exchange(peer_static)
    ee = ephemeral.exchange(peer_ephemeral)
    if client_side:
        c_s, s_s, c_e, s_e = static.public, peer_static, ephemeral.public, peer_ephemeral
    else:
        c_s, s_s, c_e, s_e = peer_static, static.public, peer_ephemeral, ephemeral.public
    info = b"|".join([_INFO, c_s, s_s, c_e, s_e, name.encode()])
    okm = HKDF(algorithm=hashes.SHA256(), length=2 * KEY_BYTES, salt=None, info=info).derive(
        ss + ee
    )
    return SessionKeys(c2s=okm[:KEY_BYTES], s2c=okm[KEY_BYTES:])


def hello_key(static: KeyPair, peer_static: bytes) -> bytes:
    """The key that authenticates hellos between two static key pairs (same on both ends).

    >>> a, b = KeyPair.generate(), KeyPair.generate()
    >>> hello_key(a, b.public) == hello_key(b, a.public)
    True
    """
    ss = static.exchange(peer_static)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=_INFO + b" hello").derive(ss)


def hello_tag(key: bytes, client_static: bytes, server_static: bytes, name: str,
              ephemeral: bytes) -> bytes:
    """HMAC-SHA256 over a hello's contents: only holders of a static secret can make it."""
    body = b"|".join([b"hello", client_static, server_static, name.encode(), ephemeral])
    return hmac.new(key, body, hashlib.sha256).digest()
