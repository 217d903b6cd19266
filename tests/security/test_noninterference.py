"""Non-interference: what the notebook sees does not depend on a private value.

Hypothesis writes a random program over one private tensor and some public ones:
arithmetic, in-place ops, views, ``out=``, indexing with computed indices, boolean
masks, reductions, an autograd backward and a protocol step, each as the raw message
the notebook may send. The program runs twice on fresh workers, with two different
private values and identical public inputs. Every reply (a result's metadata, or an
error's type), every fetch at the end (value or error type) must be the same in both
runs: the program declares no release, so nothing may tell the two secrets apart.
"""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from ppdl_nb.workers.transport.virtual import VirtualNetwork, VirtualWorker

from .attacks import SECRET, Ref

SECOND_SECRET = torch.tensor([[0.5, 1.25, -0.25], [1.5, -0.25, -0.5]])  # in range, 3 > 0
PUBLIC = {
    "a": torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]),
    "g": torch.ones(2, 3).requires_grad_(),
    "z": torch.zeros(6),
    "l": torch.arange(5),
}

BINOPS = ("torch.add", "torch.mul", "torch.sub", "torch.maximum")
INPLACE = ("Tensor.add_", "Tensor.mul_", "Tensor.sub_")
VIEWS = {"view6": ("Tensor.view", [6]), "t": ("Tensor.t", []),
         "row": ("Tensor.__getitem__", [0]), "reshape": ("Tensor.reshape", [3, 2]),
         "flatten": ("Tensor.flatten", [])}
REDUCE = ("torch.sum", "torch.mean", "Tensor.max", "torch.argmax")

slot = st.integers(0, 63)
op = st.one_of(
    st.tuples(st.just("binop"), st.sampled_from(BINOPS), slot, slot),
    st.tuples(st.just("inplace"), st.sampled_from(INPLACE), slot, slot),
    st.tuples(st.just("view"), st.sampled_from(sorted(VIEWS)), slot),
    st.tuples(st.just("out"), st.sampled_from(BINOPS[:3]), slot, slot, slot),
    st.tuples(st.just("reduce"), st.sampled_from(REDUCE), slot),
    st.tuples(st.just("index"), slot),
    st.tuples(st.just("mask"), slot, slot),
    st.tuples(st.just("backward"), slot),
    st.tuples(st.just("step"), slot),
)
programs = st.lists(op, min_size=1, max_size=8)
# a value computed from pool[i] used where torch wants a size (repeat's count)
sized_programs = st.lists(st.one_of(op, st.tuples(st.just("size"), slot)), min_size=1,
                          max_size=8)


class Run:
    """One execution of a program: alice, the pool of ids the notebook knows, what it saw."""

    def __init__(self, secret: torch.Tensor) -> None:
        self.alice = VirtualWorker("alice", network=VirtualNetwork())
        self.shapes: dict[int, Any] = {}
        self.pool: list[int] = [self._store(secret.clone(), private=True)]
        self.pool += [self._store(v.clone().requires_grad_(v.requires_grad))
                      for v in PUBLIC.values()]
        self.seen: list[Any] = []

    def _store(self, value: torch.Tensor, private: bool = False) -> int:
        reply = self.alice.request({"kind": "store", "obj": value, "private": private})
        self.shapes[reply["id"]] = list(value.shape)  # id -> shape, as the notebook saw it
        return reply["id"]

    def ref(self, i: int) -> Ref:
        return Ref(self.pool[i % len(self.pool)])

    def send(self, msg: dict[str, Any]) -> Any:
        """Send one message; record its reply as the notebook sees it; new ids join the pool."""
        try:
            reply = self.alice.request(msg)
        except Exception as exc:
            self.seen.append(("error", type(exc).__name__))
            return None
        self.seen.append(("ok", _visible(reply)))
        for item in reply if isinstance(reply, list) else [reply]:
            if isinstance(item, dict) and isinstance(item.get("id"), int):
                self.pool.append(item["id"])
                self.shapes[item["id"]] = (item.get("meta") or {}).get("shape")
        return reply

    def call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        return self.send({"kind": "call", "fn": fn, "args": list(args), "kwargs": kwargs})

    def run(self, program: list[tuple]) -> list[Any]:
        for step in program:
            self.execute(step)
        for obj_id in list(self.pool):  # finally: try to read everything the notebook knows
            self.send({"kind": "fetch", "id": obj_id, "keep": True})
        return self.seen

    def execute(self, step: tuple) -> None:
        kind, *rest = step
        if kind == "binop":
            fn, i, j = rest
            self.call(fn, self.ref(i), self.ref(j))
        elif kind == "inplace":
            fn, i, j = rest
            self.call(fn, self.ref(i), self.ref(j))
        elif kind == "view":
            fn, args = VIEWS[rest[0]]
            self.call(fn, self.ref(rest[1]), *args)
        elif kind == "out":
            fn, i, j, k = rest
            shapes = {repr(self.shapes.get(self.ref(n).id, "?")) for n in (i, j, k)}
            if len(shapes) == 1:  # out= that would resize its target reads freed memory
                self.call(fn, self.ref(i), self.ref(j), out=self.ref(k))
        elif kind == "reduce":
            fn, i = rest
            self.call(fn, self.ref(i))
        elif kind == "index":  # a public tensor indexed by an index computed from pool[i]
            scaled = self.call("torch.mul", self.ref(rest[0]), 2)
            idx = scaled and self.call("Tensor.long", Ref(scaled["id"]))
            if idx:
                self.call("Tensor.__getitem__", Ref(self.pool[4]), Ref(idx["id"]))
        elif kind == "mask":
            i, j = rest
            cond = self.call("torch.gt", self.ref(j), 0)
            if cond:
                self.call("Tensor.__getitem__", self.ref(i), Ref(cond["id"]))
        elif kind == "backward":  # through the public leaf g; then read g.grad
            prod = self.call("torch.mul", Ref(self.pool[2]), self.ref(rest[0]))
            total = prod and self.call("torch.sum", Ref(prod["id"]))
            if total:
                self.call("Tensor.backward", Ref(total["id"]))
                self.call("attr", Ref(self.pool[2]), "grad")
        elif kind == "size":  # argmax of pool[i] (a long scalar) as a repeat count
            k = self.call("torch.argmax", self.ref(rest[0]))
            if k:
                self.call("Tensor.repeat", Ref(self.pool[4]), Ref(k["id"]))
        elif kind == "step":
            self.send({"kind": "step", "name": "fl.aggregate",
                       "kwargs": {"updates": [self.ref(rest[0])]}})


def _visible(reply: Any) -> Any:
    if isinstance(reply, torch.Tensor):
        return ("tensor", str(reply.dtype), tuple(reply.shape), repr(reply.tolist()))
    if isinstance(reply, dict):
        return {k: _visible(v) for k, v in reply.items()}
    if isinstance(reply, list | tuple):
        return [_visible(v) for v in reply]
    return reply


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],  # no shrinking: the examples say enough
          suppress_health_check=[HealthCheck.too_slow])
@given(programs)
@example([("view", "t", 1), ("inplace", "Tensor.add_", 1, 0)])  # a view, then in place
@example([("out", "torch.add", 0, 1, 1)])  # out= into a public tensor
@example([("backward", 0)])  # a public leaf's .grad
@example([("step", 0)])  # a protocol step on the private tensor
@example([("index", 0)])  # an index computed from the private value
@example([("mask", 1, 0)])  # a mask's shape counts private entries
def test_the_notebooks_view_does_not_depend_on_the_private_value(program):
    first = Run(SECRET).run(program)
    second = Run(SECOND_SECRET).run(program)
    for n, (a, b) in enumerate(zip(first, second, strict=True)):
        assert a == b, f"reply {n} differs with the private value: {a} vs {b}"


@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow])
@given(sized_programs)
@example([("size", 0)])
def test_the_notebooks_view_does_not_depend_on_private_sizes(program):
    first = Run(SECRET).run(program)
    second = Run(SECOND_SECRET).run(program)
    for n, (a, b) in enumerate(zip(first, second, strict=True)):
        assert a == b, f"reply {n} differs with the private value: {a} vs {b}"


def test_sanity_public_programs_are_deterministic():
    program = [("binop", "torch.add", 1, 1), ("inplace", "Tensor.mul_", 5, 1),
               ("view", "t", 5), ("reduce", "torch.sum", 6)]
    assert Run(SECRET).run(program) == Run(SECRET).run(program)
