"""XOR-shared bits: packing for the wire.

A bit ``b`` is XOR-shared when party ``i`` holds ``b_i`` with ``b = b_0 ^ ... ^ b_{n-1}``.
XOR with a share or a public bit, and AND with a public bit, are local; a public
constant is XORed in by party 0 only. What travels is packed, 8 bits per byte
(:func:`pack_words`; bit planes of ``planes.py`` travel as they are, 64 bits per int64),
and an opening is the XOR of everyone's packed bytes, not their sum. Products of shared
bits, and the comparison built on them, are in :mod:`ppdl_nb.mpc.planes`.

>>> import torch
>>> words = torch.tensor([5, 2, 7])                  # 3-bit words
>>> unpack_words(pack_words(words, 3), (3,), 3).tolist()
[5, 2, 7]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["pack_bits", "pack_words", "unpack_bits", "unpack_words", "xor_reconstruct"]

_SHIFTS = torch.arange(8, dtype=torch.uint8)


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Flatten 0/1 values into bytes, 8 per byte (the last byte padded with zeros)."""
    flat = bits.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.reshape(-1, 8) << _SHIFTS).sum(-1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: 0/1 ``uint8`` values of ``shape``."""
    if packed.dtype != torch.uint8 or packed.dim() != 1:
        raise TypeError(f"packed bits must be a 1-D uint8 tensor, got {packed.dtype} "
                        f"of shape {tuple(packed.shape)}")
    n = int(torch.Size(shape).numel())
    if packed.numel() != (n + 7) // 8:
        raise ValueError(f"{packed.numel()} packed bytes cannot hold {n} bits exactly; "
                         f"expected {(n + 7) // 8}")
    bits = (packed.unsqueeze(-1) >> _SHIFTS) & 1
    return bits.reshape(-1)[:n].reshape(tuple(shape))


def pack_words(words: torch.Tensor, width: int) -> torch.Tensor:
    """The low ``width`` bits of each int64 word, packed 8 bits per byte.

    Up to 8 bits, 8 words at a time: their ``8 * width`` bits fill ``width`` bytes of an
    int64 (``ceil(n / 8) * width`` bytes for ``n`` words)."""
    flat = words.reshape(-1)
    if width == 64:  # bit planes (planes.py): every bit of the int64 is a shared bit
        return flat.contiguous().view(torch.uint8)
    if width > 8:
        return pack_bits((flat.unsqueeze(-1) >> torch.arange(width)) & 1)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    groups = (flat.reshape(-1, 8) << (width * torch.arange(8))).sum(-1)
    return groups.view(torch.uint8).reshape(-1, 8)[:, :width].reshape(-1)


def unpack_words(packed: torch.Tensor, shape: Sequence[int], width: int) -> torch.Tensor:
    """Inverse of :func:`pack_words`: int64 words of ``shape``."""
    n = int(torch.Size(shape).numel())
    if width == 64:
        if packed.dtype != torch.uint8 or packed.shape != (8 * n,):
            raise ValueError(f"{tuple(packed.shape)} packed bytes ({packed.dtype}) cannot hold "
                             f"{n} bit-plane words; expected {8 * n} uint8")
        return packed.view(torch.int64).reshape(tuple(shape))
    if width > 8:
        bits = unpack_bits(packed, (*shape, width)).to(torch.int64)
        return (bits << torch.arange(width)).sum(-1)
    groups = (n + 7) // 8
    if packed.dtype != torch.uint8 or packed.shape != (groups * width,):
        raise ValueError(f"{tuple(packed.shape)} packed bytes ({packed.dtype}) cannot hold "
                         f"{n} words of {width} bits; expected {groups * width} uint8")
    full = torch.zeros(groups, 8, dtype=torch.uint8)
    full[:, :width] = packed.reshape(groups, width)
    words = (full.view(torch.int64) >> (width * torch.arange(8))) & ((1 << width) - 1)
    return words.reshape(-1)[:n].reshape(tuple(shape))


def xor_reconstruct(shares: Sequence[torch.Tensor]) -> torch.Tensor:
    """XOR of the parties' bit shares (or packed bytes): the opened bits."""
    if not shares:
        raise ValueError("xor_reconstruct needs at least one share")
    out = shares[0].clone()
    for s in shares[1:]:
        out ^= s
    return out
