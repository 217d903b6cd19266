"""Privacy budgets at a glance: what each data owner's budget went on, and what is left.

The ledgers live with the data (each worker keeps one per dataset and charges it before
it answers); this module only reads them (the ``dp.budgets`` step) and draws them: one
bar per dataset, a segment per release, the rest of the budget in grey.

>>> import ppdl_nb
>>> clinic = ppdl_nb.VirtualWorker("clinic_doc")
>>> _ = clinic.step("dp.load", dataset="breast_cancer", epsilon=1.0, delta=1e-5)
>>> [(b.worker, b.dataset, b.remaining_epsilon) for b in ledgers([clinic])]
[('clinic_doc', 'breast_cancer', 1.0)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ppdl_nb.viz.chain_diagram import worker_color
from ppdl_nb.viz.figures import new_figure
from ppdl_nb.workers.transport.party import local_party

__all__ = ["Ledger", "ledgers", "plot_budgets"]

_REMAINING = "#d9d9d9"


@dataclass(frozen=True)
class Ledger:
    """One dataset's budget on one worker: totals and the releases charged to it."""

    worker: str
    dataset: str
    total_epsilon: float
    total_delta: float
    history: tuple[tuple[str, float, float], ...]  # (what, epsilon, delta)

    @property
    def spent_epsilon(self) -> float:
        return sum(eps for _, eps, _ in self.history)

    @property
    def spent_delta(self) -> float:
        return sum(delta for _, _, delta in self.history)

    @property
    def remaining_epsilon(self) -> float:
        return max(0.0, self.total_epsilon - self.spent_epsilon)

    def text(self) -> str:
        """The ledger as a table: one line per release, then spent / total."""
        lines = [f"{self.worker} / {self.dataset}",
                 f"  {'release':<40} {'epsilon':>9} {'delta':>9}"]
        lines += [f"  {what[:40]:<40} {eps:>9.4g} {delta:>9.2g}"
                  for what, eps, delta in self.history]
        lines.append(f"  {'spent / total':<40} {self.spent_epsilon:>9.4g} "
                     f"{self.spent_delta:>9.2g}   of ({self.total_epsilon:g}, "
                     f"{self.total_delta:g}); epsilon left {self.remaining_epsilon:.4g}")
        return "\n".join(lines)


def ledgers(workers: Sequence[Any] | None = None) -> list[Ledger]:
    """Every dataset budget the ``workers`` (default: all connected and running) keep."""
    if workers is None:
        workers = [w for w in local_party().workers()
                   if getattr(w, "status", lambda: "running")() == "running"]
    out = []
    for w in workers:
        for dataset, doc in w.step("dp.budgets").items():
            history = tuple((str(what), float(eps), float(delta))
                            for what, eps, delta in doc["history"])
            out.append(Ledger(w.name, dataset, float(doc["total_epsilon"]),
                              float(doc["total_delta"]), history))
    return out


def plot_budgets(budgets: Sequence[Ledger]) -> Any:
    """A bar per budget: a segment per release (epsilon), the remainder in grey."""
    if not budgets:
        raise ValueError("no budgets to draw: no worker holds a dataset with a budget; a "
                         "data owner loads one with worker.step('dp.load', dataset=..., "
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
