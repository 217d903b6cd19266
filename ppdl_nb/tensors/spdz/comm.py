"""How parties talk during an operation: openings, the dealer's corrections, aborts.

Every message between workers of a session goes through here: :func:`send_opening`
sends a party's shares of one round to every peer (one message each, a buffer per
tensor), ``mpc.deliver`` receives them, ``mpc.corrections`` receives the dealer's,
:func:`receive` waits for what a routine asked for (with the worker unlocked, so that
the messages it waits for can arrive), and ``mpc.abort`` / :func:`abort_peers` stop the
peers of a party that failed instead of leaving them waiting.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import torch

from ppdl_nb.mpc.bits import xor_reconstruct
from ppdl_nb.mpc.dealer import check_correction
from ppdl_nb.mpc.ring import check_ring
from ppdl_nb.tensors.spdz.links import out_link, send_on_link, wait_for_peers
from ppdl_nb.tensors.spdz.routines import Derived, Instruction, Open
from ppdl_nb.tensors.spdz.state import PartySession, Pending, SPDZState, spdz_state
from ppdl_nb.workers.core import tracing
from ppdl_nb.workers.core.concurrent import submit
from ppdl_nb.workers.core.messages import Step, protocol_step
from ppdl_nb.workers.core.worker import Worker

__all__ = ["WAIT_TIMEOUT", "Outbox", "abort", "abort_peers", "corrections", "deliver",
           "receive", "send_opening", "single_threaded"]

WAIT_TIMEOUT = 60.0  # seconds a party waits for a peer's or the dealer's message


class Outbox:
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

    def send(self, name: str, step: Step, **kwargs: Any) -> None:
        """Ask peer ``name`` to run ``step`` (its arguments are not checked: this module
        writes them, and checking costs a signature bind per message)."""
        client = self.worker.client_for(name)
        if not self.background:
            client.step(step.name, **kwargs)
            return
        future = submit(client, step.name, kwargs)
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
def single_threaded() -> Iterator[None]:
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


# ---- what parties and the dealer send each other -------------------------------------------
@protocol_step("mpc.deliver")
def deliver(worker: Worker, caller: str, *, session: str, label: bytes, sender: int,
            value: list[torch.Tensor]) -> None:
    """PARTY: receive a peer's shares of one round's openings."""
    spdz_state(worker).file_opening(worker.name, caller, session, label, sender, value)
    worker.notify()


@protocol_step("mpc.corrections")
def corrections(worker: Worker, caller: str, *, items: list[tuple[bytes, list]]) -> None:
    """LAST PARTY: keep the dealer's corrections until the routine that needs them asks."""
    state = spdz_state(worker)
    if caller not in state.dealers():
        raise PermissionError(f"{caller} is not the dealer of a session {worker.name} is in")
    for label, tensors in items:
        state.pending_for(label).correction = list(tensors)
    worker.notify()


@protocol_step("mpc.abort")
def abort(worker: Worker, caller: str, *, session: str, labels: list[bytes],
          reason: str) -> None:
    """PARTY: a peer or the dealer failed: a routine waiting on these labels stops (one
    stopped between rounds is dropped)."""
    state = spdz_state(worker)
    sess = state.session(worker.name, session)
    if caller not in (*sess.parties, sess.dealer):
        raise PermissionError(f"{caller} takes no part in MPC session {session!r}")
    for label in labels:
        state.pending_for(label).aborted = str(reason)
    for key, run in list(state.running.items()):
        if run.labels.intersection(labels):
            del state.running[key]
            run.routine.close()
            forget(state, run.labels)
    worker.notify()


def abort_peers(worker: Worker, session: PartySession, labels: list[bytes],
                exc: BaseException) -> None:
    """This party failed: tell its peers, so that none waits for it."""
    reason = f"{worker.name} failed: {type(exc).__name__}: {exc}"
    for name in session.peers:
        with contextlib.suppress(Exception):
            submit(worker.client_for(name), abort.name,
                   {"session": session.id, "labels": labels, "reason": reason})


def forget(state: SPDZState, labels: set[bytes]) -> None:
    for label in labels:
        state.pending.pop(label, None)


# ---- one round, and what a routine waits for -----------------------------------------------
def send_opening(worker: Worker, state: SPDZState, session: PartySession, step: Open,
                 out: Outbox) -> None:
    """Send this party's shares of a round's openings to every peer: one message, one
    buffer per tensor (no packing copy)."""
    state.pending_for(step.label).openings[session.index] = step.shares
    for name in session.peers:
        link = out_link(worker, state, session, name) if out.background else None
        if link is not None:
            send_on_link(worker, link, name, session, step.label, step.shares, step.round)
            continue
        with tracing.round_label(step.round):
            out.send(name, deliver, session=session.id, label=step.label,
                     sender=session.index, value=step.shares)


def receive(worker: Worker, state: SPDZState, session: PartySession, step: Instruction,
            *, wait: bool) -> list[torch.Tensor]:
    """What ``step`` asked for: the opened values, or this party's derived shares. With
    ``wait``, waits for the peers' (or the dealer's) messages, the worker unlocked."""
    pend = state.pending_for(step.label)
    if isinstance(step, Open):
        ready: Callable[[], bool] = lambda: len(pend.openings) == session.n  # noqa: E731
        what = "its peers' openings"
    elif isinstance(step, Derived):
        ready = lambda: pend.derived is not None or pend.correction is not None  # noqa: E731
        what = "the dealer's correction"
    else:
        raise TypeError(f"a routine yielded {type(step).__name__}, not Open or Derived")
    done = lambda: pend.aborted is not None or ready()  # noqa: E731
    if wait and not (wait_for_peers(worker, state, session, done, WAIT_TIMEOUT)
                     if isinstance(step, Open)
                     else worker.wait_until(done, WAIT_TIMEOUT)):
        raise TimeoutError(f"{worker.name} waited {WAIT_TIMEOUT:g} s for {what}; did every "
                           "party and the dealer get its request?")
    if pend.aborted is not None:
        raise RuntimeError(f"{worker.name} stopped: {pend.aborted}")
    if not ready():
        raise RuntimeError(_missing(worker.name, session, pend, what))
    if isinstance(step, Open):
        return _opened(worker.name, session, pend)
    if pend.derived is None:
        pend.derived = check_correction(pend.kind, pend.correction, **pend.params)
    return pend.derived


def _missing(name: str, session: PartySession, pend: Pending, what: str) -> str:
    if what == "the dealer's correction":
        return (f"{name} has no correction from the dealer for this request; ask the "
                "dealer (mpc.deal) first")
    missing = [session.parties[i] for i in range(session.n) if i not in pend.openings]
    return (f"{name} is missing openings from {missing} for this round; start the round "
            "on every party first")


def _opened(name: str, session: PartySession, pend: Pending) -> list[torch.Tensor]:
    parts = [pend.openings[i] for i in range(session.n)]
    if any(not isinstance(p, list) or len(p) != len(parts[0]) for p in parts):
        raise ValueError(f"{name} got openings of different structure for one round")
    return [_sum(list(values)) for values in zip(*parts, strict=True)]


def _sum(values: list[torch.Tensor]) -> torch.Tensor:
    """The opened value: the shares' sum mod 2^64 (one pass for two parties), or for
    packed bits (``uint8``, see ``mpc.bits``) their XOR."""
    if all(isinstance(v, torch.Tensor) and v.dtype == torch.uint8 for v in values):
        if len({v.shape for v in values}) != 1:
            raise ValueError("the parties' packed bits differ in length")
        return xor_reconstruct(values)
    for v in values:
        check_ring(v, "an opening")
    out = torch.add(values[0], values[1])
    for v in values[2:]:
        out += v
    return out
