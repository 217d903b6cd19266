"""SPDZ protocol steps a worker runs: each party's local part of a shared computation.

The notebook orchestrates, but every opening goes party to party (``mpc.deliver``), the
dealer's corrections go dealer to party, and the only thing the notebook sees of a
share is a pointer to it. The math is in :mod:`ppdl_nb.mpc`; this module keeps the
per-session state (seed shared with the dealer, this party's index) and moves tensors.

A multiplication ``z = x * y`` with truncation, for parties P0..Pn-1 and dealer D::

    notebook -> D    mpc.deal          D sends the last party its corrections
    notebook -> Pi   mpc.beaver_open   Pi sends (x_i - a_i, y_i - b_i) to every Pj
    notebook -> Pi   mpc.beaver_finish Pi computes its share of x*y, sends its masked
                                       share for truncation to every Pj
    notebook -> Pi   mpc.trunc_finish  Pi stores its share of z; the notebook gets a pointer
"""

from __future__ import annotations

from typing import Any

import torch

from .. import mpc
from ..mpc import beaver
from .codec import Ref
from .handlers import stored_result
from .messages import protocol_step
from .store import Entry
from .worker import Worker

__all__ = ["BILINEAR"]

BILINEAR = {
    "mul": beaver.beaver_mul_finish,
    "matmul": beaver.beaver_matmul_finish,
    "conv2d": beaver.beaver_conv2d_finish,
}


def _state(worker: Worker) -> dict[str, Any]:
    return worker.state.setdefault("mpc", {"sessions": {}, "dealer": {}, "pending": {}})


def _session(worker: Worker, session: str) -> dict[str, Any]:
    try:
        return _state(worker)["sessions"][session]
    except KeyError:
        raise KeyError(
            f"{worker.name} is not a party of MPC session {session!r}: share the tensors "
            "again (the worker may have restarted)"
        ) from None


def _pending(worker: Worker, label: bytes) -> dict[str, Any]:
    return _state(worker)["pending"].setdefault(label, {"open": {}, "corrections": None})


def _entry(worker: Worker, ref: Any, what: str) -> Entry:
    if not isinstance(ref, Ref):
        raise TypeError(f"{what} must be a reference to a share on {worker.name}")
    return worker.store.entry(ref.id)


def _policy(entries: list[Entry]) -> frozenset[str]:
    """Who may open a result: those allowed to open every input."""
    return frozenset.intersection(*[e.allowed for e in entries])


def _broadcast(worker: Worker, session: str, label: bytes, value: torch.Tensor) -> None:
    sess = _session(worker, session)
    _pending(worker, label)["open"][sess["index"]] = value
    for name in sess["parties"]:
        if name != worker.name:
            worker.client_for(name).step("mpc.deliver", session=session, label=label,
                                         sender=sess["index"], value=value)


def _opened(worker: Worker, session: str, label: bytes) -> torch.Tensor:
    sess = _session(worker, session)
    got = _pending(worker, label)["open"]
    if len(got) != sess["n"]:
        missing = [sess["parties"][i] for i in range(sess["n"]) if i not in got]
        raise RuntimeError(f"{worker.name} is missing openings from {missing} for this round; "
                           "run the open step on every party first")
    return mpc.reconstruct([got[i] for i in range(sess["n"])])


def _expand(worker: Worker, session: str, label: bytes, kind: str,
            params: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    sess = _session(worker, session)
    last = sess["index"] == sess["n"] - 1
    correction = None
    if last:
        correction = _state(worker)["pending"].get(label, {}).get("corrections")
        if correction is None:
            raise RuntimeError(f"{worker.name} has no correction from the dealer for this "
                               "request; ask the dealer (mpc.deal) first")
    return mpc.expand(kind, sess["seed"], label, sess["index"], sess["n"], correction,
                      **params)


# ---- setup ---------------------------------------------------------------------------------
@protocol_step("mpc.dealer_setup")
def dealer_setup(worker: Worker, caller: str, *, session: str, parties: list[str]) -> None:
    """DEALER: make one seed per party and send each its own, directly."""
    if worker.name in parties:
        raise ValueError(f"the dealer {worker.name} must not be a party: a dealer that also "
                         "holds shares knows the masks and learns the inputs")
    seeds = mpc.dealer_seeds(len(parties))
    _state(worker)["dealer"][session] = seeds
    _state(worker).setdefault("dealer_parties", {})[session] = list(parties)
    for i, name in enumerate(parties):
        worker.client_for(name).step("mpc.join", session=session, index=i, n=len(parties),
                                     parties=parties, seed=seeds[i], dealer=worker.name)


@protocol_step("mpc.join")
def join(worker: Worker, caller: str, *, session: str, index: int, n: int,
         parties: list[str], seed: bytes, dealer: str) -> None:
    """PARTY: remember the session, this party's index, and the seed shared with the dealer."""
    _state(worker)["sessions"][session] = {"index": index, "n": n, "parties": parties,
                                           "seed": seed, "dealer": dealer}


@protocol_step("mpc.deal")
def deal(worker: Worker, caller: str, *, session: str,
         requests: list[tuple[bytes, str, dict[str, Any]]]) -> int:
    """DEALER: corrections for each (label, kind, params), sent to the last party only."""
    seeds = _state(worker)["dealer"].get(session)
    if seeds is None:
        raise KeyError(f"{worker.name} is not the dealer of MPC session {session!r}")
    out = [(label, mpc.deal(kind, seeds, label, **params)) for label, kind, params in requests]
    last = worker.client_for(_last_party(worker, session))
    last.step("mpc.corrections", items=out)
    return sum(8 * t.numel() for _, ts in out for t in ts)


def _last_party(worker: Worker, session: str) -> str:
    # the dealer learns the party order from its own setup call
    return worker.state["mpc"]["dealer_parties"][session][-1]


@protocol_step("mpc.corrections")
def corrections(worker: Worker, caller: str, *, items: list[tuple[bytes, list]]) -> None:
    """LAST PARTY: keep the dealer's corrections until the matching open step."""
    for label, tensors in items:
        _pending(worker, label)["corrections"] = list(tensors)


@protocol_step("mpc.deliver")
def deliver(worker: Worker, caller: str, *, session: str, label: bytes, sender: int,
            value: torch.Tensor) -> None:
    """PARTY: receive a peer's share of an opening."""
    _session(worker, session)
    _pending(worker, label)["open"][sender] = value


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


# ---- multiplication ------------------------------------------------------------------------
@protocol_step("mpc.beaver_open")
def beaver_open(worker: Worker, caller: str, *, session: str, label: bytes, kind: str,
                params: dict[str, Any], x: Ref, y: Ref | None = None) -> None:
    """PARTY, round 1: mask its shares with the triple's and send the masked shares."""
    sess = _session(worker, session)
    xe = _entry(worker, x, "x")
    pend = _pending(worker, label)
    triple = _expand(worker, session, label, kind, params)
    if kind == "square":
        value = beaver.beaver_square_open(xe.obj, triple[0])
        pend["inputs"] = [xe]
    else:
        ye = _entry(worker, y, "y")
        eps, delta = mpc.beaver_open(xe.obj, ye.obj, triple[0], triple[1])
        value = mpc.pack([eps, delta])
        pend["inputs"] = [xe, ye]
        pend["shapes"] = [list(eps.shape), list(delta.shape)]
    pend["triple"], pend["kind"], pend["params"] = triple, kind, params
    del sess
    _broadcast(worker, session, label, value)


@protocol_step("mpc.beaver_finish")
def beaver_finish(worker: Worker, caller: str, *, session: str, label: bytes,
                  trunc_label: bytes | None = None, frac_bits: int = 0) -> dict | None:
    """PARTY: its share of the product; with ``trunc_label``, also open it for truncation."""
    sess = _session(worker, session)
    pend = _pending(worker, label)
    opened = _opened(worker, session, label)
    i, triple, kind = sess["index"], pend["triple"], pend["kind"]
    if kind == "square":
        z = beaver.beaver_square_finish(i, opened, triple[0], triple[1])
    else:
        eps, delta = mpc.unpack(opened, pend["shapes"])
        extra = pend["params"] if kind == "conv2d" else {}
        extra = {k: v for k, v in extra.items() if k in ("stride", "padding", "dilation",
                                                         "groups")}
        z = BILINEAR[kind](i, eps, delta, *triple, **extra)
    policy = _policy(pend["inputs"])
    del _state(worker)["pending"][label]
    if trunc_label is None:
        return stored_result(worker, z, True, policy)
    _trunc_open(worker, session, trunc_label, z, frac_bits, policy)
    return None


def _trunc_open(worker: Worker, session: str, label: bytes, x: torch.Tensor, frac_bits: int,
                policy: frozenset[str]) -> None:
    sess = _session(worker, session)
    mask = _expand(worker, session, label, "trunc", {"shape": list(x.shape),
                                                       "frac_bits": frac_bits})
    pend = _pending(worker, label)
    pend["mask"], pend["policy"], pend["frac_bits"] = mask, policy, frac_bits
    _broadcast(worker, session, label, mpc.trunc_open(sess["index"], x, mask[0]))


@protocol_step("mpc.trunc_open")
def trunc_open(worker: Worker, caller: str, *, session: str, label: bytes, x: Ref,
               frac_bits: int) -> None:
    """PARTY, round 1 of a standalone truncation (after a public multiplication)."""
    xe = _entry(worker, x, "x")
    _trunc_open(worker, session, label, xe.obj, frac_bits, _policy([xe]))


@protocol_step("mpc.trunc_finish")
def trunc_finish(worker: Worker, caller: str, *, session: str, label: bytes) -> dict:
    """PARTY: its share of the truncated value, stored; the notebook gets a pointer."""
    sess = _session(worker, session)
    pend = _pending(worker, label)
    opened = _opened(worker, session, label)
    mask = pend["mask"]
    y = mpc.trunc_finish(sess["index"], opened, mask[1], mask[2], pend["frac_bits"])
    policy = pend["policy"]
    del _state(worker)["pending"][label]
    return stored_result(worker, y, True, policy)


@protocol_step("mpc.histogram")
def histogram(worker: Worker, caller: str, *, x: Ref, bins: int = 40) -> torch.Tensor:
    """PARTY: a histogram of its own share over the whole ring (a share alone is uniform,
    so this reveals nothing); used to draw share distributions."""
    if not isinstance(bins, int) or not 1 <= bins <= 1000:
        raise ValueError("bins must be an int in [1, 1000]")
    share = _entry(worker, x, "x").obj
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
    policy = _policy(entries) - {worker.name}
    worker.store.delete(ids)
    return stored_result(worker, value, True, policy)
