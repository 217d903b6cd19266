"""CrypTen 0.4.1's private inference, 2 parties, for ``bench_private_inference.py``.

ReLU on 100,000 elements, the MLP 784-128-128-10 (ReLU) on a batch of 64 and the
LeNet-style CNN (Conv 1-16-5, ReLU, MaxPool 2, Conv 16-32-5, ReLU, MaxPool 2,
Linear 512-100, ReLU, Linear 100-10) on a batch of 64, with CrypTen's default
trusted-first-party provider (``TFP``) and its trusted-third-party provider (``TTP``, a
third process that deals the triples on request, as our dealer does).

CrypTen lives in its own virtual environment (see the docstring of
``shared/bench/crypten_shim.py``); run this script with any interpreter: without
CrypTen it re-runs itself under ``.venv-crypten/bin/python`` when that exists, and
otherwise says so and exits 0 (writing ``{"skipped": ...}`` with ``--json``).

    python benchmarks/crypten_inference.py [--providers TFP,TTP] [--repeats 3]
                                           [--ops relu,mlp,lenet] [--quick] [--json out.json]

Figures per op and provider: ``ms``, the median over repeats of the time party 0 sees
for the forward on an already-encrypted input (weights encrypted beforehand; triples
made during the op, as a user sees them); ``cpu_ms``, the CPU time per forward of
every CrypTen process (both parties and, with TTP, the third party), read from /proc by
party 0 around the timed repeats; ``rounds`` and ``bytes_per_party`` from CrypTen's
communicator statistics of one untimed run (``cfg.communicator.verbose``), as CrypTen
counts them: party 1's (party 0's also counts its requests to the TTP, given apart as
``ttp_rounds`` and ``ttp_bytes``), bytes halved since a party counts what it sends and
what it receives.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _crypten import anchor_parser, start_anchor  # noqa: E402

OPS = ("relu", "mlp", "lenet")


def lenet():
    from torch import nn

    return nn.Sequential(nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(512, 100), nn.ReLU(), nn.Linear(100, 10))


def mlp():
    from torch import nn

    return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def _siblings_cpu() -> float:
    """CPU seconds (user + system) so far of every process whose parent is ours:
    the CrypTen parties and the TTP, all children of run_multiprocess's caller."""
    parent, tick, total = os.getppid(), os.sysconf("SC_CLK_TCK"), 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _party(ops: list[str], repeats: int, quick: bool, out_path: str) -> None:
    import crypten
    import crypten.communicator as comm
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same (untrained) weights in both parties
    g = torch.Generator().manual_seed(0)  # benchmark data only
    rank = comm.get().get_rank()
    elems, batch = (1000, 8) if quick else (100_000, 64)
    rows = {}

    def measure(name, fn):
        fn()  # warm-up
        crypten.cfg.communicator.verbose = True  # count one run, time the others quietly
        comm.get().reset_communication_stats()
        fn()
        stats = comm.get().get_communication_stats()
        crypten.cfg.communicator.verbose = False
        own = {"rounds": int(stats["rounds"]), "bytes": int(stats["bytes"])}
        comm.get().barrier()
        cpu0 = _siblings_cpu() if rank == 0 else 0.0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        comm.get().barrier()
        cpu = (_siblings_cpu() - cpu0) / repeats * 1e3 if rank == 0 else 0.0
        rows[name] = {"ms": statistics.median(times) * 1e3, "samples_ms":
                      [t * 1e3 for t in times], "cpu_ms": cpu, **own}

    if "relu" in ops:
        u = crypten.cryptensor(torch.randn(elems, generator=g))
        measure("relu", lambda: u.relu())
    for name, make, shape in (("mlp", mlp, (batch, 784)), ("lenet", lenet, (batch, 1, 28, 28))):
        if name not in ops:
            continue
        plain = make().eval()
        model = crypten.nn.from_pytorch(plain, torch.zeros(1, *shape[1:]))
        model.encrypt()
        model.eval()
        x = crypten.cryptensor(torch.randn(*shape, generator=g))
        measure(name, lambda m=model, x=x: m(x))
    Path(f"{out_path}.{rank}").write_text(json.dumps(rows))


def run(provider: str, ops: list[str], repeats: int, quick: bool,
        party: Callable[[list[str], int, bool, str], None] = _party) -> dict[str, dict]:
    """The rows of one provider: {op: figures}, from ``party(ops, repeats, quick,
    out_path)`` run by both parties (which writes each one's {op: figures} to
    ``out_path.<rank>``)."""
    import crypten
    from crypten import mpc

    crypten.cfg.mpc.provider = provider  # the forked parties inherit it
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.json")
        mpc.run_multiprocess(world_size=2)(party)(ops, repeats, quick, out)
        first = json.loads(Path(f"{out}.0").read_text())
        second = json.loads(Path(f"{out}.1").read_text())
    rows = {}
    for name, r0 in first.items():
        r1 = second[name]
        rows[name] = {"provider": provider, "ms": r0["ms"], "samples_ms": r0["samples_ms"],
                      "cpu_ms": r0["cpu_ms"], "rounds": r1["rounds"],
                      "bytes_per_party": r1["bytes"] // 2,
                      "ttp_rounds": r0["rounds"] - r1["rounds"],
                      "ttp_bytes": (r0["bytes"] - r1["bytes"]) // 2}
    return rows


def main(argv: list[str] | None = None) -> int:
    p = anchor_parser(__doc__.splitlines()[0], "tiny sizes (1,000 elements, batch 8)")
    p.add_argument("--ops", default=",".join(OPS))
    args = p.parse_args(argv)
    crypten = start_anchor(args, __file__, argv)
    if crypten is None:
        return 0

    import torch

    ops = [o for o in args.ops.split(",") if o]
    rows = []
    for provider in args.providers.split(","):
        for name, row in run(provider, ops, args.repeats, args.quick).items():
            rows.append({"op": name, **row})
    print(f"{'CrypTen ' + crypten.__version__:16} {'provider':8} {'median ms':>10} "
          f"{'cpu ms':>8} {'rounds':>7} {'B sent/party':>13} {'TTP rounds':>10}")
    for r in rows:
        print(f"{r['op']:16} {r['provider']:8} {r['ms']:10.1f} {r['cpu_ms']:8.1f} "
              f"{r['rounds']:7d} {r['bytes_per_party']:13,d} {r['ttp_rounds']:10d}")
    if args.json:
        args.json.write_text(json.dumps({"crypten": crypten.__version__,
                                         "torch": torch.__version__, "n_parties": 2,
                                         "repeats": args.repeats, "quick": args.quick,
                                         "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
