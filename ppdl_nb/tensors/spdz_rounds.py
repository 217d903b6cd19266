"""What the SPDZ steps share: per-session state, and moving openings between parties.

A worker keeps, under ``worker.state["mpc"]``, the sessions it is a party of (its index,
the seed shared with the dealer), the dealer's seeds where it deals, and one *pending*
record per protocol label: the openings received so far, the dealer's correction, and
whether a peer aborted. The steps in :mod:`.mpc_steps` fill and read these records; this
module sends openings to peers (:class:`Outbox`, :func:`broadcast`), waits for theirs
with the worker unlocked (:func:`wait_for`), sums them (:func:`opened_values`) and draws this
party's randomness from its seed (:func:`draw`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import torch

from ppdl_nb.mpc.dealer import check_correction, expand_parts
from ppdl_nb.mpc.ring import check_ring
from ppdl_nb.workers.core.codec import Ref
from ppdl_nb.workers.core.concurrent import submit
from ppdl_nb.workers.core.store import Entry
from ppdl_nb.workers.core.worker import Worker

__all__ = ["WAIT_TIMEOUT", "Outbox", "abort_peers", "broadcast", "derived", "draw",
           "entry_of", "open_policy", "opened_values", "pending", "session_of", "single_threaded",
           "mpc_state", "wait_for"]

WAIT_TIMEOUT = 60.0  # seconds a fused step waits for a peer's or the dealer's message


def mpc_state(worker: Worker) -> dict[str, Any]:
    return worker.state.setdefault("mpc", {"sessions": {}, "dealer": {}, "pending": {}})


def session_of(worker: Worker, session: str) -> dict[str, Any]:
    try:
        return mpc_state(worker)["sessions"][session]
    except KeyError:
        raise KeyError(
            f"{worker.name} is not a party of MPC session {session!r}: share the tensors "
            "again (the worker may have restarted)"
        ) from None


def pending(worker: Worker, label: bytes) -> dict[str, Any]:
    return mpc_state(worker)["pending"].setdefault(
        label, {"open": {}, "corrections": None, "aborted": None})


def entry_of(worker: Worker, ref: Any, what: str) -> Entry:
    if not isinstance(ref, Ref):
        raise TypeError(f"{what} must be a reference to a share on {worker.name}")
    return worker.store.entry(ref.id)


def open_policy(entries: list[Entry]) -> frozenset[str]:
    """Who may open a result: those allowed to open every input."""
    return frozenset.intersection(*[e.allowed for e in entries])


# ---- sending to peers ----------------------------------------------------------------------
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


# ---- openings and corrections --------------------------------------------------------------
def broadcast(worker: Worker, session: str, label: bytes, value: list[torch.Tensor],
               out: Outbox) -> None:
    """Send this party's openings of one round to every peer: one message, one buffer
    per tensor (no packing copy)."""
    sess = session_of(worker, session)
    pending(worker, label)["open"][sess["index"]] = value
    for name in sess["parties"]:
        if name != worker.name:
            out.send(name, "mpc.deliver", session=session, label=label, sender=sess["index"],
                     value=value)


def wait_for(worker: Worker, label: bytes, ready: Any, what: str) -> None:
    """Wait (worker unlocked) until ``ready(pending)``; raise if a peer aborted."""
    pend = pending(worker, label)

    def check() -> bool:
        return pend["aborted"] is not None or ready(pend)

    if not worker.wait_until(check, WAIT_TIMEOUT):
        raise TimeoutError(f"{worker.name} waited {WAIT_TIMEOUT:g} s for {what}; did every "
                           "party and the dealer get its request?")
    if pend["aborted"] is not None:
        raise RuntimeError(f"{worker.name} stopped: {pend['aborted']}")


def opened_values(worker: Worker, session: str, label: bytes, *, wait: bool = False
            ) -> list[torch.Tensor]:
    sess = session_of(worker, session)
    n = sess["n"]
    if wait:
        wait_for(worker, label, lambda p: len(p["open"]) == n, "its peers' openings")
    got = pending(worker, label)["open"]
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


def derived(worker: Worker, session: str, label: bytes, *, wait: bool = False
             ) -> list[torch.Tensor]:
    """This party's shares of a request's derived values (the last party: the dealer's)."""
    pend = pending(worker, label)
    if pend.get("derived") is not None:
        return pend["derived"]
    if wait:
        wait_for(worker, label, lambda p: p["corrections"] is not None,
              "the dealer's correction")
    correction = pend["corrections"]
    if correction is None:
        raise RuntimeError(f"{worker.name} has no correction from the dealer for this "
                           "request; ask the dealer (mpc.deal) first")
    pend["derived"] = check_correction(pend["kind"], correction, **pend["params"])
    return pend["derived"]


def draw(worker: Worker, session: str, label: bytes, kind: str, params: dict[str, Any]
          ) -> list[torch.Tensor]:
    """This party's shares of a request's random inputs, from its seed (or drawn ahead by
    ``mpc.prepare``); remembers how to get the derived ones."""
    pend = pending(worker, label)
    drawn = pend.pop("drawn", None)
    if drawn is not None:
        if (pend["kind"], pend["params"]) != (kind, params):
            raise ValueError(f"{worker.name} drew randomness for a {pend['kind']} "
                             f"{pend['params']} under this label, not for {kind} {params}")
        return drawn
    sess = session_of(worker, session)
    bases, derived = expand_parts(kind, sess["seed"], label, sess["index"], sess["n"],
                                  **params)
    pend["kind"], pend["params"] = kind, params
    if derived is not None:
        pend["derived"] = derived
    return bases


def abort_peers(worker: Worker, session: str, labels: list[bytes], exc: BaseException
                 ) -> None:
    """A fused step failed: tell the peers waiting for this party, so they stop too."""
    state = mpc_state(worker)
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
