"""Served workers (``ppdl-worker serve``, TCP on loopback) next to kernel workers (ipc).

Three workers of each kind: a party pair and a dealer. For each kind, interleaved in
turns (load on a shared machine drifts): a pointer op round trip (``ptr + ptr``), a ping,
``send`` of 64 MiB notebook -> worker, ``move`` of 64 MiB worker -> worker, and a
secret-shared 256x256 matmul (two parties and a dealer; dealt online). Medians; the
ratio column is served / kernel.

    python benchmarks/bench_served.py [--quick] [--json PATH] [--turns 3] [--flood 5]

``--flood S``: also ping a served worker for S seconds alone, then S seconds while a
stranger floods its TCP port with handshakes and frames (p50 and p99).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

import ppdl_nb  # noqa: E402
from ppdl_nb.workers.transport.kernel import launch  # noqa: E402
from ppdl_nb.workers.transport.served_client import (  # noqa: E402
    connect,
    introduce,
    notebook_identity,
)
from ppdl_nb.workers.transport.served_process import ServedProcess  # noqa: E402
from ppdl_nb.workers.transport.served_state import OwnerState, fingerprint  # noqa: E402

NAMES = ("bs_a", "bs_b", "bs_c")


def served_trio(root: Path) -> list[ServedProcess]:
    """Three served workers whose owners allow this notebook and each other, starting."""
    states = {n: OwnerState(root / n) for n in NAMES}
    me = fingerprint(notebook_identity().public)
    for n, state in states.items():
        state.allow(me, "nb")
        for peer in NAMES:
            if peer != n:
                state.allow(fingerprint(states[peer].keypair().public), peer, role="peer")
    procs = [ServedProcess(n, root / n, "127.0.0.1:0") for n in NAMES]
    for p in procs:
        p.launch()
    return procs


def join(procs: list[ServedProcess]) -> list:
    """Connect to the started workers and introduce them to each other."""
    workers = [connect(p.wait_ready(120).address, fingerprint=p.fingerprint) for p in procs]
    introduce(*workers)
    return workers


def samples(fn, repeat: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def measures(workers, mib: int, n: int, batch: int) -> dict:
    """name -> a zero-argument function timing one thing on these workers."""
    a, b, c = workers
    px = ppdl_nb.send(torch.randn(10), a)
    big = torch.zeros(mib * (1 << 20) // 4)
    pbig = ppdl_nb.send(big, a)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    sx, sy = ppdl_nb.share(x, a, b, dealer=c), ppdl_nb.share(y, a, b, dealer=c)

    def ops():
        for _ in range(batch):
            px + px

    def pings():
        for _ in range(batch):
            a.ping()

    def move():
        pbig.move(b)
        pbig.move(a)

    return {"ptr + ptr round trip (us)": (ops, 1e6 / batch),
            "ping (us)": (pings, 1e6 / batch),
            f"send {mib} MiB notebook -> worker (ms)": (lambda: ppdl_nb.send(big, a), 1e3),
            f"move {mib} MiB worker -> worker (ms)": (move, 1e3 / 2),
            f"private matmul {n}x{n}, 2 parties + dealer (ms)": (lambda: sx @ sy, 1e3)}


def flood_rows(worker, endpoint: str, seconds: float) -> list[dict]:
    """Ping p50/p99 alone, then while a stranger floods the TCP port (tests/workers'
    helper: 500 hellos with this notebook's public key, then frames, never reading)."""
    import subprocess

    helper = Path(__file__).parents[1] / "tests" / "workers" / "served_helpers.py"

    def pings(until: float) -> list[float]:
        times = []
        while time.monotonic() < until:
            t0 = time.perf_counter()
            worker.request({"kind": "ping"}, timeout=5)
            times.append(time.perf_counter() - t0)
        return times

    calm = pings(time.monotonic() + seconds)
    proc = subprocess.Popen([sys.executable, str(helper), endpoint,
                             notebook_identity().public.hex(), str(seconds), "500"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "flooding"
        stormy = pings(time.monotonic() + seconds)
    finally:
        proc.kill()
        proc.wait()
    rows = []
    for phase, times in (("unflooded", calm), ("flooded", stormy)):
        q = statistics.quantiles(times, n=100, method="inclusive")
        rows.append({"what": f"served ping p50 / p99 (us), {phase}",
                     "served": statistics.median(times) * 1e6, "p99": q[98] * 1e6})
    return rows


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--flood", type=float, default=0.0, metavar="SECONDS",
                   help="also ping a served worker while a stranger floods its port")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    mib, n, batch, repeat, turns = (1, 32, 20, 2, 1) if args.quick else \
        (64, 256, 200, 5, args.turns)
    with tempfile.TemporaryDirectory(prefix="bench-served-") as root:
        os.environ.setdefault("PPDL_NB_IDENTITY", os.path.join(root, "notebook.key"))
        procs = served_trio(Path(root))  # they start while the kernels do
        kernel = launch(*NAMES)
        served = join(procs)
        try:
            kinds = {"kernel": measures(kernel, mib, n, batch),
                     "served": measures(served, mib, n, batch)}
            times: dict = {k: {m: [] for m in kinds[k]} for k in kinds}
            for _ in range(turns):
                for kind, ms in kinds.items():
                    for name, (fn, scale) in ms.items():
                        times[kind][name] += [t * scale for t in samples(fn, repeat)]
            flooded = flood_rows(served[0], procs[0].endpoint, args.flood) if args.flood \
                else []
        finally:
            kernel.shutdown()
            for w in served:
                w.close()
            for proc in procs:
                proc.stop()
    rows = []
    for name in times["kernel"]:
        k, s = (statistics.median(times[kind][name]) for kind in ("kernel", "served"))
        rows.append({"what": name, "kernel": k, "served": s, "served/kernel": s / k})
    rows += flooded
    report("Served workers (TCP loopback) vs kernel workers (ipc): medians", rows, args,
           {"turns": turns, "repeat": repeat, "mib": mib, "n": n})


if __name__ == "__main__":
    main()
