"""Pointer round trip on a virtual worker vs plain torch, and moving 64 MiB between workers.

    python benchmarks/bench_pointers.py [--json out.json] [--quick]

PySyft 0.2 spent milliseconds per pointer op; the aim here is tens of microseconds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import median_time, parser, report  # noqa: E402

import ppdl_nb  # noqa: E402
from ppdl_nb.workers.transport.virtual import VirtualNetwork  # noqa: E402


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--workers", choices=["virtual", "kernel"], default="virtual")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    group = None
    if args.workers == "kernel":
        group = ppdl_nb.launch("alice", "bob")
        alice, bob = group
    else:
        net = VirtualNetwork()
        alice = ppdl_nb.VirtualWorker("alice", network=net)
        bob = ppdl_nb.VirtualWorker("bob", network=net)
    n = 50 if args.quick else 2000
    x = torch.randn(10)
    px = ppdl_nb.send(x, alice)

    def batch(fn):
        def run():
            for _ in range(n):
                fn()
        return run

    plain = median_time(batch(lambda: x + x), repeat=5) / n
    remote = median_time(batch(lambda: px + px), repeat=5) / n
    fetch = median_time(batch(lambda: (px + 1).get()), repeat=3) / n
    rows = [
        {"what": "x + x, plain torch (10 floats)", "median_us": plain * 1e6, "ratio": 1.0},
        {"what": f"ptr + ptr, {args.workers} worker", "median_us": remote * 1e6,
         "ratio": remote / plain},
        {"what": f"(ptr + 1).get(), {args.workers} worker", "median_us": fetch * 1e6,
         "ratio": fetch / plain},
    ]
    mib = 1 if args.quick else 64
    big = torch.zeros(mib * (1 << 20) // 4)
    pbig = ppdl_nb.send(big, alice)
    times = []
    for _ in range(1 if args.quick else 5):
        t0 = time.perf_counter()
        pbig.move(bob)
        pbig.move(alice)
        times.append((time.perf_counter() - t0) / 2)
    times.sort()
    move = times[len(times) // 2]
    sends = []
    for _ in range(1 if args.quick else 5):
        t0 = time.perf_counter()
        sent = ppdl_nb.send(big, alice)
        sends.append(time.perf_counter() - t0)
        del sent
    sends.sort()
    send_s = sends[len(sends) // 2]
    rows.append({"what": f"send {mib} MiB tensor notebook -> alice ({args.workers})",
                 "median_us": send_s * 1e6, "MB_per_s": mib * (1 << 20) / send_s / 1e6})
    rows.append({"what": f"move {mib} MiB alice -> bob ({args.workers})",
                 "median_us": move * 1e6, "MB_per_s": mib * (1 << 20) / move / 1e6})
    if group is not None:
        kc = alice.process.kc
        kc.execute_interactive("pass", timeout=30)
        jup = median_time(lambda: kc.execute_interactive("pass", timeout=30,
                                                         output_hook=lambda m: None),
                          repeat=20 if args.quick else 200)
        ping = median_time(alice.ping, repeat=50 if args.quick else 2000)
        rows.append({"what": "kernel channel round trip (ping)", "median_us": ping * 1e6})
        rows.append({"what": "Jupyter execute('pass') round trip", "median_us": jup * 1e6})
    report(f"Pointer operations, {args.workers} workers (median per op)", rows, args,
           {"workers": args.workers})
    if group is not None:
        group.shutdown()


if __name__ == "__main__":
    main()
