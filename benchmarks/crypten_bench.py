"""The anchor: CrypTen 0.4.1 timings for the ops of bench_mpc_math.py, 2 parties.

CrypTen lives in its own virtual environment (it pins old torch APIs); see the
docstring of ``shared/bench/crypten_shim.py`` for how to make ``.venv-crypten``. Run
this script with any interpreter: without CrypTen it re-runs itself under
``.venv-crypten/bin/python`` when that exists, and otherwise says so and exits 0.

    python benchmarks/crypten_bench.py [--repeats 5] [--json out.json] [--shim DIR]

Each figure is the median over repeats of the time party 0 sees for the whole private
op (CrypTen's default trusted-first-party triples included, as a user would see them),
with both parties as local processes talking over loopback (gloo); ``cpu_ms`` is the
CPU time of both parties' processes per op.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _crypten import DEFAULT_SHIM, crypten_or_skip  # noqa: E402


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _party(repeats: int, out_path: str) -> None:
    import crypten
    import crypten.communicator as comm
    import torch

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)  # benchmark data only
    rows = {}

    def measure(name, fn):
        crypten.cfg.communicator.verbose = True  # count one run, time the others quietly
        comm.get().reset_communication_stats()
        fn()
        stats = comm.get().get_communication_stats()
        crypten.cfg.communicator.verbose = False
        cpu0 = time.process_time()
        ms = _median_ms(fn, repeats)
        cpu = (time.process_time() - cpu0) / (repeats + 1) * 1e3  # this party, all threads
        # CrypTen counts what a party sends AND receives, so halve it for 2 parties
        rows[name] = {"ms": ms, "rounds": int(stats["rounds"]),
                      "bytes_per_party": int(stats["bytes"]) // 2, "cpu_ms": cpu}

    x = crypten.cryptensor(torch.randn(256, 256, generator=g))
    y = crypten.cryptensor(torch.randn(256, 256, generator=g))
    measure("2PC matmul+trunc 256x256", lambda: x.matmul(y))
    u = crypten.cryptensor(torch.randn(100_000, generator=g))
    v = crypten.cryptensor(torch.randn(100_000, generator=g))
    measure("2PC mul+trunc 100000", lambda: u * v)
    dims = [784, 128, 128, 10]
    xin = crypten.cryptensor(torch.randn(64, 784, generator=g))
    ws = [crypten.cryptensor(torch.randn(dims[i], dims[i + 1], generator=g) * 0.05)
          for i in range(3)]
    measure("2PC linear 784-128-128-10 b64",
            lambda: xin.matmul(ws[0]).matmul(ws[1]).matmul(ws[2]))
    measure("2PC relu 100000", lambda: u.relu())
    Path(f"{out_path}.{comm.get().get_rank()}").write_text(json.dumps(rows))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--shim", type=Path, default=DEFAULT_SHIM,
                   help="folder holding crypten_shim.py (default: ../shared/bench)")
    args = p.parse_args(argv)
    crypten = crypten_or_skip(args.shim, __file__, argv or sys.argv[1:], args.json)
    if crypten is None:
        return 0

    import torch
    from crypten import mpc

    torch.set_num_threads(1)  # run_multiprocess forks: a threaded parent can hang it
    crypten.init()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.json")
        mpc.run_multiprocess(world_size=2)(_party)(args.repeats, out)
        rows = json.loads(Path(f"{out}.0").read_text())
        other = json.loads(Path(f"{out}.1").read_text())
        for name, row in rows.items():  # CPU of both parties, per op
            row["cpu_ms"] += other[name]["cpu_ms"]
    results = {"crypten": "0.4.1", "torch": torch.__version__, "n_parties": 2,
               "repeats": args.repeats, "rows": [{"op": k, **v} for k, v in rows.items()]}
    print(f"{'CrypTen 0.4.1 operation':34} {'median ms':>10} {'cpu ms':>7} {'rounds':>7} "
          f"{'B sent/party':>13}")
    for name, r in rows.items():
        print(f"{name:34} {r['ms']:10.2f} {r['cpu_ms']:7.1f} {r['rounds']:7d} "
              f"{r['bytes_per_party']:13,d}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
