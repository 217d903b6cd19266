"""The SPDZ steps around the operations: setup, dealing, sharing and opening.

* ``mpc.dealer_setup`` / ``mpc.join``: the dealer makes one seed per party and sends each
  its own, directly; a party remembers its place in the session.
* ``mpc.deal``: the dealer deals requests (labels with a kind and shapes) and sends the
  corrections to the last party; ``mpc.prepare``: a party draws its shares of requests
  dealt ahead (the offline phase), so that the operations that use them start at once.
* ``mpc.share_from``: an owner shares one of its tensors, the shares going straight to
  the parties; ``mpc.reconstruct``: a recipient sums the shares it was sent;
  ``mpc.histogram``: a party's histogram of its own share (for pictures).

The operations themselves run through ``mpc.run`` (:mod:`.runner`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from ppdl_nb import mpc
from ppdl_nb.tensors.spdz.comm import Outbox, abort, corrections, single_threaded
from ppdl_nb.tensors.spdz.routines import Party, open_policy
from ppdl_nb.tensors.spdz.state import DealerSession, PartySession, spdz_state
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.core.handlers import stored_result
from ppdl_nb.workers.core.messages import protocol_step
from ppdl_nb.workers.core.policy import PROGRAM
from ppdl_nb.workers.core.worker import Worker

__all__ = ["deal", "dealer_setup", "histogram", "join", "prepare", "reconstruct",
           "share_from"]

NOTEBOOK = "me"  # the name a worker's channel gives the notebook's key
SHARE = "share"  # the permit that marks an additive share (release row share_histogram)
Requests = list[tuple[bytes, str, dict[str, Any]]]  # (label, kind, params) for the dealer


# ---- setup ---------------------------------------------------------------------------------
@protocol_step("mpc.dealer_setup")
def dealer_setup(worker: Worker, caller: str, *, session: str, parties: list[str]) -> None:
    """DEALER: make one seed per party and send each its own, directly."""
    if worker.name in parties:
        raise ValueError(f"the dealer {worker.name} must not be a party: a dealer that also "
                         "holds shares knows the masks and learns the inputs")
    seeds = mpc.dealer_seeds(len(parties))
    spdz_state(worker).dealing[session] = DealerSession(seeds, list(parties))
    for i, name in enumerate(parties):
        join.on(worker.client_for(name), session=session, index=i, parties=parties,
                seed=seeds[i], dealer=worker.name)


@protocol_step("mpc.join")
def join(worker: Worker, caller: str, *, session: str, index: int, parties: list[str],
         seed: bytes, dealer: str) -> None:
    """PARTY: remember the session, this party's index, and the seed shared with the dealer.

    The dealer is whoever proved its key on this request (``caller``): a worker outside the
    parties, never the notebook, and fixed for the session's life."""
    if caller != dealer:
        raise PermissionError(f"only the dealer {dealer} hands out its seeds, not {caller}")
    if caller == NOTEBOOK or caller in parties:
        raise PermissionError(f"{caller} cannot deal for parties {parties}: the dealer is a "
                              "worker that is neither a party nor the notebook (whoever knows "
                              "the seeds knows every mask)")
    known = spdz_state(worker).sessions.get(session)
    if known is not None and known.dealer != caller:
        raise PermissionError(f"session {session} is dealt by {known.dealer}; {caller} cannot "
                              "take it over (start a new session)")
    if not isinstance(index, int) or not 0 <= index < len(parties) or (
            parties[index] != worker.name):
        raise ValueError(f"{worker.name} is not party {index!r} of {parties}")
    spdz_state(worker).sessions[session] = PartySession(session, index, list(parties), seed,
                                                        dealer)


# ---- the offline phase ---------------------------------------------------------------------
@protocol_step("mpc.deal")
def deal(worker: Worker, caller: str, *, session: str, requests: Requests,
         fused: bool = False) -> int:
    """DEALER: corrections for each (label, kind, params), sent to the last party only.

    Fused, for one product (a few requests), each correction leaves as soon as it is
    made: the product's ``c`` is on its way while the truncation mask is dealt."""
    dealing = spdz_state(worker).dealer_session(worker.name, session)
    out = Outbox(worker, background=fused)
    one_by_one = fused and len(requests) <= 4
    items = []
    try:
        with single_threaded() if fused else contextlib.nullcontext():
            for label, kind, params in requests:
                items.append((label, mpc.deal(kind, dealing.seeds, label, **params)))
                if one_by_one:
                    out.send(dealing.last, corrections, items=items[-1:])
        if not one_by_one:
            out.send(dealing.last, corrections, items=items)
        out.flush()
    except Exception as exc:
        if fused:  # the last party waits for these corrections: tell it they won't come
            with contextlib.suppress(Exception):
                abort.on(worker.client_for(dealing.last), session=session,
                         labels=[r[0] for r in requests],
                         reason=f"the dealer {worker.name} failed: {type(exc).__name__}: {exc}")
        raise
    return sum(t.numel() * t.element_size() for _, ts in items for t in ts)


@protocol_step("mpc.prepare")
def prepare(worker: Worker, caller: str, *, session: str, requests: Requests) -> int:
    """PARTY, offline: draw its shares of requests dealt ahead (the dealer's ``mpc.deal``
    for the same labels), so the operations that use them later start at once."""
    state = spdz_state(worker)
    party = Party(worker.name, worker.store, state, state.session(worker.name, session))
    with single_threaded():
        for label, kind, params in requests:
            if label in state.pending and state.pending[label].kind is not None:
                raise ValueError(f"{worker.name} already drew randomness for label {label!r}"
                                 "; a label is used once")
            bases = party.draw(label, kind, params)
            state.pending[label].ahead = bases
    return len(requests)


# ---- sharing and opening -------------------------------------------------------------------
@protocol_step("mpc.share_from")
def share_from(worker: Worker, caller: str, *, id: int, parties: list[str],
               frac_bits: int) -> list[dict[str, Any]]:
    """OWNER: encode and secret-share one of its tensors; shares go straight to the parties.

    The shares may be opened by the owner (and whoever the owner allowed to see the
    tensor; anyone, for a public tensor); the owner's allowances for programs (permits
    ``program:<fingerprint>:<reader>``) go with them.
    """
    entry = worker.store.entry(id)
    if not isinstance(entry.obj, torch.Tensor):
        raise TypeError(f"{worker.name}:{id} is not a tensor")
    allowed = sorted((entry.allowed if entry.private else {caller}) | {worker.name})
    permits = [SHARE, *sorted(q for q in entry.policy.permits if q.startswith(PROGRAM))]
    shares = mpc.share(mpc.encode(entry.obj, frac_bits), len(parties), mpc.PRG())
    out = []
    for name, s in zip(parties, shares, strict=True):
        if name == worker.name:
            policy = worker.private_policy(allowed, permits=permits)
            out.append(stored_result(worker, s, policy=policy, holder=caller))
        else:  # the caller holds the references (its pointers free them)
            out.append(worker.client_for(name).request(
                {"kind": "store", "obj": s, "private": True, "allow": allowed,
                 "permits": permits, "holder": caller}))
    return out


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
    worker.store.delete(ids, caller)  # consumed shares, only those the caller may free
    return stored_result(worker, value, True, policy)


@protocol_step("mpc.histogram")
def histogram(worker: Worker, caller: str, *, x: Ref, bins: int = 40) -> torch.Tensor:
    """PARTY: a histogram of its own share over the whole ring (a share alone is uniform,
    so this reveals nothing); used to draw share distributions."""
    if not isinstance(bins, int) or not 1 <= bins <= 1000:
        raise ValueError("bins must be an int in [1, 1000]")
    if not isinstance(x, Ref):
        raise TypeError(f"x must be a reference to a share on {worker.name}")
    share = worker.resolve(x, "x", kind=torch.Tensor)
    if not worker.policy_of(x).may_read(caller):
        worker.declare_release("share_histogram")
    scaled = share.double() / 2.0**63  # [-1, 1)
    return torch.histc(scaled, bins=bins, min=-1.0, max=1.0)
