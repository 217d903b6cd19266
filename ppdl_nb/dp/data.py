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

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset
from torch.utils.data.dataloader import default_collate

from .noise import generator

__all__ = ["PoissonLoader"]


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
            mask = torch.rand(self.n, generator=generator()) < self.sample_rate
            idx = mask.nonzero().squeeze(1)
            yield self._batch(idx)

    def _batch(self, idx: torch.Tensor) -> Any:
        if isinstance(self.dataset, TensorDataset):
            return [t[idx] for t in self.dataset.tensors]
        if idx.numel() == 0:
            return _empty_like(self.collate_fn([self.dataset[0]]))
        return self.collate_fn([self.dataset[i] for i in idx.tolist()])
