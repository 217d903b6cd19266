"""The worker dashboard: one row per worker, refreshed live, with restart/shutdown buttons.

It polls each worker's ``info()`` from a background thread. Clients guard their
channel with a lock, so a refresh never interleaves with a request a running cell is
making; a worker that does not answer shows as unavailable instead of hanging the view.

>>> dash = WorkerDashboard([], interval=None)
>>> dash.refresh()
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets

from ppdl_nb.viz.units import human_bytes
from ppdl_nb.workers.transport.party import local_party

__all__ = ["WorkerDashboard"]

COLUMNS = ("worker", "kind", "pid", "status", "objects", "bytes held", "msgs in", "msgs out",
           "", "")


class WorkerDashboard:
    """A live table of workers. ``interval=None`` refreshes only on :meth:`refresh`."""

    def __init__(self, workers: Sequence[Any] | None = None, *,
                 interval: float | None = 1.0) -> None:
        self._fixed = list(workers) if workers is not None else None
        self.interval = interval
        self.grid = widgets.GridBox(layout=widgets.Layout(
            grid_template_columns="repeat(8, max-content) max-content max-content",
            grid_gap="2px 14px"))
        self.grid.add_class("ppdl-dashboard")
        self.message = widgets.HTML()
        self.widget = widgets.VBox([widgets.HTML("<b>ppdl workers</b>"), self.grid,
                                    self.message])
        self._cells: dict[int, list[widgets.Widget]] = {}
        self._busy: dict[int, str] = {}  # id(worker) -> "restarting…" while a button acts
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()
        if interval:
            self.start()

    def workers(self) -> list[Any]:
        return self._fixed if self._fixed is not None else local_party().workers()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self._bundle(), raw=True)

    def _bundle(self) -> dict[str, Any]:
        """The widget, plus the table as it is now in HTML, for viewers without widget
        state (a preview, nbconvert): they show a snapshot instead of ``VBox(...)``."""
        from html import escape

        rows = ["".join(f"<td>{escape(str(c.value))}</td>"
                        for c in self._cells[id(w)][:8]) for w in self.workers()
                if id(w) in self._cells]
        head = "".join(f"<th>{c}</th>" for c in COLUMNS[:8])
        bundle = dict(self.widget._repr_mimebundle_())
        bundle["text/html"] = (f"<b>ppdl workers</b><table><tr>{head}</tr>"
                               + "".join(f"<tr>{r}</tr>" for r in rows) + "</table>")
        bundle["text/plain"] = "ppdl workers: " + ", ".join(
            f"{w.name} ({self._cells[id(w)][3].value})" for w in self.workers()
            if id(w) in self._cells)
        return bundle

    # ---- rows ----------------------------------------------------------------------------
    def _row(self, worker: Any) -> list[widgets.Widget]:
        labels = [widgets.Label(worker.name), widgets.Label(worker.kind)]
        labels += [widgets.Label("") for _ in range(6)]
        labels[3].add_class(f"ppdl-status-{worker.name}")
        restart = widgets.Button(description="Restart", button_style="warning",
                                 layout=widgets.Layout(width="auto"))
        stop = widgets.Button(description="Shut down", button_style="danger",
                              layout=widgets.Layout(width="auto"))
        restart.add_class(f"ppdl-restart-{worker.name}")
        stop.add_class(f"ppdl-shutdown-{worker.name}")
        restart.on_click(lambda _b: self._act(worker, "restart"))
        stop.on_click(lambda _b: self._act(worker, "shutdown"))
        return [*labels, restart, stop]

    def _act(self, worker: Any, action: str) -> None:
        """A button's action: the row says so and its buttons wait until it is done."""
        self._busy[id(worker)] = "restarting…" if action == "restart" else "shutting down…"
        self.refresh()
        try:
            worker.restart() if action == "restart" else worker.shutdown()
            self.message.value = f"{worker.name}: {action} done"
        except Exception as exc:  # shown, not raised: a button callback has no caller
            self.message.value = f"{worker.name}: {action} failed: {exc}"
        finally:
            self._busy.pop(id(worker), None)
        self.refresh()

    def refresh(self) -> None:
        """Poll every worker once and update the table."""
        workers = self.workers()
        header = [widgets.HTML(f"<b>{c}</b>") for c in COLUMNS]
        children: list[widgets.Widget] = list(header)
        for w in workers:
            cells = self._cells.get(id(w))  # the cells' callbacks keep w (and its id) alive
            if cells is None:
                cells = self._cells[id(w)] = self._row(w)
            busy = self._busy.get(id(w))
            values = [str(w.pid or ""), busy, "", "", "", ""] if busy else self._values(w)
            for cell, value in zip(cells[2:8], values, strict=True):
                if cell.value != value:
                    cell.value = value
            restart, stop = cells[8:]
            restart.disabled = bool(busy)  # nothing applies while an action runs
            stop.disabled = bool(busy) or values[1] == "shut down"
            children.extend(cells)
        if tuple(self.grid.children) != tuple(children[: len(self.grid.children)]) or len(
            self.grid.children
        ) != len(children):
            self.grid.children = children

    @staticmethod
    def _values(worker: Any) -> list[str]:
        pid = "" if worker.pid is None else str(worker.pid)
        status = worker.status()
        if status != "running":
            return [pid, status, "", "", "", ""]
        try:
            info = worker.info()
        except Exception as exc:
            return [pid, f"unavailable ({type(exc).__name__})", "", "", "", ""]
        return [pid, "running", str(info["objects"]), human_bytes(info["bytes"]),
                str(info["messages_in"]), str(info["messages_out"])]

    # ---- live refresh --------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ppdl-dashboard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval or 1.0):
            try:
                self.refresh()
            except Exception as exc:
                self.message.value = f"refresh failed: {exc}"
