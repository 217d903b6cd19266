"""The notebook's side of an MPC session: parties, a dealer, labels, and running operations.

:meth:`MPCSession.run` runs one operation's routine (:mod:`.routines`) on every party,
with the dealer's requests for it, in one of two choreographies of the same routine:

**Fused** (kernel workers: the default where every worker runs in its own process). One
request to each party and one to the dealer, all at once; each party runs the whole
operation, waiting for its peers' messages itself::

    notebook -> D    mpc.deal    D sends the last party its corrections
    notebook -> Pi   mpc.run     Pi sends (x_i - a_i, y_i - b_i) to every Pj, waits for
                                 theirs, computes its share of x*y, sends it masked for
                                 truncation to every Pj, waits for theirs, stores its
                                 share of z; the notebook gets a pointer

The dealer's round leaves the critical path (parties draw ``a_i, b_i`` from seeds and
need the last party's correction only when adding ``c``), and the notebook's requests
overlap.

**Round by round** (virtual workers: deterministic, each round visible in a trace). The
dealer first, then the notebook starts each round on every party in turn::

    notebook -> D    mpc.deal     D sends the last party its corrections
    notebook -> Pi   mpc.run      Pi sends (x_i - a_i, y_i - b_i) to every Pj
    notebook -> Pi   mpc.resume   Pi computes its share of x*y, sends it masked for
                                  truncation to every Pj
    notebook -> Pi   mpc.resume   Pi stores its share of z; the notebook gets a pointer

Both send the same openings and corrections; only who starts each round differs. The
parties count the rounds they run and say so in their replies; ``session.rounds`` adds
them up.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ppdl_nb.mpc import nonlinear as mpc_nonlinear
from ppdl_nb.tensors.spdz import runner, steps
from ppdl_nb.tensors.spdz.routines import sub_label
from ppdl_nb.tensors.spdz.steps import Requests
from ppdl_nb.workers.core import tracing
from ppdl_nb.workers.core.concurrent import concurrently
from ppdl_nb.workers.core.messages import Step

__all__ = ["NONLINEAR", "MPCSession", "session_for"]

Labels = tuple[bytes, bytes | None]  # an operation's label, and its truncation's


class MPCSession:
    """Parties, a dealer and a session id; hands out labels that are never reused.

    ``fused`` picks the choreography of :meth:`run` (see the module): ``True`` where
    every worker runs in its own process (kernel workers), where requests to different
    workers overlap; virtual workers go round by round, which is deterministic and shows
    each round in a trace. ``rounds`` counts the opening rounds the parties ran.

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
        self._dealt: dict[str, collections.deque[Labels]] = {}
        self._recording: list[tuple[str, dict[str, Any], int]] | None = None
        with tracing.round_label("setup: dealer seeds"):
            steps.dealer_setup.on(dealer, session=self.id, parties=names)

    @property
    def n(self) -> int:
        return len(self.parties)

    def label(self) -> bytes:
        return f"{self.id}/{next(self._labels)}".encode()

    # ---- running an operation ------------------------------------------------------------
    def run(self, op: str, args: Callable[[int], dict[str, Any]], deal_now: Requests, *,
            name: str) -> list[dict[str, Any]]:
        """Run operation ``op`` with ``args(i)`` on party ``i``, the dealer dealing
        ``deal_now`` for it; each party's last reply (``result``: its share, stored
        there). ``name`` names the operation in traces."""
        go = self._fused if self.fused else self._round_by_round
        replies = go(op, args, deal_now, name)
        self.rounds += sum(r[0]["rounds"] for r in replies)  # as party 0 counted them
        return replies[-1]

    def _fused(self, op: str, args: Callable[[int], dict[str, Any]], deal_now: Requests,
               name: str) -> list[list[dict[str, Any]]]:
        with tracing.round_label(f"{name}: start (dealer and parties at once)"):
            calls = [(runner.run, p, {"session": self.id, "op": op, "args": args(i)})
                     for i, p in enumerate(self.parties)]
            if deal_now:
                calls.append((steps.deal, self.dealer, {"session": self.id,
                                                        "requests": deal_now, "fused": True}))
            return [_at_once(calls)[: self.n]]

    def _round_by_round(self, op: str, args: Callable[[int], dict[str, Any]],
                        deal_now: Requests, name: str) -> list[list[dict[str, Any]]]:
        if deal_now:
            with tracing.round_label(f"{name}: dealer"):
                steps.deal.on(self.dealer, session=self.id, requests=deal_now)
        with tracing.round_label(f"{name}: start"):
            waves = [[runner.run.on(p, session=self.id, op=op, args=args(i), wait=False)
                      for i, p in enumerate(self.parties)]]
        label = args(0)["label"]
        while not waves[-1][0]["done"]:
            with tracing.round_label(waves[-1][0]["round"]):  # the round it completes
                waves.append([runner.resume.on(p, session=self.id, label=label)
                              for p in self.parties])
        return waves

    # ---- the offline phase ---------------------------------------------------------------
    def deal_ahead(self, fn: Callable[[], Any], *, times: int) -> int:
        """Offline phase: run ``fn()`` once, noting the products (and truncations) and
        comparison-based ops (ReLU, max, ...) it makes among these parties; then have
        the dealer deal, and each party draw, the randomness of ``times`` more runs of
        them. Later products (ops) of the same kind and shapes use it and run without
        asking the dealer: only the parties' openings are
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
        requests: Requests = []
        for _ in range(times):
            for kind, params, trunc_bits in recorded:
                labels = self._labels_for(kind, trunc_bits)
                requests.extend(_requests(labels, kind, params, trunc_bits))
                self._dealt.setdefault(_signature(kind, params, trunc_bits),
                                       collections.deque()).append(labels)
        if requests:
            with tracing.round_label("offline: dealer and parties"):
                calls = [(steps.prepare, p, {"session": self.id, "requests": requests})
                         for p in self.parties]
                dealing = (steps.deal, self.dealer, {"session": self.id, "requests": requests,
                                               "fused": self.fused})
                if self.fused:
                    _at_once([*calls, dealing])
                else:
                    for step, worker, kwargs in [dealing, *calls]:
                        step.on(worker, **kwargs)
        return len(recorded) * times

    def _labels_for(self, kind: str, trunc_bits: int) -> Labels:
        label = self.label()
        return label, (self.label() if trunc_bits and kind != "trunc" else None)

    def take(self, kind: str, params: dict[str, Any], trunc_bits: int
             ) -> tuple[Labels, Requests]:
        """Labels for one product (or truncation), and what the dealer must deal for it
        now (nothing if it was dealt ahead)."""
        if self._recording is not None:
            self._recording.append((kind, params, trunc_bits))
        ready = self._dealt.get(_signature(kind, params, trunc_bits))
        if ready:
            return ready.popleft(), []
        labels = self._labels_for(kind, trunc_bits)
        return labels, _requests(labels, kind, params, trunc_bits)


def _at_once(calls: list[tuple[Step, Any, dict[str, Any]]]) -> list[Any]:
    """``step.on(worker, **kwargs)`` for every call at once (each worker's connection
    carries its own); the replies in order."""
    for step, _, kwargs in calls:
        step.check(**kwargs)
    return concurrently([(worker, step.name, kwargs) for step, worker, kwargs in calls])


def _signature(kind: str, params: dict[str, Any], trunc_bits: int) -> str:
    return json.dumps([kind, params, trunc_bits], sort_keys=True)


NONLINEAR = "nonlinear/"  # kind prefix of a comparison-based op (SharedTensor.nonlinear)


def _requests(labels: Labels, kind: str, params: dict[str, Any], trunc_bits: int) -> Requests:
    """The dealer's requests for one product (and its truncation), or for one
    comparison-based op (``NONLINEAR + name``: its plan, one sub-label per request)."""
    label, tlabel = labels
    if kind.startswith(NONLINEAR):
        plan = mpc_nonlinear.requests(kind[len(NONLINEAR):], params["shapes"],
                                      params["params"])
        return [(sub_label(label, "d", k), knd, prm) for k, (knd, prm) in enumerate(plan)]
    out = [(label, kind, params)]
    if tlabel is not None:
        out.append((tlabel, "trunc", {"shape": out_shape(kind, params),
                                      "frac_bits": trunc_bits}))
    return out


def out_shape(kind: str, p: dict[str, Any]) -> list[int]:
    """The shape of a product of ``kind`` with the dealer's parameters ``p``."""
    meta = torch.device("meta")
    if kind in ("square", "trunc"):
        return list(p["shape"])
    if kind == "mul":
        return list(torch.broadcast_shapes(tuple(p["x_shape"]), tuple(p["y_shape"])))
    x = torch.empty(p["x_shape"], device=meta)
    if kind == "matmul":
        return list(torch.matmul(x, torch.empty(p["y_shape"], device=meta)).shape)
    w = torch.empty(p["w_shape"], device=meta)
    return list(torch.nn.functional.conv2d(x, w, stride=p["stride"], padding=p["padding"],
                                           dilation=p["dilation"], groups=p["groups"]).shape)


_SESSIONS: dict[tuple[tuple[str, ...], str], MPCSession] = {}


def session_for(parties: Sequence[Any], dealer: Any) -> MPCSession:
    """The notebook's session for these parties and dealer (made once, reused)."""
    key = (tuple(p.name for p in parties), dealer.name if dealer is not None else "")
    sess = _SESSIONS.get(key)
    if sess is None or any(a is not b for a, b in zip(sess.parties, parties, strict=True)):
        sess = _SESSIONS[key] = MPCSession(parties, dealer)
    return sess
