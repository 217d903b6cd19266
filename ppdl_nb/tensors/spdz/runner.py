"""The worker side of an operation: run a routine of :mod:`.routines` on this party.

``mpc.run`` starts an operation's routine and executes what it yields: for an
:class:`~.routines.Open`, it sends this party's shares to its peers (:mod:`.comm`) and
counts one round (here, and nowhere else); for an :class:`~.routines.Open` or a
:class:`~.routines.Derived`, it gives the routine the peers' or the dealer's part. Two
ways, one routine:

* ``wait=True`` (fused): the routine runs to its end in this request, waiting for its
  peers' messages with the worker unlocked; every party runs it at once.
* ``wait=False`` (round by round): the request ends once the routine has sent the
  openings of its next round; the notebook starts each round on every party in turn
  with ``mpc.resume``, so that the peers' openings are there when it does.

The reply says whether the routine finished (then it carries this party's share of the
result, stored here: the notebook gets a pointer), how many rounds this request ran, and
the round it stopped in.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ppdl_nb.tensors.spdz import program as _program  # noqa: F401  (registers "program")
from ppdl_nb.tensors.spdz import training as _training  # noqa: F401  (registers "train")
from ppdl_nb.tensors.spdz.comm import (
    Outbox,
    abort_peers,
    forget,
    receive,
    send_opening,
    single_threaded,
)
from ppdl_nb.tensors.spdz.routines import ROUTINES, Open, Party
from ppdl_nb.tensors.spdz.state import Running, SPDZState, spdz_state
from ppdl_nb.workers.core.handlers import stored_result
from ppdl_nb.workers.core.messages import protocol_step
from ppdl_nb.workers.core.worker import Worker

__all__ = ["resume", "run"]


@protocol_step("mpc.run")
def run(worker: Worker, caller: str, *, session: str, op: str, args: dict[str, Any],
        wait: bool = True) -> dict[str, Any]:
    """PARTY: start operation ``op`` (a routine's name) with ``args``; see the module."""
    fn = ROUTINES.get(op)
    if fn is None:
        raise ValueError(f"no SPDZ operation {op!r}; known: {', '.join(sorted(ROUTINES))}")
    state = spdz_state(worker)
    sess = state.session(worker.name, session)
    label = args.get("label")
    if not isinstance(label, bytes) or label in state.running:
        raise ValueError(f"operation {op} needs a fresh label (bytes), got {label!r}")
    try:  # a generator binds its arguments when made, before it runs
        routine = fn(Party(worker.name, worker.store, state, sess), **args)
    except TypeError as exc:
        raise TypeError(f"operation {op}: {exc}") from None
    labels = {v for k, v in args.items() if k.endswith("label") and isinstance(v, bytes)}
    return _advance(worker, state, label, Running(routine, sess, caller, labels), wait=wait)


@protocol_step("mpc.resume")
def resume(worker: Worker, caller: str, *, session: str, label: bytes) -> dict[str, Any]:
    """PARTY: run the next round of the operation started with ``label`` (round by round)."""
    state = spdz_state(worker)
    task = state.running.get(label)
    if task is None or task.session.id != session:
        raise KeyError(f"{worker.name} has no operation {label!r} waiting in session "
                       f"{session!r}; start it with mpc.run")
    if task.caller != caller:
        raise PermissionError(f"only {task.caller} may resume operation {label!r}")
    del state.running[label]
    return _advance(worker, state, label, task, wait=False)


def _advance(worker: Worker, state: SPDZState, key: bytes, task: Running, *, wait: bool
             ) -> dict[str, Any]:
    rounds = task.rounds
    out = Outbox(worker, background=wait)
    try:
        with single_threaded() if wait else contextlib.nullcontext():
            finished = _step(worker, state, task, out, wait)
            out.flush()
    except Exception as exc:
        task.routine.close()
        forget(state, task.labels)
        abort_peers(worker, task.session, sorted(task.labels), exc)
        raise
    reply: dict[str, Any] = {"done": finished is not None, "rounds": task.rounds - rounds}
    if finished is None:
        state.running[key] = task
        reply["round"] = task.waiting.round
        return reply
    forget(state, task.labels)
    share, policy, *extra = finished  # a program adds its per-step figures
    reply["result"] = stored_result(worker, share, True, policy)
    if extra:
        reply["extra"] = extra[0]
    return reply


def _step(worker: Worker, state: SPDZState, task: Running, out: Outbox, wait: bool) -> Any:
    """Execute the routine's instructions until it returns (its result) or, without
    ``wait``, until it has sent a round's openings (None)."""
    value = None
    while True:
        step, task.waiting = task.waiting, None
        if step is None:
            try:
                step = task.routine.send(value)
            except StopIteration as end:
                return end.value
            task.labels.add(step.label)
            if isinstance(step, Open):
                send_opening(worker, state, task.session, step, out)
                task.rounds += 1
                if not wait:
                    task.waiting = step
                    return None
        value = receive(worker, state, task.session, step, wait=wait)
