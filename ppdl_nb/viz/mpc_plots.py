"""Pictures of a private forward: rounds, bytes and seconds per layer.

They read plain data: a :class:`~ppdl_nb.tensors.private_model.PrivateModel`'s
``last_forward`` (one dict per layer with ``layer``, ``rounds``, ``bytes``, ``seconds``).
matplotlib is imported on the first drawing, not before.

>>> rows = [{"layer": "Linear", "rounds": 2, "bytes": 800, "seconds": 0.01},
...         {"layer": "ReLU", "rounds": 4, "bytes": 400, "seconds": 0.02}]
>>> [ax.get_ylabel() for ax in plot_private_forward(rows).axes]
['rounds', 'bytes sent', 'seconds']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ppdl_nb.viz.figures import new_figure

__all__ = ["plot_private_forward"]

_PANELS = [("rounds", "rounds", "#4c72b0"), ("bytes", "bytes sent", "#dd8452"),
           ("seconds", "seconds", "#55a868")]


def plot_private_forward(layers: Sequence[Mapping[str, Any]], *,
                         title: str = "private forward, per layer") -> Any:
    """Three bar charts side by side: opening rounds, bytes the parties sent, seconds."""
    if not layers:
        raise ValueError("no layers to draw: pass a private model's .last_forward after a "
                         "forward")
    fig = new_figure(figsize=(9.0, 2.8))
    names = [f"{i}\n{la['layer']}" for i, la in enumerate(layers)]
    for ax, (key, label, color) in zip(fig.subplots(1, 3), _PANELS, strict=True):
        values = [float(la[key]) for la in layers]
        ax.bar(range(len(layers)), values, color=color)
        ax.set_xticks(range(len(layers)), names, fontsize=7)
        ax.set_ylabel(label)
        ax.set_title(f"{label}: total {_total(key, sum(values))}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig


def _total(key: str, value: float) -> str:
    if key == "rounds":
        return str(int(value))
    if key == "seconds":
        return f"{value:.2f} s"
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
