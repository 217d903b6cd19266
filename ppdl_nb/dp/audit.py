"""Membership-inference audits: does the model reveal who was in its training set?

Why: a DP guarantee bounds how well *any* attack can tell members from
non-members; an audit measures how well *real* attacks do. Two classic attacks:

* loss threshold (Yeom et al. 2018): members tend to have lower loss; the score is
  minus the per-example loss;
* shadow models (Shokri et al. 2017): train models like the target on data whose
  membership we know, learn to tell "in" from "out" from the model's outputs (top
  probabilities and loss), apply that classifier to the target.

Both report ROC AUC and the true-positive rate at 1% and 0.1% false-positive rate
(low-FPR TPR is what matters for privacy: Carlini et al. 2022). AUC near 0.5 and
TPR near the FPR mean the attack learns nothing.

>>> import torch
>>> model = torch.nn.Linear(4, 2)
>>> xin, yin = torch.randn(50, 4), torch.randint(0, 2, (50,))
>>> xout, yout = torch.randn(50, 4), torch.randint(0, 2, (50,))
>>> r = loss_threshold_attack(model, (xin, yin), (xout, yout))
>>> 0.0 <= r.auc <= 1.0
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = ["AttackResult", "loss_threshold_attack", "shadow_model_attack"]

Data = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class AttackResult:
    """How well an attack separated members (positives) from non-members.

    ``fpr`` and ``tpr`` are its ROC curve (every threshold), drawn by
    :func:`ppdl_nb.viz.dp_plots.plot_roc`.
    """

    attack: str
    auc: float
    tpr_at_1pct_fpr: float
    tpr_at_01pct_fpr: float
    n_members: int
    n_non_members: int
    fpr: tuple[float, ...] = field(default=(), repr=False, compare=False)
    tpr: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def __str__(self) -> str:
        return (
            f"{self.attack}: AUC {self.auc:.3f}, TPR@1%FPR {self.tpr_at_1pct_fpr:.3f}, "
            f"TPR@0.1%FPR {self.tpr_at_01pct_fpr:.3f} "
            f"({self.n_members} members, {self.n_non_members} non-members)"
        )


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    ok = fpr <= target
    return float(tpr[ok].max()) if ok.any() else 0.0


def _result(name: str, member_scores: np.ndarray, other_scores: np.ndarray) -> AttackResult:
    from sklearn.metrics import roc_auc_score, roc_curve

    labels = np.r_[np.ones(len(member_scores)), np.zeros(len(other_scores))]
    scores = np.r_[member_scores, other_scores]
    fpr, tpr, _ = roc_curve(labels, scores)
    return AttackResult(
        name,
        float(roc_auc_score(labels, scores)),
        _tpr_at(fpr, tpr, 0.01),
        _tpr_at(fpr, tpr, 0.001),
        len(member_scores),
        len(other_scores),
        tuple(fpr.tolist()),
        tuple(tpr.tolist()),
    )


@torch.no_grad()
def _outputs(model: nn.Module, data: Data) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-example cross-entropy loss, softmax probabilities) of a classifier."""
    was_training = model.training
    model.eval()
    try:
        logits = model(data[0])
    finally:
        model.train(was_training)
    loss = nn.functional.cross_entropy(logits, data[1], reduction="none")
    return loss, logits.softmax(-1)


def loss_threshold_attack(model: nn.Module, members: Data, non_members: Data) -> AttackResult:
    """Score = minus the per-example loss (Yeom et al. 2018); every threshold is tried."""
    lin, _ = _outputs(model, members)
    lout, _ = _outputs(model, non_members)
    return _result("loss threshold", -lin.numpy(), -lout.numpy())


def _features(model: nn.Module, data: Data, top: int = 3) -> np.ndarray:
    loss, probs = _outputs(model, data)
    k = min(top, probs.shape[1])
    sorted_probs = probs.sort(-1, descending=True).values[:, :k]
    true_prob = probs.gather(1, data[1].view(-1, 1))
    return torch.cat([sorted_probs, true_prob, loss.view(-1, 1)], 1).numpy()


def shadow_model_attack(
    model: nn.Module,
    members: Data,
    non_members: Data,
    *,
    shadow_data: Data,
    train_fn: Callable[[torch.Tensor, torch.Tensor], nn.Module],
    n_shadows: int = 2,
    seed: int = 0,
) -> AttackResult:
    """Shokri et al. (2017), with one attack classifier for all classes.

    ``shadow_data`` must be disjoint from the target's data; each shadow model is
    trained by ``train_fn(x, y)`` (the same recipe as the target) on a random half of
    it, the other half being its "out" set.
    """
    from sklearn.linear_model import LogisticRegression

    x, y = shadow_data
    if len(x) < 4:
        raise ValueError("shadow_data needs at least 4 examples to make in/out halves.")
    gen = torch.Generator().manual_seed(seed)
    feats, labels = [], []
    for _ in range(n_shadows):
        perm = torch.randperm(len(x), generator=gen)
        half = len(x) // 2
        tin, tout = perm[:half], perm[half:]
        shadow = train_fn(x[tin], y[tin])
        feats += [_features(shadow, (x[tin], y[tin])), _features(shadow, (x[tout], y[tout]))]
        labels += [np.ones(len(tin)), np.zeros(len(tout))]
    clf = LogisticRegression(max_iter=1000).fit(np.concatenate(feats), np.concatenate(labels))
    s_in = clf.predict_proba(_features(model, members))[:, 1]
    s_out = clf.predict_proba(_features(model, non_members))[:, 1]
    return _result("shadow models", s_in, s_out)
