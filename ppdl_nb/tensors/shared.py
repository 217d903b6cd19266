"""Additively secret-shared tensors: one share per party, each behind a pointer.

A :class:`SharedTensor` holds ring values (Z_2^64) split among N >= 2 parties; it never
holds a share itself, only a pointer to each. Linear operations run locally on every
share; multiplications run the Beaver protocol with a dealer (crypto provider) that is
a separate worker holding no shares. See :mod:`ppdl_nb.tensors.spdz_steps` for the steps
each party runs and who sends what to whom.

Between kernel workers a product is *fused*: the notebook asks the dealer and every
party at once, one request each, and the parties run both openings among themselves
(:class:`MPCSession`). ``session.deal_ahead(fn, times=n)`` is the offline phase: the
dealer's randomness for ``n`` more runs of ``fn``'s products is dealt beforehand.

>>> # x = ppdl_nb.share(a, bob, charlie, dealer=dave); w = ppdl_nb.share(b, ...)
>>> # x.child.session.deal_ahead(lambda: x @ w, times=10)   # offline
>>> # y = x @ w                                              # online: parties only

Most users meet it under a :class:`~ppdl_nb.tensors.fixed.FixedPrecisionTensor`
(``ppdl_nb.share(x, bob, charlie, dealer=dave)``), which encodes floats.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ppdl_nb import mpc
from ppdl_nb.tensors.chain import Link, chain_of, chain_text
from ppdl_nb.tensors.pointer import PointerTensor, _wrap
from ppdl_nb.tensors.shaped import Shaped
from ppdl_nb.workers.core import tracing
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.core.concurrent import concurrently

__all__ = ["MPCSession", "SharedTensor", "concurrently", "session_for"]


class MPCSession:
    """Parties, a dealer and a session id; hands out labels that are never reused.

    ``fused`` picks how a product runs (see :mod:`ppdl_nb.tensors.spdz_steps`): one
    request per party and one to the dealer, all at once, each party running both
    openings with its peers itself (``True``); or the notebook starting each round on
    each party in turn (``False``). The default fuses when every worker runs in its own
    process (kernel workers), where requests to different workers overlap; virtual
    workers go round by round, which is deterministic and shows each round in a trace.

    :meth:`deal_ahead` is SPDZ's offline phase: the dealer deals (and the parties draw)
    the randomness of products before they run, so they then run without the dealer.
    """

    def __init__(self, parties: Sequence[Any], dealer: Any, *, fused: bool | None = None
                 ) -> None:
        names = [p.name for p in parties]
        if len(parties) < 2:
            raise ValueError("secret sharing needs at least 2 parties")
        if len(set(names)) != len(names):
            raise ValueError(f"parties must be distinct workers, got {names}")
        if dealer is None:
            raise ValueError("a dealer (crypto provider) worker is needed for multiplication: "
                             "pass dealer=<a worker that is not a party>")
        if dealer.name in names:
            raise ValueError(f"the dealer {dealer.name} must not be one of the parties "
                             f"{names}: a dealer that holds shares learns the inputs")
        self.parties = list(parties)
        self.dealer = dealer
        self.id = os.urandom(8).hex()
        self._labels = itertools.count()
        self.rounds = 0
        if fused is None:
            fused = all(getattr(w, "kind", "virtual") != "virtual" for w in (*parties, dealer))
        self.fused = bool(fused)
        self._dealt: dict[str, collections.deque[tuple[bytes, bytes | None]]] = {}
        self._recording: list[tuple[str, dict[str, Any], int]] | None = None
        with tracing.round_label("setup: dealer seeds"):
            dealer.step("mpc.dealer_setup", session=self.id, parties=names)

    @property
    def n(self) -> int:
        return len(self.parties)

    def label(self) -> bytes:
        return f"{self.id}/{next(self._labels)}".encode()

    def on_each(self, step: str, per_party: Callable[[int], dict[str, Any]]) -> list[Any]:
        return [p.step(step, session=self.id, **per_party(i)) for i, p in enumerate(self.parties)]

    def fused_op(self, step: str, per_party: Callable[[int], dict[str, Any]],
                 deal: list[tuple[bytes, str, dict[str, Any]]]) -> list[Any]:
        """Ask the dealer for ``deal`` and every party to run ``step``, all at once; the
        parties' replies, in order. Each request travels on its worker's own connection."""
        calls = [(p, step, {"session": self.id, **per_party(i)})
                 for i, p in enumerate(self.parties)]
        if deal:
            calls.append((self.dealer, "mpc.deal",
                          {"session": self.id, "requests": deal, "fused": True}))
        return concurrently(calls)[: self.n]

    # ---- the offline phase ---------------------------------------------------------------
    def deal_ahead(self, fn: Callable[[], Any], *, times: int) -> int:
        """Offline phase: run ``fn()`` once, noting the products (and truncations) it
        makes among these parties; then have the dealer deal, and each party draw, the
        randomness of ``times`` more runs of them. Later products of the same kind and
        shapes use it and run without asking the dealer: only the parties' openings are
        left (SPDZ's online phase). Returns how many products were dealt ahead.

        Nothing about the data is dealt: only random masks for given shapes, each used
        once, whichever product of that kind and shape comes first.
        """
        if not isinstance(times, int) or times < 0:
            raise ValueError(f"times must be a non-negative int, got {times!r}")
        if self._recording is not None:
            raise RuntimeError("deal_ahead is already recording; do not nest it")
        self._recording = []
        try:
            fn()
        finally:
            recorded, self._recording = self._recording, None
        requests: list[tuple[bytes, str, dict[str, Any]]] = []
        for _ in range(times):
            for kind, params, trunc_bits in recorded:
                labels = self._labels_for(kind, params, trunc_bits)
                requests.extend(_requests(labels, kind, params, trunc_bits))
                self._dealt.setdefault(_signature(kind, params, trunc_bits),
                                       collections.deque()).append(labels)
        if requests:
            with tracing.round_label("offline: dealer and parties"):
                calls = [(p, "mpc.prepare", {"session": self.id, "requests": requests})
                         for p in self.parties]
                deal = (self.dealer, "mpc.deal", {"session": self.id, "requests": requests,
                                                  "fused": self.fused})
                if self.fused:
                    concurrently([*calls, deal])
                else:
                    for worker, name, kwargs in [deal, *calls]:
                        worker.step(name, **kwargs)
        return len(recorded) * times

    def _labels_for(self, kind: str, params: dict[str, Any], trunc_bits: int
                    ) -> tuple[bytes, bytes | None]:
        label = self.label()
        return label, (self.label() if trunc_bits and kind != "trunc" else None)

    def _take(self, kind: str, params: dict[str, Any], trunc_bits: int
              ) -> tuple[tuple[bytes, bytes | None], list[tuple[bytes, str, dict[str, Any]]]]:
        """Labels for one product, and what the dealer must deal now (nothing if it was
        dealt ahead)."""
        if self._recording is not None:
            self._recording.append((kind, params, trunc_bits))
        ready = self._dealt.get(_signature(kind, params, trunc_bits))
        if ready:
            return ready.popleft(), []
        labels = self._labels_for(kind, params, trunc_bits)
        return labels, _requests(labels, kind, params, trunc_bits)


def _signature(kind: str, params: dict[str, Any], trunc_bits: int) -> str:
    return json.dumps([kind, params, trunc_bits], sort_keys=True)


def _requests(labels: tuple[bytes, bytes | None], kind: str, params: dict[str, Any],
              trunc_bits: int) -> list[tuple[bytes, str, dict[str, Any]]]:
    """The dealer's requests for one product (and its truncation)."""
    label, tlabel = labels
    if kind == "trunc":
        return [(label, "trunc", params)]
    out = [(label, kind, params)]
    if tlabel is not None:
        out.append((tlabel, "trunc", {"shape": _out_shape(kind, params),
                                      "frac_bits": trunc_bits}))
    return out


_SESSIONS: dict[tuple[tuple[str, ...], str], MPCSession] = {}


def session_for(parties: Sequence[Any], dealer: Any) -> MPCSession:
    """The notebook's session for these parties and dealer (made once, reused)."""
    key = (tuple(p.name for p in parties), dealer.name if dealer is not None else "")
    sess = _SESSIONS.get(key)
    if sess is None or any(a is not b for a, b in zip(sess.parties, parties, strict=True)):
        sess = _SESSIONS[key] = MPCSession(parties, dealer)
    return sess


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
                                       "allow": list(allow)})
                shares.append(_wrap(party, reply, party.context))
        return cls(shares, session)

    @classmethod
    def from_pointer(cls, pointer: PointerTensor, session: MPCSession,
                     frac_bits: int) -> SharedTensor:
        """The pointer's owner encodes and shares its tensor; shares go straight to parties."""
        owner = pointer.location
        with tracing.round_label("share"):
            replies = owner.step("mpc.share_from", id=pointer.id_at_location,
                                 parties=[p.name for p in session.parties], frac_bits=frac_bits)
        shares = [_wrap(p, r, p.context) for p, r in zip(session.parties, replies, strict=True)]
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
            reply = worker.step("mpc.reconstruct", ids=[s.id_at_location for s in self.shares],
                                frac_bits=frac_bits)
        for s in self.shares:
            s.disown()  # consumed by the reconstruction
        return _wrap(worker, reply, worker.context)

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
        sess = self.session
        if other is not None:
            self._check_same(other)
        (label, tlabel), requests = sess._take(kind, params, trunc_bits)

        def operands(i: int) -> dict[str, Any]:
            return {"x": Ref(self.shares[i].id_at_location),
                    "y": Ref(other.shares[i].id_at_location) if other is not None else None}

        if sess.fused:
            with tracing.round_label(f"{kind}: start (dealer and parties at once)"):
                replies = sess.fused_op("mpc.bilinear", lambda i: {
                    "label": label, "kind": kind, "params": params, **operands(i),
                    "trunc_label": tlabel, "frac_bits": trunc_bits}, requests)
            sess.rounds += 2 if tlabel is not None else 1
            return self._from_replies(replies)
        if requests:
            with tracing.round_label(f"{kind}: dealer"):
                sess.dealer.step("mpc.deal", session=sess.id, requests=requests)
        with tracing.round_label(f"{kind}: open masked inputs"):
            sess.on_each("mpc.beaver_open", lambda i: {
                "label": label, "kind": kind, "params": params, **operands(i)})
        sess.rounds += 1
        with tracing.round_label(f"{kind}: finish" + (" + open for truncation" if tlabel
                                                      else "")):
            replies = sess.on_each("mpc.beaver_finish", lambda i: {
                "label": label, "trunc_label": tlabel, "frac_bits": trunc_bits})
        if tlabel is None:
            return self._from_replies(replies)
        sess.rounds += 1
        with tracing.round_label("truncate: finish"):
            replies = sess.on_each("mpc.trunc_finish", lambda i: {"label": tlabel})
        return self._from_replies(replies)

    def _from_replies(self, replies: list[Any]) -> SharedTensor:
        parts = [_wrap(p, r, p.context) for p, r in zip(self.session.parties, replies,
                                                         strict=True)]
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
        sess = self.session
        (label, _), deal = sess._take("trunc", {"shape": list(self.shape),
                                                "frac_bits": frac_bits}, frac_bits)
        if sess.fused:
            with tracing.round_label("truncate: start (dealer and parties at once)"):
                replies = sess.fused_op("mpc.truncate", lambda i: {
                    "label": label, "x": Ref(self.shares[i].id_at_location),
                    "frac_bits": frac_bits}, deal)
            sess.rounds += 1
            return self._from_replies(replies)
        if deal:
            with tracing.round_label("truncate: dealer"):
                sess.dealer.step("mpc.deal", session=sess.id, requests=deal)
        with tracing.round_label("truncate: open masked value"):
            sess.on_each("mpc.trunc_open", lambda i: {
                "label": label, "x": Ref(self.shares[i].id_at_location),
                "frac_bits": frac_bits})
        sess.rounds += 1
        with tracing.round_label("truncate: finish"):
            replies = sess.on_each("mpc.trunc_finish", lambda i: {"label": label})
        return self._from_replies(replies)


def _out_shape(kind: str, p: dict[str, Any]) -> list[int]:
    meta = torch.device("meta")
    if kind == "square":
        return list(p["shape"])
    x = torch.empty(p["x_shape"], device=meta)
    if kind == "mul":
        return list(torch.broadcast_shapes(tuple(p["x_shape"]), tuple(p["y_shape"])))
    if kind == "matmul":
        return list(torch.matmul(x, torch.empty(p["y_shape"], device=meta)).shape)
    w = torch.empty(p["w_shape"], device=meta)
    return list(torch.nn.functional.conv2d(x, w, stride=p["stride"], padding=p["padding"],
                                           dilation=p["dilation"], groups=p["groups"]).shape)


def _shared_chain(obj: SharedTensor) -> list[Link]:
    names = ", ".join(p.name for p in obj.session.parties)
    link = Link("SharedTensor", "me", shape=tuple(obj.shape),
                note=f"{obj.session.n} parties ({names}), dealer {obj.session.dealer.name}")
    link.children = [chain_of(s) for s in obj.shares]
    return [link]


chain_of.register(SharedTensor, _shared_chain)
