"""A session's openings over data links: each round goes party to party on a sealed pipe.

On the request channel every opening is a request with a reply, passed through a send
pool, the peer's serve thread and one of its handler threads before the waiting routine
wakes (about a millisecond a round here). Workers that run in their own processes
(kernel workers) instead send a fused operation's openings on a data link
(:mod:`ppdl_nb.workers.transport.datalink`): the routine's own thread seals and sends,
and the peer's waiting routine reads its links itself and files the shares (no thread
hand-off on either side). Round-by-round runs
and workers without a data plane (virtual, served) keep the request channel, so both
paths carry the same messages and the trace shows the same rounds.

A link is set up on a party's first opening to a peer in a session: the sender draws a
link id and a key and sends them with ``mpc.link`` over the authenticated channel; the
peer checks that the caller is a party of that session, registers the link and answers
with where it listens. Whatever then arrives on the link is from that caller.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ppdl_nb.tensors.spdz.state import PartySession, SPDZState, spdz_state
from ppdl_nb.workers.core import codec, tracing
from ppdl_nb.workers.core.concurrent import submit
from ppdl_nb.workers.core.messages import protocol_step
from ppdl_nb.workers.core.worker import Worker
from ppdl_nb.workers.transport.datalink import KEY_BYTES, LINK_ID_BYTES, OutLink, links_of

__all__ = ["link", "out_link", "send_on_link", "wait_for_peers"]

LINK_TIMEOUT = 60.0
_SLICE = 0.05  # seconds between looks at an abort (which comes on the request channel)


@protocol_step("mpc.link")
def link(worker: Worker, caller: str, *, session: str, link: bytes, key: bytes
         ) -> str | None:
    """PARTY: receive ``caller``'s openings in ``session`` on data link ``link`` (sealed
    under ``key``); returns where this party listens, or None if it has no data links
    (the caller then keeps the request channel)."""
    sess = spdz_state(worker).session(worker.name, session)
    if caller not in sess.parties or caller == worker.name:
        raise PermissionError(f"{caller} is not a peer of {worker.name} in MPC session "
                              f"{session!r}")
    links = links_of(worker.state)
    if links is None:
        return None
    links.accept(link, key, _receiver(worker, session, caller))
    return links.endpoint


def _receiver(worker: Worker, session: str, peer: str) -> Any:
    """What the reading routine does with a message from ``peer``: ``mpc.deliver``'s work
    under the worker's lock, or, for a malformed one, stop the round it names."""
    def take(frames: list[Any]) -> None:
        nbytes = codec.frames_nbytes(frames)
        with worker.locked():
            worker.counters.messages_in += 1
            worker.counters.bytes_in += nbytes
            label = None
            try:
                head, value = codec.decode_tensors(frames, owned=True)
                if not (isinstance(head, list) and len(head) == 2):
                    raise ValueError("an opening's head is [label, sender]")
                label, sender = head
                spdz_state(worker).file_opening(worker.name, peer, session, label, sender,
                                                value)
            except Exception as exc:  # the peer broke the protocol: its round stops
                worker.log_private_failure(f"data link from {peer}", exc)
                if isinstance(label, bytes):
                    spdz_state(worker).pending_for(label).aborted = (
                        f"{peer} sent a malformed opening: {type(exc).__name__}: {exc}")
            worker.notify()

    return take


def out_link(worker: Worker, state: SPDZState, session: PartySession, peer: str
             ) -> OutLink | None:
    """This party's link to ``peer`` in ``session`` (set up on first use, the worker
    unlocked while the peer answers), or None where there are none."""
    key = (session.id, peer)
    if key in state.out_links:
        return state.out_links[key]
    if links_of(worker.state) is None:
        state.out_links[key] = None
        return None
    link_id, secret = os.urandom(LINK_ID_BYTES), os.urandom(KEY_BYTES)
    future = submit(worker.client_for(peer), link.name,
                    {"session": session.id, "link": link_id, "key": secret})
    future.add_done_callback(lambda _: worker.notify())
    if not worker.wait_until(future.done, LINK_TIMEOUT):
        raise TimeoutError(f"{peer} did not answer {worker.name}'s data link request within "
                           f"{LINK_TIMEOUT:g} s")
    endpoint = future.result()
    if key in state.out_links:  # another routine of the session set it up meanwhile
        return state.out_links[key]
    made = OutLink(endpoint, link_id, secret) if isinstance(endpoint, str) else None
    state.out_links[key] = made
    return made


def send_on_link(worker: Worker, out: OutLink, peer: str, session: PartySession,
                 label: bytes, shares: list[Any], round: str) -> None:
    """Send this party's shares of one round (named ``round`` in traces) to ``peer``."""
    frames = codec.encode_tensors([label, session.index], shares)
    before = out.bytes_sent
    try:
        out.send(frames)
    except ConnectionError as exc:
        raise ConnectionError(f"{peer} vanished (its data link closed: {exc}) while "
                              f"{worker.name} sent its openings; restart it and share the "
                              "inputs again") from None
    worker.counters.messages_out += 1
    worker.counters.bytes_out += out.bytes_sent - before
    tracing.record(worker.name, peer, "mpc.deliver", out.bytes_sent - before, 0, round=round)


def wait_for_peers(worker: Worker, state: SPDZState, session: PartySession,
                   ready: Callable[[], bool], timeout: float) -> bool:
    """Inside a handler: wait until ``ready()`` (peers' openings, or an abort), reading
    this worker's data links itself with the worker unlocked; without data links, as
    :meth:`Worker.wait_until`. Whether it became ready within ``timeout`` seconds; a
    ``ConnectionError`` as soon as a peer's link shows that peer gone (a party whose
    process died cannot say so itself)."""
    links = links_of(worker.state)
    if links is None:
        return worker.wait_until(ready, timeout)
    deadline = time.monotonic() + timeout
    while not ready():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        with worker.unlocked():
            read = links.pump(min(left, _SLICE))
        if not read:  # another routine is reading: it files ours too, and notifies
            worker.wait_until(ready, min(left, _SLICE))
        if ready():
            break
        gone = _vanished(state, session)
        if gone is not None:
            raise ConnectionError(f"{gone} vanished (its data link closed) while "
                                  f"{worker.name} waited for its openings; restart it "
                                  "and share the inputs again")
    return True


def _vanished(state: SPDZState, session: PartySession) -> str | None:
    for peer in session.peers:
        out = state.out_links.get((session.id, peer))
        if out is not None and out.lost():
            return peer
    return None
