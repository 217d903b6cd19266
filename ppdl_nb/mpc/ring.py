"""The ring Z_2^64, held in torch int64 tensors.

Why int64: torch adds and multiplies int64 with two's-complement wrap-around, which is
exactly arithmetic modulo 2^64, and every CPU op (matmul, conv2d) works on it. A ring
element is read as a signed integer in [-2^63, 2^63) when it carries a value.

The helpers here are the bit-level pieces the protocols need: a logical (unsigned) right
shift, the top bit, and an input check with a message that says what to do.

>>> import torch
>>> x = torch.tensor([-1], dtype=torch.int64)
>>> shift_right_logical(x, 60).item(), msb(x).item()
(15, 1)
"""

from __future__ import annotations

import torch

__all__ = ["RING_BITS", "check_ring", "msb", "shift_right_logical", "wrap"]

RING_BITS = 64


def check_ring(t: object, name: str = "tensor") -> torch.Tensor:
    """Return ``t`` if it is an int64 tensor, else raise TypeError saying how to fix it."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of dtype int64 (a ring element), got "
            f"{type(t).__name__}. Encode real values first with ppdl_nb.mpc.encode()."
        )
    if t.dtype != torch.int64:
        raise TypeError(
            f"{name} must have dtype torch.int64 (shares live in Z_2^64), got {t.dtype}. "
            "Encode floats with ppdl_nb.mpc.encode(); do not cast shares to other dtypes."
        )
    return t


def wrap(value: int) -> int:
    """Map a Python int to its signed int64 representative modulo 2^64.

    >>> wrap(2**63), wrap(-1)
    (-9223372036854775808, -1)
    """
    return (value + 2**63) % 2**64 - 2**63


def shift_right_logical(t: torch.Tensor, bits: int) -> torch.Tensor:
    """Unsigned right shift of the 64-bit pattern (torch's ``>>`` is arithmetic)."""
    if not 0 <= bits < RING_BITS:
        raise ValueError(f"shift must be in [0, 64), got {bits}")
    if bits == 0:
        return t.clone()
    return (t >> bits) & ((1 << (RING_BITS - bits)) - 1)


def msb(t: torch.Tensor) -> torch.Tensor:
    """Top bit (bit 63) of each element as int64 0/1, i.e. 1 where the signed value < 0."""
    return (t < 0).to(torch.int64)
