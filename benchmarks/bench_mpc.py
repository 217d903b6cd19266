"""Private ops over workers vs plain torch and CrypTen 0.4.1, in one run on one machine.

    python benchmarks/bench_mpc.py [--workers virtual|kernel] [--json out.json] [--quick]

Two parties and a dealer. Times are medians of the whole private op as the notebook sees
it (dealer included), with rounds and bytes per party from a message trace. CrypTen's
figures come from ``benchmarks/crypten_bench.py`` run in the same invocation (skipped
cleanly when ``.venv-crypten`` is absent; see ``../shared/bench/crypten_shim.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import median_time, parser, report  # noqa: E402

import ppdl_nb  # noqa: E402


def make_workers(kind: str):
    if kind == "kernel":
        from ppdl_nb.workers.kernel import launch

        group = launch("bob", "charlie", "dave")
        return tuple(group), group.shutdown
    from ppdl_nb.workers.virtual import VirtualNetwork

    net = VirtualNetwork()
    return tuple(ppdl_nb.VirtualWorker(n, network=net) for n in ("bob", "charlie", "dave")), None


def crypten_figures(repeats: int) -> dict[str, float]:
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
    names = {"matmul": "matmul+trunc 256", "mul": "mul+trunc 100000", "linear": "linear 784"}
    out = {}
    for row in doc.get("rows", []):
        for key, prefix in names.items():
            if prefix in row.get("op", "") and "ms" in row:
                out[key] = row["ms"]
    return out


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--workers", choices=["virtual", "kernel"], default="virtual")
    p.add_argument("--no-crypten", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    (bob, charlie, dave), stop = make_workers(args.workers)
    n, repeat = (64, 1) if args.quick else (256, 7)
    elems = 1000 if args.quick else 100_000
    batch = 8 if args.quick else 64
    g = torch.Generator().manual_seed(0)  # benchmark inputs only
    cases = {}
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    cases[f"matmul {n}x{n}"] = (lambda: a @ b, ppdl_nb.share(a, bob, charlie, dealer=dave),
                                ppdl_nb.share(b, bob, charlie, dealer=dave), "matmul")
    u, v = torch.randn(elems, generator=g), torch.randn(elems, generator=g)
    cases[f"mul {elems} elements"] = (lambda: u * v, ppdl_nb.share(u, bob, charlie, dealer=dave),
                                      ppdl_nb.share(v, bob, charlie, dealer=dave), "mul")
    sizes = [784, 128, 128, 10]
    x = torch.randn(batch, 784, generator=g)
    ws = [torch.randn(i, o, generator=g) / i**0.5 for i, o in zip(sizes, sizes[1:],
                                                                  strict=False)]
    xs = ppdl_nb.share(x, bob, charlie, dealer=dave)
    wss = [ppdl_nb.share(w, bob, charlie, dealer=dave) for w in ws]

    def plain_linear():
        h = x
        for w in ws:
            h = h @ w
        return h

    def private_linear():
        h = xs
        for w in wss:
            h = h @ w
        return h

    rows = []
    crypten = {} if args.no_crypten or args.quick else crypten_figures(repeat)
    runs = [(name, plain, lambda s=s, t=t, op=op: getattr(s, "__matmul__" if op == "matmul"
                                                          else "__mul__")(t), op)
            for name, (plain, s, t, op) in cases.items()]
    runs.append((f"linear 784-128-128-10, batch {batch}", plain_linear, private_linear,
                 "linear"))
    for name, plain, private, op in runs:
        t_plain = median_time(plain, repeat=repeat)
        t_private = median_time(private, repeat=repeat)
        session = xs.child.session
        before = session.rounds
        with ppdl_nb.trace() as tr:
            private()
        per_party = {r["party"]: r for r in tr.summary()}
        session_rounds = session.rounds - before
        anchor = crypten.get(op)
        rows.append({
            "operation": name, "plain_ms": t_plain * 1e3, "private_ms": t_private * 1e3,
            "x_plain": t_private / t_plain, "crypten_ms": anchor if anchor else "-",
            "x_crypten": (t_private * 1e3 / anchor) if anchor else "-",
            "rounds": session_rounds,
            "bob_bytes_sent": per_party["bob"]["bytes_sent"],
            "charlie_bytes_sent": per_party["charlie"]["bytes_sent"],
            "dealer_bytes_sent": per_party["dave"]["bytes_sent"],
        })
    report(f"Private ops, 2 parties + dealer, {args.workers} workers (median ms)", rows, args,
           {"workers": args.workers})
    if stop is not None:
        stop()


if __name__ == "__main__":
    main()
