"""DP-MERF (Harder et al., AISTATS 2021): one Gaussian release of a labelled mean
embedding, then a generator fitted to it with no further privacy cost.

Why: a generator trained against a *fixed* released statistic spends its budget once,
however long it trains, so the privacy cost does not grow with training steps; at small
epsilon that beats methods that pay per step.

The statistic: random Fourier features ``phi(x) = sqrt(1/D) [cos(W x), sin(W x)]``
(``W ~ N(0, 1 / lengthscale^2)``, so ``||phi(x)|| = 1`` for every x) approximate a
Gaussian kernel. Each record contributes ``f(x, y) = [phi(x) / sqrt(2), 1 / sqrt(2)]
onehot(y)^T`` (a ``(2D + 1) x C`` matrix of Frobenius norm exactly 1); the release is
``S = sum_i f(x_i, y_i) + N(0, sigma^2)``. Adding or removing one record moves ``S`` by
at most 1 (``adjacency="add_remove"``; 2 for ``"replace"``), so this is one Gaussian
mechanism with noise multiplier ``sigma / sensitivity``; its last row holds the noisy
class counts, so the label distribution comes from the same release. The generator then
minimises ``|| S_c / n_c - mean_j phi(G(z_j, c)) ||^2`` per class: post-processing.

>>> import torch
>>> feats = RandomFeatures(dim=3, features=8, lengthscale=1.0, seed=0)
>>> round(float(feats(torch.randn(5, 3)).norm(dim=1)[0]), 4)
1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ppdl_nb.dp.accounting import Accountant, check_delta, noise_multiplier_for
from ppdl_nb.dp.noise import gaussian_noise
from ppdl_nb.synth.models import ConditionalGenerator

__all__ = ["MERF_SENSITIVITY", "MerfResult", "RandomFeatures", "embedding_sum",
           "median_lengthscale", "release_embedding", "train_dp_merf"]

#: adjacency -> L2 sensitivity of the embedding sum (each record's term has norm 1).
MERF_SENSITIVITY: dict[str, float] = {"add_remove": 1.0, "replace": 2.0}


class RandomFeatures:
    """``phi(x) = sqrt(1/D) [cos(W x), sin(W x)]``: unit-norm random Fourier features."""

    def __init__(self, *, dim: int, features: int, lengthscale: float, seed: int = 0) -> None:
        if features < 1 or lengthscale <= 0:
            raise ValueError(f"need features >= 1 and lengthscale > 0, got {features}, "
                             f"{lengthscale}.")
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(dim, features, generator=g) / lengthscale
        self.features = features

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h = x @ self.w
        return torch.cat([torch.cos(h), torch.sin(h)], 1) / math.sqrt(self.features)


def median_lengthscale(x: torch.Tensor, *, sample: int = 500, seed: int = 0) -> float:
    """The median pairwise distance of (a sample of) ``x``: the usual kernel width.

    Computed on public or held-out data, or treated as a hyperparameter: it is *not*
    charged to the budget, so do not compute it on the private records for a release.
    """
    g = torch.Generator().manual_seed(seed)
    s = x[torch.randperm(len(x), generator=g)[:sample]]
    d = torch.cdist(s, s)
    return float(d[d > 0].median())


def embedding_sum(feats: RandomFeatures, x: torch.Tensor, y: torch.Tensor, *, classes: int
                  ) -> torch.Tensor:
    """``sum_i [phi(x_i)/sqrt 2, 1/sqrt 2] onehot(y_i)^T``: a ``(2D + 1, C)`` matrix."""
    phi = feats(x) / math.sqrt(2)
    f = torch.cat([phi, torch.full((len(x), 1), 1 / math.sqrt(2))], 1)
    return f.T @ F.one_hot(y, classes).to(f.dtype)


def release_embedding(s: torch.Tensor, *, noise_multiplier: float,
                      adjacency: str = "add_remove") -> torch.Tensor:
    """The Gaussian release of an embedding sum: ``s + N(0, (z * sensitivity)^2)``."""
    if adjacency not in MERF_SENSITIVITY:
        raise ValueError(f"Unknown adjacency {adjacency!r}: choose one of "
                         f"{sorted(MERF_SENSITIVITY)}.")
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}.")
    std = noise_multiplier * MERF_SENSITIVITY[adjacency]
    return s + gaussian_noise(s.shape, std, dtype=s.dtype) if std > 0 else s.clone()


@dataclass
class MerfResult:
    """The generator, the class weights it samples with, and the ledger."""

    generator: ConditionalGenerator
    class_weights: torch.Tensor
    accountant: Accountant
    epsilon: float
    delta: float
    noise_multiplier: float


def train_dp_merf(  # long: release, then the fitting loop, in one readable piece
    x: torch.Tensor, y: torch.Tensor, *, classes: int, epsilon: float, delta: float,
    features: int = 2000, lengthscale: float | None = None, steps: int = 2000,
    batch_size: int = 200, lr: float = 1e-3, z_dim: int = 32, hidden: int = 256,
    output: str = "sigmoid", adjacency: str = "add_remove", seed: int = 0,
) -> MerfResult:
    """Release the embedding at ``(epsilon, delta)`` and fit a conditional generator to it.

    ``lengthscale`` defaults to :func:`median_lengthscale` of ``x`` (see its caveat; the
    benchmark passes one computed on public data). ``epsilon=float("inf")`` releases the
    exact embedding (a diagnostic).

    >>> import torch
    >>> x, y = torch.rand(60, 4), torch.arange(60) % 3
    >>> res = train_dp_merf(x, y, classes=3, epsilon=1.0, delta=1e-5, features=16,
    ...                     lengthscale=1.0, steps=5, batch_size=12)
    >>> res.epsilon <= 1.0
    True
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}.")
    check_delta(delta, len(x))
    torch.manual_seed(seed)
    ls = lengthscale if lengthscale is not None else median_lengthscale(x, seed=seed)
    feats = RandomFeatures(dim=x.shape[1], features=features, lengthscale=ls, seed=seed)
    acc = Accountant()
    z = 0.0
    if math.isfinite(epsilon):
        z = noise_multiplier_for(target_epsilon=epsilon, sample_rate=1.0, steps=1, delta=delta)
        acc.step(noise_multiplier=z, sample_rate=1.0)
    released = release_embedding(embedding_sum(feats, x, y, classes=classes),
                                 noise_multiplier=z, adjacency=adjacency)
    counts = (released[-1] * math.sqrt(2)).clamp_min(1.0)
    target = released[:-1] * math.sqrt(2) / counts  # (2D, C): per-class mean embedding
    gen = ConditionalGenerator(dim=x.shape[1], classes=classes, z_dim=z_dim, hidden=hidden,
                               output=output)
    opt = torch.optim.Adam(gen.parameters(), lr=lr)
    per_class = max(1, batch_size // classes)
    labels = torch.arange(classes).repeat_interleave(per_class)
    for _ in range(steps):
        fake = gen.sample(labels)
        emb = feats(fake).view(classes, per_class, -1).mean(1)  # (C, 2D)
        loss = ((emb - target.T) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    spent = acc.epsilon(delta) if z > 0 else math.inf
    return MerfResult(gen, counts, acc, spent, delta, z)
