"""Availability under a flood: a stranger on the same machine cannot stall a kernel worker.

A kernel worker (``launch("flood_a")``) is pinged by the notebook, first alone, then while
a stranger process (same user, so it can reach the worker's ipc endpoint) floods it:
1,100 hellos, each from its own connection, carrying the notebook's PUBLIC key and a
forged proof for the worker's gate (the stranger lacks the secret), then for 10 s as
fast as one process can: request frames on one connection, none of whose refusals it
ever reads (the issue's flood); then again with a new connection per frame, each with a
forged proof, so that the gate (:mod:`ppdl_nb.workers.transport.chan_gate`) checks
every one. Rows: ping p50/p99 unflooded and under each flood (same run), timeouts, what
the stranger sent, whether the notebook's session survived, and whether the bars hold
(flooded p99 < 10 ms and <= 3x unflooded, zero timeouts, session kept). Loopback (ipc)
only; bounded in time and count.

    python benchmarks/bench_flood.py [--quick] [--json PATH]
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from ppdl_nb.workers.transport import chan_wire as wire  # noqa: E402

HELLOS = 1100
PING_TIMEOUT_S = 2.0


def stranger(endpoint: str, notebook_public_hex: str, seconds: float, mode: str) -> None:
    """The attacker: hellos with the notebook's public key (and a forged proof for the
    gate), then for ``seconds`` as fast as it can: ``frames``, request frames on one
    connection, refusals never read; ``churn``, a new connection per frame, each with a
    forged proof (so the worker's gate checks every one)."""
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, HELLOS + 64)
    public = bytes.fromhex(notebook_public_hex)
    hello = [wire.prefix(wire.KIND_HELLO, 0), b"me", public, os.urandom(32), os.urandom(32)]
    hello_socks = [_forger(ctx, endpoint, public, hello) for _ in range(HELLOS)]
    flood = ctx.socket(zmq.DEALER)
    flood.setsockopt(zmq.LINGER, 0)
    flood.setsockopt(zmq.SNDTIMEO, 100)
    flood.connect(endpoint)
    print("flooding", flush=True)
    sent, seq = 0, 0
    body = os.urandom(64)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if mode == "churn":
            seq += 1
            try:
                s = _forger(ctx, endpoint, public, [wire.prefix(wire.KIND_REQUEST, seq), body])
            except zmq.ZMQError:  # closed sockets not reaped yet: at the socket limit
                continue
            s.close()
            sent += 1
            continue
        for _ in range(256):
            seq += 1
            try:  # a request with no session: the worker refuses it, we never read
                flood.send_multipart([wire.prefix(wire.KIND_REQUEST, seq), body])
                sent += 1
            except zmq.Again:
                break  # the worker's queue for us is full: it is not reading us faster
    print(sent, flush=True)
    for s in [*hello_socks, flood]:
        s.close(linger=0)
    ctx.term()


def _forger(ctx: zmq.Context, endpoint: str, public: bytes, frames: list) -> zmq.Socket:
    """A connection presenting the gate a proof for ``public`` it cannot make; one send."""
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.plain_username, s.plain_password = b"me", public + os.urandom(56)
    s.connect(endpoint)
    with contextlib.suppress(zmq.Again):
        s.send_multipart(frames, flags=zmq.NOBLOCK)
    return s


def _pings(worker, until: float | None = None, count: int = 0) -> tuple[list[float], int]:
    """Ping back to back (for ``count`` pings, or until ``until``): latencies, timeouts."""
    times, timeouts = [], 0
    while (until is not None and time.monotonic() < until) or len(times) + timeouts < count:
        t0 = time.perf_counter()
        try:
            worker.request({"kind": "ping"}, timeout=PING_TIMEOUT_S)
        except TimeoutError:
            timeouts += 1
            continue
        times.append(time.perf_counter() - t0)
    return times, timeouts


def _row(phase: str, times: list[float], timeouts: int) -> dict:
    q = statistics.quantiles(times, n=100, method="inclusive")
    return {"phase": phase, "pings": len(times), "p50_ms": 1e3 * statistics.median(times),
            "p99_ms": 1e3 * q[98], "timeouts": timeouts}


def _storm(alice, seconds: float, mode: str) -> tuple[list[float], int, int]:
    """Ping while a stranger floods in ``mode``: latencies, timeouts, what it sent."""
    from ppdl_nb.workers.transport.kernel import notebook_keys

    proc = subprocess.Popen([sys.executable, __file__, "--stranger", alice.endpoint,
                             notebook_keys().public_hex, str(seconds), mode],
                            stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout.readline().strip() != "flooding":
            raise RuntimeError("the stranger process did not start")
        times, timeouts = _pings(alice, until=time.monotonic() + seconds)
        sent = int(proc.stdout.readline() or 0)
    finally:
        proc.kill()
        proc.wait()
    return times, timeouts, sent


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--stranger", nargs=4, metavar=("ENDPOINT", "KEY", "SECONDS", "MODE"),
                   help=argparse_hidden())
    args = p.parse_args()
    if args.stranger:
        stranger(args.stranger[0], args.stranger[1], float(args.stranger[2]),
                 args.stranger[3])
        return
    import ppdl_nb

    seconds = 1.0 if args.quick else 10.0
    (alice,) = ppdl_nb.launch("flood_a")
    try:
        alice.ping()
        session = alice.channel._session
        calm, calm_timeouts = _pings(alice, count=200 if args.quick else 3000)
        stormy, storm_timeouts, sent = _storm(alice, seconds, "frames")
        churned, churn_timeouts, connections = _storm(alice, seconds, "churn")
        kept = alice.channel._session is session and alice.ping() == "pong"
    finally:
        alice.shutdown()
    rows = [_row("unflooded", calm, calm_timeouts),
            _row("flooded: frames on one connection", stormy, storm_timeouts),
            _row("flooded: a new forged connection per frame", churned, churn_timeouts)]
    ok = (rows[1]["p99_ms"] < 10 and rows[1]["p99_ms"] <= 3 * rows[0]["p99_ms"]
          and calm_timeouts + storm_timeouts == 0 and kept)
    churn_ok = (rows[2]["p99_ms"] < 10 and rows[2]["p99_ms"] <= 3 * rows[0]["p99_ms"]
                and churn_timeouts == 0)
    rows += [{"phase": f"stranger: {HELLOS} hellos + frames sent", "pings": sent},
             {"phase": "stranger: forged connections made", "pings": connections},
             {"phase": "notebook session kept", "pings": str(kept)},
             {"phase": "bars met (p99 < 10 ms, <= 3x, 0 timeouts, kept)", "pings": str(ok)},
             {"phase": "same bars under connection churn", "pings": str(churn_ok)}]
    report("Kernel worker under a stranger's flood: notebook ping latency", rows, args,
           {"flood_seconds": seconds, "hellos": HELLOS, "bars_met": ok,
            "churn_bars_met": churn_ok})


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
