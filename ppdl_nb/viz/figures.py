"""Figures that show in Jupyter without pyplot: register IPython's PNG display once.

Plot helpers return a plain ``matplotlib.figure.Figure`` (not tracked by pyplot, so
nothing pops up in scripts and nothing leaks). Jupyter shows such a figure as an image
only when IPython has a PNG formatter for it, which pyplot installs lazily; this does
it directly.

>>> from matplotlib.figure import Figure
>>> fig = new_figure(figsize=(3, 2))
>>> isinstance(fig, Figure)
True
"""

from __future__ import annotations

from typing import Any

__all__ = ["new_figure", "show_figures_in_ipython"]

_done = False


def show_figures_in_ipython() -> None:
    """In an IPython shell, display Figure values as PNG (idempotent; no-op elsewhere)."""
    global _done
    if _done:
        return
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        select_figure_formats(shell, {"png"})
        _done = True


def new_figure(**kwargs: Any) -> Any:
    """A constrained-layout Figure that Jupyter will draw as a cell's value."""
    from matplotlib.figure import Figure

    show_figures_in_ipython()
    return Figure(layout="constrained", **kwargs)
