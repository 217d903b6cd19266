"""Additive secret sharing over Z_2^64 and the local (no-communication) ops on shares.

A secret ``s`` is split into ``n`` shares with ``s = s_0 + ... + s_{n-1} (mod 2^64)``; any
``n - 1`` of them are uniformly random and independent of ``s``. Linear ops are local:
each party applies them to its own share. A public constant is added by party 0 only, so
that it is counted once.

Openings are the only traffic of a protocol round: :func:`pack` puts all of one party's
openings for a round into one flat tensor (one message), :func:`unpack` splits the summed
result again.

>>> import torch
>>> from ppdl_nb.mpc.prg import PRG
>>> shares = share(torch.tensor([7, -3]), 3, PRG())
>>> reconstruct(shares).tolist()
[7, -3]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ppdl_nb.mpc.prg import PRG
from ppdl_nb.mpc.ring import check_ring

__all__ = [
    "add",
    "add_public",
    "mul_public",
    "neg",
    "pack",
    "reconstruct",
    "seeded_share",
    "share",
    "share_from_seeds",
    "sub",
    "unpack",
    "zero_share",
]


def _check_parties(party_index: int, n_parties: int) -> None:
    if not isinstance(n_parties, int) or n_parties < 2:
        raise ValueError(f"additive sharing needs n_parties >= 2, got {n_parties!r}")
    if not isinstance(party_index, int) or not 0 <= party_index < n_parties:
        raise ValueError(f"party_index must be in [0, {n_parties}), got {party_index!r}")


def share(secret: torch.Tensor, n_parties: int, generator: PRG) -> list[torch.Tensor]:
    """Split an int64 secret into ``n_parties`` additive shares.

    The first ``n - 1`` shares are drawn from ``generator`` (a cryptographic :class:`PRG`);
    the last one is the secret minus their sum.
    """
    check_ring(secret, "secret")
    _check_parties(0, n_parties)
    if not isinstance(generator, PRG):
        raise TypeError(
            "share() needs a ppdl_nb.mpc.PRG (AES-CTR) generator; torch/numpy generators "
            "are predictable and must not produce shares."
        )
    shares = [generator.int64(secret.shape) for _ in range(n_parties - 1)]
    last = secret.clone()
    for s in shares:
        last -= s
    shares.append(last)
    return shares


def share_from_seeds(secret: torch.Tensor, seeds: Sequence[bytes], label: bytes) -> torch.Tensor:
    """OWNER: share a secret sending one tensor; returns the last party's share.

    ``seeds[i]`` is a seed the owner shares with party ``i`` for ``i < n - 1`` (made once
    with :func:`~ppdl_nb.mpc.prg.new_seed`); those parties derive their shares with
    :func:`seeded_share`, so only the returned share travels: ``8 * numel`` bytes instead
    of ``(n - 1)`` times that. ``label`` must be unique per secret.
    """
    check_ring(secret, "secret")
    if len(seeds) < 1:
        raise ValueError("share_from_seeds needs one seed per party but the last (>= 1 seed)")
    last = secret.clone()
    for seed in seeds:
        last -= seeded_share(seed, label, secret.shape)
    return last


def seeded_share(seed: bytes, label: bytes, shape: Sequence[int]) -> torch.Tensor:
    """PARTY i < n-1: its share of the owner's secret ``label``, from their common seed."""
    if not isinstance(label, bytes) or not label:
        raise TypeError(f"label must be non-empty bytes unique to the secret, got {label!r}")
    return PRG(seed, label=b"input/" + label).int64(shape)


def reconstruct(shares: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum of the shares modulo 2^64: the opened value."""
    if len(shares) == 0:
        raise ValueError("reconstruct needs at least one share")
    out = check_ring(shares[0], "share 0").clone()
    for i, s in enumerate(shares[1:], start=1):
        out += check_ring(s, f"share {i}")
    return out


def zero_share(
    party_index: int, pair_seeds: Mapping[int, bytes], label: bytes, shape: Sequence[int]
) -> torch.Tensor:
    """This party's share of zero, derived from seeds it shares pairwise with every peer.

    ``pair_seeds[j]`` is the seed party ``party_index`` shares with party ``j`` (the same
    bytes on both sides). Party ``i`` adds ``PRG(s_ij)`` for ``j > i`` and subtracts it for
    ``j < i``, so the shares of all parties sum to zero and nothing is sent. Add it to a
    share to re-randomize it.
    """
    out = torch.zeros(tuple(shape), dtype=torch.int64)
    for j, seed in sorted(pair_seeds.items()):
        if j == party_index:
            raise ValueError(f"party {party_index} cannot share a pairwise seed with itself")
        mask = PRG(seed, label=b"zero/" + label).int64(shape)
        if j > party_index:
            out += mask
        else:
            out -= mask
    return out


def add(x_share: torch.Tensor, y_share: torch.Tensor) -> torch.Tensor:
    """Share of ``x + y`` (local)."""
    return check_ring(x_share, "x_share") + check_ring(y_share, "y_share")


def sub(x_share: torch.Tensor, y_share: torch.Tensor) -> torch.Tensor:
    """Share of ``x - y`` (local)."""
    return check_ring(x_share, "x_share") - check_ring(y_share, "y_share")


def neg(x_share: torch.Tensor) -> torch.Tensor:
    """Share of ``-x`` (local)."""
    return -check_ring(x_share, "x_share")


def add_public(
    party_index: int, x_share: torch.Tensor, constant: torch.Tensor | int
) -> torch.Tensor:
    """Share of ``x + constant`` for an int64 (already encoded) public constant.

    Only party 0 adds it; the others return their share unchanged (broadcast to the
    result's shape so every party's share has the same shape).
    """
    check_ring(x_share, "x_share")
    c = torch.as_tensor(constant)
    if c.dtype != torch.int64:
        raise TypeError(
            f"public constant must be int64 (encode it first with encode()), got {c.dtype}"
        )
    if party_index == 0:
        return x_share + c
    return x_share + torch.zeros_like(c)


def mul_public(x_share: torch.Tensor, constant: torch.Tensor | int) -> torch.Tensor:
    """Share of ``x * constant`` for a public int64 constant (local, every party).

    Multiplying by an encoded real adds ``frac_bits`` fractional bits: truncate afterwards.
    """
    check_ring(x_share, "x_share")
    c = torch.as_tensor(constant)
    if c.dtype != torch.int64:
        raise TypeError(
            f"public constant must be int64 (encode it first with encode()), got {c.dtype}"
        )
    return x_share * c


def pack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate one round's openings into one flat int64 tensor (one message)."""
    if not tensors:
        return torch.zeros(0, dtype=torch.int64)
    return torch.cat([check_ring(t, "opening").reshape(-1) for t in tensors])


def unpack(flat: torch.Tensor, shapes: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Inverse of :func:`pack` given the shapes, checking the total size."""
    check_ring(flat, "packed opening")
    sizes = [int(torch.Size(s).numel()) for s in shapes]
    if flat.dim() != 1 or flat.numel() != sum(sizes):
        raise ValueError(
            f"packed opening has {flat.numel()} elements, expected {sum(sizes)} for shapes "
            f"{[tuple(s) for s in shapes]}"
        )
    parts = torch.split(flat, sizes)
    return [p.reshape(tuple(s)) for p, s in zip(parts, shapes, strict=True)]
