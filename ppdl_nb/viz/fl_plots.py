"""Federated-learning pictures: a run's metrics per round, runs side by side, and how a
dataset was split among clients.

``ppdl_nb.fl`` sits below this layer, so it does not import these functions: it asks for
them by name through :mod:`ppdl_nb.plotting` (``History.plot``, ``fl.compare``,
``fl.plot_partition``), and this module registers them there when ``ppdl_nb.viz`` is
imported. They only read what they are given (a History's ``metrics``, ``series`` and
``events``; a counts matrix), so they can also be called directly. matplotlib is
imported on the first drawing, not before.

>>> from ppdl_nb.fl.history import History
>>> h = History()
>>> h.append(1, loss=0.9, accuracy=0.7)
>>> h.append(2, loss=0.5, accuracy=0.8)
>>> [a.get_title() for a in plot_history(h).axes]
['loss', 'accuracy']
>>> plot_partition_counts([[3, 1], [0, 4]], names=["alice", "bob"]).axes[0].get_xlabel()
'rows'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ppdl_nb.plotting import register_plot
from ppdl_nb.viz.figures import new_figure

if TYPE_CHECKING:
    from ppdl_nb.fl.history import History

__all__ = ["compare_histories", "plot_history", "plot_partition_counts"]


@register_plot("fl.history")
def plot_history(history: History, metrics: str | Sequence[str] | None = None,
                 ax: Any = None) -> Any:
    """One subplot per metric against round; rounds with events get dashed lines.

    ``metrics`` None means loss and accuracy, whichever were recorded. ``ax`` may be
    one Axes (for one metric) or a sequence with one Axes per metric; otherwise a new
    Figure, not registered with pyplot, is made. Returns the Figure.
    """
    if metrics is None:
        names = [m for m in ("loss", "accuracy") if m in history.metrics]
        if not names:
            raise ValueError(f"no loss or accuracy recorded; pass metrics= (recorded: "
                             f"{', '.join(history.metrics) or 'none'})")
    else:
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        if not names:
            raise ValueError("metrics is empty")
    series = {m: history.series(m) for m in names}
    axes = _axes_for(len(names), ax, figsize=(3.6 * len(names), 2.8))
    marks = sorted({ev["round"] for ev in history.events})
    for a, name in zip(axes, names, strict=True):
        xs, ys = series[name]
        a.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3)
        for r in marks:
            a.axvline(r, color="grey", linestyle="--", linewidth=0.8)
        a.set_xlabel("round")
        _whole_ticks(a)
        a.set_title(name)
        a.grid(alpha=0.3)
    return axes[0].figure


@register_plot("fl.compare")
def compare_histories(histories: Mapping[str, History], metric: str = "accuracy",
                      ax: Any = None) -> Any:
    """Overlay ``metric`` from several runs, one line per run, labelled by its key."""
    if not histories:
        raise ValueError("no histories to compare")
    for name, hist in histories.items():
        if metric not in hist.metrics:
            raise ValueError(f"run {name!r} has no {metric!r} (recorded: "
                             f"{', '.join(hist.metrics) or 'none'})")
    series = {name: hist.series(metric) for name, hist in histories.items()}
    (a,) = _axes_for(1, ax, figsize=(5.0, 3.2))
    for name, (xs, ys) in series.items():
        a.plot(xs, ys, label=str(name), marker="o" if len(xs) < 30 else None, markersize=3)
    a.set_xlabel("round")
    _whole_ticks(a)
    a.set_ylabel(metric)
    a.grid(alpha=0.3)
    a.legend(frameon=False)
    return a.figure


@register_plot("fl.partition")
def plot_partition_counts(counts: Any, *, names: Sequence[str], ax: Any = None) -> Any:
    """A stacked horizontal bar per client (``counts`` rows), one segment per class.

    ``counts`` is ``(clients, classes)``; ``names`` label the clients. Draws on ``ax``
    when given, otherwise on a new Figure that is not registered with pyplot.
    """
    data = np.asarray(counts, dtype=np.float64)
    if data.ndim != 2 or len(names) != data.shape[0]:
        raise ValueError(f"counts must be (clients, classes) with one name per client; got "
                         f"shape {data.shape} and {len(names)} names")
    n_clients, n_classes = data.shape
    if ax is None:
        ax = new_figure(figsize=(7.0, 0.9 + 0.35 * max(n_clients, 1))).add_subplot()
    cmap = _class_colors(n_classes)
    left = np.zeros(n_clients)
    y = np.arange(n_clients)
    for cls in range(n_classes):
        ax.barh(y, data[:, cls], left=left, color=cmap(cls), label=str(cls), height=0.8)
        left += data[:, cls]
    ax.set_yticks(y, list(names))
    ax.invert_yaxis()  # client 0 at the top, as in the summary table
    ax.set_xlabel("rows")
    if n_classes:
        ax.legend(title="class", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                  ncol=max(1, math.ceil(n_classes / 20)), frameon=False)
    return ax.figure


def _whole_ticks(ax: Any) -> None:
    """Rounds and epochs are whole numbers: no tick at round 2.5."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _axes_for(n: int, ax: Any, figsize: tuple[float, float]) -> list[Any]:
    if ax is None:
        return list(new_figure(figsize=figsize).subplots(1, n, squeeze=False)[0])
    if hasattr(ax, "flat"):  # a numpy array of Axes, as plt.subplots returns
        axes = list(ax.flat)
    elif isinstance(ax, Sequence):
        axes = list(ax)
    else:
        axes = [ax]
    if len(axes) != n:
        raise ValueError(f"got {len(axes)} axes for {n} metrics")
    return axes


def _class_colors(n: int) -> Any:
    from matplotlib import colormaps

    if n <= 10:
        return colormaps["tab10"]
    if n <= 20:
        return colormaps["tab20"]
    cmap = colormaps["viridis"]
    return lambda i: cmap(i / (n - 1))
