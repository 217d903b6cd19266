"""Training subcommands: ``%%ppdl train dp``, ``%%ppdl train fl`` and ``%ppdl tune dp``.

The cell defines ``model`` and names the data (``data = (x, y)``, optionally
``test = (x_test, y_test)``, ``loss = "cross_entropy"``, ``optimizer = "sgd"``); the
options give the privacy parameters. The trained model, its history and the epsilon
spent land in the namespace as ``<out>_model``, ``<out>_history``, ``<out>_epsilon``.
Each algorithm is a function in :data:`TRAINERS` (``fl`` lives in :mod:`.train_fl`).
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.core import magic_arguments
from IPython.core.error import UsageError
from IPython.display import clear_output, display
from ppdl_nb.magics.registry import subcommand

from ppdl_nb.dp.accounting import check_delta
from ppdl_nb.dp.fit import fit_private
from ppdl_nb.viz.tuner import DPTuner
from ppdl_nb.workers.core.modules import module_from_spec, module_to_spec
from ppdl_nb.workers.transport.party import local_party

ALGORITHMS = ("dp", "fl")
TRAINERS: dict[str, Any] = {}  # algorithm -> fn(shell, args, cell)


def run_training_cell(shell: Any, cell: str | None) -> dict[str, Any] | None:
    """Run the cell; its namespace, or None if the cell failed (IPython showed why)."""
    result = shell.run_cell(cell)
    if result.error_in_exec is not None:
        return None
    if shell.user_ns.get("model") is None:
        raise UsageError("the cell must define `model` (a torch.nn.Module)")
    return shell.user_ns


def _live_plot(out: widgets.Output, history: list[dict[str, float]]) -> None:
    with out:
        clear_output(wait=True)
        fig, ax = plt.subplots(figsize=(5, 2.6))
        epochs = [r["epoch"] for r in history]
        ax.plot(epochs, [r["loss"] for r in history], "o-", label="loss")
        if "accuracy" in history[-1]:
            ax.plot(epochs, [r["accuracy"] for r in history], "s-", label="accuracy")
        ax.set_xlabel("epoch")
        ax.legend()
        ax.set_title(f"ε spent: {history[-1]['epsilon']:.3g}")
        fig.tight_layout()
        display(fig)
        plt.close(fig)


@subcommand("train", cell="cell")
@magic_arguments.magic_arguments()
@magic_arguments.argument("algorithm", choices=ALGORITHMS,
                          help="dp (DP-SGD) or fl (federated averaging)")
@magic_arguments.argument("--epsilon", type=float, help="dp: target epsilon (noise calibrated)")
@magic_arguments.argument("--noise", type=float,
                          help="noise multiplier sigma (dp: instead of --epsilon; fl: DP-FedAvg)")
@magic_arguments.argument("--delta", type=float, default=1e-5, help="delta (default 1e-5)")
@magic_arguments.argument("--clip", type=float, default=1.0,
                          help="dp: max grad norm; fl with --noise: max update norm (default 1)")
@magic_arguments.argument("--epochs", type=int, default=None,
                          help="dp: epochs (default 5); fl: local epochs per round (default 1)")
@magic_arguments.argument("--batch-size", type=int, default=None,
                          help="default 64 (dp), 32 (fl)")
@magic_arguments.argument("--lr", type=float, default=0.1)
@magic_arguments.argument("--worker", metavar="NAME",
                          help="dp: train on this worker's dataset; its budget pays")
@magic_arguments.argument("--dataset", metavar="NAME", help="the worker's dataset (with --worker)")
@magic_arguments.argument("--workers", nargs="+", metavar="NAME",
                          help="fl: workers that hold the clients (when data = (x, y))")
@magic_arguments.argument("--clients-per-worker", type=int, default=1)
@magic_arguments.argument("--split", default="iid", help="fl: iid, label or dirichlet")
@magic_arguments.argument("--rounds", type=int, default=5, help="fl: rounds (default 5)")
@magic_arguments.argument("--fraction", type=float, default=1.0,
                          help="fl: fraction of clients sampled per round")
@magic_arguments.argument("--mu", type=float, default=0.0, help="fl: FedProx proximal term")
@magic_arguments.argument("--aggregation", default="mean",
                          help="fl: mean, trusted, secure or secagg")
@magic_arguments.argument("--aggregator", metavar="NAME", help="fl: the trusted aggregator")
@magic_arguments.argument("--min-clients", type=int, default=1)
@magic_arguments.argument("--threshold", type=int, help="fl: secagg threshold")
@magic_arguments.argument("--seed", type=int, help="reproducible sampling and batches")
@magic_arguments.argument("--out", default=None, help="prefix of the results (default: dp / fl)")
def train(shell: Any, args: Any, cell: str | None) -> None:
    """Train the cell's model privately, with live progress; results land in the namespace."""
    args.out = args.out or args.algorithm
    if not args.out.isidentifier():
        raise UsageError(f"--out must be a name, not {args.out!r}")
    if args.algorithm in TRAINERS:
        return TRAINERS[args.algorithm](shell, args, cell)
    args.epochs = 5 if args.epochs is None else args.epochs
    args.batch_size = 64 if args.batch_size is None else args.batch_size
    if (args.epsilon is None) == (args.noise is None):
        raise UsageError("give exactly one of --epsilon (a target) or --noise (sigma)")
    _check_dp_options(args)
    worker = None
    if args.worker:
        if not args.dataset:
            raise UsageError("--worker needs --dataset: the name of the worker's dataset")
        try:
            worker = local_party().client_for(args.worker)
        except ConnectionError as exc:
            raise UsageError(str(exc)) from None
    ns = run_training_cell(shell, cell)
    if ns is None:
        return
    model = ns["model"]
    data = ns.get("data")
    if worker is None and not (isinstance(data, tuple | list) and len(data) == 2):
        raise UsageError("the cell must set `data = (x, y)` (or use --worker/--dataset)")
    common = {"delta": args.delta, "max_grad_norm": args.clip, "epochs": args.epochs,
              "batch_size": args.batch_size, "lr": args.lr,
              "noise_multiplier": args.noise, "epsilon": args.epsilon,
              "loss": ns.get("loss", "cross_entropy"), "optimizer": ns.get("optimizer", "sgd")}
    progress = widgets.IntProgress(value=0, max=args.epochs, description="epochs")
    plot = widgets.Output()
    display(widgets.VBox([progress, plot]))
    if worker is not None:
        reply = worker.step("dp.fit", dataset=args.dataset, spec=module_to_spec(model), **common)
        trained, history, eps = module_from_spec(reply["spec"]), reply["history"], reply[
            "epsilon"]
        progress.value = args.epochs
        _live_plot(plot, history)
    else:
        test = ns.get("test") or (None, None)
        history: list[dict[str, float]] = []

        def on_epoch(record: dict[str, float]) -> None:
            history.append(record)
            progress.value = int(record["epoch"])
            _live_plot(plot, history)

        run = fit_private(model, data[0], data[1], x_test=test[0], y_test=test[1],
                          callback=on_epoch, **common)
        trained, history, eps = run.model, run.history, run.epsilon
    ns[f"{args.out}_model"], ns[f"{args.out}_history"] = trained, history
    ns[f"{args.out}_epsilon"] = eps
    print(f"trained {args.epochs} epochs privately: epsilon {eps:.3g} at delta {args.delta:g}; "
          f"results in {args.out}_model, {args.out}_history, {args.out}_epsilon")


def _check_dp_options(args: Any) -> None:
    """Refuse impossible privacy and training options before anything runs."""
    rules = [("--epsilon", args.epsilon, lambda v: v > 0, "> 0"),
             ("--noise", args.noise, lambda v: v >= 0, ">= 0"),
             ("--clip", args.clip, lambda v: v > 0, "> 0"),
             ("--epochs", args.epochs, lambda v: v >= 1, ">= 1"),
             ("--batch-size", args.batch_size, lambda v: v >= 1, ">= 1"),
             ("--lr", args.lr, lambda v: v > 0, "> 0")]
    for flag, value, ok, need in rules:
        if value is not None and not ok(value):
            raise UsageError(f"{flag} must be {need}, got {value:g}")
    try:
        check_delta(args.delta)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


@subcommand("tune")
@magic_arguments.magic_arguments()
@magic_arguments.argument("algorithm", choices=("dp",), help="what to tune (dp)")
@magic_arguments.argument("--dataset", default="digits",
                          choices=("digits", "breast_cancer", "mnist_5k"))
@magic_arguments.argument("--out", default="tuner", help="variable for the tuner (default tuner)")
def tune(shell: Any, args: Any, cell: str | None) -> DPTuner:
    """Sliders for the privacy parameters: epsilon live, train, privacy-utility chart, audit."""
    import torch

    from ppdl_nb import datasets

    loader = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer,
              "mnist_5k": datasets.load_mnist_5k}[args.dataset]
    d = loader()
    n = int(len(d.x) * 0.8)
    classes = int(d.y.max()) + 1
    features = d.x.shape[1]

    def model_fn() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(features, 64), torch.nn.ReLU(),
                                   torch.nn.Linear(64, classes))

    tuner = DPTuner(model_fn, (d.x[:n], d.y[:n], d.x[n:], d.y[n:]))
    shell.user_ns[args.out] = tuner
    return tuner
