"""Cryptographic randomness for shares and masks: AES-256 in counter mode.

Shares and masks must be unpredictable, so they never come from ``torch.Generator`` or
numpy (Mersenne Twister state can be recovered from its output). A :class:`PRG` expands a
32-byte seed into a stream of uniform int64 tensors by encrypting zeros with AES-CTR, which
runs at several GB/s with AES-NI. The same seed and label give the same stream, which is
what lets two parties who share a seed (a party and the dealer, or a pair of parties)
derive identical randomness without sending it.

Seeds come from ``os.urandom`` through :func:`new_seed`. Tests, and only tests, can make
that reproducible with the :func:`fixed_seeds` context manager.

>>> g = PRG(b"\\x00" * 32, label=b"demo")
>>> h = PRG(b"\\x00" * 32, label=b"demo")
>>> bool((g.int64((3,)) == h.int64((3,))).all())
True
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from collections.abc import Iterator, Sequence

import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["SEED_BYTES", "PRG", "fixed_seeds", "new_seed"]

SEED_BYTES = 32
_ZERO_IV = bytes(16)
_fixed: list[object] = []  # stack of deterministic seed sources, pushed by fixed_seeds()


class _SeedCounter:
    def __init__(self, master: bytes) -> None:
        self.master = master
        self.count = 0

    def next(self) -> bytes:
        self.count += 1
        return hmac.digest(self.master, b"fixed-seed/%d" % self.count, hashlib.sha256)


def new_seed() -> bytes:
    """A fresh 32-byte seed from ``os.urandom`` (deterministic inside :func:`fixed_seeds`)."""
    if _fixed:
        source = _fixed[-1]
        if isinstance(source, _SeedCounter):
            return source.next()
    return os.urandom(SEED_BYTES)


@contextlib.contextmanager
def fixed_seeds(master: bytes) -> Iterator[None]:
    """TEST HOOK: make :func:`new_seed` (and ``PRG()`` without a seed) reproducible.

    Never use it in a real protocol run: every party would know every share.

    >>> with fixed_seeds(b"test"):
    ...     s = new_seed()
    >>> with fixed_seeds(b"test"):
    ...     s == new_seed()
    True
    """
    if not isinstance(master, bytes) or not master:
        raise TypeError("fixed_seeds needs a non-empty bytes master seed, e.g. b'test'")
    _fixed.append(_SeedCounter(master))
    try:
        yield
    finally:
        _fixed.pop()


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(s) for s in shape)
    if any(s < 0 for s in out):
        raise ValueError(f"shape must have non-negative sizes, got {tuple(shape)}")
    return out


_ZEROS_LEN = 1 << 20
_ZEROS: list[memoryview] = []


def _zeros() -> memoryview:
    """1 MiB of zero bytes (the plaintext whose encryption is the keystream), made once."""
    if not _ZEROS:
        _ZEROS.append(memoryview(bytes(_ZEROS_LEN)))
    return _ZEROS[0]


class PRG:
    """Deterministic stream of uniform ring elements from a 32-byte seed (AES-256-CTR).

    ``label`` separates streams from one seed (e.g. one per triple request): the AES key is
    ``HMAC-SHA256(seed, label)``. Without a seed a fresh one is drawn with :func:`new_seed`.
    Two ``PRG`` objects with the same seed and label give the same tensors when asked for
    the same shapes in the same order.
    """

    def __init__(self, seed: bytes | None = None, *, label: bytes = b"") -> None:
        if seed is None:
            seed = new_seed()
        if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
            raise ValueError(
                f"a PRG seed must be {SEED_BYTES} bytes (from new_seed()), got "
                f"{type(seed).__name__} of length {len(seed) if isinstance(seed, bytes) else '?'}"
            )
        if not isinstance(label, bytes):
            raise TypeError(f"label must be bytes, got {type(label).__name__}")
        key = hmac.digest(seed, b"ppdl-prg/" + label, hashlib.sha256)
        self._enc = Cipher(algorithms.AES(key), modes.CTR(_ZERO_IV)).encryptor()
        self.bytes_drawn = 0

    def __repr__(self) -> str:
        return f"PRG(<seed hidden>, bytes_drawn={self.bytes_drawn})"

    def random_bytes(self, n: int) -> bytes:
        """The next ``n`` bytes of the keystream."""
        if n < 0:
            raise ValueError(f"cannot draw {n} bytes")
        self.bytes_drawn += n
        return self._enc.update(bytes(n))

    def int64(self, shape: Sequence[int]) -> torch.Tensor:
        """A tensor of ``shape`` with independent uniform elements of Z_2^64."""
        shape = _check_shape(shape)
        n = 1
        for s in shape:
            n *= s
        if n == 0:
            return torch.zeros(shape, dtype=torch.int64)
        # the keystream is encrypted straight into the tensor's memory (no copies);
        # update_into wants 15 bytes of room past the end: two spare elements
        out = torch.empty(n + 2, dtype=torch.int64)
        target = memoryview(out.numpy()).cast("B")
        done = 0
        while done < 8 * n:
            step = min(8 * n - done, _ZEROS_LEN)
            self._enc.update_into(_zeros()[:step], target[done:])
            done += step
        self.bytes_drawn += 8 * n
        return out[:n].reshape(shape)

    def normal(self, shape: Sequence[int]) -> torch.Tensor:
        """Independent standard normal samples (float64) by Box-Muller on 53-bit uniforms
        from the keystream: noise for differential privacy that no one can replay
        without the seed (torch's generators are not cryptographic).

        >>> x = PRG(b"\\x01" * 32).normal((100_000,))
        >>> abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1) < 0.02
        True
        """
        shape = _check_shape(shape)
        n = 1
        for s in shape:
            n *= s
        bits = self.int64((2, (n + 1) // 2))
        u = ((bits >> 11) & ((1 << 53) - 1)).double() * 2.0**-53  # uniform in [0, 1)
        radius = torch.sqrt(-2.0 * torch.log1p(-u[0]))  # 1 - u in (0, 1]: no log(0)
        angle = 2 * torch.pi * u[1]
        z = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)])
        return z[:n].reshape(shape)

    def bits(self, shape: Sequence[int]) -> torch.Tensor:
        """A tensor of independent uniform 0/1 values (int64)."""
        return (self.int64(shape) >> 63) & 1

    def spawn(self) -> PRG:
        """A new independent PRG seeded from this stream."""
        return PRG(self.random_bytes(SEED_BYTES))
