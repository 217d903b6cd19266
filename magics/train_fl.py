"""``%%ppdl train fl``: federated averaging from a cell, with a progress bar and live plot.

The cell defines ``model`` and either ``data``, a :class:`~ppdl_nb.fl.FederatedDataset`,
or ``data = (x, y)`` with ``--workers`` to split it among (``test = (x, y)`` for
evaluation each round). Options choose rounds, local epochs, aggregation and DP-FedAvg.
The trained model and its History land in ``<out>_model`` and ``<out>_history``::

    %%ppdl train fl --rounds 10 --aggregation secure
    model = torch.nn.Linear(64, 10)
    data = federated_digits
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
from IPython.core.error import UsageError
from IPython.display import display
from ppdl_nb.magics.train import TRAINERS, run_training_cell

from ppdl_nb.fl import FederatedDataset, fit_federated
from ppdl_nb.fl.aggregation import AGGREGATIONS
from ppdl_nb.workers.transport.party import local_party

__all__ = ["train_fl"]


def _worker(name: str) -> Any:
    try:
        return local_party().client_for(name)
    except (KeyError, ValueError, ConnectionError) as exc:
        raise UsageError(f"no worker named {name!r}: launch it first (%ppdl launch {name})"
                         ) from exc


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


def train_fl(shell: Any, args: Any, cell: str | None) -> None:
    """Run FedAvg on the cell's model; progress per round; model and history land here."""
    if args.aggregation not in AGGREGATIONS:
        raise UsageError(f"--aggregation must be one of {sorted(AGGREGATIONS)}, "
                         f"not {args.aggregation!r}")
    if args.aggregation == "trusted" and not args.aggregator:
        raise UsageError("--aggregation trusted needs --aggregator NAME (a worker)")
    if args.epsilon is not None:
        raise UsageError("fl takes --noise (and --clip, the max update norm) for DP-FedAvg; "
                         "epsilon is reported per round")
    ns = run_training_cell(shell, cell)
    if ns is None:
        return
    model = ns["model"]
    data = _federated_data(ns, args)
    progress = widgets.IntProgress(value=0, max=args.rounds, description="rounds")
    status = widgets.Label()
    plot = widgets.Output()
    display(widgets.VBox([widgets.HBox([progress, status]), plot]))
    from ppdl_nb.fl.history import History

    live = History()

    def on_round(record: dict[str, Any]) -> None:
        metrics = {k: v for k, v in record.items() if k not in ("round", "rounds")}
        live.append(record["round"], **metrics)
        progress.value = record["round"]
        acc = f", accuracy {record['accuracy']:.3f}" if "accuracy" in record else ""
        loss = f", loss {record['loss']:.3f}" if "loss" in record else ""
        status.value = f"round {record['round']}/{args.rounds}{loss}{acc}"
        _redraw(plot, live)

    dp = {"noise_multiplier": args.noise, "max_update_norm": args.clip,
          "delta": args.delta} if args.noise is not None else {}
    try:
        run = fit_federated(
            model, data, rounds=args.rounds, local_epochs=args.epochs or 1,
            batch_size=args.batch_size or 32, lr=args.lr, loss=ns.get("loss", "cross_entropy"),
            optimizer=ns.get("optimizer", "sgd"), fraction=args.fraction, prox_mu=args.mu,
            aggregation=args.aggregation,
            aggregator=_worker(args.aggregator) if args.aggregator else None,
            threshold=args.threshold, min_clients=args.min_clients, seed=args.seed,
            callback=on_round, **dp)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    ns[f"{args.out}_model"], ns[f"{args.out}_history"] = run.model, run.history
    last = run.history.last
    acc = f", accuracy {last['accuracy']:.3f}" if "accuracy" in last else ""
    eps = f", epsilon {last['epsilon']:.3g}" if "epsilon" in last else ""
    print(f"federated training: {len(run.history)} rounds over {len(data)} clients on "
          f"{len(data.workers)} workers ({last.get('aggregation', args.aggregation)}){acc}{eps}; "
          f"results in {args.out}_model, {args.out}_history")


def _redraw(out: widgets.Output, history: Any) -> None:
    import matplotlib.pyplot as plt
    from IPython.display import clear_output

    with out:
        clear_output(wait=True)
        fig = history.plot()
        display(fig)
        plt.close(fig)


TRAINERS["fl"] = train_fl
