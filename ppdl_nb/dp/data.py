"""Poisson sampling: the batches the DP-SGD accountant assumes.

Why: the privacy amplification that makes DP-SGD affordable is proven for batches
in which every example is included independently with probability ``q``. Batch
sizes then vary, and a batch can be empty; an empty batch is still a step (its
update is pure noise) and must not be skipped, since skipping would reveal that it
was empty. The sampling masks come from :func:`.noise.generator` (seeded from
``os.urandom``), like the noise.

>>> import torch
>>> from torch.utils.data import TensorDataset
>>> loader = PoissonLoader(TensorDataset(torch.arange(10.0)), sample_rate=0.5)
>>> len(loader)
2
>>> [b[0].dim() for b in loader]
[1, 1]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset
from torch.utils.data.dataloader import default_collate

from ppdl_nb.dp.noise import generator

__all__ = ["PoissonLoader", "poisson_indices"]


def poisson_indices(n: int, q: float, gen: torch.Generator) -> torch.Tensor:
    """Sorted indices of a Poisson sample of ``range(n)``: each kept with probability ``q``.

    For small ``q`` the gaps between kept indices are drawn instead (i.i.d. geometric on
    {1, 2, ...} with parameter ``q``, which is the same distribution as n coin flips):
    about ``q n`` draws instead of ``n``. For ``q > 1/4`` a mask of ``n`` coin flips is
    as cheap.
    """
    if q >= 1.0:
        return torch.arange(n)
    if q > 0.25:
        return (torch.rand(n, generator=gen) < q).nonzero().squeeze(1)
    chunk = int(q * n + 4 * math.sqrt(q * n) + 16)
    parts, last = [], -1
    while last < n:
        gaps = torch.empty(chunk, dtype=torch.float64).geometric_(q, generator=gen)
        # clamp: a gap beyond n ends the sample anyway (and guards log(0) = -inf draws)
        pos = gaps.clamp_(max=n + 1).to(torch.int64).cumsum_(0).add_(last)
        parts.append(pos)
        last = int(pos[-1])
    idx = parts[0] if len(parts) == 1 else torch.cat(parts)
    return idx[: int(torch.searchsorted(idx, n))]


def _empty_like(batch: Any) -> Any:
    if torch.is_tensor(batch):
        return batch[:0]
    if isinstance(batch, dict):
        return {k: _empty_like(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_empty_like(v) for v in batch)
    return batch


class PoissonLoader:
    """Yields ``steps`` batches, each holding every example independently with prob ``sample_rate``.

    ``steps`` defaults to ``round(1 / sample_rate)`` (one epoch in expectation).
    A ``TensorDataset`` is indexed directly (fast); other datasets go through
    ``collate_fn`` item by item.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        sample_rate: float,
        steps: int | None = None,
        collate_fn: Callable[[list[Any]], Any] = default_collate,
    ) -> None:
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}.")
        self.dataset = dataset
        self.sample_rate = float(sample_rate)
        self.steps = int(steps) if steps is not None else max(1, round(1 / sample_rate))
        self.collate_fn = collate_fn
        self.n = len(dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.steps

    @property
    def expected_batch_size(self) -> float:
        return self.sample_rate * self.n

    def __iter__(self) -> Iterator[Any]:
        for _ in range(self.steps):
            yield self._batch(poisson_indices(self.n, self.sample_rate, generator()))

    def _batch(self, idx: torch.Tensor) -> Any:
        if isinstance(self.dataset, TensorDataset):
            return [t.index_select(0, idx) for t in self.dataset.tensors]
        if idx.numel() == 0:
            return _empty_like(self.collate_fn([self.dataset[0]]))
        return self.collate_fn([self.dataset[i] for i in idx.tolist()])
