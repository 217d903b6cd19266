"""One epoch of DP-SGD on a 784-256-10 MLP vs plain SGD (and Opacus, when installed).

    python benchmarks/bench_dp_sgd.py [--json out.json] [--quick] [--threads N] [--repeat R]

10,000 synthetic MNIST-shaped samples, expected batch 256, ReLU MLP, torch threads
fixed. Rows: plain torch (random-permutation batches), ppdl_nb DP-SGD (Poisson
batches, ghost clipping), and Opacus 1.x in its default per-sample mode and its
ghost-clipping mode when ``opacus`` is importable (skipped otherwise). Each figure
is the median of interleaved repeats (plain, ours, opacus, plain, ours, ...), so
load from other processes hits every row alike. The bar: ours / plain <= 1.5.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from ppdl_nb.dp import make_private  # noqa: E402

N, D, H, C, BATCH = 10_000, 784, 256, 10, 256


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(D, H), nn.ReLU(), nn.Linear(H, C))


def plain_epoch(x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()

    def run() -> None:
        perm = torch.randperm(len(x))
        for i in range(0, len(x), BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()

    return run


def ours_epoch(x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    model = mlp()
    module, opt, loader = make_private(
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        data_loader=DataLoader(TensorDataset(x, y), batch_size=BATCH),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
    )
    loss_fn = nn.CrossEntropyLoss()

    def run() -> None:
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(module(xb), yb).backward()
            opt.step()

    return run


def opacus_epoch(x: torch.Tensor, y: torch.Tensor, mode: str) -> Callable[[], None] | None:
    try:
        from opacus import PrivacyEngine
    except ImportError:
        return None
    warnings.filterwarnings("ignore")
    model = mlp()
    engine = PrivacyEngine()
    loss_fn = nn.CrossEntropyLoss()
    kwargs = {"grad_sample_mode": "ghost"} if mode == "ghost" else {}
    out = engine.make_private(
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        data_loader=DataLoader(TensorDataset(x, y), batch_size=BATCH),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        criterion=loss_fn,
        **kwargs,
    )
    if mode == "ghost":
        module, opt, crit, loader = out
    else:
        module, opt, loader = out
        crit = loss_fn

    def run() -> None:
        for xb, yb in loader:
            opt.zero_grad()
            loss = crit(module(xb), yb)
            loss.backward()
            opt.step()

    return run


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--repeat", type=int, default=5, help="interleaved repeats (default 5)")
    p.add_argument("--no-opacus", action="store_true", help="skip the Opacus rows")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    global N
    if args.quick:
        N = 1024
    repeat = 1 if args.quick else args.repeat
    torch.manual_seed(0)
    x, y = torch.randn(N, D), torch.randint(0, C, (N,))
    runs: dict[str, Callable[[], None]] = {
        "plain torch SGD": plain_epoch(x, y),
        "ppdl_nb DP-SGD (ghost)": ours_epoch(x, y),
    }
    for mode, label in (("default", "Opacus per-sample (hooks)"), ("ghost", "Opacus ghost")):
        run = None if args.quick or args.no_opacus else opacus_epoch(x, y, mode)
        if run is not None:
            runs[label] = run
    for run in runs.values():  # warm-up
        run()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["plain torch SGD"])
    rows = [
        {
            "what": name,
            "epoch_s": statistics.median(t),
            "ratio_vs_plain": statistics.median(t) / base,
        }
        for name, t in times.items()
    ]
    if "Opacus per-sample (hooks)" not in runs:
        rows.append({"what": "Opacus", "epoch_s": "skipped (absent, --quick or --no-opacus)"})
    report(
        f"One epoch, MLP {D}-{H}-{C}, {N} samples, batch {BATCH}, {torch.get_num_threads()} "
        f"thread(s), median of {repeat}",
        rows,
        args,
        {"n": N, "batch": BATCH, "repeat": repeat},
    )


if __name__ == "__main__":
    main()
