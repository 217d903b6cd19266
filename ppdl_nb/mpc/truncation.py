"""Exact truncation of a shared value: divide by 2^f, error below one unit in the last place.

After a product of two fixed-point values the result carries ``2f`` fractional bits and
must be divided by ``2^f``. Local share truncation (SecureML) fails with small but real
probability for 2 parties and badly for 3 or more; this protocol never fails within its
input bound, for any number of parties, with one opening round and a dealer mask.

Protocol (``x`` shared, as a signed ring value with ``-2^62 <= x < 2^62``):

1. The dealer deals shares of a uniform ``r`` in Z_2^64, of ``r_hi = r >> f`` (logical
   shift of the unsigned pattern) and of ``r_msb`` = bit 63 of ``r``
   (``dealer.expand("trunc", ...)`` -> ``(r_i, r_hi_i, r_msb_i)``).
2. Round 1, every party ``i``: :func:`trunc_open` -> ``m_i = x_i + r_i (+ 2^62 for party
   0)``; open ``c = sum m_i = x' + r mod 2^64`` with ``x' = x + 2^62`` in ``[0, 2^63)``.
   ``c`` is uniform whatever ``x`` is, so it reveals nothing.
3. Local, every party: :func:`trunc_finish` ->
   ``y_i = -r_hi_i + (1 - c_msb) r_msb_i 2^(64-f) (+ (c >> f) - 2^(62-f) for party 0)``.

Why it is right: as integers ``x' = c - r + w 2^64`` with ``w = [x' + r >= 2^64]``, and
since ``x' < 2^63``, ``w = r_msb AND NOT c_msb`` (a carry out of bit 63 needs ``r``'s top
bit and leaves ``c``'s clear), which is linear in the shares of ``r_msb`` because ``c`` is
public. Splitting ``c`` and ``r`` at bit ``f``:
``floor(x'/2^f) = (c >> f) - r_hi + w 2^(64-f) + floor((c_lo - r_lo) / 2^f)`` and the last
term, -1 or 0, is the one not computed. So ``sum y_i = floor(x / 2^f) + b`` with
``b in {0, 1}`` and ``P(b = 1) = (x mod 2^f) / 2^f``: stochastic rounding, unbiased, and
``|result - x / 2^f| < 1`` unit (2^-f in real terms, after decoding). Outside the bound
(``|x| >= 2^62``) the result is wrong by about 2^(64-f): keep encoded products below
2^62, e.g. ``|x * y| < 2^30`` with 16 fractional bits.

Traffic: online 8 bytes per element per peer (one round); dealer 16 bytes per element to
the last party (shares of ``r_hi`` and ``r_msb``; the ``r`` shares come from seeds).

>>> import torch
>>> from ppdl_nb.mpc.dealer import simulate_dealer
>>> from ppdl_nb.mpc.sharing import reconstruct, share
>>> from ppdl_nb.mpc.prg import PRG
>>> xs = share(torch.tensor([-(5 << 16) - 1, 3 << 16]), 3, PRG())
>>> d = simulate_dealer("trunc", 3, shape=(2,), frac_bits=16)
>>> c = reconstruct([trunc_open(i, xs[i], d[i][0]) for i in range(3)])
>>> reconstruct([trunc_finish(i, c, d[i][1], d[i][2], 16) for i in range(3)]).tolist()[1]
3
"""

from __future__ import annotations

import torch

from ppdl_nb.mpc.ring import check_ring, shift_right_logical, wrap

__all__ = ["TRUNC_BOUND_BITS", "trunc_finish", "trunc_open"]

TRUNC_BOUND_BITS = 62  # inputs must satisfy -2^62 <= x < 2^62


def _check_party(party_index: int) -> None:
    if not isinstance(party_index, int) or party_index < 0:
        raise ValueError(f"party_index must be a non-negative int, got {party_index!r}")


def trunc_open(party_index: int, x_share: torch.Tensor, r_share: torch.Tensor) -> torch.Tensor:
    """ROUND 1 (every party): this party's share of the masked value ``x + 2^62 + r``."""
    _check_party(party_index)
    check_ring(x_share, "x_share")
    check_ring(r_share, "r_share")
    if x_share.shape != r_share.shape:
        raise ValueError(
            f"truncation mask of shape {tuple(r_share.shape)} does not fit x of shape "
            f"{tuple(x_share.shape)}; ask the dealer for a 'trunc' mask of x's shape"
        )
    masked = x_share + r_share
    if party_index == 0:
        masked += 1 << TRUNC_BOUND_BITS
    return masked


def trunc_finish(
    party_index: int,
    masked: torch.Tensor,
    r_hi_share: torch.Tensor,
    r_msb_share: torch.Tensor,
    frac_bits: int,
) -> torch.Tensor:
    """LOCAL (every party): share of ``x / 2^frac_bits`` from the opened ``masked`` value."""
    _check_party(party_index)
    check_ring(masked, "masked (the opened sum)")
    check_ring(r_hi_share, "r_hi_share")
    check_ring(r_msb_share, "r_msb_share")
    if not isinstance(frac_bits, int) or not 1 <= frac_bits <= 61:
        raise ValueError(f"frac_bits must be an int in [1, 61], got {frac_bits!r}")
    y = r_msb_share * wrap(1 << (64 - frac_bits))
    y.mul_(masked >= 0)  # no carry out of bit 63 when c's top bit is clear
    y -= r_hi_share
    if party_index == 0:
        y += shift_right_logical(masked, frac_bits)
        y -= 1 << (TRUNC_BOUND_BITS - frac_bits)
    return y
