"""Independent protocols in lockstep: their openings share rounds.

Two ops that do not depend on each other (the weight gradient and the input gradient of
a layer; the truncations of every layer's update) need not wait for each other's
rounds. :func:`together` runs several one-party protocols (generators in the style of
:func:`.comparison.compare`) side by side: it passes their dealer requests through, and
whenever each still running protocol has reached an opening, it sends all of those as
**one** opening (one round, one message per peer) and hands each its part of the answer.
Openings merge when they combine alike (ring sums, or XOR words of one width); unlike
ones go in successive rounds.

>>> import torch
>>> from ppdl_nb.mpc import simulate as sim
>>> from ppdl_nb.mpc.nonlinear import relu, truncate
>>> xs = sim.share_float(torch.tensor([-1.0, 2.0]), 2)
>>> ys = [x * 4 for x in xs]  # 4x, to truncate by 2 bits
>>> t = sim.Traffic()
>>> out = sim.run_parties([together([relu(i, xs[i]), truncate(i, ys[i], 2)])
...                        for i in range(2)], t)
>>> [sim.reveal(list(r)).tolist() for r in zip(*out)], t.rounds
([[0.0, 2.0], [-1.0, 2.0]], 4)
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from ppdl_nb.mpc.comparison import Dealt, Draw, Opening

__all__ = ["together"]

Proto = Generator[Any, Any, Any]


def _until_opening(gen: Proto, value: Any, draws: list[int], count: list[int]
                   ) -> Generator[Any, Any, tuple[bool, Any]]:
    """Advance ``gen`` to its next opening (``(False, opening)``) or its end (``(True,
    result)``), passing its draws and dealt requests up; ``draws`` are the overall
    indices of its draws, ``count[0]`` how many draws all protocols made so far."""
    while True:
        try:
            step = gen.send(value)
        except StopIteration as end:
            return True, end.value
        if isinstance(step, Opening):
            return False, step
        if isinstance(step, Draw):
            draws.append(count[0])
            count[0] += 1
            value = yield step
        elif isinstance(step, Dealt):
            value = yield Dealt(count[0] - 1 - draws[-1 - step.back])
        else:
            raise TypeError(f"a protocol yielded {type(step).__name__}")


def together(protocols: Sequence[Proto]) -> Proto:
    """Run ``protocols`` side by side, their openings merged into shared rounds; their
    results, in order."""
    gens = list(protocols)
    results: list[Any] = [None] * len(gens)
    values: list[Any] = [None] * len(gens)
    draws: list[list[int]] = [[] for _ in gens]
    count = [0]
    active = list(range(len(gens)))
    while active:
        waiting: dict[int, Opening] = {}
        for k in active:
            finished, out = yield from _until_opening(gens[k], values[k], draws[k], count)
            if finished:
                results[k] = out
            else:
                waiting[k] = out
        active = list(waiting)
        while waiting:  # one round per kind of combination
            first = waiting[next(iter(waiting))]
            group = [k for k, o in waiting.items()
                     if (o.combine, o.width) == (first.combine, first.width)]
            shares = [t for k in group for t in waiting[k].shares]
            what = " + ".join(dict.fromkeys(waiting[k].what for k in group))
            opened = yield Opening(first.combine, shares, what, first.width)
            at = 0
            for k in group:
                size = len(waiting.pop(k).shares)
                values[k], at = list(opened[at:at + size]), at + size
    return results
