"""PATE: private aggregation of teacher ensembles (Papernot et al. 2017, 2018).

Why: teachers trained on *disjoint* partitions of private data vote on a public,
unlabelled query; one person's data is in one partition, so it changes at most
one vote. A noisy arg-max of the vote histogram is then differentially private,
and a student trained on the noisy labels inherits the guarantee.

* :func:`noisy_max` - GNMax (Gaussian noise, the 2018 "Scalable private learning
  with PATE" paper) or LNMax (Laplace, 2017);
* :func:`gnmax_rdp_data_independent` - (lambda, lambda / noise_std^2)-RDP per answer;
* :func:`gnmax_rdp_data_dependent` - the tighter, data-dependent bound of Papernot
  et al. 2018 (Theorem 6 with Proposition 7 for q; higher orders per Proposition 10),
  a transcription of the reference implementation ``pate/core.py`` (TF Privacy).
  Data-dependent epsilons depend on the votes themselves and are not private
  to release without smooth sensitivity; report them with that caveat.
* :func:`pate_epsilon` - compose per-answer RDP and convert to (epsilon, delta);
* :func:`train_teachers` - train one model per partition, here (plain function);
* :func:`votes_from_workers` - the distributed version: each worker (data owner) trains
  its teacher on its own partition with the ``dp.teacher_votes`` protocol step and sends
  back only its predicted labels on the public queries; the owner charges its budget the
  data-independent epsilon (:func:`gnmax_epsilon`) first.

>>> import torch
>>> votes = torch.tensor([[48.0, 1.0, 1.0], [20.0, 18.0, 12.0]])
>>> labels = noisy_max(votes, noise_std=5.0)
>>> labels.shape
torch.Size([2])
>>> pate_epsilon(votes, noise_std=20.0, delta=1e-5) < pate_epsilon(votes, noise_std=5.0, delta=1e-5)
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ppdl_nb.dp.noise import gaussian_noise, laplace_noise

__all__ = [
    "DEFAULT_ORDERS",
    "gnmax_epsilon",
    "gnmax_rdp_data_dependent",
    "gnmax_rdp_data_independent",
    "noisy_max",
    "pate_epsilon",
    "teacher_votes",
    "train_teachers",
    "vote_histogram",
    "votes_from_workers",
]

DEFAULT_ORDERS = np.concatenate([np.linspace(1.01, 10, 100), np.arange(11, 200, 1.0)])


def vote_histogram(predictions: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(teachers, queries) predicted labels -> (queries, classes) vote counts."""
    one_hot = nn.functional.one_hot(predictions.long(), n_classes)
    return one_hot.sum(0).to(torch.float64)


def noisy_max(votes: torch.Tensor, *, noise_std: float,
              mechanism: str = "gaussian") -> torch.Tensor:
    """Arg-max of votes + noise per query: N(0, noise_std^2) (GNMax) or Laplace(noise_std)."""
    v = votes.to(torch.float64)
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}.")
    if mechanism == "gaussian":
        noisy = v + gaussian_noise(v.shape, noise_std, dtype=torch.float64)
    elif mechanism == "laplace":
        noisy = v + laplace_noise(v.shape, noise_std)
    else:
        raise ValueError(f"mechanism must be 'gaussian' or 'laplace', got {mechanism!r}.")
    return noisy.argmax(-1)


def gnmax_rdp_data_independent(noise_std: float, orders: np.ndarray = DEFAULT_ORDERS) -> np.ndarray:
    """RDP of one GNMax answer: lambda / noise_std^2 (vote vector has L2 sensitivity sqrt 2)."""
    return np.asarray(orders, dtype=np.float64) / noise_std**2


def _log1mexp(x: float) -> float:
    """log(1 - exp(x)) for x < 0."""
    return math.log(-math.expm1(x)) if x < -math.log(2) else math.log1p(-math.exp(x))


def _logq_gaussian(votes: np.ndarray, noise_std: float) -> float:
    """Upper bound on log Pr[answer != top class] (Papernot et al. 2018, Prop. 7)."""
    from scipy.stats import norm

    top = int(np.argmax(votes))
    gaps = votes[top] - np.delete(votes, top)
    logq = float(np.logaddexp.reduce(norm.logsf(gaps, scale=math.sqrt(2) * noise_std)))
    return min(logq, math.log(1 - 1 / len(votes)))


def gnmax_rdp_data_dependent(
    votes: np.ndarray | torch.Tensor, noise_std: float, orders: np.ndarray = DEFAULT_ORDERS
) -> np.ndarray:
    """Data-dependent RDP of one GNMax answer on this vote histogram (never above the
    data-independent bound)."""
    orders = np.asarray(orders, dtype=np.float64)
    logq = _logq_gaussian(np.asarray(votes, dtype=np.float64), noise_std)
    variance = noise_std**2
    ret = orders / variance
    if math.isinf(logq):
        return np.zeros_like(orders)
    mu2 = math.sqrt(variance * -logq)
    mu1 = mu2 + 1
    mask = (mu1 > orders) & (mu2 > 1)
    if not mask.any():
        return ret
    rdp1, rdp2 = mu1 / variance, mu2 / variance
    log_a2 = (mu2 - 1) * rdp2
    applies = logq <= log_a2 - mu2 * (
        math.log(1 + 1 / (mu1 - 1)) + math.log(1 + 1 / (mu2 - 1))) and -logq > rdp2
    if applies:
        log1q = _log1mexp(logq)
        log_a = (orders - 1) * (log1q - _log1mexp((logq + rdp2) * (1 - 1 / mu2)))
        log_b = (orders - 1) * (rdp1 - logq / (mu1 - 1))
        log_s = np.logaddexp(log1q + log_a, logq + log_b)
        ret[mask] = np.minimum(ret, log_s / (orders - 1))[mask]
    return ret


def pate_epsilon(
    votes: torch.Tensor,
    *,
    noise_std: float,
    delta: float,
    data_dependent: bool = True,
    orders: np.ndarray = DEFAULT_ORDERS,
) -> float:
    """(epsilon at delta) of answering every row of ``votes`` with GNMax(noise_std)."""
    from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

    v = votes.detach().cpu().numpy() if torch.is_tensor(votes) else np.asarray(votes)
    if data_dependent:
        total = sum(gnmax_rdp_data_dependent(row, noise_std, orders) for row in v)
    else:
        total = gnmax_rdp_data_independent(noise_std, orders) * len(v)
    return float(compute_epsilon(orders, total, delta)[0])


def gnmax_epsilon(*, queries: int, noise_std: float, delta: float,
                  orders: np.ndarray = DEFAULT_ORDERS) -> float:
    """Data-independent epsilon of ``queries`` GNMax answers with noise ``noise_std``.

    It bounds what one partition (one teacher) can reveal whatever the votes, so a data
    owner can charge it before any vote is counted.
    """
    from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

    if queries < 0 or noise_std <= 0:
        raise ValueError(f"need queries >= 0 and noise_std > 0, got {queries} and {noise_std}.")
    if queries == 0:
        return 0.0
    total = gnmax_rdp_data_independent(noise_std, orders) * queries
    return float(compute_epsilon(orders, total, delta)[0])


def train_teachers(
    partitions: Sequence[tuple[torch.Tensor, torch.Tensor]],
    train_fn: Callable[[torch.Tensor, torch.Tensor], nn.Module],
) -> list[nn.Module]:
    """One teacher per (x, y) partition, by ``train_fn``. Partitions must be disjoint:
    PATE's analysis assumes each person is in exactly one."""
    if not partitions:
        raise ValueError("Need at least one partition to train teachers on.")
    return [train_fn(x, y) for x, y in partitions]


@torch.no_grad()
def teacher_votes(teachers: Sequence[nn.Module], x: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Vote histogram (queries, classes) of the teachers' arg-max predictions on ``x``."""
    preds = torch.stack([t(x).argmax(-1) for t in teachers])
    return vote_histogram(preds, n_classes)


def votes_from_workers(
    workers: Sequence[Any],
    *,
    dataset: str,
    model: nn.Module,
    public: torch.Tensor,
    n_classes: int,
    noise_std: float,
    delta: float,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int | None = None,
) -> torch.Tensor:
    """Vote histogram (queries, classes) of teachers trained on separate workers.

    Each worker holds its own partition as ``dataset`` (disjoint from the others': one
    person, one owner) and runs the ``dp.teacher_votes`` step: it rebuilds ``model`` from
    its spec, trains it on its data, and replies with one label per public query, after
    charging its own budget. The teachers' weights and data stay on the workers. Workers
    are asked concurrently. Aggregate the result with :func:`noisy_max` at the same
    ``noise_std`` the owners charged for.
    """
    from ppdl_nb.dp.remote import DataOwner, RemoteDataset, teacher_votes

    if not workers:
        raise ValueError("Need at least one worker (one teacher per data owner).")
    teachers = [RemoteDataset(DataOwner(w), dataset) for w in workers]
    preds = teacher_votes(teachers, model, public, n_classes=n_classes, noise_std=noise_std,
                          delta=delta, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    return vote_histogram(preds, n_classes)
