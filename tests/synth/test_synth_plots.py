"""The synthetic-data pictures: a grid per class, a slider that swaps grids by epsilon,
the privacy-utility chart with its ceilings, and the leakage table."""

from __future__ import annotations

import base64
import math

import pytest
import torch

from ppdl_nb.synth.leakage import dcr_membership, linkability_risk
from ppdl_nb.viz.synth_plots import (
    EpsilonGrids,
    leakage_table,
    plot_privacy_utility,
    plot_sample_grid,
)


def test_the_grid_has_one_row_per_class_and_refuses_what_it_cannot_draw():
    xs, ys = torch.rand(30, 16), torch.arange(30) % 3
    ax = plot_sample_grid(xs, ys, per_class=4).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    assert ax.images[0].get_array().shape == (3 * 5 - 1, 4 * 5 - 1)
    with pytest.raises(ValueError, match="square"):
        plot_sample_grid(torch.rand(4, 15), torch.arange(4))
    with pytest.raises(ValueError, match="labels"):
        plot_sample_grid(torch.rand(4, 16), torch.arange(3))


def test_the_slider_shows_the_grid_of_the_chosen_epsilon():
    grids = {eps: (torch.full((6, 16), v), torch.arange(6) % 2)
             for eps, v in ((10.0, 1.0), (1.0, 0.0))}
    slider = EpsilonGrids(grids, per_class=2)
    assert slider.slider.value == 1.0 and slider.image.value == slider.pngs[1.0]
    slider.slider.value = 10.0
    assert slider.image.value == slider.pngs[10.0] != slider.pngs[1.0]
    bundle = slider._repr_mimebundle_()  # viewers without widget state see the first grid
    assert base64.b64decode(bundle["image/png"]) == slider.pngs[1.0]
    assert "application/vnd.jupyter.widget-view+json" in bundle
    with pytest.raises(ValueError, match="no grids"):
        EpsilonGrids({})


def test_the_chart_draws_a_line_per_private_method_and_ceilings_dashed():
    rows = [{"method": "A", "epsilon": e, "accuracy": a} for e, a in ((1, 0.5), (10, 0.7))]
    rows.append({"method": "real", "epsilon": math.inf, "accuracy": 0.9})
    ax = plot_privacy_utility(rows).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A"]
    assert any(line.get_linestyle() == "--" and list(line.get_ydata()) == [0.9, 0.9]
               for line in ax.lines)


def test_the_leakage_table_shows_each_release_with_intervals():
    train, control = torch.rand(40, 3), torch.rand(40, 3)
    rows = {"copy": {"epsilon": math.inf,
                     "membership": dcr_membership(train, train, control, bootstrap=20),
                     "linkability": linkability_risk(train, train, control)},
            "noise": {"epsilon": 1.0,
                      "membership": dcr_membership(torch.rand(40, 3), train, control,
                                                   bootstrap=20)}}
    lines = leakage_table(rows).splitlines()
    assert lines[0].split()[:4] == ["release", "epsilon", "membership", "AUC"]
    assert lines[1].startswith("copy") and "1.000 [ 1.000,  1.000]" in lines[1]
    assert lines[2].startswith("noise") and lines[2].count("[") == 1
