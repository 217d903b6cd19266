"""The fixed cost of one round inside a program, next to a plain pyzmq ping-pong.

    python benchmarks/bench_rounds.py [--rounds 10000] [--quick] [--json PATH]

A private network needs dozens of rounds, so what one round costs between two parties,
with nothing else in the way, bounds everything built on it (issue 13, item 6). Two kernel
workers run one program (a routine registered in each for this benchmark) that opens an
8-byte share ``--rounds`` times: in every round each party sends 8 bytes to the other and
waits for the other's 8 bytes, through the same machinery as every SPDZ operation
(encrypted channel, peer to peer, the notebook not involved). Each party times its own
loop; the row is the slower party's time per round. Next to it, in the same run: two
plain Python processes doing a pyzmq ``PAIR`` ping-pong of 8 bytes over ``ipc://`` (one
round trip per round: A sends, B answers), timed in A.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

import ppdl_nb  # noqa: E402
from ppdl_nb.tensors.spdz.session import MPCSession  # noqa: E402

# Registered inside each party's kernel (the notebook may run code in its own kernels):
# the benchmark's routine, never part of the package.
PARTY_CODE = '''
import time, torch
from ppdl_nb.tensors.spdz.routines import ROUTINES, Open, routine
BENCH_ROUNDS = {}
if "bench_rounds" not in ROUTINES:
    @routine("bench_rounds")
    def _bench_rounds(p, *, label, n):
        x = torch.zeros(1, dtype=torch.int64)
        (x,) = yield Open(label + b"/warm", [x], "warm-up")
        t0 = time.perf_counter()
        for k in range(n):
            (x,) = yield Open(label + b"/%d" % k, [x], "8 bytes each way")
        BENCH_ROUNDS["seconds"] = time.perf_counter() - t0
        return x, frozenset()
'''

PINGPONG = '''
import sys, time, zmq
role, endpoint, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = zmq.Context().socket(zmq.PAIR)
msg = bytes(8)
if role == "a":
    s.bind(endpoint)
    s.recv()  # b is up
    s.send(msg); s.recv()  # warm-up
    t0 = time.perf_counter()
    for _ in range(n):
        s.send(msg)
        s.recv()
    print(time.perf_counter() - t0)
else:
    s.connect(endpoint)
    s.send(msg)
    for _ in range(n + 1):
        s.send(s.recv())
'''


def pingpong_seconds(n: int) -> float:
    """Seconds per round trip of a plain pyzmq PAIR ping-pong between two processes."""
    with tempfile.TemporaryDirectory() as d:
        endpoint = f"ipc://{d}/pp"
        a = subprocess.Popen([sys.executable, "-c", PINGPONG, "a", endpoint, str(n)],
                             stdout=subprocess.PIPE, text=True)
        b = subprocess.Popen([sys.executable, "-c", PINGPONG, "b", endpoint, str(n)])
        out, _ = a.communicate(timeout=600)
        b.wait(timeout=60)
    return float(out.strip()) / n


def program_seconds(parties, dealer, n: int) -> float:
    """Seconds per round of the two-party program, as the slower party timed it."""
    session = MPCSession(parties, dealer, fused=True)
    label = session.label()
    session.run("bench_rounds", lambda i: {"label": label, "n": n}, [], name="rounds")
    return max(float(p.execute("print(BENCH_ROUNDS['seconds'])").stdout) for p in parties) / n


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10_000, help="rounds per measurement")
    p.add_argument("--repeat", type=int, default=3, help="measurements of each, interleaved")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    n = 200 if args.quick else args.rounds
    repeat = 1 if args.quick else args.repeat
    group = ppdl_nb.launch("rounds_p0", "rounds_p1", "rounds_dealer")
    try:
        parties, dealer = list(group[:2]), group[2]
        for party in parties:
            party.execute(PARTY_CODE)
        ours, plain = [], []
        for _ in range(repeat):  # interleaved, so a drifting load hits both alike
            ours.append(program_seconds(parties, dealer, n))
            plain.append(pingpong_seconds(n))
    finally:
        group.shutdown()
    ours.sort()
    plain.sort()
    mine, theirs = ours[len(ours) // 2], plain[len(plain) // 2]
    rows = [
        {"what": "one round inside a program (2 kernel workers, 8 B each way)",
         "median_us": mine * 1e6, "runs_us": [round(x * 1e6, 1) for x in ours]},
        {"what": "plain pyzmq PAIR ping-pong, 2 processes (8 B each way)",
         "median_us": theirs * 1e6, "runs_us": [round(x * 1e6, 1) for x in plain]},
        {"what": "program round / ping-pong round trip (bar: at most 2)",
         "ratio": mine / theirs},
    ]
    report(f"Rounds: {n} per run, {repeat} runs each, interleaved", rows, args,
           {"rounds": n, "ratio": mine / theirs})


if __name__ == "__main__":
    main()
