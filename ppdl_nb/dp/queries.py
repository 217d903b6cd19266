"""DP statistics of a tensor column: count, sum, mean, each charged to a budget.

Why clipping bounds: the noise must cover the largest change one person can make.
With values clipped to ``[lower, upper]`` (bounds chosen *without* looking at the
data), adding or removing one person changes a sum by at most
``max(|lower|, |upper|)`` and a count by 1. The budget is charged *before* anything
is computed, so a refused query releases nothing.

>>> import torch
>>> from ppdl_nb.dp.budget import PrivacyBudget
>>> b = PrivacyBudget(epsilon=1.0, delta=0.0)
>>> ages = torch.tensor([30.0, 40.0, 50.0])
>>> m = dp_mean(ages, lower=0, upper=100, epsilon=0.5, budget=b)
>>> round(b.remaining_epsilon, 2)
0.5
"""

from __future__ import annotations

import torch

from ppdl_nb.dp.budget import PrivacyBudget
from ppdl_nb.dp.mechanisms import MECHANISMS

__all__ = ["dp_count", "dp_mean", "dp_sum"]


def _release(
    value: torch.Tensor,
    *,
    sensitivity: float,
    epsilon: float,
    delta: float,
    mechanism: str,
    budget: PrivacyBudget | None,
    what: str,
) -> float:
    try:
        mech = MECHANISMS[mechanism]
    except KeyError:
        raise ValueError(
            f"Unknown mechanism {mechanism!r}: choose one of {sorted(MECHANISMS)}."
        ) from None
    if mechanism == "gaussian" and delta <= 0:
        raise ValueError("The Gaussian mechanism needs delta > 0; pass delta=... or use 'laplace'.")
    if budget is not None:
        budget.charge(epsilon, delta, what)
    return float(mech(value, sensitivity=sensitivity, epsilon=epsilon, delta=delta))


def _column(values: torch.Tensor) -> torch.Tensor:
    v = torch.as_tensor(values)
    if v.dim() != 1:
        raise ValueError(f"Expected a 1-D column of values, got shape {tuple(v.shape)}.")
    return v.to(torch.float64)


def _bounds(lower: float, upper: float) -> None:
    if not lower < upper:
        raise ValueError(f"Need lower < upper for clipping, got [{lower}, {upper}].")


def dp_count(
    values: torch.Tensor,
    *,
    epsilon: float,
    delta: float = 0.0,
    mechanism: str = "laplace",
    budget: PrivacyBudget | None = None,
    what: str = "count",
) -> float:
    """Noisy number of rows (sensitivity 1)."""
    n = torch.tensor(float(len(_column(values))), dtype=torch.float64)
    return _release(n, sensitivity=1.0, epsilon=epsilon, delta=delta, mechanism=mechanism,
                    budget=budget, what=what)


def dp_sum(
    values: torch.Tensor,
    *,
    lower: float,
    upper: float,
    epsilon: float,
    delta: float = 0.0,
    mechanism: str = "laplace",
    budget: PrivacyBudget | None = None,
    what: str = "sum",
) -> float:
    """Noisy sum of ``values`` clipped to [lower, upper] (sensitivity max(|lower|, |upper|))."""
    _bounds(lower, upper)
    s = _column(values).clamp(lower, upper).sum()
    return _release(s, sensitivity=max(abs(lower), abs(upper)), epsilon=epsilon, delta=delta,
                    mechanism=mechanism, budget=budget, what=what)


def dp_mean(
    values: torch.Tensor,
    *,
    lower: float,
    upper: float,
    epsilon: float,
    delta: float = 0.0,
    mechanism: str = "laplace",
    budget: PrivacyBudget | None = None,
    what: str = "mean",
) -> float:
    """Noisy sum / noisy count, each with half of (epsilon, delta); clipped to [lower, upper].

    The budget is charged once, for the whole (epsilon, delta). Values are shifted to
    be centred at the middle of the bounds, which halves the sum's sensitivity.
    """
    _bounds(lower, upper)
    if budget is not None:
        budget.charge(epsilon, delta, what)
    mid, half = (lower + upper) / 2, (upper - lower) / 2
    v = _column(values).clamp(lower, upper) - mid
    half_eps, half_delta = epsilon / 2, delta / 2
    s = _release(v.sum(), sensitivity=half, epsilon=half_eps, delta=half_delta,
                 mechanism=mechanism, budget=None, what=what)
    n = _release(torch.tensor(float(len(v)), dtype=torch.float64), sensitivity=1.0,
                 epsilon=half_eps, delta=half_delta, mechanism=mechanism, budget=None, what=what)
    return float(min(upper, max(lower, mid + s / max(n, 1.0))))
