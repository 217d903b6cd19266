"""Speed of the SPDZ protocol math (ppdl_nb.mpc), parties simulated in one process.

Times are medians of repeats, for each torch thread count asked (default 1 and 2). The
protocol figures are the online phase (every party's local steps plus the openings, no
network), with the dealer's triples made beforehand; the dealer's own time is listed
apart. Bytes are what each party sends to its peers (all-to-all openings) and what the
dealer sends, counted from the share sizes.

    python benchmarks/bench_mpc_math.py [--threads 1,2] [--repeats 7] [--json out.json]
    python benchmarks/bench_mpc_math.py --quick      # smoke run, a few seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ppdl_nb.mpc import simulate as sim
from ppdl_nb.mpc.beaver import beaver_matmul_finish, beaver_mul_finish, beaver_open
from ppdl_nb.mpc.dealer import dealer_bytes, simulate_dealer
from ppdl_nb.mpc.limbs import ring_matmul
from ppdl_nb.mpc.truncation import trunc_finish, trunc_open

N_PARTIES = 2
FRAC = 16


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def deal_product(kind: str, x_shape, y_shape, n: int) -> dict:
    out_shape = tuple(torch.matmul(torch.empty(x_shape, device="meta"),
                                   torch.empty(y_shape, device="meta")).shape) \
        if kind == "matmul" else tuple(torch.broadcast_shapes(x_shape, y_shape))
    return {
        "triple": simulate_dealer(kind, n, x_shape=x_shape, y_shape=y_shape),
        "mask": simulate_dealer("trunc", n, shape=out_shape, frac_bits=FRAC),
        "dealer_bytes": dealer_bytes(kind, x_shape=x_shape, y_shape=y_shape)
        + dealer_bytes("trunc", shape=out_shape, frac_bits=FRAC),
    }


def online_product(kind: str, xs, ys, material: dict, traffic: sim.Traffic | None = None):
    """Beaver product then truncation, each party's steps in turn (2 rounds)."""
    finish = beaver_matmul_finish if kind == "matmul" else beaver_mul_finish
    n, t, m = len(xs), material["triple"], material["mask"]
    eps, delta = sim.open_round([beaver_open(xs[i], ys[i], t[i][0], t[i][1]) for i in range(n)],
                                traffic, kind)
    zs = [finish(i, eps, delta, *t[i]) for i in range(n)]
    (c,) = sim.open_round([[trunc_open(i, zs[i], m[i][0])] for i in range(n)], traffic, "trunc")
    return [trunc_finish(i, c, m[i][1], m[i][2], FRAC) for i in range(n)]


def run(threads: int, size: int, elems: int, batch: int, repeats: int) -> dict:
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)  # benchmark data only
    deal_product("matmul", (2, 2), (2, 2), N_PARTIES)  # one-time setup out of the timings
    rows: dict[str, dict] = {}

    a32, b32 = torch.randn(size, size, generator=g), torch.randn(size, size, generator=g)
    rows["float32 matmul"] = {"ms": median_ms(lambda: a32 @ b32, repeats)}
    ai = torch.randint(-(2**63), 2**63 - 1, (size, size), generator=g)
    bi = torch.randint(-(2**63), 2**63 - 1, (size, size), generator=g)
    rows["int64 matmul (torch)"] = {"ms": median_ms(lambda: ai @ bi, repeats)}
    rows["int64 matmul (limbs)"] = {"ms": median_ms(lambda: ring_matmul(ai, bi, method="limbs"),
                                                    repeats)}
    rows["int64 matmul (auto)"] = {"ms": median_ms(lambda: ring_matmul(ai, bi), repeats)}

    def product_row(kind, x, y):
        xs, ys = sim.share_float(x, N_PARTIES), sim.share_float(y, N_PARTIES)
        t0 = time.perf_counter()
        material = deal_product(kind, tuple(x.shape), tuple(y.shape), N_PARTIES)
        dealer_ms = (time.perf_counter() - t0) * 1e3
        traffic = sim.Traffic()
        online_product(kind, xs, ys, material, traffic)
        ms = median_ms(lambda: online_product(kind, xs, ys, material), repeats)
        return {"ms": ms, "dealer_ms": dealer_ms, "rounds": traffic.rounds,
                "bytes_per_party": traffic.bytes_per_party,
                "dealer_bytes": material["dealer_bytes"]}

    x = torch.randn(size, size, generator=g, dtype=torch.float64)
    w = torch.randn(size, size, generator=g, dtype=torch.float64)
    rows[f"2PC matmul+trunc {size}x{size}"] = product_row("matmul", x, w)
    u, v = (torch.randn(elems, generator=g, dtype=torch.float64) for _ in range(2))
    rows[f"2PC mul+trunc {elems}"] = product_row("mul", u, v)

    dims = [784, 128, 128, 10]
    xin = torch.randn(batch, dims[0], generator=g, dtype=torch.float64)
    ws = [torch.randn(dims[i], dims[i + 1], generator=g, dtype=torch.float64) * 0.05
          for i in range(3)]
    xs = sim.share_float(xin, N_PARTIES)
    wss = [sim.share_float(wt, N_PARTIES) for wt in ws]
    shapes, h = [], (batch, dims[0])
    for wt in ws:
        shapes.append((h, tuple(wt.shape)))
        h = (h[0], wt.shape[1])
    t0 = time.perf_counter()
    materials = [deal_product("matmul", hs, wsh, N_PARTIES) for hs, wsh in shapes]
    dealer_ms = (time.perf_counter() - t0) * 1e3
    traffic = sim.Traffic()

    def forward(tr=None):
        hs = xs
        for wsh, mat in zip(wss, materials, strict=True):
            hs = online_product("matmul", hs, wsh, mat, tr)
        return hs

    out = sim.reveal(forward(traffic))
    ref = xin @ ws[0] @ ws[1] @ ws[2]
    rows[f"2PC linear 784-128-128-10 b{batch}"] = {
        "ms": median_ms(forward, repeats), "dealer_ms": dealer_ms, "rounds": traffic.rounds,
        "bytes_per_party": traffic.bytes_per_party,
        "dealer_bytes": sum(m["dealer_bytes"] for m in materials),
        "max_abs_err": float((out - ref).abs().max()),
    }
    x32 = [xin.float()] + [wt.float() for wt in ws]
    rows[f"float32 linear 784-128-128-10 b{batch}"] = {
        "ms": median_ms(lambda: x32[0] @ x32[1] @ x32[2] @ x32[3], repeats)}
    return rows


def print_table(results: dict) -> None:
    for threads, rows in results["runs"].items():
        print(f"\n== torch threads: {threads} ==")
        print(f"{'operation':38} {'median ms':>10} {'dealer ms':>10} {'rounds':>6} "
              f"{'B sent/party':>13} {'dealer B':>11}")
        for name, r in rows.items():
            def col(key, fmt, r=r):
                return format(r[key], fmt) if key in r else "-"
            print(f"{name:38} {r['ms']:10.3f} {col('dealer_ms', '10.1f'):>10} "
                  f"{col('rounds', 'd'):>6} {col('bytes_per_party', ',d'):>13} "
                  f"{col('dealer_bytes', ',d'):>11}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat (smoke test)")
    args = p.parse_args(argv)
    try:
        thread_counts = [int(t) for t in args.threads.split(",") if t]
    except ValueError:
        p.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    size, elems, batch, repeats = 256, 100_000, 64, args.repeats
    if args.quick:
        size, elems, batch, repeats, thread_counts = 16, 1000, 4, 1, thread_counts[:1]
    runs = {str(t): run(t, size, elems, batch, repeats) for t in thread_counts}
    results = {
        "title": "SPDZ protocol math, parties simulated in one process",
        "torch": torch.__version__, "machine": platform.machine(), "quick": args.quick,
        "n_parties": N_PARTIES, "frac_bits": FRAC, "size": size, "elements": elems,
        "batch": batch, "repeats": repeats,
        "rows": [{"threads": int(t), "op": name, **r}
                 for t, rows in runs.items() for name, r in rows.items()],
        "runs": runs,
    }
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
