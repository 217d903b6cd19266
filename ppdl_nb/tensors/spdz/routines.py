"""Each SPDZ operation, written once: the routine one party runs, as a generator.

A routine computes with the protocol math of :mod:`ppdl_nb.mpc` and *yields* wherever it
needs the other parties; it never sends anything itself:

* ``opened = yield Open(label, shares, round)``: send this party's shares of values to
  every peer, get back the opened values (the sums of everyone's). One round.
* ``derived = yield Derived(label)``: this party's shares of the dealer's derived values
  (``c`` of a triple; ``r >> f``, ``msb(r)`` of a truncation mask): drawn from its seed,
  or, for the last party, the dealer's correction.

It returns this party's share of the result and who may open it. The runner
(:mod:`.runner`) executes the instructions: it sends the openings, waits for the peers'
(fused) or hands back to the notebook until the next round (round by round), and counts
the rounds. Routines are registered by name (:func:`routine`); the arguments that name
dealer requests end in ``label`` (a party that fails tells its peers which labels stop).
Their cores take tensors, not references, so a program of several operations is a
routine that ``yield from``-s them in turn.

>>> {'bilinear', 'nonlinear', 'truncate'} <= set(ROUTINES)
True
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import torch

from ppdl_nb import mpc
from ppdl_nb.mpc import beaver
from ppdl_nb.mpc import nonlinear as mpc_nonlinear
from ppdl_nb.mpc.bits import pack_words, unpack_words
from ppdl_nb.mpc.comparison import Dealt, Draw, Opening
from ppdl_nb.mpc.dealer import expand_parts
from ppdl_nb.tensors.spdz.state import PartySession, SPDZState
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.core.store import Entry

__all__ = ["BILINEAR_KINDS", "ROUTINES", "Derived", "Open", "Party", "open_policy", "routine"]

BILINEAR_KINDS = ("mul", "matmul", "conv2d", "square")
_CONV_KEYS = ("stride", "padding", "dilation", "groups")


@dataclass(frozen=True)
class Open:
    """Open values: send this party's shares of them to every peer; the sums come back."""

    label: bytes
    shares: list[torch.Tensor]
    round: str  # the round's name in traces


@dataclass(frozen=True)
class Derived:
    """This party's shares of the derived values of the dealer's request ``label``."""

    label: bytes


Instruction = Open | Derived
Routine = Generator[Instruction, list[torch.Tensor], tuple[torch.Tensor, frozenset[str]]]
ROUTINES: dict[str, Callable[..., Routine]] = {}


def routine(name: str) -> Callable[[Callable[..., Routine]], Callable[..., Routine]]:
    """Register ``fn(party, **args)`` as the routine of operation ``name``."""

    def register(fn: Callable[..., Routine]) -> Callable[..., Routine]:
        if name in ROUTINES:
            raise ValueError(f"SPDZ routine {name!r} is already registered")
        ROUTINES[name] = fn
        return fn

    return register


class Party:
    """What a routine may use of its worker: its place in the session, the shares it
    holds, and the randomness it draws from the seed it shares with the dealer."""

    def __init__(self, name: str, store: Any, state: SPDZState, session: PartySession) -> None:
        self.name = name
        self.store = store
        self.state = state
        self.session = session

    @property
    def index(self) -> int:
        return self.session.index

    def entry(self, ref: Any, what: str) -> Entry:
        if not isinstance(ref, Ref):
            raise TypeError(f"{what} must be a reference to a share on {self.name}")
        return self.store.entry(ref.id)

    def draw(self, label: bytes, kind: str, params: dict[str, Any]) -> list[torch.Tensor]:
        """Its shares of request ``label``'s random inputs (drawn now, or ahead by
        ``mpc.prepare``); its shares of the derived ones wait in the label's record."""
        pend = self.state.pending_for(label)
        if pend.kind is not None:
            if pend.ahead is None:
                raise ValueError(f"{self.name} already used the randomness of label "
                                 f"{label!r}; a label is used once")
            if (pend.kind, pend.params) != (kind, params):
                raise ValueError(f"{self.name} drew randomness for a {pend.kind} "
                                 f"{pend.params} under this label, not for {kind} {params}")
            bases, pend.ahead = pend.ahead, None
            return bases
        s = self.session
        bases, pend.derived = expand_parts(kind, s.seed, label, s.index, s.n, **params)
        pend.kind, pend.params = kind, params
        return bases


def open_policy(entries: list[Entry]) -> frozenset[str]:
    """Who may open a result: those allowed to open every input."""
    return frozenset.intersection(*[e.allowed for e in entries])


# ---- the operations ------------------------------------------------------------------------
def product(p: Party, label: bytes, kind: str, params: dict[str, Any], x: torch.Tensor,
            y: torch.Tensor | None) -> Generator[Instruction, Any, torch.Tensor]:
    """Beaver: this party's share of ``x op y`` (``x * x`` for ``square``); one round."""
    bases = p.draw(label, kind, params)
    if kind == "square":
        masked = [beaver.beaver_square_open(x, bases[0])]
    else:
        masked = list(mpc.beaver_open(x, y, bases[0], bases[1]))
    opened = yield Open(label, masked, f"{kind}: open masked inputs")
    if kind == "square":
        z = beaver.beaver_square_cross_terms(p.index, opened[0], bases[0])
    else:  # the expensive products run while the dealer's c may still be on its way
        conv = {k: v for k, v in params.items() if k in _CONV_KEYS}
        z = beaver.beaver_cross_terms(kind, p.index, opened[0], opened[1], bases[0], bases[1],
                                      **conv)
    (c,) = yield Derived(label)
    return beaver.add_c(z, c)


def truncated(p: Party, label: bytes, x: torch.Tensor, frac_bits: int, round: str
              ) -> Generator[Instruction, Any, torch.Tensor]:
    """This party's share of ``x / 2^frac_bits`` (exact to one unit); one round."""
    (r,) = p.draw(label, "trunc", {"shape": list(x.shape), "frac_bits": frac_bits})
    (masked,) = yield Open(label, [mpc.trunc_open(p.index, x, r)], round)
    r_hi, r_msb = yield Derived(label)
    return mpc.trunc_finish(p.index, masked, r_hi, r_msb, frac_bits)


@routine("bilinear")
def bilinear(p: Party, *, label: bytes, kind: str, params: dict[str, Any], x: Ref,
             y: Ref | None = None, trunc_label: bytes | None = None, frac_bits: int = 0
             ) -> Routine:
    """A product (``mul``, ``matmul``, ``conv2d``, ``square``) of shares ``x`` and ``y``,
    truncated by ``frac_bits`` with the mask of ``trunc_label`` if given: two rounds."""
    if kind not in BILINEAR_KINDS:
        raise ValueError(f"kind must be one of {', '.join(BILINEAR_KINDS)}, got {kind!r}")
    inputs = [p.entry(x, "x")] + ([] if kind == "square" else [p.entry(y, "y")])
    z = yield from product(p, label, kind, params, inputs[0].obj,
                           inputs[1].obj if len(inputs) > 1 else None)
    if trunc_label is not None:
        z = yield from truncated(p, trunc_label, z, frac_bits, f"{kind}: open for truncation")
    return z, open_policy(inputs)


@routine("truncate")
def truncate(p: Party, *, label: bytes, x: Ref, frac_bits: int) -> Routine:
    """Divide share ``x`` by ``2^frac_bits`` (after a public multiplication): one round."""
    xe = p.entry(x, "x")
    z = yield from truncated(p, label, xe.obj, frac_bits, "truncate: open masked value")
    return z, open_policy([xe])


def sub_label(label: bytes, what: str, k: int) -> bytes:
    """The label of an op's ``k``-th dealer request (``what="d"``) or opening (``"o"``)."""
    return label + f"/{what}{k}".encode()


def drive(p: Party, label: bytes, protocol: Generator[Any, Any, Any]
          ) -> Generator[Instruction, Any, Any]:
    """Run a protocol of :mod:`ppdl_nb.mpc` (``comparison.compare`` and what is built on
    it) as this routine's instructions: its k-th dealer request is ``label/dk``, its j-th
    opening ``label/oj``; XOR-shared bits travel packed (a ``uint8`` opening is XORed)."""
    value, opens, drawn = None, 0, []
    while True:
        try:
            step = protocol.send(value)
        except StopIteration as end:
            return end.value
        if isinstance(step, Draw):
            drawn.append(sub_label(label, "d", len(drawn)))
            value = p.draw(drawn[-1], step.kind, step.params)
        elif isinstance(step, Dealt):
            value = yield Derived(drawn[-1 - step.back])
        elif isinstance(step, Opening) and step.combine == "xor":
            shapes = [t.shape for t in step.shares]
            flat = torch.cat([t.reshape(-1) for t in step.shares])
            (packed,) = yield Open(sub_label(label, "o", opens), [pack_words(flat, step.width)],
                                   step.what)
            words = unpack_words(packed, flat.shape, step.width)
            value = [w.reshape(sh) for w, sh in zip(
                torch.split(words, [sh.numel() for sh in shapes]), shapes, strict=True)]
            opens += 1
        elif isinstance(step, Opening):
            value = yield Open(sub_label(label, "o", opens), list(step.shares), step.what)
            opens += 1
        else:
            raise TypeError(f"a protocol yielded {type(step).__name__}")


@routine("nonlinear")
def nonlinear(p: Party, *, label: bytes, fn: str, x: list[Ref], params: dict[str, Any]
              ) -> Routine:
    """A comparison-based op of :mod:`ppdl_nb.mpc.nonlinear` (``cmp``, ``relu``, ``max``,
    ``max_pool2d``, ...) on shares ``x``: 4 rounds per comparison in sequence."""
    if not isinstance(x, list) or not 1 <= len(x) <= 2:
        raise TypeError("x must be a list of one or two references to shares")
    entries = [p.entry(r, "x") for r in x]
    protocol = mpc_nonlinear.party_op(fn, p.index, [e.obj for e in entries], params)
    z = yield from drive(p, label, protocol)
    return z, open_policy(entries)
