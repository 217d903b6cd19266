"""Served workers for tests: state directories, owners' allowlists, processes."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from ppdl_nb.workers.transport.served_client import notebook_identity
from ppdl_nb.workers.transport.served_process import ServedProcess
from ppdl_nb.workers.transport.served_state import OwnerState, fingerprint


def my_fingerprint() -> str:
    return fingerprint(notebook_identity().public)


def owner(root: Path, name: str, *, peers: tuple[str, ...] = (), csv: str | None = None,
          epsilon: float = 2.0) -> OwnerState:
    """A worker's state directory whose owner allowed this notebook (and ``peers``, the
    names of other workers under ``root``), with an optional CSV dataset ``heart``."""
    state = OwnerState(root / name)
    state.keypair()
    state.allow(my_fingerprint(), "nb")
    for peer in peers:
        state.allow(fingerprint(OwnerState(root / peer).keypair().public), peer, role="peer")
    if csv is not None:
        (state.root / "heart.csv").write_text(csv)
        state.add_dataset("heart", "heart.csv", epsilon=epsilon, delta=1e-5, target="label")
    return state


def serve(root: Path, name: str, *, listen: str = "127.0.0.1:0",
          netns: str | None = None) -> ServedProcess:
    """Start ``name``'s worker (in network namespace ``netns``, if given)."""
    return ServedProcess(name, root / name, listen, dict(os.environ), netns=netns).start(90)


def stranger(endpoint: str, public_hex: str, seconds: float, hellos: int) -> None:
    """A stranger on the network: ``hellos`` handshakes carrying someone's PUBLIC key (it
    lacks the secret), each on its own TCP connection, then as fast as it can for
    ``seconds``: request frames, never reading a refusal, and a new connection with a
    forged proof for the gate each time. Prints "flooding", then how many it tried."""
    import zmq

    from ppdl_nb.workers.transport import chan_wire as wire

    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, hellos + 64)
    socks = []
    for _ in range(hellos):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.plain_username = b"me"  # a proof for the gate it cannot make: forged
        s.plain_password = bytes.fromhex(public_hex) + os.urandom(56)
        s.connect(endpoint)
        with contextlib.suppress(zmq.Again):
            s.send_multipart([wire.prefix(wire.KIND_HELLO, 0), b"me", bytes.fromhex(public_hex),
                              os.urandom(32), os.urandom(32), wire.PROTOCOL], flags=zmq.NOBLOCK)
        socks.append(s)
    flood = ctx.socket(zmq.DEALER)
    flood.setsockopt(zmq.LINGER, 0)
    flood.setsockopt(zmq.SNDTIMEO, 100)
    flood.connect(endpoint)
    socks.append(flood)
    print("flooding", flush=True)
    sent, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:  # frames on one connection, and a new forged one each
        with contextlib.suppress(zmq.Again):
            flood.send_multipart([wire.prefix(wire.KIND_REQUEST, sent + 1), b"x" * 64],
                                 flags=zmq.NOBLOCK)
        try:
            churn = ctx.socket(zmq.DEALER)
        except zmq.ZMQError:  # closed sockets not reaped yet: at the socket limit
            continue
        churn.setsockopt(zmq.LINGER, 0)
        churn.plain_username = b"me"
        churn.plain_password = bytes.fromhex(public_hex) + os.urandom(56)
        churn.connect(endpoint)
        churn.close()
        sent += 1
    print(sent, flush=True)
    for s in socks:
        s.close(linger=0)
    ctx.term()


if __name__ == "__main__":
    stranger(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
