"""Availability under a flood: a stranger on the same machine cannot stall a kernel worker.

A kernel worker (``launch("flood_a")``) is pinged by the notebook, first alone, then while
a stranger process (same user, so it can reach the worker's ipc endpoint) floods it:
1,100 hellos, each from its own connection, carrying the notebook's PUBLIC key (the
stranger lacks its secret), then request frames sent as fast as one process can for
10 s, none of whose refusals it ever reads. Rows: ping p50/p99 unflooded and flooded
(same run), timeouts, how many frames the stranger sent, whether the notebook's session
survived, and whether the bars hold (flooded p99 < 10 ms and <= 3x unflooded, zero
timeouts, session kept). Loopback (ipc) only; bounded in time and count.

    python benchmarks/bench_flood.py [--quick] [--json PATH]
"""

from __future__ import annotations

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


def stranger(endpoint: str, notebook_public_hex: str, seconds: float) -> None:
    """The attacker: hellos with the notebook's public key, then refused frames, never read."""
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, HELLOS + 64)
    public = bytes.fromhex(notebook_public_hex)
    hello_socks = []
    for _ in range(HELLOS):  # one connection each: each would be a session table entry
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        s.send_multipart([wire.prefix(wire.KIND_HELLO, 0), b"me", public, os.urandom(32),
                          os.urandom(32)])
        hello_socks.append(s)
    flood = ctx.socket(zmq.DEALER)
    flood.setsockopt(zmq.LINGER, 0)
    flood.setsockopt(zmq.SNDTIMEO, 100)
    flood.connect(endpoint)
    print("flooding", flush=True)
    sent, seq = 0, 0
    body = os.urandom(64)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
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


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--stranger", nargs=3, metavar=("ENDPOINT", "KEY", "SECONDS"),
                   help=argparse_hidden())
    args = p.parse_args()
    if args.stranger:
        stranger(args.stranger[0], args.stranger[1], float(args.stranger[2]))
        return
    import ppdl_nb
    from ppdl_nb.workers.transport.kernel import notebook_keys

    seconds = 1.0 if args.quick else 10.0
    (alice,) = ppdl_nb.launch("flood_a")
    try:
        alice.ping()
        session = alice.channel._session
        calm, calm_timeouts = _pings(alice, count=200 if args.quick else 3000)
        proc = subprocess.Popen([sys.executable, __file__, "--stranger", alice.endpoint,
                                 notebook_keys().public_hex, str(seconds)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "flooding"
            stormy, storm_timeouts = _pings(alice, until=time.monotonic() + seconds)
            sent = int(proc.stdout.readline() or 0)
        finally:
            proc.kill()
            proc.wait()
        kept = alice.channel._session is session and alice.ping() == "pong"
    finally:
        alice.shutdown()
    rows = [_row("unflooded", calm, calm_timeouts), _row("flooded", stormy, storm_timeouts)]
    ok = (rows[1]["p99_ms"] < 10 and rows[1]["p99_ms"] <= 3 * rows[0]["p99_ms"]
          and calm_timeouts + storm_timeouts == 0 and kept)
    rows += [{"phase": f"stranger: {HELLOS} hellos + frames sent", "pings": sent},
             {"phase": "notebook session kept", "pings": str(kept)},
             {"phase": "bars met (p99 < 10 ms, <= 3x, 0 timeouts, kept)", "pings": str(ok)}]
    report("Kernel worker under a stranger's flood: notebook ping latency", rows, args,
           {"flood_seconds": seconds, "hellos": HELLOS, "bars_met": ok})


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
