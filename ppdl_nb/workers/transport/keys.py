"""Static key pairs and per-connection session keys for the worker channel.

Every party (each worker kernel, the notebook) makes its own X25519 key pair with
:meth:`KeyPair.generate`; the secret half never leaves that process (it is not
serialisable and has no accessor). Peers know each other only by 32-byte public keys,
written as 64 hex characters when they travel through the notebook. The notebook can
therefore introduce bob to alice ("bob's public key is ...") without being able to
read their traffic.

A worker keeps its identity across restarts: :meth:`KeyPair.load_or_create` makes its
key pair once and stores the secret in a file of its own (mode 0600, in a 0700
directory, owned by this user; anything else is refused), and a restarted worker with
the same name loads it, so its public key, which its peers have fixed, is unchanged.
That file is as private as the worker's process: other users cannot read it, but any
process of the same user can (as it can read the process's memory); the same user is
not a boundary (see the README's security model).

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
import os
import secrets
import stat
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

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> KeyPair:
        """The key pair stored at ``path``, made and stored there first if there is none.

        The file holds the 32 secret bytes, mode 0600, in a directory made 0700 if
        missing. Two processes racing to make it end up with the same key (the first
        file written wins; nothing is ever overwritten). Raises ``PermissionError`` if
        the file or its directory is not this user's own and private (a key another
        user could have written or read is never used) and ``ValueError`` if the file
        is not a key.

        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "identity", "x25519.key")
        >>> first = KeyPair.load_or_create(path)
        >>> KeyPair.load_or_create(path).public == first.public
        True
        >>> oct(os.stat(path).st_mode & 0o777)
        '0o600'
        """
        path = os.fspath(path)
        folder = os.path.dirname(path) or "."
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        _check_private(os.lstat(folder), folder, directory=True)
        try:
            return cls._load(path)
        except FileNotFoundError:
            pass
        fresh = X25519PrivateKey.generate()
        partial = f"{path}.{os.getpid()}-{secrets.token_hex(4)}.partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(fresh.private_bytes_raw())
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(partial, path)  # atomic and never replaces: the first key wins
            except FileExistsError:
                return cls._load(path)
        finally:
            os.unlink(partial)
        return cls(fresh)

    @classmethod
    def _load(cls, path: str) -> KeyPair:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            _check_private(os.fstat(fd), path, directory=False)
            raw = f.read(KEY_BYTES + 1)
        if len(raw) != KEY_BYTES:
            raise ValueError(f"{path} is not a key file ({len(raw)} bytes, expected "
                             f"{KEY_BYTES}); remove it to give the worker a new identity")
        return cls(X25519PrivateKey.from_private_bytes(raw))

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


def _check_private(st: os.stat_result, path: str, *, directory: bool) -> None:
    """Refuse a key file (or its directory) that is not this user's own and private."""
    kind = "directory" if directory else "file"
    if not (stat.S_ISDIR if directory else stat.S_ISREG)(st.st_mode):
        raise PermissionError(f"{path} is not a {kind} (a link?); refusing it for a key")
    if st.st_uid != os.getuid():
        raise PermissionError(f"key {kind} {path} belongs to uid {st.st_uid}, not to this "
                              f"user (uid {os.getuid()}); refusing a key another user controls")
    if st.st_mode & (0o022 if directory else 0o077):
        raise PermissionError(
            f"key {kind} {path} has mode {oct(st.st_mode & 0o777)}: other users may "
            f"{'replace' if directory else 'read'} the key. chmod {'700' if directory else '600'}"
            " it, or remove it to give the worker a new identity")


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
