"""Pictures by name: a lower layer asks for a plot, ``ppdl_nb.viz`` draws it.

A :class:`~ppdl_nb.fl.history.History` knows its numbers but not how to draw them:
drawing (matplotlib) lives in ``ppdl_nb.viz``, a layer above ``fl``, which ``fl`` may not
import. So ``viz`` registers its drawing functions here, by name, when it is imported
(``import ppdl_nb`` imports it, so they are there whenever the package is), and
``History.plot`` or ``plot_partition`` call :func:`draw` with the name. This module is a
base module: it imports nothing of the package, so any layer may use it.

>>> @register_plot("example.sum")
... def _example(xs, *, scale=1):
...     return sum(xs) * scale
>>> draw("example.sum", [1, 2, 3], scale=2)
12
>>> register_plot("example.sum")(_example)
Traceback (most recent call last):
  ...
ValueError: a plot named 'example.sum' is already registered (by ppdl_nb.plotting)
>>> _PLOTS.pop("example.sum").__name__  # (an example only)
'_example'
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any, TypeVar

__all__ = ["PLOTS", "draw", "register_plot"]

Plot = TypeVar("Plot", bound=Callable[..., Any])

_PLOTS: dict[str, Callable[..., Any]] = {}
PLOTS = MappingProxyType(_PLOTS)
"""The registered plots, by name (read-only; ``ppdl_nb.viz`` fills it)."""


def register_plot(name: str) -> Callable[[Plot], Plot]:
    """Register ``fn`` as the plot called ``name``; a second plot of that name is an error."""

    def decorate(fn: Plot) -> Plot:
        if name in _PLOTS:
            owner = getattr(_PLOTS[name], "__module__", "?")
            raise ValueError(f"a plot named {name!r} is already registered (by {owner})")
        _PLOTS[name] = fn
        return fn

    return decorate


def draw(name: str, /, *args: Any, **kwargs: Any) -> Any:
    """Draw the plot registered as ``name`` (usually a matplotlib Figure comes back)."""
    if name not in _PLOTS:
        known = ", ".join(sorted(_PLOTS)) or "none"
        raise LookupError(
            f"no plot named {name!r} is registered (registered: {known}); plots are drawn "
            f"by ppdl_nb.viz, which registers them when imported: run `import ppdl_nb.viz` "
            f"first (plain `import ppdl_nb` does it too)"
        )
    return _PLOTS[name](*args, **kwargs)
