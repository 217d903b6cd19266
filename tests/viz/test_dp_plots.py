"""ROC curves of membership-inference attacks and PATE's vote histogram (issue 18, item 7)."""

from __future__ import annotations

import pytest
import torch

from ppdl_nb.dp.audit import AttackResult, loss_threshold_attack
from ppdl_nb.viz.dp_plots import plot_roc, plot_votes


def test_an_attack_carries_its_roc_curve_and_plot_roc_draws_it():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    members = (torch.randn(20, 4), torch.randint(0, 3, (20,)))
    others = (torch.randn(20, 4), torch.randint(0, 3, (20,)))
    result = loss_threshold_attack(model, members, others)
    assert result.fpr[0] == 0.0 and result.fpr[-1] == 1.0 and result.tpr[-1] == 1.0
    assert len(result.fpr) == len(result.tpr) >= 2
    fig = plot_roc({"a": result, "b": result}, accuracy={"a": 0.5})
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3  # two attacks and the diagonal
    assert list(lines[0].get_xdata()) == list(result.fpr)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0] == f"a: AUC {result.auc:.2f}, accuracy 0.50"
    assert labels[1] == f"b: AUC {result.auc:.2f}"


def test_a_result_without_a_curve_is_refused_with_a_hint():
    bare = AttackResult("x", 0.5, 0.0, 0.0, 1, 1)
    with pytest.raises(ValueError, match="carries no ROC curve"):
        plot_roc({"x": bare})


def test_plot_votes_counts_queries_by_the_pluralitys_size():
    votes = torch.tensor([[3, 1, 0], [2, 2, 0], [4, 0, 0], [2, 1, 1]])
    fig = plot_votes(votes)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [0, 0, 2, 1, 1]  # plurality of 2 twice, of 3 once, of 4 once
    assert sum(heights) == len(votes)
    assert "4 teachers agree, over 4 queries" in fig.axes[0].get_title()
