"""SPDZ protocol steps a worker runs: each party's local part of a shared computation.

The notebook orchestrates, but every opening goes party to party (``mpc.deliver``), the
dealer's corrections go dealer to party, and the only thing the notebook sees of a
share is a pointer to it. The math is in :mod:`ppdl_nb.mpc`; this module keeps the
per-session state (seed shared with the dealer, this party's index) and moves tensors.

A multiplication ``z = x * y`` with truncation runs in one of two ways.

**Fused** (kernel workers: the default where every worker runs in its own process). The
notebook sends one request to each party and one to the dealer, all at once; each
party runs the whole product and waits for its peers' messages itself::

    notebook -> D    mpc.deal       D sends the last party its corrections
    notebook -> Pi   mpc.bilinear   Pi sends (x_i - a_i, y_i - b_i) to every Pj, waits for
                                    theirs, computes its share of x*y, sends it masked
                                    for truncation to every Pj, waits for theirs, stores
                                    its share of z; the notebook gets a pointer

The dealer's round leaves the critical path (parties draw ``a_i, b_i`` from seeds and
need the last party's correction only when adding ``c``), and the notebook's requests
overlap. A party waiting for a peer lets its worker serve other requests meanwhile
(:meth:`Worker.wait_until`), and it sends to peers from a background thread, so two
parties sending to each other never wait on each other's locks.

**Round by round** (virtual workers: deterministic, each step visible in a trace). The
notebook runs each round on every party in turn::

    notebook -> D    mpc.deal          D sends the last party its corrections
    notebook -> Pi   mpc.beaver_open   Pi sends (x_i - a_i, y_i - b_i) to every Pj
    notebook -> Pi   mpc.beaver_finish Pi computes its share of x*y, sends its masked
                                       share for truncation to every Pj
    notebook -> Pi   mpc.trunc_finish  Pi stores its share of z; the notebook gets a pointer

Both send the same openings and corrections; only who starts each round differs.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from ppdl_nb import mpc
from ppdl_nb.mpc import beaver
from ppdl_nb.tensors.spdz_rounds import (
    Outbox,
    abort_peers,
    broadcast,
    derived,
    draw,
    entry_of,
    mpc_state,
    open_policy,
    opened_values,
    pending,
    session_of,
    single_threaded,
)
from ppdl_nb.workers.core import tracing
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.core.handlers import stored_result
from ppdl_nb.workers.core.messages import protocol_step
from ppdl_nb.workers.core.worker import Worker

__all__: list[str] = []  # protocol steps, registered by name

_CONV_KEYS = ("stride", "padding", "dilation", "groups")


# ---- setup ---------------------------------------------------------------------------------
@protocol_step("mpc.dealer_setup")
def dealer_setup(worker: Worker, caller: str, *, session: str, parties: list[str]) -> None:
    """DEALER: make one seed per party and send each its own, directly."""
    if worker.name in parties:
        raise ValueError(f"the dealer {worker.name} must not be a party: a dealer that also "
                         "holds shares knows the masks and learns the inputs")
    seeds = mpc.dealer_seeds(len(parties))
    mpc_state(worker)["dealer"][session] = seeds
    mpc_state(worker).setdefault("dealer_parties", {})[session] = list(parties)
    for i, name in enumerate(parties):
        worker.client_for(name).step("mpc.join", session=session, index=i, n=len(parties),
                                     parties=parties, seed=seeds[i], dealer=worker.name)


@protocol_step("mpc.join")
def join(worker: Worker, caller: str, *, session: str, index: int, n: int,
         parties: list[str], seed: bytes, dealer: str) -> None:
    """PARTY: remember the session, this party's index, and the seed shared with the dealer."""
    if caller != dealer:
        raise PermissionError(f"only the dealer {dealer} hands out its seeds, not {caller}")
    mpc_state(worker)["sessions"][session] = {"index": index, "n": n, "parties": parties,
                                           "seed": seed, "dealer": dealer}


@protocol_step("mpc.deal")
def deal(worker: Worker, caller: str, *, session: str,
         requests: list[tuple[bytes, str, dict[str, Any]]], fused: bool = False) -> int:
    """DEALER: corrections for each (label, kind, params), sent to the last party only.

    Fused, for one product (a few requests), each correction leaves as soon as it is
    made: the product's ``c`` is on its way while the truncation mask is dealt."""
    seeds = mpc_state(worker)["dealer"].get(session)
    if seeds is None:
        raise KeyError(f"{worker.name} is not the dealer of MPC session {session!r}")
    last = _last_party(worker, session)
    out = Outbox(worker, background=fused)
    one_by_one = fused and len(requests) <= 4
    items = []
    try:
        with single_threaded() if fused else contextlib.nullcontext():
            for label, kind, params in requests:
                items.append((label, mpc.deal(kind, seeds, label, **params)))
                if one_by_one:
                    out.send(last, "mpc.corrections", items=items[-1:])
        if not one_by_one:
            out.send(last, "mpc.corrections", items=items)
        out.flush()
    except Exception as exc:
        if fused:  # the last party waits for these corrections: tell it they won't come
            with contextlib.suppress(Exception):
                worker.client_for(last).step(
                    "mpc.abort", session=session, labels=[r[0] for r in requests],
                    reason=f"the dealer {worker.name} failed: {type(exc).__name__}: {exc}")
        raise
    return sum(t.numel() * t.element_size() for _, ts in items for t in ts)


def _last_party(worker: Worker, session: str) -> str:
    # the dealer learns the party order from its own setup call
    return worker.state["mpc"]["dealer_parties"][session][-1]


@protocol_step("mpc.corrections")
def corrections(worker: Worker, caller: str, *, items: list[tuple[bytes, list]]) -> None:
    """LAST PARTY: keep the dealer's corrections until the matching step needs them."""
    dealers = {s["dealer"] for s in mpc_state(worker)["sessions"].values()}
    if caller not in dealers:
        raise PermissionError(f"{caller} is not the dealer of a session {worker.name} is in")
    for label, tensors in items:
        pending(worker, label)["corrections"] = list(tensors)
    worker.notify()


@protocol_step("mpc.deliver")
def deliver(worker: Worker, caller: str, *, session: str, label: bytes, sender: int,
            value: torch.Tensor) -> None:
    """PARTY: receive a peer's share of an opening."""
    sess = session_of(worker, session)
    if not isinstance(sender, int) or not 0 <= sender < sess["n"] or (
            sess["parties"][sender] != caller):
        raise PermissionError(f"{caller} cannot deliver the opening of party {sender!r}")
    pending(worker, label)["open"][sender] = value
    worker.notify()


@protocol_step("mpc.abort")
def abort(worker: Worker, caller: str, *, session: str, labels: list[bytes],
          reason: str) -> None:
    """PARTY: a peer or the dealer failed; a step waiting on these labels stops."""
    sess = session_of(worker, session)
    if caller not in (*sess["parties"], sess["dealer"]):
        raise PermissionError(f"{caller} takes no part in MPC session {session!r}")
    for label in labels:
        pending(worker, label)["aborted"] = str(reason)
    worker.notify()


@protocol_step("mpc.prepare")
def prepare(worker: Worker, caller: str, *, session: str,
            requests: list[tuple[bytes, str, dict[str, Any]]]) -> int:
    """PARTY, offline: draw its shares of requests dealt ahead (the dealer's ``mpc.deal``
    for the same labels), so the products that use them later start at once."""
    session_of(worker, session)
    with single_threaded():
        for label, kind, params in requests:
            pend = pending(worker, label)
            if "drawn" in pend or "bases" in pend:
                raise ValueError(f"{worker.name} already drew randomness for label {label!r}"
                                 "; a label is used once")
            pend["drawn"] = draw(worker, session, label, kind, params)
    return len(requests)


# ---- sharing -------------------------------------------------------------------------------
@protocol_step("mpc.share_from")
def share_from(worker: Worker, caller: str, *, id: int, parties: list[str],
               frac_bits: int) -> list[dict[str, Any]]:
    """OWNER: encode and secret-share one of its tensors; shares go straight to the parties.

    The shares may be opened by the owner (and whoever the owner allowed to see the
    tensor; anyone, for a public tensor).
    """
    entry = worker.store.entry(id)
    if not isinstance(entry.obj, torch.Tensor):
        raise TypeError(f"{worker.name}:{id} is not a tensor")
    allowed = sorted((entry.allowed if entry.private else {caller}) | {worker.name})
    shares = mpc.share(mpc.encode(entry.obj, frac_bits), len(parties), mpc.PRG())
    out = []
    for name, s in zip(parties, shares, strict=True):
        if name == worker.name:
            out.append(stored_result(worker, s, True, frozenset(allowed)))
        else:
            out.append(worker.client_for(name).request(
                {"kind": "store", "obj": s, "private": True, "allow": allowed}))
    return out


# ---- multiplication: the pieces ------------------------------------------------------------
def _open_masked(worker: Worker, session: str, label: bytes, kind: str,
                 params: dict[str, Any], x: Ref, y: Ref | None, out: Outbox) -> None:
    """Round 1: mask this party's shares with the triple's and send the masked shares."""
    xe = entry_of(worker, x, "x")
    bases = draw(worker, session, label, kind, params)
    pend = pending(worker, label)
    if kind == "square":
        value = [beaver.beaver_square_open(xe.obj, bases[0])]
        pend["inputs"] = [xe]
    else:
        ye = entry_of(worker, y, "y")
        value = list(mpc.beaver_open(xe.obj, ye.obj, bases[0], bases[1]))
        pend["inputs"] = [xe, ye]
    pend["bases"] = bases
    broadcast(worker, session, label, value, out)


def _product(worker: Worker, session: str, label: bytes, *, wait: bool = False
             ) -> tuple[torch.Tensor, frozenset[str]]:
    """This party's share of the product, once every opening of round 1 is here."""
    sess = session_of(worker, session)
    pend = pending(worker, label)
    opened = opened_values(worker, session, label, wait=wait)
    i, bases, kind = sess["index"], pend["bases"], pend["kind"]
    if kind == "square":
        z = beaver.beaver_square_cross_terms(i, opened[0], bases[0])
    else:
        eps, delta = opened
        conv = {k: v for k, v in pend["params"].items() if k in _CONV_KEYS}
        z = beaver.beaver_cross_terms(kind, i, eps, delta, bases[0], bases[1], **conv)
    z = beaver.add_c(z, derived(worker, session, label, wait=wait)[0])
    policy = open_policy(pend["inputs"])
    del mpc_state(worker)["pending"][label]
    return z, policy


def _trunc_open(worker: Worker, session: str, label: bytes, x: torch.Tensor, frac_bits: int,
                policy: frozenset[str], out: Outbox) -> None:
    sess = session_of(worker, session)
    (r,) = draw(worker, session, label, "trunc", {"shape": list(x.shape),
                                                     "frac_bits": frac_bits})
    pend = pending(worker, label)
    pend["policy"], pend["frac_bits"] = policy, frac_bits
    broadcast(worker, session, label, [mpc.trunc_open(sess["index"], x, r)], out)


def _truncated(worker: Worker, session: str, label: bytes, *, wait: bool = False
               ) -> tuple[torch.Tensor, frozenset[str]]:
    sess = session_of(worker, session)
    pend = pending(worker, label)
    opened = opened_values(worker, session, label, wait=wait)
    r_hi, r_msb = derived(worker, session, label, wait=wait)
    y = mpc.trunc_finish(sess["index"], opened[0], r_hi, r_msb, pend["frac_bits"])
    policy = pend["policy"]
    del mpc_state(worker)["pending"][label]
    return y, policy


# ---- fused steps (one request per party per operation) -------------------------------------
@protocol_step("mpc.bilinear")
def bilinear(worker: Worker, caller: str, *, session: str, label: bytes, kind: str,
             params: dict[str, Any], x: Ref, y: Ref | None = None,
             trunc_label: bytes | None = None, frac_bits: int = 0) -> dict:
    """PARTY: a whole product (``mul``, ``matmul``, ``conv2d``, ``square``), truncated
    with ``trunc_label``: both openings, party to party; stores this party's share."""
    labels = [label] + ([trunc_label] if trunc_label is not None else [])
    out = Outbox(worker, background=True)
    try:
        with single_threaded():
            with tracing.round_label(f"{kind}: open masked inputs"):
                _open_masked(worker, session, label, kind, params, x, y, out)
                z, policy = _product(worker, session, label, wait=True)
            if trunc_label is not None:
                with tracing.round_label(f"{kind}: open for truncation"):
                    _trunc_open(worker, session, trunc_label, z, frac_bits, policy, out)
                    z, policy = _truncated(worker, session, trunc_label, wait=True)
            out.flush()
    except Exception as exc:
        abort_peers(worker, session, labels, exc)
        raise
    return stored_result(worker, z, True, policy)


@protocol_step("mpc.truncate")
def truncate(worker: Worker, caller: str, *, session: str, label: bytes, x: Ref,
             frac_bits: int) -> dict:
    """PARTY: a whole truncation (after a public multiplication): one opening."""
    out = Outbox(worker, background=True)
    try:
        with single_threaded(), tracing.round_label("truncate: open masked value"):
            xe = entry_of(worker, x, "x")
            _trunc_open(worker, session, label, xe.obj, frac_bits, open_policy([xe]), out)
            z, policy = _truncated(worker, session, label, wait=True)
            out.flush()
    except Exception as exc:
        abort_peers(worker, session, [label], exc)
        raise
    return stored_result(worker, z, True, policy)


# ---- round-by-round steps (the notebook starts each round) ---------------------------------
@protocol_step("mpc.beaver_open")
def beaver_open(worker: Worker, caller: str, *, session: str, label: bytes, kind: str,
                params: dict[str, Any], x: Ref, y: Ref | None = None) -> None:
    """PARTY, round 1: mask its shares with the triple's and send the masked shares."""
    _open_masked(worker, session, label, kind, params, x, y, Outbox(worker, False))


@protocol_step("mpc.beaver_finish")
def beaver_finish(worker: Worker, caller: str, *, session: str, label: bytes,
                  trunc_label: bytes | None = None, frac_bits: int = 0) -> dict | None:
    """PARTY: its share of the product; with ``trunc_label``, also open it for truncation."""
    z, policy = _product(worker, session, label)
    if trunc_label is None:
        return stored_result(worker, z, True, policy)
    _trunc_open(worker, session, trunc_label, z, frac_bits, policy, Outbox(worker, False))
    return None


@protocol_step("mpc.trunc_open")
def trunc_open(worker: Worker, caller: str, *, session: str, label: bytes, x: Ref,
               frac_bits: int) -> None:
    """PARTY, round 1 of a standalone truncation (after a public multiplication)."""
    xe = entry_of(worker, x, "x")
    _trunc_open(worker, session, label, xe.obj, frac_bits, open_policy([xe]),
                Outbox(worker, False))


@protocol_step("mpc.trunc_finish")
def trunc_finish(worker: Worker, caller: str, *, session: str, label: bytes) -> dict:
    """PARTY: its share of the truncated value, stored; the notebook gets a pointer."""
    y, policy = _truncated(worker, session, label)
    return stored_result(worker, y, True, policy)


# ---- other steps ---------------------------------------------------------------------------
@protocol_step("mpc.histogram")
def histogram(worker: Worker, caller: str, *, x: Ref, bins: int = 40) -> torch.Tensor:
    """PARTY: a histogram of its own share over the whole ring (a share alone is uniform,
    so this reveals nothing); used to draw share distributions."""
    if not isinstance(bins, int) or not 1 <= bins <= 1000:
        raise ValueError("bins must be an int in [1, 1000]")
    share = entry_of(worker, x, "x").obj
    scaled = share.double() / 2.0**63  # [-1, 1)
    return torch.histc(scaled, bins=bins, min=-1.0, max=1.0)


@protocol_step("mpc.reconstruct")
def reconstruct(worker: Worker, caller: str, *, ids: list[int], frac_bits: int | None = None
                ) -> dict:
    """RECIPIENT: sum the shares it was sent (and decode them); the value stays private here.

    Only a party every input's owner allowed can receive all shares (moving a share checks
    that), so the opened value belongs to it; it may release it further as owner.
    """
    entries = [worker.store.entry(i) for i in ids]
    value = mpc.reconstruct([e.obj for e in entries])
    if frac_bits is not None:
        value = mpc.decode(value, frac_bits)
    policy = open_policy(entries) - {worker.name}
    worker.store.delete(ids)
    return stored_result(worker, value, True, policy)
