"""Where DP randomness comes from: generators seeded from the operating system.

Why: the privacy proof of every mechanism here assumes noise the adversary cannot
predict. Torch's CPU generator (Mersenne Twister) is fast but not a cryptographic
generator: whoever learns its seed or enough of its output can replay the noise.
So each call to :func:`generator` makes a fresh ``torch.Generator`` seeded with 64
bits from ``os.urandom``; a DP-SGD step or a query draws all its noise from its own
freshly seeded generator, so outputs of one step reveal nothing about the next.
(The stream *within* one step is Mersenne Twister; this is the trade-off Opacus also
makes outside its ``secure_mode``.)

Tests need reproducible noise. They get it only through the explicit hook
:func:`fixed_seed`, a context manager; nothing else can fix the seed.

>>> import torch
>>> with fixed_seed(0):
...     a = torch.randn(2, generator=generator())
>>> with fixed_seed(0):
...     b = torch.randn(2, generator=generator())
>>> bool((a == b).all())
True
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator

import torch

__all__ = ["fixed_seed", "gaussian_noise", "generator", "laplace_noise", "secure_seed"]

_TEST_SEED: Iterator[int] | None = None


def secure_seed() -> int:
    """A 63-bit seed from ``os.urandom`` (or the next test seed inside :func:`fixed_seed`)."""
    if _TEST_SEED is not None:
        return next(_TEST_SEED)
    return int.from_bytes(os.urandom(8), "little") >> 1


def generator(device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` seeded by :func:`secure_seed`."""
    g = torch.Generator(device=device)
    g.manual_seed(secure_seed())
    return g


@contextlib.contextmanager
def fixed_seed(seed: int) -> Iterator[None]:
    """Test hook: inside this block every generator is seeded from ``seed, seed+1, ...``.

    Never use it for a real release: fixed noise gives no privacy.
    """
    global _TEST_SEED
    previous = _TEST_SEED
    _TEST_SEED = itertools.count(int(seed))
    try:
        yield
    finally:
        _TEST_SEED = previous


def gaussian_noise(shape: torch.Size | tuple[int, ...], std: float, *,
                   gen: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Samples of N(0, std^2) from ``gen`` (a fresh secure generator if None)."""
    gen = gen if gen is not None else generator()
    return torch.randn(shape, generator=gen, dtype=dtype) * std


def laplace_noise(shape: torch.Size | tuple[int, ...], scale: float, *,
                  gen: torch.Generator | None = None,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Samples of Laplace(0, scale) as a difference of two exponentials (float64).

    Floating-point Laplace samples leak through their low bits (Mironov 2012); for
    teaching-scale releases we accept that and say so here.
    """
    gen = gen if gen is not None else generator()
    e = torch.empty((2, *shape), dtype=dtype).exponential_(1.0, generator=gen)
    return (e[0] - e[1]) * scale
