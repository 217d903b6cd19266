"""``%%ppdl train fl``: federated averaging from a cell, with a progress bar and live plot.

The cell defines ``model`` and either ``data``, a :class:`~ppdl_nb.fl.FederatedDataset`,
or ``data = (x, y)`` with ``--workers`` to split it among (``test = (x, y)`` for
evaluation each round). The options are :func:`ppdl_nb.fl.fit_federated`'s and its
strategies' (``--aggregation secagg --threshold 4`` is ``SecAgg(threshold=4)``;
``--noise-multiplier`` with ``--max-update-norm`` wraps it in ``DPFedAvg``;
``--server-optimizer fedadam`` in ``FedAdam``). The trained model and its History land
in ``<out>_model`` and ``<out>_history``::

    %%ppdl train fl --rounds 10 --aggregation secure
    model = torch.nn.Linear(64, 10)
    data = federated_digits
"""

from __future__ import annotations

import argparse
from typing import Any

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from ppdl_nb.magics.train import TRAINERS, run_training_cell
from ppdl_nb.magics.train_options import noise_options, option_group, training_options

from ppdl_nb.fl import (
    AGGREGATIONS,
    DPFedAvg,
    FederatedDataset,
    History,
    Strategy,
    fit_federated,
    make_aggregation,
)
from ppdl_nb.workers.transport.party import local_party

__all__ = ["train_fl"]

SUMS = ("mean", "trusted", "secure", "secagg")  # --aggregation: how the updates are summed
SERVER_OPTIMIZERS = ("fedavgm", "fedadam")
_arg = magic_arguments.argument


def _worker(name: str) -> Any:
    try:
        return local_party().client_for(name)
    except (KeyError, ValueError, ConnectionError) as exc:
        raise UsageError(f"no worker named {name!r}: launch it first (%ppdl launch {name})"
                         ) from exc


def _strategy(args: Any) -> Strategy:
    """The strategy the options describe, built with the API's own classes."""
    if args.aggregation not in SUMS:
        raise UsageError(f"--aggregation must be one of {list(SUMS)}, not {args.aggregation!r}")
    if args.epsilon is not None:
        raise UsageError("fl takes --noise-multiplier (and --max-update-norm) for DP-FedAvg; "
                         "epsilon is reported per round")
    if args.aggregation == "trusted" and not args.aggregator:
        raise UsageError("--aggregation trusted needs --aggregator NAME (a worker)")
    options = {"aggregator": _worker(args.aggregator) if args.aggregator else None,
               "threshold": args.threshold}
    try:
        strategy = make_aggregation(args.aggregation,
                                    **{k: v for k, v in options.items() if v is not None})
        if args.noise_multiplier is not None:
            strategy = DPFedAvg(strategy, noise_multiplier=args.noise_multiplier,
                                max_update_norm=args.max_update_norm, delta=args.delta)
        if args.server_optimizer:
            strategy = AGGREGATIONS[args.server_optimizer](strategy, server_lr=args.server_lr)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return strategy


def _federated_data(ns: dict[str, Any], args: Any) -> FederatedDataset:
    data = ns.get("data")
    if isinstance(data, FederatedDataset):
        return data
    if isinstance(data, tuple | list) and len(data) == 2:
        if not args.workers:
            raise UsageError("data = (x, y) needs --workers NAME ... to hold the clients")
        test = ns.get("test")
        return FederatedDataset.from_tensors(
            data[0], data[1], [_worker(n) for n in args.workers],
            clients_per_worker=args.clients_per_worker, scheme=args.split, seed=args.seed,
            test=tuple(test) if test is not None else None)
    raise UsageError("the cell must set `data`: a FederatedDataset, or (x, y) with --workers")


class _Progress:
    """Per round: a bar, a status line and (``--progress plot``) the History's curves."""

    def __init__(self, mode: str, rounds: int) -> None:
        from ppdl_nb.magics.progress import LivePanel

        self.rounds, self.live = rounds, History()
        self.panel = LivePanel(mode, total=rounds, unit="rounds")

    def round(self, record: dict[str, Any]) -> None:
        metrics = {k: v for k, v in record.items() if k not in ("round", "rounds")}
        self.live.append(record["round"], **metrics)
        acc = f", accuracy {record['accuracy']:.3f}" if "accuracy" in record else ""
        loss = f", loss {record['loss']:.3f}" if "loss" in record else ""
        fig = self.live.plot() if self.panel.mode == "plot" else None
        self.panel.step(record["round"], f"round {record['round']}/{self.rounds}{loss}{acc}",
                        fig)


@magic_arguments.magic_arguments()
@option_group("federated averaging", [
    _arg("--workers", nargs="+", metavar="NAME",
         help="workers that hold the clients (when data = (x, y))"),
    _arg("--clients-per-worker", type=int, default=1, help="clients per worker (default 1)"),
    _arg("--split", default="iid", help="iid, label or dirichlet (default iid)"),
    _arg("--rounds", type=int, default=5, help="rounds (default 5)"),
    _arg("--fraction", type=float, default=1.0, help="fraction of clients sampled per round"),
    _arg("--min-clients", type=int, default=1, help="fewest clients a round needs"),
    _arg("--prox-mu", "--mu", dest="prox_mu", type=float, default=0.0,
         help="FedProx proximal term (default 0: plain FedAvg)"),
    _arg("--aggregation", default="mean", help=f"{', '.join(SUMS)} (default mean)"),
    _arg("--aggregator", metavar="NAME", help="trusted: the aggregator worker"),
    _arg("--threshold", type=int, help="secagg: clients that must send masked updates"),
    _arg("--max-update-norm", type=float, default=1.0,
         help="DP-FedAvg (with --noise-multiplier): per-client update clipping norm "
              "(default 1)"),
    _arg("--server-optimizer", choices=SERVER_OPTIMIZERS, default=None,
         help="server-side optimizer over the averaged update (default: add it)"),
    _arg("--server-lr", type=float, default=1.0, help="its learning rate (default 1)"),
    _arg("--seed", type=int, default=None, help="reproducible split, sampling and batches"),
    _arg("--epsilon", type=float, help=argparse.SUPPRESS),  # refused with a hint
])
@noise_options()
@training_options(epochs=1, batch_size=32, epochs_help="local epochs per round")
def train_fl(shell: Any, args: Any, cell: str | None) -> None:
    """Federated averaging of the cell's model over workers' clients (DP-FedAvg with noise)."""
    strategy = _strategy(args)
    ns = run_training_cell(shell, cell)
    if ns is None:
        return
    data = _federated_data(ns, args)
    progress = _Progress(args.progress, args.rounds)
    try:
        run = fit_federated(
            ns["model"], data, rounds=args.rounds, aggregation=strategy,
            local_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            loss=args.loss or ns.get("loss", "cross_entropy"),
            optimizer=args.optimizer or ns.get("optimizer", "sgd"), prox_mu=args.prox_mu,
            fraction=args.fraction, min_clients=args.min_clients, seed=args.seed,
            callback=progress.round)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except KeyboardInterrupt as exc:
        _interrupted(shell, args, progress, getattr(exc, "result", None))
        return
    finally:
        progress.panel.finish()
    out = shell.user_ns
    out[f"{args.out}_model"], out[f"{args.out}_history"] = run.model, run.history
    last = run.history.last
    acc = f", accuracy {last['accuracy']:.3f}" if "accuracy" in last else ""
    eps = f", epsilon {last['epsilon']:.3g}" if "epsilon" in last else ""
    print(f"federated training: {len(run.history)} rounds over {len(data)} clients on "
          f"{len(data.workers)} workers ({strategy.describe()}){acc}{eps}; "
          f"results in {args.out}_model, {args.out}_history")



def _interrupted(shell: Any, args: Any, progress: _Progress, partial: Any) -> None:
    """Ctrl-C during federated training: keep what finished, say so; workers keep serving."""
    done = len(progress.live)
    out = shell.user_ns
    out[f"{args.out}_history"] = partial.history if partial is not None else progress.live
    kept = f"{args.out}_history"
    if partial is not None:
        out[f"{args.out}_model"] = partial.model
        kept = f"{args.out}_model, " + kept
    print(f"interrupted at round {done + 1} of {args.rounds}, after {done} full rounds: "
          f"results so far in {kept}; the workers keep serving")


TRAINERS["fl"] = train_fl
