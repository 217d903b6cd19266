"""What every tensor stand-in shares with ``torch.Tensor``: sizes from its ``shape``, and
no truth value where the value is not.

>>> import torch
>>> class Box(Shaped):
...     shape = torch.Size([3, 2])
>>> len(Box()), Box().ndim, Box().numel(), Box().size(1)
(3, 2, 6, 2)
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["Shaped"]


class Shaped:
    """Mixin: ``ndim``, ``dim()``, ``size()``, ``numel()`` and ``len()`` from ``shape``;
    ``bool()`` raises ``TypeError(NO_TRUTH)``, which a subclass words for its kind of value."""

    shape: torch.Size
    NO_TRUTH = "this value is not here, so Python cannot branch on it; .get() it first"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return self.ndim

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return self.shape.numel()

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __bool__(self) -> bool:
        raise TypeError(self.NO_TRUTH)
