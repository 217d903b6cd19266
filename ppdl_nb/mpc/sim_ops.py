"""The ops of :mod:`ppdl_nb.mpc.approx` for all parties in one process (simulation).

A value is the list of every party's share; products and truncations go through
:mod:`ppdl_nb.mpc.simulate`, which counts rounds and bytes in a :class:`Traffic`. The
protocol steps are generators (so that a recipe written once can also run on real
parties, where they yield openings); here they return without ever yielding.

Secure comparison comes from :mod:`ppdl_nb.mpc.comparison` (``ge0``, with products fused
into its rounds) and :mod:`ppdl_nb.mpc.nonlinear` (``max``); ``SimOps(comparison=False)``
leaves it out, so that the recipes take their paths without it.

>>> import torch
>>> from ppdl_nb.mpc import simulate as sim
>>> from ppdl_nb.mpc.approx import exp
>>> ys, traffic = run_simulated(exp, sim.share_float(torch.tensor([0.0, 1.0]), 3))
>>> [round(v, 3) for v in sim.reveal(ys).tolist()], traffic.rounds
([1.0, 2.718], 20)
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import torch

from ppdl_nb.mpc import simulate as sim
from ppdl_nb.mpc.comparison import compare
from ppdl_nb.mpc.nonlinear import max_dim
from ppdl_nb.mpc.sharing import add_public as _add_public_share
from ppdl_nb.mpc.sharing import mul_public as _mul_public_share

__all__ = ["SimOps", "run_simulated"]

Shares = list[torch.Tensor]
Step = Generator[Any, Any, Shares]


def _done(value: Shares) -> Step:
    """A generator that returns ``value`` at once (what a local or simulated step is)."""
    return value
    yield  # pragma: no cover  (makes this function a generator)


class SimOps:
    """All parties' shares in one list; rounds counted in ``self.traffic``."""

    def __init__(self, traffic: sim.Traffic | None = None, *, frac_bits: int = 16,
                 comparison: bool = True) -> None:
        self.traffic = traffic if traffic is not None else sim.Traffic()
        self.frac_bits = frac_bits
        self.comparison = comparison

    # ---- local steps -----------------------------------------------------------------
    def add(self, x: Shares, y: Shares) -> Shares:
        return [a + b for a, b in zip(x, y, strict=True)]

    def sub(self, x: Shares, y: Shares) -> Shares:
        return [a - b for a, b in zip(x, y, strict=True)]

    def neg(self, x: Shares) -> Shares:
        return [-a for a in x]

    def mul_int(self, x: Shares, k: int) -> Shares:
        c = torch.tensor(int(k), dtype=torch.int64)
        return [_mul_public_share(a, c) for a in x]

    def add_public(self, x: Shares, value: float, bits: int) -> Shares:
        c = torch.tensor(round(value * 2**bits), dtype=torch.int64)
        return [_add_public_share(i, a, c) for i, a in enumerate(x)]

    def sum(self, x: Shares, dim: int) -> Shares:
        return [a.sum(dim, keepdim=True) for a in x]

    def size(self, x: Shares, dim: int) -> int:
        return x[0].shape[dim]

    # ---- protocol steps (rounds) -----------------------------------------------------
    def mul(self, x: Shares, y: Shares, shift: int) -> Step:
        return _done(sim.mul(x, y, frac_bits=shift, traffic=self.traffic))

    def square(self, x: Shares, shift: int) -> Step:
        return _done(sim.square(x, frac_bits=shift, traffic=self.traffic))

    def truncate(self, x: Shares, shift: int) -> Step:
        return _done(sim.truncate(x, shift, traffic=self.traffic))

    def supports(self, name: str) -> bool:
        """Whether the optional step ``name`` (``"ge0"``, ``"max"``) is available."""
        return self.comparison and name in ("ge0", "max")

    def _check_comparison(self, what: str) -> None:
        if not self.comparison:
            raise NotImplementedError(f"{what} needs secure comparison: these ops were made "
                                      "with comparison=False")

    def ge0(self, x: Shares, products: Sequence[Shares] = ()) -> Step:
        """Shares of the integer bit ``[x >= 0]`` and of ``v * bit`` for each ``v`` of
        ``products``, in the comparison's rounds."""
        self._check_comparison("ge0")
        n = len(x)
        res = sim.run_parties([compare(i, x[i], products=[v[i] for v in products])
                               for i in range(n)], self.traffic)
        prods = [[r[1][j] for r in res] for j in range(len(products))]
        return _done(([r[0] for r in res], prods))

    def max(self, x: Shares, dim: int) -> Step:
        """Shares of the maximum along ``dim`` (kept)."""
        self._check_comparison("max")
        res = sim.run_parties([max_dim(i, x[i], dim) for i in range(len(x))], self.traffic)
        return _done([r.unsqueeze(dim) for r in res])


def run_simulated(fn: Callable[..., Generator], shares: Sequence[torch.Tensor],
                  cfg: Any = None, *, ops: SimOps | None = None, **kwargs: Any
                  ) -> tuple[Shares, sim.Traffic]:
    """Run recipe ``fn(ops, shares, cfg, **kwargs)`` on all parties' ``shares`` at once.

    Returns the result's shares and the :class:`~ppdl_nb.mpc.simulate.Traffic` counted.
    """
    ops = ops if ops is not None else SimOps()
    args = (cfg,) if cfg is not None else ()
    gen = fn(ops, list(shares), *args, **kwargs)
    try:
        instruction = next(gen)
    except StopIteration as stop:
        return stop.value, ops.traffic
    gen.close()
    raise RuntimeError(f"{fn.__name__} yielded {instruction!r} under simulation: its ops "
                       "must be the simulated ones (SimOps), which never yield")
