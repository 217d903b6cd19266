"""FL pictures are drawn by viz and reached from fl through the plot registry."""

from __future__ import annotations

import subprocess
import sys

import pytest

import ppdl_nb
from ppdl_nb import plotting
from ppdl_nb.fl.history import History
from ppdl_nb.viz import fl_plots


def _history() -> History:
    h = History()
    for r in (1, 2, 3):
        h.append(r, loss=1.0 / r, accuracy=0.5 + r / 10)
    h.event(2, "bob dropped")
    return h


def test_importing_ppdl_nb_fills_the_registry():
    assert ppdl_nb.viz.PLOTS["fl.history"] is fl_plots.plot_history
    assert {"fl.history", "fl.compare", "fl.partition"} <= set(plotting.PLOTS)


def test_history_plot_goes_through_viz():
    fig = _history().plot()
    assert [a.get_title() for a in fig.axes] == ["loss", "accuracy"]
    assert len(fig.axes[0].get_lines()) == 2  # the series and the event's dashed line


def test_a_second_plot_with_the_same_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        plotting.register_plot("fl.history")(lambda *a, **k: None)
    assert plotting.PLOTS["fl.history"] is fl_plots.plot_history


def test_an_empty_registry_says_to_import_viz(monkeypatch):
    monkeypatch.setattr(plotting, "_PLOTS", {})
    with pytest.raises(LookupError, match="import ppdl_nb.viz"):
        _history().plot()


def test_viz_is_light_to_import():
    code = ("import sys, ppdl_nb.viz; "
            "print(sorted(m for m in ('matplotlib', 'ipywidgets', 'ppdl_nb.fl', 'ppdl_nb.dp') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_round_ticks_are_whole_numbers():
    fig = _history().plot()
    for ax in fig.axes:
        fig.canvas.draw()
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
