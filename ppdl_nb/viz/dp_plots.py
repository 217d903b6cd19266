"""Pictures of differential privacy at work: attack ROC curves, teachers' votes.

:func:`plot_roc` draws membership-inference attacks (:mod:`ppdl_nb.dp.audit`) as ROC
curves, one per model, with each model's accuracy in the legend next to the attack's AUC:
the privacy-utility trade-off in one picture. :func:`plot_votes` shows how strongly PATE's
teachers agree (:mod:`ppdl_nb.dp.pate`): the more they agree, the less noise costs.

>>> import torch
>>> from ppdl_nb.dp.audit import AttackResult
>>> r = AttackResult("loss threshold", 0.75, 0.1, 0.0, 10, 10, (0.0, 0.5, 1.0), (0.0, 1.0, 1.0))
>>> fig = plot_roc({"no DP": r}, accuracy={"no DP": 0.9})
>>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
['no DP: AUC 0.75, accuracy 0.90', 'guessing']
>>> fig = plot_votes(torch.tensor([[18, 2, 0], [7, 6, 7]]))
>>> fig.axes[0].get_xlabel()
'teachers voting for the plurality label'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ppdl_nb.viz.figures import new_figure

__all__ = ["plot_roc", "plot_votes"]


def plot_roc(results: Mapping[str, Any], *, accuracy: Mapping[str, float] | None = None,
             ax: Any = None) -> Any:
    """ROC curves of attacks (name -> ``AttackResult``); ``accuracy``: name -> the model's."""
    fig = new_figure(figsize=(5.5, 4)) if ax is None else ax.figure
    ax = ax or fig.add_subplot()
    for name, result in results.items():
        if not result.fpr:
            raise ValueError(f"{name}: this AttackResult carries no ROC curve; make it with "
                             "ppdl_nb.dp.audit (loss_threshold_attack, shadow_model_attack)")
        label = f"{name}: AUC {result.auc:.2f}"
        if accuracy and name in accuracy:
            label += f", accuracy {accuracy[name]:.2f}"
        ax.plot(result.fpr, result.tpr, label=label, linewidth=2)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="guessing")
    ax.set_xlabel("false positive rate (non-members called members)")
    ax.set_ylabel("true positive rate (members found)")
    ax.set_title("membership inference: the lower the curve, the better the privacy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right", fontsize="small")
    return fig


def plot_votes(votes: Any, *, ax: Any = None) -> Any:
    """Histogram of the plurality's vote count per query (``votes``: queries x classes)."""
    from matplotlib.ticker import MaxNLocator

    top = votes.max(dim=1).values
    teachers = int(votes[0].sum())
    fig = new_figure(figsize=(5.5, 3)) if ax is None else ax.figure
    ax = ax or fig.add_subplot()
    counts = [int((top == k).sum()) for k in range(teachers + 1)]
    ax.bar(range(teachers + 1), counts, color="#4c72b0")
    ax.set_xlabel("teachers voting for the plurality label")
    ax.set_ylabel("queries")
    ax.set_title(f"how strongly {teachers} teachers agree, over {len(top)} queries")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig
