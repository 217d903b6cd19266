"""The training magics' progress panel: a bar, a status line and a live plot, in one output.

In JupyterLab the panel is widgets, updated while the cell trains. A notebook viewer
without the widgets' state (a forge's preview, nbviewer, nbconvert HTML) would show only
``VBox(children=(IntProgress(...`` there; so when training ends (or stops) the panel's
output is updated in place with the final picture as a PNG and a plain-text summary next
to the widget view: JupyterLab keeps drawing the widgets, the others show the picture.

While the panel is up, the first Ctrl-C (Kernel > Interrupt) always stops training. Python
drops a ``KeyboardInterrupt`` that arrives while a weakref callback or ``__del__`` runs
(it would print "Exception ignored in ..." and go on), so the panel notes the signal, keeps
that message out of the cell, and raises the interrupt again at the next epoch or round.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from IPython.display import display

from ppdl_nb.viz.figures import png_base64, show_in

__all__ = ["LivePanel"]


class LivePanel:
    """``mode``: plot (bar and curve), bar, or none; ``unit``: epochs or rounds."""

    def __init__(self, mode: str, *, total: int, unit: str) -> None:
        import ipywidgets as widgets  # on the first training cell, not at %load_ext

        self.mode, self.total, self.unit = mode, total, unit
        self.bar = widgets.IntProgress(value=0, max=total, description=unit)
        self.status, self.plot = widgets.Label(), widgets.Output()
        row = widgets.HBox([self.bar, self.status])
        self.box = widgets.VBox([row, self.plot] if mode == "plot" else [row])
        self.last: Any = None
        self.handle = display(self.box, display_id=True) if mode != "none" else None
        self.interrupted = False
        self._installed = threading.current_thread() is threading.main_thread()
        if self._installed:
            self._previous = signal.signal(signal.SIGINT, self._on_interrupt)
            self._unraisable = sys.unraisablehook
            sys.unraisablehook = self._on_unraisable

    def _on_interrupt(self, signum: int, frame: Any) -> None:
        self.interrupted = True
        if callable(self._previous):
            self._previous(signum, frame)
        raise KeyboardInterrupt

    def _on_unraisable(self, unraisable: Any) -> None:
        if not (self.interrupted and unraisable.exc_type is KeyboardInterrupt):
            self._unraisable(unraisable)

    def step(self, done: int, status: str, fig: Any = None) -> None:
        """After each epoch or round: the bar, the status line and (mode plot) ``fig``."""
        if self.interrupted:  # a first press that something swallowed
            raise KeyboardInterrupt
        self.bar.value, self.status.value = done, status
        if fig is not None and self.mode == "plot":
            self.last = fig
            show_in(self.plot, fig, status)

    def summary(self) -> str:
        return f"training progress: {self.bar.value}/{self.total} {self.unit}" + (
            f"; {self.status.value}" if self.status.value else "")

    def finish(self) -> None:
        """Store the final picture and a summary with the panel's output (see above)."""
        if self._installed:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None
                          else signal.default_int_handler)
            sys.unraisablehook = self._unraisable
            self._installed = False
        if self.handle is None:
            return
        bundle = dict(self.box._repr_mimebundle_())
        bundle["text/plain"] = self.summary()
        if self.last is not None:
            bundle["image/png"] = png_base64(self.last)
        self.handle.update(bundle, raw=True)
