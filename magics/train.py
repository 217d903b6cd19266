"""Training subcommands: ``%%ppdl train ALGORITHM`` and ``%ppdl tune dp``.

Each algorithm has its own parser (options in :mod:`ppdl_nb.magics.train_options`, one
group shared by all) and is registered in :data:`TRAINERS`: ``dp`` (DP-SGD) here, ``fl``
(federated averaging) in :mod:`ppdl_nb.magics.train_fl`. The cell defines ``model`` and
names the data (``data = (x, y)``, optionally ``test = (x_test, y_test)``, ``loss``,
``optimizer``); the trained model, its history and the epsilon spent land in the
namespace as ``<out>_model``, ``<out>_history``, ``<out>_epsilon``. ``train dp`` calls
:func:`ppdl_nb.dp.fit.fit_private`, or with ``--worker``
:meth:`ppdl_nb.dp.remote.RemoteDataset.fit`: nothing a Python user could not call.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from ppdl_nb.magics.registry import subcommand
from ppdl_nb.magics.train_options import dp_options, noise_options, training_options

from ppdl_nb.workers.transport.party import local_party

if TYPE_CHECKING:  # widgets, matplotlib and the DP code load when a cell trains
    from ppdl_nb.dp.remote import RemoteDataset
    from ppdl_nb.viz.tuner import DPTuner

__all__ = ["CONTRACT", "TRAINERS", "cell_assigns", "run_training_cell", "train", "train_dp"]

#: the names a training cell assigns (model required; data unless the data lives elsewhere)
CONTRACT = ("model", "data", "test", "loss", "optimizer")
CELL_CONTRACT = """\
The cell runs first, in the notebook's namespace, and must itself assign:
  model      the torch.nn.Module to train (required)
  data       dp: (x, y) tensors (not with --worker/--dataset); fl: a FederatedDataset,
             or (x, y) with --workers NAME ...
  test       optional (x_test, y_test), evaluated after each epoch or round
  loss, optimizer   optional names, e.g. "mse", "adam" (or --loss, --optimizer)
Only what the cell itself assigns counts: a `data` left from an earlier cell is not used
(write `data = data` in the cell to mean it). Results land in <out>_model and
<out>_history (dp also <out>_epsilon); <out> is --out, by default the algorithm.

Example:
  %%ppdl train dp --epsilon 2 --epochs 5
  model = torch.nn.Linear(64, 10)
  data = (x_train, y_train)
  test = (x_test, y_test)"""


class TrainerRegistry(dict[str, Callable[..., Any]]):
    """algorithm -> ``fn(shell, args, cell)`` with its own ``magic_arguments`` parser.

    A name registered twice (from different functions) is an error; ``%ppdl help train``
    is rebuilt from the parsers on each registration.
    """

    def __setitem__(self, algorithm: str, fn: Callable[..., Any]) -> None:
        old = self.get(algorithm)
        if old is not None and (old.__module__, old.__qualname__) != (
                fn.__module__, fn.__qualname__):
            raise ValueError(f"train {algorithm} is already registered by {old}")
        super().__setitem__(algorithm, fn)
        parser = getattr(fn, "parser", None)
        if parser is not None:
            parser.prog = f"ppdl train {algorithm}"  # IPython's formatter adds the %
        train.__doc__ = _usage()


TRAINERS = TrainerRegistry()


def _usage() -> str:
    summary = "Train the cell's model privately, with live progress; results land in the " \
              "namespace."
    parts = [summary, f"%%ppdl train {{{','.join(sorted(TRAINERS))}}} [options]",
             CELL_CONTRACT]
    for name in sorted(TRAINERS):
        parser = getattr(TRAINERS[name], "parser", None)
        if parser is not None:  # a cell magic: %%ppdl (IPython's formatter writes one %)
            text = parser.format_help().removeprefix("::").strip("\n")
            parts.append(text.replace("%ppdl train", "%%ppdl train", 1))
    return "\n\n".join(parts)


@subcommand("train", cell="cell")
def train(shell: Any, args: str, cell: str | None) -> Any:
    # The docstring is the usage of every algorithm's parser, set by TRAINERS.
    algorithm, _, rest = args.strip().partition(" ")
    if algorithm not in TRAINERS:
        raise UsageError(f"train: invalid choice {algorithm!r}: choose one of "
                         f"{sorted(TRAINERS)} (%ppdl help train)")
    fn = TRAINERS[algorithm]
    options = magic_arguments.parse_argstring(fn, rest)
    options.algorithm = algorithm
    options.out = options.out or algorithm
    if not options.out.isidentifier():
        raise UsageError(f"--out must be a name, not {options.out!r}")
    return fn(shell, options, cell)


def cell_assigns(shell: Any, cell: str) -> set[str]:
    """The names ``cell`` binds (assignments, loops, imports, defs), magics and all."""
    try:
        tree = ast.parse(shell.transform_cell(cell))
    except SyntaxError:
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def run_training_cell(shell: Any, cell: str | None) -> dict[str, Any] | None:
    """Run the cell; the :data:`CONTRACT` names it assigned itself, or None if it failed
    (IPython showed why). Earlier cells' values of those names are not used."""
    result = shell.run_cell(cell)
    if result.error_in_exec is not None:
        return None
    mine = cell_assigns(shell, cell or "")
    ns = shell.user_ns
    stale = [k for k in CONTRACT if k not in mine and ns.get(k) is not None]
    if "model" not in mine or ns.get("model") is None:
        left = " (a `model` from an earlier cell is not used: assign it in this cell)" \
            if "model" in stale else ""
        raise UsageError(f"the cell must define `model` (a torch.nn.Module){left}. "
                         "%ppdl help train shows what a training cell assigns")
    if stale:
        print(f"note: not using {', '.join(f'`{k}`' for k in stale)} from earlier cells: "
              "only what this cell assigns counts (%ppdl help train)")
    return {k: ns[k] for k in CONTRACT if k in mine and k in ns}


def _curve(history: list[dict[str, float]]) -> Any:
    from matplotlib.ticker import MaxNLocator

    from ppdl_nb.viz.figures import new_figure

    fig = new_figure(figsize=(5, 2.6))
    ax = fig.add_subplot()
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r["loss"] for r in history], "o-", label="loss")
    if "accuracy" in history[-1]:
        ax.plot(epochs, [r["accuracy"] for r in history], "s-", label="accuracy")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 2.5
    ax.legend()
    ax.set_title(f"ε spent: {history[-1]['epsilon']:.3g}")
    return fig


class _Progress:
    """A progress bar and live plot per epoch, as ``--progress`` asks (plot, bar, none)."""

    def __init__(self, mode: str, epochs: int) -> None:
        from ppdl_nb.magics.progress import LivePanel

        self.history: list[dict[str, float]] = []
        self.panel = LivePanel(mode, total=epochs, unit="epochs")

    def epoch(self, record: dict[str, float]) -> None:
        self.history.append(record)
        acc = f", accuracy {record['accuracy']:.3f}" if "accuracy" in record else ""
        status = f"epoch {int(record['epoch'])}: loss {record['loss']:.3f}{acc}, " \
                 f"ε {record['epsilon']:.3g}"
        fig = _curve(self.history) if self.panel.mode == "plot" else None
        self.panel.step(int(record["epoch"]), status, fig)


@magic_arguments.magic_arguments()
@dp_options()
@noise_options()
@training_options(epochs=5, batch_size=64)
def train_dp(shell: Any, args: Any, cell: str | None) -> None:
    """DP-SGD: train the cell's model privately, here or on a data owner's worker."""
    if (args.epsilon is None) == (args.noise_multiplier is None):
        raise UsageError("give exactly one of --epsilon (a target) or --noise-multiplier")
    _check_dp_options(args)
    owned = _owned_dataset(args)
    ns = run_training_cell(shell, cell)
    if ns is None:
        return
    model, data = ns["model"], ns.get("data")
    if owned is None and not (isinstance(data, tuple | list) and len(data) == 2):
        raise UsageError("the cell must set `data = (x, y)` (or use --worker/--dataset)")
    params: dict[str, Any] = {
        "epsilon": args.epsilon, "noise_multiplier": args.noise_multiplier,
        "delta": args.delta, "max_grad_norm": args.max_grad_norm, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr}
    for name in ("loss", "optimizer"):  # the option, else the cell's, else the API default
        if (value := getattr(args, name) or ns.get(name)) is not None:
            params[name] = value
    run, stopped = _fit_dp(args, owned, model, data, ns.get("test"), params)
    if run is None:
        return
    out = shell.user_ns
    out[f"{args.out}_model"], out[f"{args.out}_history"] = run.model, run.history
    out[f"{args.out}_epsilon"] = run.epsilon
    done = f"interrupted at {stopped}, after {len(run.history)} full epochs" if stopped \
        else f"trained {args.epochs} epochs privately"
    print(f"{done}: epsilon {run.epsilon:.3g} at delta {args.delta:g}; results in "
          f"{args.out}_model, {args.out}_history, {args.out}_epsilon")


def _fit_dp(args: Any, owned: Any, model: Any, data: Any, test: Any,
            params: dict[str, Any]) -> tuple[Any, str]:
    """Train (here, or on the owner's worker); the run, and where an interrupt stopped it."""
    from ppdl_nb.dp.fit import fit_private
    from ppdl_nb.errors import TrainingInterrupted

    progress = _Progress(args.progress, args.epochs)
    try:
        if owned is not None:
            run = owned.fit(model, **params)
            for record in run.history:
                progress.epoch(record)
            return run, ""
        test = test or (None, None)
        return fit_private(model, data[0], data[1], x_test=test[0], y_test=test[1],
                           callback=progress.epoch, **params), ""
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except TrainingInterrupted as exc:  # the model so far, and what it spent
        return exc.result, exc.where
    except KeyboardInterrupt:  # waiting for the owner's worker, which finishes on its own
        print(f"interrupted while {args.worker} trained: it finishes the run on its side "
              "(its budget pays for it) and keeps serving; nothing came back here")
        return None, "interrupt"
    finally:
        progress.panel.finish()


def _owned_dataset(args: Any) -> RemoteDataset | None:
    """With ``--worker``, the owner's dataset (checked to exist before the cell runs)."""
    if not args.worker:
        return None
    if not args.dataset:
        raise UsageError("--worker needs --dataset: the name of the worker's dataset")
    from ppdl_nb.dp.remote import remote

    try:
        return remote(local_party().client_for(args.worker)).dataset(args.dataset)
    except (ConnectionError, KeyError) as exc:
        raise UsageError(str(exc).strip("\"'")) from None


def _check_dp_options(args: Any) -> None:
    """Refuse impossible privacy and training options before anything runs."""
    from ppdl_nb.dp.accounting import check_delta

    rules = [("--epsilon", args.epsilon, lambda v: v > 0, "> 0"),
             ("--noise-multiplier", args.noise_multiplier, lambda v: v >= 0, ">= 0"),
             ("--max-grad-norm", args.max_grad_norm, lambda v: v > 0, "> 0"),
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


TRAINERS["dp"] = train_dp


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
    from ppdl_nb.viz.tuner import DPTuner

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
