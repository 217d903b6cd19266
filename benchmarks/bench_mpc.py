"""Private ops over workers vs plain torch and CrypTen 0.4.1, in one run on one machine.

    python benchmarks/bench_mpc.py [--workers kernel|virtual] [--rounds 3] [--json out.json]
                                   [--quick] [--no-crypten]

Two parties and a dealer (three kernel workers: separate processes, by default). Times
are medians of the whole private op as the notebook sees it, dealer included
(``ours_ms``), and of its online phase alone (``online_ms``: the dealer's randomness
dealt ahead with ``MPCSession.deal_ahead``, untimed), with rounds and bytes sent per
party from a message trace. ``cpu`` columns are the CPU time per op of every process
involved (notebook and workers; CrypTen's two parties), which a loaded machine
disturbs less than wall time. CrypTen's figures come from
``benchmarks/crypten_bench.py`` (skipped cleanly when ``.venv-crypten`` is absent; see
``../shared/bench/crypten_shim.py``). The machine may be shared and its load may drift,
so CrypTen and ours take turns: ``--rounds`` times each, CrypTen first; ours is the
median of all its samples, CrypTen's the median of its per-round medians.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

import ppdl_nb  # noqa: E402

CRYPTEN_ROWS = {"matmul": "matmul+trunc 256", "mul": "mul+trunc 100000",
                "linear": "linear 784", "relu": "2PC relu 100000"}


def make_workers(kind: str):
    if kind == "kernel":
        from ppdl_nb.workers.transport.kernel import launch

        group = launch("bob", "charlie", "dave")
        return tuple(group), group.shutdown
    from ppdl_nb.workers.transport.virtual import VirtualNetwork

    net = VirtualNetwork()
    return tuple(ppdl_nb.VirtualWorker(n, network=net) for n in ("bob", "charlie", "dave")), None


def crypten_figures(repeats: int) -> dict[str, dict]:
    """CrypTen's medians (ms), rounds and bytes per party, by op; {} without CrypTen."""
    script = Path(__file__).with_name("crypten_bench.py")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "crypten.json"
        run = subprocess.run([sys.executable, str(script), "--repeats", str(repeats),
                              "--json", str(out)], capture_output=True, text=True, timeout=600)
        if run.returncode != 0 or not out.exists():
            return {}
        doc = json.loads(out.read_text())
    if doc.get("skipped"):
        return {}
    figures = {}
    for row in doc.get("rows", []):
        for key, prefix in CRYPTEN_ROWS.items():
            if prefix in row.get("op", "") and "ms" in row:
                figures[key] = row
    return figures


def samples(fn, repeat: int, pids: list[int] = ()) -> tuple[list[float], float]:
    """Wall times of ``repeat`` runs (after a warm-up) and the CPU seconds per run of
    this process and ``pids``."""
    fn()  # warm-up
    out = []
    cpu0 = _cpu(pids)
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out, (_cpu(pids) - cpu0) / repeat


def _cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by this process and ``pids``."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--workers", choices=["virtual", "kernel"], default="kernel")
    p.add_argument("--rounds", type=int, default=3,
                   help="turns of CrypTen then ours (load on a shared machine drifts)")
    p.add_argument("--repeat", type=int, default=9, help="timed runs per op and turn")
    p.add_argument("--no-crypten", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    (bob, charlie, dave), stop = make_workers(args.workers)
    n, repeat, rounds = (64, 2, 1) if args.quick else (256, args.repeat, args.rounds)
    elems = 1000 if args.quick else 100_000
    batch = 8 if args.quick else 64
    g = torch.Generator().manual_seed(0)  # benchmark inputs only
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    sa, sb = ppdl_nb.share(a, bob, charlie, dealer=dave), ppdl_nb.share(b, bob, charlie,
                                                                        dealer=dave)
    u, v = torch.randn(elems, generator=g), torch.randn(elems, generator=g)
    su, sv = ppdl_nb.share(u, bob, charlie, dealer=dave), ppdl_nb.share(v, bob, charlie,
                                                                        dealer=dave)
    sizes = [784, 128, 128, 10]
    x = torch.randn(batch, 784, generator=g)
    ws = [torch.randn(i, o, generator=g) / i**0.5 for i, o in zip(sizes, sizes[1:],
                                                                  strict=False)]
    xs = ppdl_nb.share(x, bob, charlie, dealer=dave)
    wss = [ppdl_nb.share(w, bob, charlie, dealer=dave) for w in ws]

    def chain(h, weights):
        for w in weights:
            h = h @ w
        return h

    ops = [  # (key, name, plain, private)
        ("matmul", f"matmul {n}x{n}", lambda: a @ b, lambda: sa @ sb),
        ("mul", f"mul {elems} elements", lambda: u * v, lambda: su * sv),
        ("linear", f"linear 784-128-128-10, batch {batch}", lambda: chain(x, ws),
         lambda: chain(xs, wss)),
        ("relu", f"relu {elems} elements", lambda: u.relu(), lambda: su.relu()),
    ]
    session = xs.child.session
    pids = [w.pid for w in (bob, charlie, dave) if getattr(w, "pid", None)]
    load = [os.getloadavg()[0]]
    keys = [k for k, *_ in ops]
    ours, online, plain = ({k: [] for k in keys} for _ in range(3))
    cpu: dict[str, list[float]] = {f"{k}/{m}": [] for k in keys for m in ("ours", "online")}
    theirs: dict[str, list[dict]] = {k: [] for k in keys}
    for _ in range(rounds):
        if not (args.no_crypten or args.quick):
            for key, row in crypten_figures(repeat).items():
                theirs[key].append(row)
        for key, _, plain_fn, private_fn in ops:
            plain[key] += samples(plain_fn, repeat)[0]
            wall, per_op = samples(private_fn, repeat, pids)
            ours[key] += wall
            cpu[f"{key}/ours"].append(per_op)
            session.deal_ahead(private_fn, times=repeat + 1)  # offline phase, untimed
            wall, per_op = samples(private_fn, repeat, pids)
            online[key] += wall
            cpu[f"{key}/online"].append(per_op)
        load.append(os.getloadavg()[0])
    rows = []
    for key, name, _, private_fn in ops:
        before = session.rounds
        with ppdl_nb.trace() as tr:
            private_fn()
        per_party = {r["party"]: r for r in tr.summary()}
        t_ours = statistics.median(ours[key]) * 1e3
        t_online = statistics.median(online[key]) * 1e3
        t_plain = statistics.median(plain[key]) * 1e3
        row = {"operation": name, "plain_ms": t_plain, "ours_ms": t_ours,
               "online_ms": t_online, "ours/plain": t_ours / t_plain}
        if theirs[key]:
            t_crypten = statistics.median(r["ms"] for r in theirs[key])
            row |= {"crypten_ms": t_crypten, "ours/crypten": t_ours / t_crypten,
                    "online/crypten": t_online / t_crypten}
        row |= {"cpu_ours": statistics.median(cpu[f"{key}/ours"]) * 1e3,
                "cpu_online": statistics.median(cpu[f"{key}/online"]) * 1e3}
        if theirs[key]:
            row["cpu_crypten"] = statistics.median(r["cpu_ms"] for r in theirs[key])
        row |= {"rounds": session.rounds - before,
                "bob_bytes_sent": per_party["bob"]["bytes_sent"],
                "charlie_bytes_sent": per_party["charlie"]["bytes_sent"],
                "dealer_bytes_sent": per_party["dave"]["bytes_sent"]}
        if theirs[key]:
            row |= {"crypten_rounds": theirs[key][0]["rounds"],
                    "crypten_bytes_per_party": theirs[key][0]["bytes_per_party"]}
        rows.append(row)
    protocol = "fused" if session.fused else "round by round"
    turns = f"{rounds} turns with CrypTen" if any(theirs.values()) else "no CrypTen"
    report(f"Private ops, 2 parties + dealer, {args.workers} workers, {protocol} "
           f"(median ms; {turns}; load average {min(load):.1f}-{max(load):.1f})", rows, args,
           {"workers": args.workers, "protocol": protocol, "turns": rounds,
            "repeat": repeat, "load_average": load,
            "samples_ms": {k: [s * 1e3 for s in v] for k, v in ours.items()},
            "online_samples_ms": {k: [s * 1e3 for s in v] for k, v in online.items()},
            "crypten_runs": theirs})
    if stop is not None:
        stop()


if __name__ == "__main__":
    main()
