"""What a synthetic data set leaks about its training records: measured, not assumed.

Why: "synthetic data is private by construction" is a claim, and studies find it false
for generators trained without a guarantee (records reappear, rare combinations link
back, a column can be inferred from the others). So each release is attacked, with a
*control*: the same attack against records that were **not** in the training set. Only
the excess over the control is leakage; a rate that is equally high on strangers is what
any statistic of the population reveals.

* :func:`dcr_membership` - membership inference by distance to the closest synthetic
  record (DCR), optionally relative to a *reference* synthetic set from a generator
  trained on other data (``score = d_ref - d_target``), so that records which are merely
  typical do not look like members. Reported as AUC and advantage with bootstrap CIs.
* :func:`singling_out_risk`, :func:`linkability_risk`, :func:`inference_risk` - the three
  risks the EU's Article 29 Working Party names, evaluated as anonymeter (Giomi et al.,
  PETS 2023) does: an attack on training records and the same attack on control records,
  ``risk = (rate_main - rate_control) / (1 - rate_control)``, each rate with a Wilson 95%
  interval. anonymeter itself pins ``numpy<1.27`` and cannot share this environment
  (numpy 2.x); these functions follow its definitions and are tested on releases whose
  answer is known (a copy of the training set, and independent noise). anonymeter proper
  runs beside them in ``.venv-anonymeter`` (:mod:`ppdl_nb.synth.anonymeter_io`,
  ``benchmarks/anonymeter_risks.py``); docs/SYNTH.md compares the two. Where they differ:
  anonymeter keeps only singling-out predicates that single out a record *of the
  release* (a stronger attacker: a copy scores 0.995 there, 0.44 here), measures
  neighbours in Gower distance, and its risk interval is the delta-method one clamped to
  [0, 1], narrower than the corners of the Wilson intervals used here.

All inputs are float arrays or tensors of standardised columns; rows are records.

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> train, control = torch.randn(200, 3, generator=g), torch.randn(200, 3, generator=g)
>>> dcr_membership(train.clone(), train, control, bootstrap=0).auc > 0.95  # a copy leaks
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["MembershipResult", "RiskResult", "dcr_membership", "inference_risk",
           "linkability_risk", "singling_out_risk", "wilson"]


def wilson(successes: int, trials: int, *, z: float = 1.96) -> tuple[float, float, float]:
    """Rate and Wilson score interval ``(rate, low, high)`` of ``successes / trials``.

    >>> [round(v, 3) for v in wilson(5, 10)]
    [0.5, 0.237, 0.763]
    """
    if trials <= 0:
        raise ValueError(f"trials must be positive, got {trials}.")
    p = successes / trials
    den = 1 + z * z / trials
    mid = (p + z * z / (2 * trials)) / den
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / den
    return p, max(0.0, mid - half), min(1.0, mid + half)


def _arr(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def _min_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.cdist(chunk, b).min(1).values for chunk in a.split(1024)])


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC: P(member score > non-member score), ties counted half."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)
                 / (len(pos) * len(neg)))


def _advantage(pos: np.ndarray, neg: np.ndarray) -> float:
    thr = np.unique(np.concatenate([pos, neg]))
    tpr = (pos[None, :] >= thr[:, None]).mean(1)
    fpr = (neg[None, :] >= thr[:, None]).mean(1)
    return float((tpr - fpr).max())


@dataclass
class MembershipResult:
    """AUC (0.5 = no leakage) and advantage ``max(TPR - FPR)``, with 95% bootstrap CIs."""

    auc: float
    auc_ci: tuple[float, float]
    advantage: float
    advantage_ci: tuple[float, float]


def dcr_membership(synthetic: torch.Tensor | np.ndarray, members: torch.Tensor | np.ndarray,
                   non_members: torch.Tensor | np.ndarray, *,
                   reference: torch.Tensor | np.ndarray | None = None, bootstrap: int = 200,
                   seed: int = 0) -> MembershipResult:
    """Distance-to-closest-record membership inference against a synthetic release.

    A record closer to the release than usual is guessed a member. With ``reference`` (a
    release of the same generator trained on disjoint data), the score is the distance to
    the reference minus the distance to the target release.
    """
    syn, mem, non = _arr(synthetic), _arr(members), _arr(non_members)
    if len(mem) == 0 or len(non) == 0 or len(syn) == 0:
        raise ValueError("need at least one synthetic record, member and non-member.")
    pos, neg = -_min_dist(mem, syn), -_min_dist(non, syn)
    if reference is not None:
        ref = _arr(reference)
        pos, neg = pos + _min_dist(mem, ref), neg + _min_dist(non, ref)
    p, n = pos.numpy().astype(np.float64), neg.numpy().astype(np.float64)
    auc, adv = _auc(p, n), _advantage(p, n)
    rng = np.random.default_rng(seed)
    aucs, advs = [], []
    for _ in range(bootstrap):
        bp, bn = rng.choice(p, len(p)), rng.choice(n, len(n))
        aucs.append(_auc(bp, bn))
        advs.append(_advantage(bp, bn))
    return MembershipResult(auc, _ci(aucs, auc), adv, _ci(advs, adv))


def _ci(values: list[float], point: float) -> tuple[float, float]:
    if not values:
        return point, point
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


@dataclass
class RiskResult:
    """Attack success on training records (main) and on control records, and the risk
    ``(main - control) / (1 - control)``; each with a 95% interval. A negative risk means
    the attack did better on strangers than on members: no evidence of leakage. When the
    control rate is near 1 (a column the population predicts well), the risk is
    undefined in practice and its interval says so by being wide."""

    main: tuple[float, float, float]
    control: tuple[float, float, float]
    attacks: int

    @property
    def risk(self) -> float:
        return _risk(self.main[0], self.control[0])

    @property
    def risk_ci(self) -> tuple[float, float]:
        return _risk(self.main[1], self.control[2]), _risk(self.main[2], self.control[1])


def _risk(main: float, control: float) -> float:
    return (main - control) / (1 - control) if control < 1 else 0.0


def _result(main_hits: np.ndarray, control_hits: np.ndarray) -> RiskResult:
    return RiskResult(wilson(int(main_hits.sum()), len(main_hits)),
                      wilson(int(control_hits.sum()), len(control_hits)), len(main_hits))


def _match_sizes(train: torch.Tensor, control: torch.Tensor, n: int, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = min(n, len(train), len(control))
    return (train[torch.randperm(len(train), generator=g)[:n]],
            control[torch.randperm(len(control), generator=g)[:n]])


def singling_out_risk(synthetic: torch.Tensor | np.ndarray, train: torch.Tensor | np.ndarray,
                      control: torch.Tensor | np.ndarray, *, attacks: int = 500,
                      columns: int = 3, width: float = 0.1, seed: int = 0) -> RiskResult:
    """Multivariate singling out: predicates read off the release single out one record?

    Each predicate is a box ``|x_c - s_c| <= width * std_c`` on ``columns`` random columns
    around a random synthetic record ``s``. It succeeds on a data set of the same size as
    the control set if exactly one record satisfies it; training and control sets are
    compared at equal size, so the control rate is what chance uniqueness gives.
    """
    syn = _arr(synthetic)
    tr, co = _match_sizes(_arr(train), _arr(control), len(_arr(control)), seed)
    g = torch.Generator().manual_seed(seed)
    std = tr.std(0).clamp_min(1e-12)
    picks = syn[torch.randint(0, len(syn), (attacks,), generator=g)]
    cols = torch.rand(attacks, syn.shape[1], generator=g).argsort(1)[:, :columns]
    mask = torch.zeros(attacks, syn.shape[1], dtype=torch.bool).scatter_(1, cols, True)

    def hits(data: torch.Tensor) -> np.ndarray:
        inside = ((data[None] - picks[:, None]).abs() <= width * std) | ~mask[:, None]
        return (inside.all(-1).sum(1) == 1).numpy()

    return _result(hits(tr), hits(co))


def linkability_risk(synthetic: torch.Tensor | np.ndarray, train: torch.Tensor | np.ndarray,
                     control: torch.Tensor | np.ndarray, *, split: int | None = None,
                     neighbours: int = 1, attacks: int = 500, seed: int = 0) -> RiskResult:
    """Can two halves of a record (columns ``[:split]`` and ``[split:]``, as two data
    sets about the same people would hold them) be linked through the release? Success:
    the ``neighbours`` nearest synthetic records of both halves share one."""
    syn = _arr(synthetic)
    tr, co = _match_sizes(_arr(train), _arr(control), attacks, seed)
    s = split if split is not None else syn.shape[1] // 2
    if not 0 < s < syn.shape[1]:
        raise ValueError(f"split must leave columns on both sides, got {s}.")

    def hits(data: torch.Tensor) -> np.ndarray:
        a = torch.cdist(data[:, :s], syn[:, :s]).topk(neighbours, largest=False).indices
        b = torch.cdist(data[:, s:], syn[:, s:]).topk(neighbours, largest=False).indices
        return (a[:, :, None] == b[:, None, :]).flatten(1).any(1).numpy()

    return _result(hits(tr), hits(co))


def inference_risk(synthetic: torch.Tensor | np.ndarray, train: torch.Tensor | np.ndarray,
                   control: torch.Tensor | np.ndarray, *, secret: int, tolerance: float = 0.05,
                   attacks: int = 500, seed: int = 0) -> RiskResult:
    """Attribute inference: guess column ``secret`` from the nearest synthetic record on
    the other columns; a guess is right within ``tolerance`` times the column's range
    (exactly, when the column holds few distinct values)."""
    syn = _arr(synthetic)
    tr, co = _match_sizes(_arr(train), _arr(control), attacks, seed)
    rest = [c for c in range(syn.shape[1]) if c != secret]
    if not 0 <= secret < syn.shape[1] or not rest:
        raise ValueError(f"secret must name one of {syn.shape[1]} columns, got {secret}.")
    col = torch.cat([tr[:, secret], co[:, secret]])
    categorical = len(torch.unique(col)) <= 10
    tol = 0.0 if categorical else tolerance * float(col.max() - col.min())

    def hits(data: torch.Tensor) -> np.ndarray:
        nn_idx = torch.cdist(data[:, rest], syn[:, rest]).argmin(1)
        return ((syn[nn_idx, secret] - data[:, secret]).abs() <= tol + 1e-6).numpy()

    return _result(hits(tr), hits(co))
