"""Additively secret-shared tensors: one share per party, each behind a pointer.

A :class:`SharedTensor` holds ring values (Z_2^64) split among N >= 2 parties; it never
holds a share itself, only a pointer to each. Linear operations run locally on every
share; multiplications and truncations are operations of :mod:`ppdl_nb.tensors.spdz`:
one routine each, which every party runs (:mod:`~ppdl_nb.tensors.spdz.routines`), with
a dealer (crypto provider) that is a separate worker holding no shares.

Between kernel workers an operation is *fused*: the notebook asks the dealer and every
party at once, one request each, and the parties run its rounds among themselves;
virtual workers go round by round (:mod:`~ppdl_nb.tensors.spdz.session`).
``session.deal_ahead(fn, times=n)`` is the offline phase: the dealer's randomness for
``n`` more runs of ``fn``'s products is dealt beforehand.

>>> # x = ppdl_nb.share(a, bob, charlie, dealer=dave); w = ppdl_nb.share(b, ...)
>>> # x.child.session.deal_ahead(lambda: x @ w, times=10)   # offline
>>> # y = x @ w                                              # online: parties only

Most users meet it under a :class:`~ppdl_nb.tensors.fixed.FixedPrecisionTensor`
(``ppdl_nb.share(x, bob, charlie, dealer=dave)``), which encodes floats.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ppdl_nb import mpc
from ppdl_nb.tensors.chain import Link, chain_of, chain_text
from ppdl_nb.tensors.pointer import PointerTensor, wrap_reply
from ppdl_nb.tensors.shaped import Shaped
from ppdl_nb.tensors.spdz.session import NONLINEAR, MPCSession, session_for
from ppdl_nb.tensors.spdz.steps import reconstruct, share_from
from ppdl_nb.workers.core import tracing
from ppdl_nb.workers.core.codec import Ref

__all__ = ["MPCSession", "SharedTensor", "session_for"]


class SharedTensor(Shaped):
    """A ring tensor shared among the session's parties (pointers to the shares)."""

    NO_TRUTH = ("no party knows a shared value, so Python cannot branch on it; open it with "
                ".get() if you are allowed to, and test the plain tensor")

    def __init__(self, shares: Sequence[PointerTensor], session: MPCSession) -> None:
        if len(shares) != session.n:
            raise ValueError(f"{len(shares)} shares for {session.n} parties")
        self.shares = list(shares)
        self.session = session

    # ---- creation ------------------------------------------------------------------------
    @classmethod
    def from_ring(cls, value: torch.Tensor, session: MPCSession,
                  allow: Sequence[str] = ("me",)) -> SharedTensor:
        """Share a local ring tensor: the notebook makes the shares and sends one to each."""
        parts = mpc.share(value, session.n, mpc.PRG())
        shares = []
        with tracing.round_label("share"):
            for party, part in zip(session.parties, parts, strict=True):
                reply = party.request({"kind": "store", "obj": part, "private": True,
                                       "allow": list(allow), "permits": ["share"]})
                shares.append(wrap_reply(party, reply, party.context))
        return cls(shares, session)

    @classmethod
    def from_pointer(cls, pointer: PointerTensor, session: MPCSession,
                     frac_bits: int) -> SharedTensor:
        """The pointer's owner encodes and shares its tensor; shares go straight to parties."""
        owner = pointer.location
        with tracing.round_label("share"):
            replies = share_from.on(owner, id=pointer.id_at_location,
                                    parties=[p.name for p in session.parties],
                                    frac_bits=frac_bits)
        shares = [wrap_reply(p, r, p.context)
                  for p, r in zip(session.parties, replies, strict=True)]
        return cls(shares, session)

    # ---- facts ---------------------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self.shares[0].shape

    def __repr__(self) -> str:
        return chain_text(self)

    def get(self) -> torch.Tensor:
        """Open the value here: fetch every share (refused unless the owners allow it)."""
        return mpc.reconstruct([s.get() for s in self.shares])

    def reveal_to(self, worker: Any, *, frac_bits: int | None = None) -> PointerTensor:
        """Open the value on ``worker`` only: every share moves there (refused unless the
        owners allowed ``worker``), which sums them; the notebook sees none of them."""
        for s in self.shares:
            s.move(worker)
        with tracing.round_label("reveal"):
            reply = reconstruct.on(worker, ids=[s.id_at_location for s in self.shares],
                                   frac_bits=frac_bits)
        for s in self.shares:
            s.disown()  # consumed by the reconstruction
        return wrap_reply(worker, reply, worker.context)

    # ---- local (linear) operations -------------------------------------------------------
    def _local(self, fn: Callable[..., Any], *others: Any) -> SharedTensor:
        parts = []
        for i, s in enumerate(self.shares):
            args = [o.shares[i] if isinstance(o, SharedTensor) else o for o in others]
            parts.append(fn(s, *args))
        return SharedTensor(parts, self.session)

    def _check_same(self, other: SharedTensor) -> None:
        if other.session is not self.session:
            raise ValueError("shared tensors of different parties or dealers cannot be combined; "
                             "share both among the same parties with the same dealer")

    def add(self, other: SharedTensor) -> SharedTensor:
        self._check_same(other)
        return self._local(torch.add, other)

    def sub(self, other: SharedTensor) -> SharedTensor:
        self._check_same(other)
        return self._local(torch.sub, other)

    def neg(self) -> SharedTensor:
        return self._local(torch.neg)

    def add_public(self, value: torch.Tensor) -> SharedTensor:
        """Add a public ring value: only party 0 adds it."""
        parts = [s + value if i == 0 else s for i, s in enumerate(self.shares)]
        return SharedTensor(parts, self.session)

    def mul_public(self, value: torch.Tensor | int) -> SharedTensor:
        """Multiply by a public ring value (no truncation)."""
        return self._local(torch.mul, value)

    def apply(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> SharedTensor:
        """A linear, shape-only op on every share (reshape, transpose, index, sum, ...)."""
        return self._local(lambda s: fn(s, *args, **kwargs))

    @staticmethod
    def combine(fn: Callable[..., Any], tensors: Sequence[SharedTensor], **kwargs: Any
                ) -> SharedTensor:
        """cat/stack of shared tensors, share by share."""
        first = tensors[0]
        for t in tensors[1:]:
            first._check_same(t)
        parts = [fn([t.shares[i] for t in tensors], **kwargs) for i in range(first.session.n)]
        return SharedTensor(parts, first.session)

    # ---- Beaver multiplication and truncation ---------------------------------------------
    def _bilinear(self, kind: str, other: SharedTensor | None, params: dict[str, Any],
                  trunc_bits: int) -> SharedTensor:
        if other is not None:
            self._check_same(other)
        (label, tlabel), deal_now = self.session.take(kind, params, trunc_bits)

        def args(i: int) -> dict[str, Any]:
            return {"label": label, "kind": kind, "params": params,
                    "x": Ref(self.shares[i].id_at_location),
                    "y": Ref(other.shares[i].id_at_location) if other is not None else None,
                    "trunc_label": tlabel, "frac_bits": trunc_bits}

        return self._from_replies(self.session.run("bilinear", args, deal_now, name=kind))

    def _from_replies(self, replies: list[dict[str, Any]]) -> SharedTensor:
        parts = [wrap_reply(p, r["result"], p.context)
                 for p, r in zip(self.session.parties, replies, strict=True)]
        return SharedTensor(parts, self.session)

    def mul(self, other: SharedTensor, *, trunc_bits: int = 0) -> SharedTensor:
        shapes = {"x_shape": list(self.shape), "y_shape": list(other.shape)}
        return self._bilinear("mul", other, shapes, trunc_bits)

    def matmul(self, other: SharedTensor, *, trunc_bits: int = 0) -> SharedTensor:
        shapes = {"x_shape": list(self.shape), "y_shape": list(other.shape)}
        return self._bilinear("matmul", other, shapes, trunc_bits)

    def conv2d(self, weight: SharedTensor, *, trunc_bits: int = 0, stride: Any = 1,
               padding: Any = 0, dilation: Any = 1, groups: int = 1) -> SharedTensor:
        params = {"x_shape": list(self.shape), "w_shape": list(weight.shape), "stride": stride,
                  "padding": padding, "dilation": dilation, "groups": groups}
        return self._bilinear("conv2d", weight, params, trunc_bits)

    def square(self, *, trunc_bits: int = 0) -> SharedTensor:
        return self._bilinear("square", None, {"shape": list(self.shape)}, trunc_bits)

    def truncate(self, frac_bits: int) -> SharedTensor:
        """Divide by 2^frac_bits exactly (to one unit in the last place): one round."""
        (label, _), deal_now = self.session.take(
            "trunc", {"shape": list(self.shape), "frac_bits": frac_bits}, frac_bits)

        def args(i: int) -> dict[str, Any]:
            return {"label": label, "x": Ref(self.shares[i].id_at_location),
                    "frac_bits": frac_bits}

        return self._from_replies(self.session.run("truncate", args, deal_now,
                                                   name="truncate"))

    # ---- secure comparison and what is built on it ----------------------------------------
    def nonlinear(self, fn: str, *others: SharedTensor, **params: Any) -> SharedTensor:
        """Op ``fn`` of :mod:`ppdl_nb.mpc.nonlinear` (``cmp`` with ``op="lt"``, ``relu``,
        ``max`` with ``dim``, ``max_pool2d``, ...) on this and ``others``: the parties run
        its comparisons (4 rounds each), the dealer deals their randomness (now, or ahead
        with ``session.deal_ahead``). Tests give integer 0/1 shares, values stay in their
        encoding; ``max`` stacks values and indices."""
        for o in others:
            self._check_same(o)
        inputs = [self, *others]
        shapes = [list(t.shape) for t in inputs]
        (label, _), deal_now = self.session.take(NONLINEAR + fn,
                                                 {"shapes": shapes, "params": params}, 0)

        def args(i: int) -> dict[str, Any]:
            return {"label": label, "fn": fn, "params": params,
                    "x": [Ref(t.shares[i].id_at_location) for t in inputs]}

        return self._from_replies(self.session.run("nonlinear", args, deal_now, name=fn))


def _shared_chain(obj: SharedTensor) -> list[Link]:
    names = ", ".join(p.name for p in obj.session.parties)
    link = Link("SharedTensor", "me", shape=tuple(obj.shape),
                note=f"{obj.session.n} parties ({names}), dealer {obj.session.dealer.name}")
    link.children = [chain_of(s) for s in obj.shares]
    return [link]


chain_of.register(SharedTensor, _shared_chain)
