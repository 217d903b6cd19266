"""Fixed-point encoding of real numbers into the ring Z_2^64.

A real ``x`` is stored as the integer ``round(x * 2^f)`` (``f`` fractional bits, default
16, so one unit in the last place is 2^-16 ~ 1.5e-5). Encoded values must stay below
``2^62`` in magnitude: the truncation protocol (see ``truncation.py``) needs one bit of
headroom, so a product of two encoded numbers, which carries ``2f`` fractional bits, must
satisfy ``|x * y| < 2^(62 - 2f)`` (2^30 ~ 1e9 with the default ``f = 16``).

Decoding is exact: an int64 is split into two 32-bit halves that are each exact in
float64, so the single rounding of their float64 sum is IEEE's correctly rounded result
and the division by 2^f is exact. Every value with ``|v| < 2^53`` decodes exactly; larger
ones decode to the nearest float64. (CrypTen 0.4.1's decoder divides negatives by
``scale - 1`` and gets some of them wrong.)

>>> import torch
>>> v = encode(torch.tensor([-1.5, 0.25]))
>>> v.tolist(), decode(v).tolist()
([-98304, 16384], [-1.5, 0.25])
"""

from __future__ import annotations

import torch

from ppdl_nb.mpc.ring import check_ring

__all__ = ["DEFAULT_FRAC_BITS", "ENCODE_BOUND_BITS", "decode", "encode"]

DEFAULT_FRAC_BITS = 16
ENCODE_BOUND_BITS = 62  # |encoded| < 2^62, the truncation protocol's input bound


def _check_frac_bits(frac_bits: int) -> int:
    if not isinstance(frac_bits, int) or isinstance(frac_bits, bool) or not (
        0 <= frac_bits < ENCODE_BOUND_BITS
    ):
        raise ValueError(
            f"frac_bits must be an int in [0, {ENCODE_BOUND_BITS}), got {frac_bits!r}; "
            f"the default is {DEFAULT_FRAC_BITS}."
        )
    return frac_bits


def encode(x: torch.Tensor | float, frac_bits: int = DEFAULT_FRAC_BITS) -> torch.Tensor:
    """Encode reals as int64 ring elements ``round(x * 2^frac_bits)`` (ties to even).

    Raises ValueError for NaN/inf, or for values whose encoding reaches 2^62 in magnitude.

    >>> encode(torch.tensor([1.0, -0.5]), frac_bits=2).tolist()
    [4, -2]
    """
    _check_frac_bits(frac_bits)
    t = torch.as_tensor(x)
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"encode expects a real tensor, got dtype {t.dtype}")
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(
            "encode got NaN or infinity: fixed point has no such values. "
            "Clean the input (torch.nan_to_num) before sharing it."
        )
    scaled = torch.round(t * float(2**frac_bits))
    bound = float(2**ENCODE_BOUND_BITS)
    if scaled.numel() and bool((scaled.abs() >= bound).any()):
        worst = float(t.abs().max())
        limit = 2.0 ** (ENCODE_BOUND_BITS - frac_bits)
        raise ValueError(
            f"value {worst:.6g} is too large for fixed point with {frac_bits} fractional "
            f"bits: encodings must stay below 2^{ENCODE_BOUND_BITS} so that truncation "
            f"after a multiplication stays exact, i.e. |x| < {limit:.6g}. Scale your data "
            "down, or use fewer frac_bits."
        )
    return scaled.to(torch.int64)


def decode(v: torch.Tensor, frac_bits: int = DEFAULT_FRAC_BITS) -> torch.Tensor:
    """Decode int64 ring elements to float64, exactly (see the module docstring).

    >>> decode(torch.tensor([-1, 3], dtype=torch.int64), frac_bits=1).tolist()
    [-0.5, 1.5]
    """
    _check_frac_bits(frac_bits)
    check_ring(v, "decode input")
    hi = (v >> 32).to(torch.float64) * float(2**32)  # exact: |hi| < 2^31, times 2^32
    lo = (v & 0xFFFFFFFF).to(torch.float64)  # exact: 0 <= lo < 2^32
    return (hi + lo) / float(2**frac_bits)  # one correctly rounded add, exact division
