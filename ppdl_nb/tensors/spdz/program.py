"""A private model's forward as one program: each party runs every layer in one request.

Layer by layer, the notebook starts each operation on every party (a request per op per
party, and the dealer's requests with it). A *program* is the list of those operations,
sent once: each party runs them in turn with the routine cores of :mod:`.routines`
(Beaver products with exact truncation, the comparison protocols of
:mod:`ppdl_nb.mpc.nonlinear`) and the local ops below, every round peer to peer, while
the dealer deals the randomness of the whole program at once (or it was dealt ahead).
Nothing in a program is code: each step names an op of a fixed table and the slots it
reads (the inputs, then each step's result, in order).

A step is a dict:

* ``{"op": "bilinear", "kind": "matmul" | "conv2d" | "mul", "params": ..., "x": slot,
  "y": slot, "label": ..., "trunc_label": ..., "frac_bits": f}``
* ``{"op": "nonlinear", "fn": "relu" | "max_pool2d" | ..., "params": ..., "x": [slots],
  "label": ...}``
* ``{"op": "local", "fn": "add" | "t" | "reshape", "x": [slots], "params": ...}``

The routine returns the last slot's share and, per step, ``[rounds, bytes this party sent
for its openings, seconds]`` (the reply's ``extra``), so the notebook can chart a program
it did not drive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any

import torch

from ppdl_nb.mpc import nonlinear as mpc_nonlinear
from ppdl_nb.tensors.spdz.graph import build_steps, fingerprint, without_labels
from ppdl_nb.tensors.spdz.routines import (
    BILINEAR_KINDS,
    Instruction,
    Open,
    Party,
    Routine,
    drive,
    open_policy,
    product,
    routine,
    truncated,
)
from ppdl_nb.workers.core.policy import program_policy

__all__ = ["LOCAL_OPS", "MAX_STEPS", "counted", "program"]

MAX_STEPS = 10_000
LOCAL_OPS: dict[str, Callable[..., torch.Tensor]] = {  # linear or shape-only, on shares
    "add": lambda a, b: a + b,  # int64 wraps: the ring's addition
    "t": lambda a: a.t(),
    "reshape": lambda a, *, shape: a.reshape(shape),
}


def _slot(slots: list[torch.Tensor], ref: Any) -> torch.Tensor:
    if type(ref) is not int or not 0 <= ref < len(slots):
        raise ValueError(f"a program step reads slot {ref!r}, which does not exist yet")
    return slots[ref]


def _slots(slots: list[torch.Tensor], refs: Any) -> list[torch.Tensor]:
    if not isinstance(refs, list):
        raise TypeError("a program step's x is a list of slots")
    return [_slot(slots, r) for r in refs]


def _step(p: Party, st: Any, slots: list[torch.Tensor]
          ) -> Generator[Instruction, Any, torch.Tensor]:
    if not isinstance(st, dict):
        raise TypeError("a program step is a dict")
    op = st.get("op")
    if op == "bilinear":
        if st.get("kind") not in BILINEAR_KINDS or st["kind"] == "square":
            raise ValueError(f"a program's product is mul, matmul or conv2d, not "
                             f"{st.get('kind')!r}")
        z = yield from product(p, st["label"], st["kind"], st["params"],
                               _slot(slots, st["x"]), _slot(slots, st["y"]))
        if st.get("trunc_label") is not None:
            z = yield from truncated(p, st["trunc_label"], z, st["frac_bits"],
                                     f"{st['kind']}: open for truncation")
        return z
    if op == "nonlinear":
        protocol = mpc_nonlinear.party_op(st["fn"], p.index, _slots(slots, st["x"]),
                                          st.get("params", {}))
        return (yield from drive(p, st["label"], protocol))
    if op == "local":
        fn = LOCAL_OPS.get(st.get("fn"))
        if fn is None:
            raise ValueError(f"no local op {st.get('fn')!r}; known: {sorted(LOCAL_OPS)}")
        return fn(*_slots(slots, st["x"]), **st.get("params", {}))
    raise ValueError(f"no program op {op!r}: bilinear, nonlinear or local")


def counted(gen: Generator[Instruction, Any, Any], peers: int, stats: list[list[Any]]
            ) -> Generator[Instruction, Any, Any]:
    """``gen``'s instructions; appends ``[rounds, bytes this party's openings sent,
    seconds]`` to ``stats`` when it ends (a program's per-step figures)."""
    rounds, sent, start, value = 0, 0, time.perf_counter(), None
    while True:
        try:
            instruction = gen.send(value)
        except StopIteration as end:
            stats.append([rounds, sent, time.perf_counter() - start])
            return end.value
        if isinstance(instruction, Open):
            rounds += 1
            sent += peers * sum(t.numel() * t.element_size() for t in instruction.shares)
        value = yield instruction


@routine("program")
def program(p: Party, *, label: bytes, steps: list[Any], inputs: list[Any],
            graph: list[Any] | None = None, owner: str = "me", frac_bits: int = 16
            ) -> Routine:
    """Run ``steps`` (see the module) on this party's shares of ``inputs``; its share of
    the last step's result, readable by whoever may read every input. With ``graph``
    (:mod:`.graph`), the steps must be the graph's, and readers the input owners allowed
    for that graph (its fingerprint, with the weights' ``owner``) read the result too."""
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_STEPS:
        raise ValueError(f"a program has 1 to {MAX_STEPS} steps")
    entries = [p.entry(ref, "a program input") for ref in inputs]
    slots = [e.obj for e in entries]
    readers = open_policy(entries)
    if graph is not None:
        if type(frac_bits) is not int or not isinstance(owner, str):
            raise TypeError("frac_bits is an int and owner the weights' owner's name")
        expected, _, _ = build_steps(graph, list(slots[0].shape),
                                     [list(t.shape) for t in slots[1:]], frac_bits)
        if without_labels(steps) != without_labels(expected):
            raise ValueError("the program's steps are not its graph's: a forward runs the "
                             "steps its graph makes (ppdl_nb.tensors.spdz.graph)")
        fp = fingerprint(graph, owner, frac_bits)
        readers = frozenset(program_policy([e.policy for e in entries], fp).readers or ())
    stats: list[list[Any]] = []
    for st in steps:
        slots.append((yield from counted(_step(p, st, slots), p.session.n - 1, stats)))
    return slots[-1], readers, stats
