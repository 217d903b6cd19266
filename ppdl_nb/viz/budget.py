"""Privacy budgets at a glance: what each data owner's budget went on, and what is left.

The ledgers live with the data (each worker keeps one per dataset and charges it before
it answers); this module only reads them (:meth:`ppdl_nb.dp.remote.DataOwner.budgets`)
and draws them: one bar per dataset, a segment per release, the rest of the budget in grey.

>>> import ppdl_nb
>>> from ppdl_nb.dp import remote
>>> clinic = ppdl_nb.VirtualWorker("clinic_doc")
>>> _ = remote(clinic).load("breast_cancer", epsilon=1.0, delta=1e-5)
>>> [(b.worker, b.dataset, b.remaining_epsilon) for b in ledgers([clinic])]
[('clinic_doc', 'breast_cancer', 1.0)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ppdl_nb.dp.remote import Ledger, remote
from ppdl_nb.viz.chain_diagram import worker_color
from ppdl_nb.viz.figures import new_figure
from ppdl_nb.workers.transport.party import local_party

__all__ = ["Ledger", "ledgers", "plot_budgets"]

_REMAINING = "#d9d9d9"


def ledgers(workers: Sequence[Any] | None = None) -> list[Ledger]:
    """Every dataset budget the ``workers`` (default: all connected and running) keep."""
    if workers is None:
        workers = [w for w in local_party().workers()
                   if getattr(w, "status", lambda: "running")() == "running"]
    return [ledger for w in workers for ledger in remote(w).budgets().values()]


def plot_budgets(budgets: Sequence[Ledger]) -> Any:
    """A bar per budget: a segment per release (epsilon), the remainder in grey."""
    if not budgets:
        raise ValueError("no budgets to draw: no worker holds a dataset with a budget; a "
                         "data owner loads one with ppdl_nb.dp.remote(worker).load(dataset, "
                         "epsilon=..., delta=...)")
    fig = new_figure(figsize=(7, 0.7 + 0.55 * len(budgets)))
    ax = fig.add_subplot()
    xmax = max(max(b.total_epsilon, b.spent_epsilon) for b in budgets) * 1.25
    labels = []
    for row, b in enumerate(budgets):
        left = 0.0
        color = worker_color(b.worker)
        for i, (what, eps, _) in enumerate(b.history):
            ax.barh(row, eps, left=left, color=color, alpha=0.55 + 0.45 * (i % 2),
                    edgecolor="white")
            if eps >= 0.1 * xmax and what.split():  # room for the kind of release
                ax.text(left + eps / 2, row, what.split()[0][:10], ha="center",
                        va="center", fontsize=7)
            left += eps
        ax.barh(row, b.remaining_epsilon, left=left, color=_REMAINING, edgecolor="white")
        ax.text(max(b.total_epsilon, left) * 1.01, row,
                f"{b.spent_epsilon:.3g} / {b.total_epsilon:g}", va="center", fontsize=8)
        labels.append(f"{b.worker} / {b.dataset}")
    ax.set_yticks(range(len(budgets)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("epsilon (spent per release, remaining in grey)")
    ax.set_xlim(0, xmax)
    ax.set_title("privacy budgets, kept by the data owners")
    return fig
