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
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import torch

from .. import mpc
from ..mpc import beaver
from ..mpc.dealer import check_correction, expand_parts
from ..mpc.ring import check_ring
from . import tracing
from .codec import Ref
from .concurrent import submit
from .handlers import stored_result
from .messages import protocol_step
from .store import Entry
from .worker import Worker

__all__ = ["BILINEAR", "WAIT_TIMEOUT"]

BILINEAR = {
    "mul": beaver.beaver_mul_finish,
    "matmul": beaver.beaver_matmul_finish,
    "conv2d": beaver.beaver_conv2d_finish,
}
_CONV_KEYS = ("stride", "padding", "dilation", "groups")
WAIT_TIMEOUT = 60.0  # seconds a fused step waits for a peer's or the dealer's message


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
    return _state(worker)["pending"].setdefault(
        label, {"open": {}, "corrections": None, "aborted": None})


def _entry(worker: Worker, ref: Any, what: str) -> Entry:
    if not isinstance(ref, Ref):
        raise TypeError(f"{what} must be a reference to a share on {worker.name}")
    return worker.store.entry(ref.id)


def _policy(entries: list[Entry]) -> frozenset[str]:
    """Who may open a result: those allowed to open every input."""
    return frozenset.intersection(*[e.allowed for e in entries])


# ---- sending to peers ----------------------------------------------------------------------
class _Outbox:
    """How a step sends to peers: at once (round by round), or from a background thread
    (fused): the step then waits with its worker unlocked while the message travels, so
    that a peer sending to it at the same time is not kept waiting for its lock.
    :meth:`flush` waits for every send and raises the first failure. (Flushing right
    after each opening, so that it leaves before the step's products start, was
    measured: on a busy machine it costs more than it saves.)"""

    def __init__(self, worker: Worker, background: bool) -> None:
        self.worker = worker
        self.background = background
        self.sent: list[Future] = []

    def send(self, name: str, step: str, **kwargs: Any) -> None:
        client = self.worker.client_for(name)
        if not self.background:
            client.step(step, **kwargs)
            return
        future = submit(client, step, kwargs)
        future.add_done_callback(lambda _: self.worker.notify())
        self.sent.append(future)

    def flush(self) -> None:
        if not self.sent:
            return
        done = self.worker.wait_until(lambda: all(f.done() for f in self.sent), WAIT_TIMEOUT)
        if not done:
            raise TimeoutError(f"{self.worker.name} could not deliver its messages to its "
                               f"peers within {WAIT_TIMEOUT:g} s")
        for f in self.sent:
            f.result()  # re-raise a failed send here
        self.sent.clear()


_THREADS_LOCK = threading.Lock()
_THREADS = {"users": 0, "saved": 1}


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """Torch on one thread while fused steps run: the parties, the dealer and the
    notebook compute at once and share the cores, so more threads only contend (and
    OpenMP threads spinning between ops take the cores from the other parties)."""
    with _THREADS_LOCK:
        if _THREADS["users"] == 0:
            _THREADS["saved"] = torch.get_num_threads()
            if _THREADS["saved"] != 1:
                torch.set_num_threads(1)
        _THREADS["users"] += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS["users"] -= 1
            if _THREADS["users"] == 0 and _THREADS["saved"] != 1:
                torch.set_num_threads(_THREADS["saved"])


# ---- openings and corrections --------------------------------------------------------------
def _broadcast(worker: Worker, session: str, label: bytes, value: list[torch.Tensor],
               out: _Outbox) -> None:
    """Send this party's openings of one round to every peer: one message, one buffer
    per tensor (no packing copy)."""
    sess = _session(worker, session)
    _pending(worker, label)["open"][sess["index"]] = value
    for name in sess["parties"]:
        if name != worker.name:
            out.send(name, "mpc.deliver", session=session, label=label, sender=sess["index"],
                     value=value)


def _wait(worker: Worker, label: bytes, ready: Any, what: str) -> None:
    """Wait (worker unlocked) until ``ready(pending)``; raise if a peer aborted."""
    pend = _pending(worker, label)

    def check() -> bool:
        return pend["aborted"] is not None or ready(pend)

    if not worker.wait_until(check, WAIT_TIMEOUT):
        raise TimeoutError(f"{worker.name} waited {WAIT_TIMEOUT:g} s for {what}; did every "
                           "party and the dealer get its request?")
    if pend["aborted"] is not None:
        raise RuntimeError(f"{worker.name} stopped: {pend['aborted']}")


def _opened(worker: Worker, session: str, label: bytes, *, wait: bool = False
            ) -> list[torch.Tensor]:
    sess = _session(worker, session)
    n = sess["n"]
    if wait:
        _wait(worker, label, lambda p: len(p["open"]) == n, "its peers' openings")
    got = _pending(worker, label)["open"]
    if len(got) != n:
        missing = [sess["parties"][i] for i in range(n) if i not in got]
        raise RuntimeError(f"{worker.name} is missing openings from {missing} for this round; "
                           "run the open step on every party first")
    parts = [got[i] for i in range(n)]
    if any(not isinstance(p, list) or len(p) != len(parts[0]) for p in parts):
        raise ValueError(f"{worker.name} got openings of different structure for one round")
    return [_sum(list(values)) for values in zip(*parts, strict=True)]


def _sum(values: list[torch.Tensor]) -> torch.Tensor:
    """The opened value: the shares' sum mod 2^64 (one pass for two parties)."""
    for v in values:
        check_ring(v, "an opening")
    out = torch.add(values[0], values[1])
    for v in values[2:]:
        out += v
    return out


def _derived(worker: Worker, session: str, label: bytes, *, wait: bool = False
             ) -> list[torch.Tensor]:
    """This party's shares of a request's derived values (the last party: the dealer's)."""
    pend = _pending(worker, label)
    if pend.get("derived") is not None:
        return pend["derived"]
    if wait:
        _wait(worker, label, lambda p: p["corrections"] is not None,
              "the dealer's correction")
    correction = pend["corrections"]
    if correction is None:
        raise RuntimeError(f"{worker.name} has no correction from the dealer for this "
                           "request; ask the dealer (mpc.deal) first")
    pend["derived"] = check_correction(pend["kind"], correction, **pend["params"])
    return pend["derived"]


def _draw(worker: Worker, session: str, label: bytes, kind: str, params: dict[str, Any]
          ) -> list[torch.Tensor]:
    """This party's shares of a request's random inputs, from its seed (or drawn ahead by
    ``mpc.prepare``); remembers how to get the derived ones."""
    pend = _pending(worker, label)
    drawn = pend.pop("drawn", None)
    if drawn is not None:
        if (pend["kind"], pend["params"]) != (kind, params):
            raise ValueError(f"{worker.name} drew randomness for a {pend['kind']} "
                             f"{pend['params']} under this label, not for {kind} {params}")
        return drawn
    sess = _session(worker, session)
    bases, derived = expand_parts(kind, sess["seed"], label, sess["index"], sess["n"],
                                  **params)
    pend["kind"], pend["params"] = kind, params
    if derived is not None:
        pend["derived"] = derived
    return bases


def _abort_peers(worker: Worker, session: str, labels: list[bytes], exc: BaseException
                 ) -> None:
    """A fused step failed: tell the peers waiting for this party, so they stop too."""
    state = _state(worker)
    for label in labels:
        state["pending"].pop(label, None)
    sess = state["sessions"].get(session)
    if sess is None:
        return
    reason = f"{worker.name} failed: {type(exc).__name__}: {exc}"
    for name in sess["parties"]:
        if name == worker.name:
            continue
        with contextlib.suppress(Exception):
            submit(worker.client_for(name), "mpc.abort",
                   {"session": session, "labels": labels, "reason": reason})


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
    if caller != dealer:
        raise PermissionError(f"only the dealer {dealer} hands out its seeds, not {caller}")
    _state(worker)["sessions"][session] = {"index": index, "n": n, "parties": parties,
                                           "seed": seed, "dealer": dealer}


@protocol_step("mpc.deal")
def deal(worker: Worker, caller: str, *, session: str,
         requests: list[tuple[bytes, str, dict[str, Any]]], fused: bool = False) -> int:
    """DEALER: corrections for each (label, kind, params), sent to the last party only.

    Fused, for one product (a few requests), each correction leaves as soon as it is
    made: the product's ``c`` is on its way while the truncation mask is dealt."""
    seeds = _state(worker)["dealer"].get(session)
    if seeds is None:
        raise KeyError(f"{worker.name} is not the dealer of MPC session {session!r}")
    last = _last_party(worker, session)
    out = _Outbox(worker, background=fused)
    one_by_one = fused and len(requests) <= 4
    items = []
    try:
        with _single_threaded() if fused else contextlib.nullcontext():
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
    dealers = {s["dealer"] for s in _state(worker)["sessions"].values()}
    if caller not in dealers:
        raise PermissionError(f"{caller} is not the dealer of a session {worker.name} is in")
    for label, tensors in items:
        _pending(worker, label)["corrections"] = list(tensors)
    worker.notify()


@protocol_step("mpc.deliver")
def deliver(worker: Worker, caller: str, *, session: str, label: bytes, sender: int,
            value: torch.Tensor) -> None:
    """PARTY: receive a peer's share of an opening."""
    sess = _session(worker, session)
    if not isinstance(sender, int) or not 0 <= sender < sess["n"] or (
            sess["parties"][sender] != caller):
        raise PermissionError(f"{caller} cannot deliver the opening of party {sender!r}")
    _pending(worker, label)["open"][sender] = value
    worker.notify()


@protocol_step("mpc.abort")
def abort(worker: Worker, caller: str, *, session: str, labels: list[bytes],
          reason: str) -> None:
    """PARTY: a peer or the dealer failed; a step waiting on these labels stops."""
    sess = _session(worker, session)
    if caller not in (*sess["parties"], sess["dealer"]):
        raise PermissionError(f"{caller} takes no part in MPC session {session!r}")
    for label in labels:
        _pending(worker, label)["aborted"] = str(reason)
    worker.notify()


@protocol_step("mpc.prepare")
def prepare(worker: Worker, caller: str, *, session: str,
            requests: list[tuple[bytes, str, dict[str, Any]]]) -> int:
    """PARTY, offline: draw its shares of requests dealt ahead (the dealer's ``mpc.deal``
    for the same labels), so the products that use them later start at once."""
    _session(worker, session)
    with _single_threaded():
        for label, kind, params in requests:
            pend = _pending(worker, label)
            if "drawn" in pend or "bases" in pend:
                raise ValueError(f"{worker.name} already drew randomness for label {label!r}"
                                 "; a label is used once")
            pend["drawn"] = _draw(worker, session, label, kind, params)
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
                 params: dict[str, Any], x: Ref, y: Ref | None, out: _Outbox) -> None:
    """Round 1: mask this party's shares with the triple's and send the masked shares."""
    xe = _entry(worker, x, "x")
    bases = _draw(worker, session, label, kind, params)
    pend = _pending(worker, label)
    if kind == "square":
        value = [beaver.beaver_square_open(xe.obj, bases[0])]
        pend["inputs"] = [xe]
    else:
        ye = _entry(worker, y, "y")
        value = list(mpc.beaver_open(xe.obj, ye.obj, bases[0], bases[1]))
        pend["inputs"] = [xe, ye]
    pend["bases"] = bases
    _broadcast(worker, session, label, value, out)


def _product(worker: Worker, session: str, label: bytes, *, wait: bool = False
             ) -> tuple[torch.Tensor, frozenset[str]]:
    """This party's share of the product, once every opening of round 1 is here."""
    sess = _session(worker, session)
    pend = _pending(worker, label)
    opened = _opened(worker, session, label, wait=wait)
    i, bases, kind = sess["index"], pend["bases"], pend["kind"]
    if kind == "square":
        z = beaver.beaver_square_cross_terms(i, opened[0], bases[0])
    else:
        eps, delta = opened
        conv = {k: v for k, v in pend["params"].items() if k in _CONV_KEYS}
        z = beaver.beaver_cross_terms(kind, i, eps, delta, bases[0], bases[1], **conv)
    z = beaver.add_c(z, _derived(worker, session, label, wait=wait)[0])
    policy = _policy(pend["inputs"])
    del _state(worker)["pending"][label]
    return z, policy


def _trunc_open(worker: Worker, session: str, label: bytes, x: torch.Tensor, frac_bits: int,
                policy: frozenset[str], out: _Outbox) -> None:
    sess = _session(worker, session)
    (r,) = _draw(worker, session, label, "trunc", {"shape": list(x.shape),
                                                     "frac_bits": frac_bits})
    pend = _pending(worker, label)
    pend["policy"], pend["frac_bits"] = policy, frac_bits
    _broadcast(worker, session, label, [mpc.trunc_open(sess["index"], x, r)], out)


def _truncated(worker: Worker, session: str, label: bytes, *, wait: bool = False
               ) -> tuple[torch.Tensor, frozenset[str]]:
    sess = _session(worker, session)
    pend = _pending(worker, label)
    opened = _opened(worker, session, label, wait=wait)
    r_hi, r_msb = _derived(worker, session, label, wait=wait)
    y = mpc.trunc_finish(sess["index"], opened[0], r_hi, r_msb, pend["frac_bits"])
    policy = pend["policy"]
    del _state(worker)["pending"][label]
    return y, policy


# ---- fused steps (one request per party per operation) -------------------------------------
@protocol_step("mpc.bilinear")
def bilinear(worker: Worker, caller: str, *, session: str, label: bytes, kind: str,
             params: dict[str, Any], x: Ref, y: Ref | None = None,
             trunc_label: bytes | None = None, frac_bits: int = 0) -> dict:
    """PARTY: a whole product (``mul``, ``matmul``, ``conv2d``, ``square``), truncated
    with ``trunc_label``: both openings, party to party; stores this party's share."""
    labels = [label] + ([trunc_label] if trunc_label is not None else [])
    out = _Outbox(worker, background=True)
    try:
        with _single_threaded():
            with tracing.round_label(f"{kind}: open masked inputs"):
                _open_masked(worker, session, label, kind, params, x, y, out)
                z, policy = _product(worker, session, label, wait=True)
            if trunc_label is not None:
                with tracing.round_label(f"{kind}: open for truncation"):
                    _trunc_open(worker, session, trunc_label, z, frac_bits, policy, out)
                    z, policy = _truncated(worker, session, trunc_label, wait=True)
            out.flush()
    except Exception as exc:
        _abort_peers(worker, session, labels, exc)
        raise
    return stored_result(worker, z, True, policy)


@protocol_step("mpc.truncate")
def truncate(worker: Worker, caller: str, *, session: str, label: bytes, x: Ref,
             frac_bits: int) -> dict:
    """PARTY: a whole truncation (after a public multiplication): one opening."""
    out = _Outbox(worker, background=True)
    try:
        with _single_threaded(), tracing.round_label("truncate: open masked value"):
            xe = _entry(worker, x, "x")
            _trunc_open(worker, session, label, xe.obj, frac_bits, _policy([xe]), out)
            z, policy = _truncated(worker, session, label, wait=True)
            out.flush()
    except Exception as exc:
        _abort_peers(worker, session, [label], exc)
        raise
    return stored_result(worker, z, True, policy)


# ---- round-by-round steps (the notebook starts each round) ---------------------------------
@protocol_step("mpc.beaver_open")
def beaver_open(worker: Worker, caller: str, *, session: str, label: bytes, kind: str,
                params: dict[str, Any], x: Ref, y: Ref | None = None) -> None:
    """PARTY, round 1: mask its shares with the triple's and send the masked shares."""
    _open_masked(worker, session, label, kind, params, x, y, _Outbox(worker, False))


@protocol_step("mpc.beaver_finish")
def beaver_finish(worker: Worker, caller: str, *, session: str, label: bytes,
                  trunc_label: bytes | None = None, frac_bits: int = 0) -> dict | None:
    """PARTY: its share of the product; with ``trunc_label``, also open it for truncation."""
    z, policy = _product(worker, session, label)
    if trunc_label is None:
        return stored_result(worker, z, True, policy)
    _trunc_open(worker, session, trunc_label, z, frac_bits, policy, _Outbox(worker, False))
    return None


@protocol_step("mpc.trunc_open")
def trunc_open(worker: Worker, caller: str, *, session: str, label: bytes, x: Ref,
               frac_bits: int) -> None:
    """PARTY, round 1 of a standalone truncation (after a public multiplication)."""
    xe = _entry(worker, x, "x")
    _trunc_open(worker, session, label, xe.obj, frac_bits, _policy([xe]),
                _Outbox(worker, False))


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
