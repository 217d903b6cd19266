"""The approximations as one party's protocol, to run on workers (or all in one process).

:class:`PartyOps` gives a recipe of :mod:`.approx` / :mod:`.approx_nn` this party's share
alone; its protocol steps *yield* the instructions of :mod:`.comparison` (``Draw`` a
dealer request, ``Opening`` of masked values, ``Dealt`` derived shares), so that a recipe
is a protocol like ``comparison.compare``: ``simulate.run_parties`` runs it for all
parties in one process, and ``tensors.spdz``'s ``drive`` runs it on workers. By name,
as :mod:`.nonlinear` does it: :func:`party_op` (what a worker runs) and :func:`requests`
(what the notebook asks the dealer for, in order, before the parties run it).

>>> import torch
>>> from ppdl_nb.mpc import simulate as sim
>>> xs = sim.share_float(torch.tensor([-1.0, 0.0, 2.0]), 2)
>>> t = sim.Traffic()
>>> res = sim.run_parties([party_op("sigmoid", i, [xs[i]], {}) for i in range(2)], t)
>>> [round(v, 3) for v in sim.reveal(res).tolist()], t.rounds
([0.269, 0.5, 0.881], 33)
>>> [kind for kind, _ in requests("sigmoid", [[3]], {})][:4]
['cmp', 'square', 'trunc', 'mul']
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import torch

from ppdl_nb.mpc import approx, approx_nn
from ppdl_nb.mpc.approx import DEFAULT, ApproxConfig
from ppdl_nb.mpc.beaver import (
    beaver_mul_finish,
    beaver_open,
    beaver_square_finish,
    beaver_square_open,
)
from ppdl_nb.mpc.comparison import Dealt, Draw, Opening, compare
from ppdl_nb.mpc.nonlinear import max_dim
from ppdl_nb.mpc.nonlinear import truncate as _truncate
from ppdl_nb.mpc.sharing import add_public as _add_public_share
from ppdl_nb.mpc.sharing import mul_public as _mul_public_share
from ppdl_nb.mpc.simulate import plan

__all__ = ["FUNCTIONS", "PartyOps", "party_op", "requests"]

Proto = Generator[Any, Any, Any]
FUNCTIONS = {"exp": approx.exp, "reciprocal": approx.reciprocal, "inv_sqrt": approx.inv_sqrt,
             "log": approx.log, "sigmoid": approx_nn.sigmoid, "tanh": approx_nn.tanh,
             "softmax": approx_nn.softmax}


class PartyOps:
    """The ops of :mod:`.approx` for party ``party_index``, on its own share."""

    def __init__(self, party_index: int, *, frac_bits: int = 16, comparison: bool = True
                 ) -> None:
        self.index, self.frac_bits, self.comparison = party_index, frac_bits, comparison

    def add(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y

    def sub(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x - y

    def neg(self, x: torch.Tensor) -> torch.Tensor:
        return -x

    def mul_int(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return _mul_public_share(x, torch.tensor(int(k), dtype=torch.int64))

    def add_public(self, x: torch.Tensor, value: float, bits: int) -> torch.Tensor:
        c = torch.tensor(round(value * 2**bits), dtype=torch.int64)
        return _add_public_share(self.index, x, c)

    def sum(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        return x.sum(dim, keepdim=True)

    def size(self, x: torch.Tensor, dim: int) -> int:
        return x.shape[dim]

    def mul(self, x: torch.Tensor, y: torch.Tensor, shift: int) -> Proto:
        a, b = yield Draw("mul", {"x_shape": list(x.shape), "y_shape": list(y.shape)})
        eps, delta = yield Opening("add", list(beaver_open(x, y, a, b)), "mul")
        (c,) = yield Dealt()
        z = beaver_mul_finish(self.index, eps, delta, a, b, c)
        return (yield from _truncate(self.index, z, shift)) if shift else z

    def square(self, x: torch.Tensor, shift: int) -> Proto:
        (a,) = yield Draw("square", {"shape": list(x.shape)})
        (eps,) = yield Opening("add", [beaver_square_open(x, a)], "square")
        (c,) = yield Dealt()
        z = beaver_square_finish(self.index, eps, a, c)
        return (yield from _truncate(self.index, z, shift)) if shift else z

    def truncate(self, x: torch.Tensor, shift: int) -> Proto:
        return (yield from _truncate(self.index, x, shift))

    def supports(self, name: str) -> bool:
        return self.comparison and name in ("ge0", "max")

    def ge0(self, x: torch.Tensor, products: Sequence[torch.Tensor] = ()) -> Proto:
        if not self.comparison:
            raise NotImplementedError("ge0 needs secure comparison: comparison=False")
        return (yield from compare(self.index, x, products=list(products)))

    def max(self, x: torch.Tensor, dim: int) -> Proto:
        if not self.comparison:
            raise NotImplementedError("max needs secure comparison: comparison=False")
        return (yield from max_dim(self.index, x, dim)).unsqueeze(dim)


def _config(params: dict[str, Any]) -> tuple[ApproxConfig, bool, dict[str, Any]]:
    rest = dict(params)
    cfg = rest.pop("config", None) or DEFAULT
    if isinstance(cfg, dict):
        cfg = ApproxConfig(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in cfg.items()})
    return cfg, bool(rest.pop("comparison", True)), rest


def party_op(name: str, party_index: int, inputs: list[torch.Tensor],
             params: dict[str, Any]) -> Proto:
    """The protocol of approximation ``name`` (a key of ``FUNCTIONS``) for one party.

    ``params``: ``config`` (an :class:`ApproxConfig` or a dict of its fields),
    ``comparison`` (default true) and the function's own keywords (softmax's ``dim``).
    """
    fn = FUNCTIONS.get(name)
    if fn is None:
        raise ValueError(f"no approximation {name!r}; known: {', '.join(sorted(FUNCTIONS))}")
    if len(inputs) != 1:
        raise ValueError(f"{name} takes one input, got {len(inputs)}")
    cfg, comparison, kwargs = _config(params)
    ops = PartyOps(party_index, comparison=comparison)
    return fn(ops, inputs[0], cfg, **kwargs)


def _recording(protocol: Proto, log: list[tuple[str, dict[str, Any]]]) -> Proto:
    """``protocol`` unchanged, noting each dealer request it draws in ``log`` (what a
    real run draws, to check a plan against)."""
    try:
        step = next(protocol)
        while True:
            if isinstance(step, Draw):
                log.append((step.kind, dict(step.params)))
            step = protocol.send((yield step))
    except StopIteration as end:
        return end.value


def requests(name: str, shapes: Sequence[Sequence[int]], params: dict[str, Any]
             ) -> list[tuple[str, dict[str, Any]]]:
    """The dealer requests ``(kind, params)`` that approximation ``name`` draws, in order,
    for an input of ``shapes[0]``: found by running it on zeros as one party on its own
    (:func:`.simulate.plan`; the requests depend on shapes and settings only)."""
    zeros = torch.zeros(tuple(shapes[0]), dtype=torch.int64)
    return plan(party_op(name, 0, [zeros], params))
