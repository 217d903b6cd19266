"""Shamir t-out-of-n secret sharing of byte strings over the prime field GF(2^521 - 1).

Why: secure aggregation (``secagg.py``) must survive clients that drop out. Each client
Shamir-shares its mask seeds so that any ``t`` of the others can rebuild a dropped
client's seed, while ``t - 1`` of them learn nothing about it: for any secret, every set
of ``t - 1`` shares is equally likely (the ``t - 1`` random coefficients of the
polynomial are uniform, so ``t - 1`` evaluations at nonzero points are uniform too).

The field is GF(p) with the Mersenne prime ``p = 2^521 - 1``, so a 32-byte seed (or any
secret of up to 65 bytes) is one field element and needs no splitting. A share is the
point ``(x, f(x))``; ``x`` is agreed in advance (secagg derives it from the client id)
and ``f(x)`` travels as :data:`SHARE_BYTES` big-endian bytes. Coefficients come from the
AES-CTR :class:`~ppdl_nb.mpc.prg.PRG` by rejection sampling, so they are exactly uniform.

>>> from ppdl_nb.mpc.prg import PRG
>>> shares = split(b"secret seed", xs=[1, 2, 3, 4], threshold=3, prg=PRG())
>>> reconstruct({x: shares[x] for x in (1, 3, 4)}, threshold=3, length=11)
b'secret seed'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ppdl_nb.mpc.prg import PRG

__all__ = [
    "PRIME",
    "SHARE_BYTES",
    "lagrange_at_zero",
    "reconstruct",
    "share_from_bytes",
    "share_to_bytes",
    "split",
]

PRIME = 2**521 - 1
SHARE_BYTES = 66  # ceil(521 / 8)
_MAX_SECRET_BYTES = 65  # 520 bits < p


def _random_field_element(prg: PRG) -> int:
    """A uniform element of GF(p): draw 521 bits, reject the single value p itself."""
    while True:
        v = int.from_bytes(prg.random_bytes(SHARE_BYTES), "big") & ((1 << 521) - 1)
        if v < PRIME:
            return v


def _check_xs(xs: Iterable[int]) -> list[int]:
    out = list(xs)
    for x in out:
        if not isinstance(x, int) or isinstance(x, bool) or not 0 < x < PRIME:
            raise ValueError(f"share points must be ints in [1, p), got {x!r}")
    if len(set(out)) != len(out):
        raise ValueError("share points must be distinct")
    return out


def split(secret: bytes, xs: Iterable[int], threshold: int, prg: PRG) -> dict[int, int]:
    """Shamir-share ``secret`` at the points ``xs``: any ``threshold`` shares rebuild it.

    Returns ``{x: f(x)}`` for a random polynomial ``f`` of degree ``threshold - 1`` with
    ``f(0)`` = the secret read as a big-endian integer.
    """
    if not isinstance(secret, bytes) or len(secret) > _MAX_SECRET_BYTES:
        raise ValueError(f"secret must be bytes of length <= {_MAX_SECRET_BYTES}")
    points = _check_xs(xs)
    if not isinstance(threshold, int) or not 1 <= threshold <= len(points):
        raise ValueError(
            f"threshold must be in [1, {len(points)}] (the number of shares), got {threshold!r}"
        )
    coeffs = [int.from_bytes(secret, "big")]
    coeffs += [_random_field_element(prg) for _ in range(threshold - 1)]
    shares = {}
    for x in points:
        acc = 0
        for c in reversed(coeffs):  # Horner
            acc = (acc * x + c) % PRIME
        shares[x] = acc
    return shares


def lagrange_at_zero(xs: Iterable[int]) -> dict[int, int]:
    """Coefficients ``l_i`` with ``f(0) = sum_i l_i * f(x_i)`` for any polynomial of degree
    ``< len(xs)``. Computed once per set of points, then reused for every secret.
    """
    points = _check_xs(xs)
    coeffs = {}
    for i in points:
        num, den = 1, 1
        for j in points:
            if j != i:
                num = num * j % PRIME
                den = den * (j - i) % PRIME
        coeffs[i] = num * pow(den, -1, PRIME) % PRIME
    return coeffs


def reconstruct(
    shares: Mapping[int, int], threshold: int, length: int,
    coefficients: Mapping[int, int] | None = None,
) -> bytes:
    """Rebuild a ``length``-byte secret from at least ``threshold`` shares ``{x: f(x)}``.

    Uses the ``threshold`` smallest points. ``coefficients`` (from :func:`lagrange_at_zero`
    over exactly those points) saves recomputing them for many secrets. Fewer shares raise
    ValueError: with ``threshold - 1`` shares every secret is equally likely.
    """
    if len(shares) < threshold:
        raise ValueError(
            f"need {threshold} shares to reconstruct, got {len(shares)}: with fewer, every "
            "secret is equally consistent with them"
        )
    xs = sorted(shares)[:threshold]
    lam = coefficients if coefficients is not None else lagrange_at_zero(xs)
    if sorted(lam) != xs:
        raise ValueError("coefficients were computed for other share points")
    value = sum(lam[x] * (shares[x] % PRIME) for x in xs) % PRIME
    if value >= 1 << (8 * length):
        raise ValueError(
            f"reconstructed value does not fit in {length} bytes: the shares are "
            "inconsistent (corrupted, or from different secrets)"
        )
    return value.to_bytes(length, "big")


def share_to_bytes(value: int) -> bytes:
    """A share value as :data:`SHARE_BYTES` big-endian bytes (msgpack ints stop at 64 bits)."""
    if not isinstance(value, int) or not 0 <= value < PRIME:
        raise ValueError("a share value must be an int in [0, p)")
    return value.to_bytes(SHARE_BYTES, "big")


def share_from_bytes(data: bytes) -> int:
    """Inverse of :func:`share_to_bytes`; raises ValueError on a wrong length or value."""
    if not isinstance(data, bytes) or len(data) != SHARE_BYTES:
        raise ValueError(f"a share must be {SHARE_BYTES} bytes, got {data!r:.40}")
    value = int.from_bytes(data, "big")
    if value >= PRIME:
        raise ValueError("share value out of range: not an element of GF(2^521 - 1)")
    return value
