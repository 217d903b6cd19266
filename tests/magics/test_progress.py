"""The training panel keeps its final picture for viewers without widgets (issue 18, item 5)."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient
from ppdl_nb.magics import progress

from ppdl_nb.viz.figures import new_figure

WIDGET = "application/vnd.jupyter.widget-view+json"


class _Handle:
    def update(self, obj, raw=False):
        self.obj, self.raw = obj, raw


def test_finish_stores_the_last_picture_and_a_summary_with_the_panel(monkeypatch):
    handles = []
    monkeypatch.setattr(progress, "display",
                        lambda obj, display_id=None: handles.append(_Handle()) or handles[-1])
    panel = progress.LivePanel("plot", total=2, unit="epochs")
    fig = new_figure()
    fig.add_subplot().plot([1, 2], [3, 4])
    panel.step(1, "epoch 1: loss 0.500", fig)
    panel.step(2, "epoch 2: loss 0.400", fig)
    (live,) = panel.plot.outputs  # the live plot, set as the widget's output
    assert live["data"]["image/png"] and live["data"]["text/plain"] == "epoch 2: loss 0.400"
    panel.finish()
    (handle,) = handles
    assert handle.raw and handle.obj["image/png"] and WIDGET in handle.obj
    assert handle.obj["text/plain"] == "training progress: 2/2 epochs; epoch 2: loss 0.400"


def test_no_panel_no_picture(monkeypatch):
    monkeypatch.setattr(progress, "display", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("--progress none displays nothing")))
    panel = progress.LivePanel("none", total=1, unit="rounds")
    panel.step(1, "round 1/1", None)
    panel.finish()


def test_a_stored_training_cell_carries_the_picture():
    cell = ("%%ppdl train dp --epsilon 2 --epochs 2 --batch-size 50 --lr 0.2\n"
            "import torch\ng = torch.Generator().manual_seed(0)\n"
            "x = torch.randn(200, 6, generator=g)\nmodel = torch.nn.Linear(6, 2)\n"
            "data = (x, (x[:, 0] > 0).long())\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%load_ext ppdl_nb"),
                                         nbformat.v4.new_code_cell(cell)])
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    panel = nb.cells[1].outputs[0]
    assert panel["output_type"] == "display_data"
    assert WIDGET in panel["data"] and panel["data"]["image/png"]
    assert panel["data"]["text/plain"].startswith("training progress: 2/2 epochs; epoch 2:")
    assert "VBox" not in panel["data"]["text/plain"]
