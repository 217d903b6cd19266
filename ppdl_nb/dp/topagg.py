"""TopAgg (DataLens, Wang et al. 2021): compressed, quantised, noisy gradient voting.

Why: when many contributors (teachers on disjoint data, or examples) each send a
gradient, a Gaussian sum needs noise proportional to each gradient's norm in *all*
d coordinates. DataLens instead has each contributor keep only its top-k
coordinates (by magnitude), clip them to [-c, c] and quantise them stochastically
to a sign (+1 with probability (1 + g/c) / 2, so the sign is unbiased up to the
scale c). A contributor's vote vector then has at most k entries of +-1: its L2
sensitivity is sqrt(k) (add/remove one contributor). The votes are summed,
Gaussian noise N(0, sigma^2) is added, and coordinates whose noisy vote is below
``threshold`` in magnitude are zeroed (post-processing: free). The result, in
{-1, 0, +1}^d, is the aggregated gradient direction.

Accounting: each aggregation is a Gaussian mechanism with noise multiplier
``sigma / sqrt(k)``; compose it with :class:`.Accountant` (``sample_rate`` = the
fraction of contributors sampled, 1 for all), i.e. RDP ``alpha k / (2 sigma^2)``.

Use as the aggregation step of DP-SGD: rows of ``contributions`` are per-example
(or per-teacher) gradients flattened to (n, d); the output times a learning rate
is the update.

>>> import torch
>>> agg = TopAgg(k=2, clip=1.0, sigma=0.5, threshold=1.0)
>>> g = torch.tensor([[0.9, -0.1, 0.0], [0.8, 0.0, -0.7], [1.0, 0.2, 0.0]])
>>> agg(g).shape
torch.Size([3])
>>> round(agg.noise_multiplier, 4)
0.3536
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .accounting import Accountant
from .noise import generator

__all__ = ["TopAgg", "stochastic_sign", "top_k_mask", "topagg_rdp"]


def top_k_mask(x: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k largest-magnitude entries of each row of x (n, d)."""
    k = min(k, x.shape[-1])
    idx = x.abs().topk(k, dim=-1).indices
    return torch.zeros_like(x, dtype=torch.bool).scatter_(-1, idx, True)


def stochastic_sign(x: torch.Tensor, clip: float, gen: torch.Generator) -> torch.Tensor:
    """+1 with probability (1 + x/clip)/2 after clipping to [-clip, clip], else -1."""
    p = (x.clamp(-clip, clip) / clip + 1) / 2
    u = torch.rand(x.shape, generator=gen, dtype=x.dtype)
    return torch.where(u < p, 1.0, -1.0).to(x.dtype)


def topagg_rdp(*, k: int, sigma: float, orders: np.ndarray | float) -> np.ndarray:
    """RDP of one aggregation: alpha * k / (2 sigma^2)."""
    return np.asarray(orders, dtype=np.float64) * k / (2 * sigma**2)


@dataclass
class TopAgg:
    """The DataLens aggregator; call it on (contributors, d) gradients."""

    k: int
    clip: float
    sigma: float
    threshold: float
    accountant: Accountant | None = None

    def __post_init__(self) -> None:
        if self.k < 1 or self.clip <= 0 or self.sigma <= 0 or self.threshold < 0:
            raise ValueError(
                "TopAgg needs k >= 1, clip > 0, sigma > 0 and threshold >= 0; got "
                f"k={self.k}, clip={self.clip}, sigma={self.sigma}, threshold={self.threshold}."
            )

    @property
    def noise_multiplier(self) -> float:
        """sigma over the L2 sensitivity sqrt(k): what an :class:`.Accountant` composes."""
        return self.sigma / math.sqrt(self.k)

    def votes(self, contributions: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Each row compressed to top-k stochastic signs, summed: (d,)."""
        mask = top_k_mask(contributions, self.k)
        signs = stochastic_sign(contributions, self.clip, gen)
        return (signs * mask).sum(0)

    def __call__(self, contributions: torch.Tensor, *, sample_rate: float = 1.0) -> torch.Tensor:
        if contributions.dim() != 2:
            raise ValueError(
                f"contributions must be (contributors, d), got shape {tuple(contributions.shape)}; "
                "flatten each contributor's gradient into one row."
            )
        gen = generator()
        v = self.votes(contributions.detach(), gen)
        noisy = v + torch.randn(v.shape, generator=gen, dtype=v.dtype) * self.sigma
        if self.accountant is not None:
            self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=sample_rate)
        return torch.sign(noisy) * (noisy.abs() >= self.threshold)
