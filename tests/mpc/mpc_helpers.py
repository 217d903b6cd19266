"""Helpers for the protocol-math tests: plaintext data from a seeded torch generator
(test data only; shares and masks always come from the AES-CTR PRG)."""

from __future__ import annotations

import torch

from ppdl_nb.mpc import decode, encode

PARTY_COUNTS = [2, 3, 5]
ULP = 2.0**-16


def data(shape, seed: int, low: float = -100.0, high: float = 100.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64) * (high - low) + low


def full_range(shape, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-(2**63), 2**63 - 1, tuple(shape), generator=g, dtype=torch.int64)


def roundtrip(x: torch.Tensor) -> torch.Tensor:
    """What the protocol actually computes on: x after fixed-point encoding."""
    return decode(encode(x))
