"""DataLens across data owners: each owner's vote sum is noised in part and summed in shares.

Why: in DataLens the teachers of one data owner live with that owner, and nobody, not
even the aggregator, should see one owner's raw vote sum (it is a function of that
owner's records with no noise on it). So, as DP-FedAvg does with its updates:

1. each owner sums its own teachers' top-k sign votes (:meth:`TopAgg.votes`);
2. adds its *share of the noise*, ``N(0, sigma^2 / m)`` for ``m`` owners, so that the
   total carries ``N(0, sigma^2)`` and no single party adds all of it;
3. encodes the result in fixed point and splits it into ``m`` additive shares over
   Z_2^64 (:mod:`ppdl_nb.mpc.sharing`), one per owner; each owner adds the shares it
   receives, and only the sum of those partial sums is opened: the noisy total;
4. the threshold is applied to that total, and only the result reaches the generator.

Accounting against a curious owner: an owner knows its own noise share, so for the
records of the *other* owners only ``sigma^2 (m - 1) / m`` of the variance counts.
:func:`owner_noise_std` returns the total ``sigma`` that keeps the noise multiplier
(per the teacher adjacency, sensitivity ``2 sqrt(k)``) at ``z`` even so; the ledger
then records ``z``. A coalition of ``c`` owners would see ``(m - c) / m`` of it: stated,
not covered. The aggregator learns the noisy total only.

Shares are simulated in one process here; :mod:`ppdl_nb.synth.worker_steps` runs the
same math with each owner on its own worker (teachers there, shares sent owner to owner),
and :mod:`ppdl_nb.synth.federated` holds the per-owner teachers both paths share.

>>> import torch
>>> from ppdl_nb.dp.topagg import TopAgg
>>> agg = TopAgg(k=2, scale=1.0, noise_std=1e-6, threshold=0.5, adjacency="teacher")
>>> g = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])
>>> owner_query(g * 5, torch.tensor([0, 0, 1, 1]), agg)[0].item()
1.0
"""

from __future__ import annotations

import math

import torch

from ppdl_nb.dp.noise import generator
from ppdl_nb.dp.topagg import TopAgg
from ppdl_nb.mpc.encoding import decode, encode
from ppdl_nb.mpc.prg import PRG
from ppdl_nb.mpc.sharing import reconstruct, share

__all__ = ["owner_noise_std", "owner_query", "owner_vote_sums", "secure_sum"]


def owner_noise_std(*, noise_multiplier: float, k: int, owners: int) -> float:
    """Total noise std so that a curious owner still faces ``noise_multiplier``.

    >>> round(owner_noise_std(noise_multiplier=1.0, k=4, owners=2), 4)  # 4 * sqrt(2)
    5.6569
    """
    if owners < 2:
        raise ValueError(f"owners must be >= 2 (one owner is the central case), got {owners}.")
    return noise_multiplier * 2 * math.sqrt(k) * math.sqrt(owners / (owners - 1))


def owner_vote_sums(votes: torch.Tensor, owner_of: torch.Tensor, owners: int) -> torch.Tensor:
    """Per-owner sums ``(m, d)`` of the teachers' vote vectors ``votes`` ``(T, d)``."""
    return torch.zeros(owners, votes.shape[1], dtype=votes.dtype).index_add_(0, owner_of, votes)


def secure_sum(values: list[torch.Tensor], *, frac_bits: int = 16) -> torch.Tensor:
    """Sum of the owners' ``values`` through additive shares: only the total is opened.

    Owner ``i`` splits ``encode(values[i])`` into ``m`` shares and sends share ``j`` to
    owner ``j``; owner ``j`` adds what it holds; the partial sums reconstruct the total.

    >>> secure_sum([torch.tensor([1.5, -2.0]), torch.tensor([0.25, 1.0])]).tolist()
    [1.75, -1.0]
    """
    m = len(values)
    if m < 2:
        raise ValueError(f"secure_sum needs at least 2 owners, got {m}.")
    dealt = [share(encode(v, frac_bits), m, PRG()) for v in values]  # dealt[i][j]: i -> j
    partial = [sum(dealt[i][j] for i in range(m)) for j in range(m)]
    return decode(reconstruct(partial), frac_bits).to(values[0].dtype)


def owner_query(grads: torch.Tensor, owner_of: torch.Tensor, agg: TopAgg) -> torch.Tensor:
    """One DataLens query across owners; ``agg.noise_std`` is the *total* noise std.

    ``grads`` ``(T, d)``: each teacher's gradient; ``owner_of`` ``(T,)``: its owner.
    Returns the thresholded direction in {-1, 0, +1}^d and records one step on
    ``agg.accountant`` (if any) at ``agg.noise_multiplier`` times ``sqrt((m-1)/m)``, the
    multiplier a curious owner faces.
    """
    owners = int(owner_of.max()) + 1
    gen = generator()
    d = grads.shape[1]
    noisy = []
    for o in range(owners):
        mine = grads[owner_of == o]
        v = agg.votes(mine, gen) if len(mine) else torch.zeros(d, dtype=grads.dtype)
        noise = torch.randn(d, generator=gen, dtype=v.dtype) * (agg.noise_std / math.sqrt(owners))
        noisy.append(v + noise)  # what leaves owner o, in shares only
    total = secure_sum(noisy) if owners > 1 else noisy[0]
    if agg.accountant is not None:
        z = agg.noise_multiplier * (math.sqrt((owners - 1) / owners) if owners > 1 else 1.0)
        agg.accountant.step(noise_multiplier=z, sample_rate=1.0)
    return torch.sign(total) * (total.abs() >= agg.threshold)
